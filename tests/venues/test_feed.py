"""The live venue feed against the fake exchange, over real loopback sockets (real clock).

Every test is bounded by ``trio.fail_after`` and waits for the event it needs (a state, a
subscription seen by the fake, a quote in the sink), never for a fixed time.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
import trio

from actors.messages import AcquireSymbol as Acquire
from actors.messages import ReleaseSymbol as Release
from actors.venues.feed import FeedSettings
from actors.venues.stream import stream_names
from tests.fake_exchange import MALFORMED_FRAMES, FakeExchange, open_fake_exchange
from tests.venues.support import FAST_FEED, FeedHarness, open_feed

TIMEOUT = 10


def streams_of(*symbols: str) -> set[str]:
    return {s for symbol in symbols for s in stream_names(symbol, depth_levels=20, depth_speed="100ms")}


async def acquire_and_wait_streaming(h: FeedHarness, symbol: str) -> None:
    await h.commands.send(Acquire(symbol))
    await h.fake.wait_until(lambda: streams_of(symbol) <= h.fake.subscriptions())
    await h.sink.wait_until(lambda: h.sink.state == "connected")


@pytest.mark.parametrize("flavour", ["aster", "binance"])
async def test_acquire_primes_over_rest_then_streams(flavour: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_exchange(flavour=flavour) as fake, open_feed(fake) as h:  # type: ignore[arg-type]
            fake.silence_websockets(True)
            await h.commands.send(Acquire("btcusdt"))  # symbols are normalised to upper case
            # the REST snapshot gives a depth book and a mark although the stream is silent
            await h.sink.wait_until(lambda: bool(h.sink.books) and bool(h.sink.marks))
            primed = h.sink.books[0]
            assert primed.depth and primed.symbol == "BTCUSDT" and len(primed.bids) == 20
            assert {r.path for r in fake.requests if not r.websocket} >= {"/fapi/v1/depth", "/fapi/v1/premiumIndex"}
            assert fake.calls("/fapi/v1/depth")[0].query == {"symbol": "BTCUSDT", "limit": "20"}

            await fake.wait_until(lambda: streams_of("BTCUSDT") <= fake.subscriptions())
            fake.silence_websockets(False)
            fake.set_book("BTCUSDT", bids=[("61000.1", "2")], asks=[("61000.2", "3")])
            fake.set_mark("BTCUSDT", "61000.15", funding_rate="0.0003", next_funding_ms=1_700_028_800_000)
            before = fake.clock()
            sent_at_ms = fake.event_ms()
            await fake.push_market("BTCUSDT")
            await h.sink.wait_until(
                lambda: any(b.best_bid == Decimal("61000.1") and b.depth for b in h.sink.books)
                and any(b.best_bid == Decimal("61000.1") and not b.depth for b in h.sink.books)
                and any(m.mark == Decimal("61000.15") for m in h.sink.marks)
            )
    top = next(b for b in h.sink.books if not b.depth)
    mark = h.sink.marks[-1]
    assert top.asks == ((Decimal("61000.2"), Decimal(3)),)
    assert mark.funding_rate == Decimal("0.0003") and mark.next_funding_ms == 1_700_028_800_000
    for item in (top, mark):
        assert item.venue_ms > sent_at_ms  # the venue's event time, not ours
        assert before <= item.received_at <= before + TIMEOUT  # the local receive time
    assert fake.write_calls() == []


async def test_subscriptions_are_reference_counted(fake: FakeExchange) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_feed(fake) as h:
            await acquire_and_wait_streaming(h, "BTCUSDT")  # 0 -> 1: in the connection URL
            (connect,) = [r for r in fake.requests if r.websocket]
            assert connect.path == "/stream" and set(connect.query["streams"].split("/")) == streams_of("BTCUSDT")

            await h.commands.send(Acquire("ETHUSDT"))  # 0 -> 1: SUBSCRIBE
            await fake.wait_until(lambda: streams_of("ETHUSDT") <= fake.subscriptions())
            await h.commands.send(Acquire("BTCUSDT"))  # 1 -> 2: nothing
            await h.commands.send(Release("BTCUSDT"))  # 2 -> 1: nothing
            await h.commands.send(Release("ETHUSDT"))  # 1 -> 0: UNSUBSCRIBE
            await fake.wait_until(lambda: bool(fake.commands("UNSUBSCRIBE")))
            # commands are handled in order, so anything sent for BTC would show up before this
            assert [(c.method, set(c.params)) for c in fake.commands()] == [
                ("SUBSCRIBE", streams_of("ETHUSDT")),
                ("UNSUBSCRIBE", streams_of("ETHUSDT")),
            ]
            assert fake.subscriptions() == streams_of("BTCUSDT")
            assert dict(h.status.symbols) == {"BTCUSDT": 1}

            await h.commands.send(Release("BTCUSDT"))  # 1 -> 0: UNSUBSCRIBE
            await fake.wait_until(lambda: not fake.subscriptions())
            assert set(fake.commands("UNSUBSCRIBE")[-1].params) == streams_of("BTCUSDT")
            assert dict(h.status.symbols) == {}

            await h.commands.send(Release("BTCUSDT"))  # not held: counted, ignored
            await h.sink.wait_until(lambda: h.sink.counts["release_unknown"] == 1)
    assert fake.sessions_opened == 1  # all of it over one connection


async def test_reconnects_after_a_drop_and_quotes_flow_again(fake: FakeExchange) -> None:
    ticker = fake.start_ticker(0.02)
    with trio.fail_after(TIMEOUT):
        async with open_feed(fake) as h:
            await acquire_and_wait_streaming(h, "ETHUSDT")
            await h.commands.send(Acquire("SOLUSDT"))
            await fake.wait_until(lambda: streams_of("ETHUSDT", "SOLUSDT") <= fake.subscriptions())

            assert fake.drop_websockets() == 1
            await h.sink.wait_until(lambda: "reconnecting" in h.sink.state_names())
            dropped_at = fake.clock()
            await h.sink.wait_until(lambda: h.sink.state == "connected" and h.status.connections_opened == 2)
            # every stream is back, on the new connection
            assert fake.subscriptions() == streams_of("ETHUSDT", "SOLUSDT")
            await h.sink.wait_until(
                lambda: all(
                    any(b.symbol == s and not b.depth and b.received_at > dropped_at for b in h.sink.books)
                    for s in ("ETHUSDT", "SOLUSDT")
                )
            )
    ticker.cancel()
    assert h.status.reconnects == 1 and h.sink.counts["disconnects"] == 1


async def test_silent_stream_falls_back_to_rest_polling_and_back(fake: FakeExchange) -> None:
    ticker = fake.start_ticker(0.02)
    with trio.fail_after(TIMEOUT):
        async with open_feed(fake) as h:
            await acquire_and_wait_streaming(h, "BTCUSDT")
            fake.silence_websockets(True)
            await h.sink.wait_until(lambda: h.sink.state == "polling")
            assert h.status.polling == {"BTCUSDT"} and h.sink.states[-1] == ("polling", "BTCUSDT")
            polls_before = len(fake.calls("/fapi/v1/depth"))
            await h.sink.wait_until(lambda: h.sink.counts["polls"] >= 3)
            assert len(fake.calls("/fapi/v1/premiumIndex")) >= 3 and len(fake.calls("/fapi/v1/depth")) > polls_before
            polled = [b for b in h.sink.books if b.depth]
            assert polled[-1].received_at > polled[0].received_at  # fresh quotes while the stream is silent

            fake.silence_websockets(False)
            await h.sink.wait_until(lambda: h.sink.state == "connected")
            assert h.status.polling == frozenset()
            resumed = len(h.sink.books)
            await h.sink.wait_until(lambda: len(h.sink.books) > resumed + 3)
    ticker.cancel()
    assert h.status.connections_opened == 1  # the same connection: it was silent, not broken


async def test_stale_when_neither_the_stream_nor_rest_delivers(fake: FakeExchange) -> None:
    ticker = fake.start_ticker(0.02)
    with trio.fail_after(TIMEOUT):
        async with open_feed(fake) as h:
            await acquire_and_wait_streaming(h, "BTCUSDT")
            fake.silence_websockets(True)
            fake.ban(0.5)  # REST answers 418: polling cannot help either
            await h.sink.wait_until(lambda: h.sink.state == "stale")
            assert h.sink.states[-1] == ("stale", "no data for BTCUSDT")
            assert h.sink.counts["poll_errors"] >= 1 and h.status.poll_errors >= 1
            # the ban ends (Retry-After is whole seconds, so 1 s): polling brings fresh quotes
            await h.sink.wait_until(lambda: h.sink.state == "polling")
            fake.silence_websockets(False)
            await h.sink.wait_until(lambda: h.sink.state == "connected")
    ticker.cancel()
    assert h.rest.stats.bans_418 == 1


async def test_malformed_frames_are_counted_and_skipped(fake: FakeExchange) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_feed(fake) as h:
            await acquire_and_wait_streaming(h, "BTCUSDT")
            await fake.send_malformed()
            await h.sink.wait_until(lambda: h.sink.counts["malformed"] == len(MALFORMED_FRAMES))
            await fake.send_frame('{"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "s": "BTCUSDT"}}')
            books = len(h.sink.books)
            await fake.push_market("BTCUSDT")
            await h.sink.wait_until(lambda: len(h.sink.books) >= books + 2)
    assert h.status.malformed == len(MALFORMED_FRAMES) and h.status.ignored >= 1
    assert fake.sessions_opened == 1 and h.status.reconnects == 0  # the feed never noticed


async def test_rotation_opens_the_new_connection_before_closing_the_old(fake: FakeExchange) -> None:
    ticker = fake.start_ticker(0.02)
    settings = msgspec.structs.replace(FAST_FEED, rotate_after_seconds=0.4)
    with trio.fail_after(TIMEOUT):
        async with open_feed(fake, settings) as h:
            await acquire_and_wait_streaming(h, "BTCUSDT")
            await h.sink.wait_until(lambda: h.status.rotations >= 1)
            rotated_at = fake.clock()
            await fake.wait_until(lambda: len(fake.sessions) == 1)
            await h.sink.wait_until(lambda: any(not b.depth and b.received_at > rotated_at for b in h.sink.books))
    ticker.cancel()
    assert fake.max_concurrent_sessions == 2  # overlap: no gap in the data
    assert "reconnecting" not in h.sink.state_names()


async def test_symbols_beyond_the_stream_limit_are_polled(fake: FakeExchange) -> None:
    ticker = fake.start_ticker(0.02)
    settings = msgspec.structs.replace(FAST_FEED, max_streams=3)  # room for one symbol
    with trio.fail_after(TIMEOUT):
        async with open_feed(fake, settings) as h:
            await acquire_and_wait_streaming(h, "BTCUSDT")
            await h.commands.send(Acquire("ETHUSDT"))
            await h.sink.wait_until(lambda: h.status.polling == {"ETHUSDT"})
            assert fake.subscriptions() == streams_of("BTCUSDT")
            await h.sink.wait_until(lambda: any(b.symbol == "ETHUSDT" and b.depth for b in h.sink.books))

            await h.commands.send(Release("BTCUSDT"))  # room again: ETH moves to the stream
            await fake.wait_until(lambda: fake.subscriptions() == streams_of("ETHUSDT"))
            await h.sink.wait_until(lambda: not h.status.polling and h.sink.state == "connected")
    ticker.cancel()


async def test_unanswered_pings_drop_the_connection(fake: FakeExchange) -> None:
    settings = msgspec.structs.replace(FAST_FEED, ping_interval_seconds=0.05, pong_timeout_seconds=0.1)
    with trio.fail_after(TIMEOUT):
        async with open_feed(fake, settings) as h:
            await acquire_and_wait_streaming(h, "BTCUSDT")
            fake.answer_pings = False  # a half-open connection
            await h.sink.wait_until(lambda: h.status.reconnects >= 1)
            fake.answer_pings = True
            await h.sink.wait_until(lambda: h.sink.state in ("connected", "polling") and fake.sessions_opened >= 2)


async def test_refused_connections_are_retried_with_backoff(fake: FakeExchange) -> None:
    fake.refuse_websockets(2, status=503)
    with trio.fail_after(TIMEOUT):
        async with open_feed(fake) as h:
            await acquire_and_wait_streaming(h, "SOLUSDT")
    assert h.sink.counts["connect_failures"] == 2 and h.status.connections_opened == 1
    assert [r.status for r in fake.requests if r.websocket] == [503, 503, 101]
    assert h.sink.state_names()[0] == "connecting" and "reconnecting" not in h.sink.state_names()


async def test_closing_the_command_channel_stops_the_feed(fake: FakeExchange) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_feed(fake) as h:
            await acquire_and_wait_streaming(h, "BTCUSDT")
        # open_feed closed the channel and its nursery waited for venue_feed to return
        await fake.wait_until(lambda: not fake.sessions)


def test_feed_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="depth_levels"):
        FeedSettings(depth_levels=15)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_streams"):
        FeedSettings(max_streams=2)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"depth_speed": "1s"}, FeedSettings)
