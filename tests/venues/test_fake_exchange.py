"""The fake exchange over real loopback sockets: REST dialect, faults, websocket protocol.

Real clock: every test is bounded by ``trio.fail_after`` and waits for events, not for time.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import msgspec
import pytest
import trio
from trio_websocket import open_websocket_url

from actors.venues.parsing import build_instruments
from actors.venues.rest import PublicRestClient, RateLimited, VenueBanned, VenueError
from tests.fake_exchange import FakeExchange, open_fake_exchange
from tests.venues.support import FAST_REST, profile_for

TIMEOUT = 10


def rest_client(fake: FakeExchange, **changes: object) -> PublicRestClient:
    settings = msgspec.structs.replace(FAST_REST, **changes) if changes else FAST_REST
    return PublicRestClient(profile_for(fake), clock=fake.clock, settings=settings)


@pytest.mark.parametrize("flavour", ["aster", "binance"])
async def test_public_endpoints_build_instruments(flavour: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_exchange(flavour=flavour) as fake, rest_client(fake) as rest:  # type: ignore[arg-type]
            raw = await rest.exchange_info_raw()
            brackets = await rest.leverage_brackets()
            assert (await rest.leverage_brackets("ETHUSDT")).keys() == {"ETHUSDT"}  # both answer shapes
            instruments = build_instruments(raw, brackets, profile=profile_for(fake))
            await rest.ping()
            offset = await rest.measure_clock_offset()
    assert set(instruments) == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    btc = instruments["BTCUSDT"]
    assert btc.filters.tick_size == Decimal("0.10") and btc.filters.min_notional == Decimal(5)
    assert btc.max_leverage == 125 and btc.liquidation_fee_rate == Decimal("0.0125")
    assert btc.fees == profile_for(fake).default_fees
    assert abs(offset) < 0.5  # the fake's clock is the test's clock


async def test_market_scripting_is_served(fake: FakeExchange) -> None:
    fake.set_book("ETHUSDT", bids=[("2999.5", "4"), ("2999", "1")], asks=[("3000.5", "2")])
    fake.set_mark("ETHUSDT", "3000.1", funding_rate="-0.0002", next_funding_ms=1_700_003_600_000, index="3000")
    with trio.fail_after(TIMEOUT):
        async with rest_client(fake) as rest:
            book = await rest.depth("ETHUSDT", 5)
            top = await rest.book_ticker("ETHUSDT")
            mark = await rest.premium_index("ETHUSDT")
    assert book.bids == ((Decimal("2999.5"), Decimal(4)), (Decimal(2999), Decimal(1)))
    assert top.best_ask == Decimal("3000.5") and not top.depth
    assert (mark.mark, mark.index, mark.funding_rate) == (Decimal("3000.1"), Decimal(3000), Decimal("-0.0002"))
    assert mark.next_funding_ms == 1_700_003_600_000
    assert book.venue_ms < top.venue_ms < mark.venue_ms  # event times strictly increase


async def test_error_bodies_use_the_venue_codes(fake: FakeExchange) -> None:
    with trio.fail_after(TIMEOUT):
        async with rest_client(fake) as rest:
            with pytest.raises(VenueError) as invalid:
                await rest.depth("NOPEUSDT")
            async with httpx.AsyncClient(base_url=fake.rest_url) as http:
                missing = await http.get("/fapi/v1/premiumIndex", params={"symbol": ""})
                bad_limit = await http.get("/fapi/v1/depth", params={"symbol": "BTCUSDT", "limit": "7"})
    assert (invalid.value.code, invalid.value.msg, invalid.value.http_status) == (-1121, "Invalid symbol.", 400)
    assert missing.status_code == 400 and missing.json()["code"] == -1102
    assert bad_limit.status_code == 400 and bad_limit.json()["code"] == -1130


async def test_weight_header_and_request_log(fake: FakeExchange) -> None:
    with trio.fail_after(TIMEOUT):
        async with rest_client(fake) as rest:
            await rest.depth("BTCUSDT", 20)
            first = rest.stats.used_weight_1m
            await rest.depth("BTCUSDT", 1000)
    assert first >= 2 and rest.stats.used_weight_1m == first + 20
    assert [(r.method, r.path, r.query) for r in fake.requests] == [
        ("GET", "/fapi/v1/depth", {"symbol": "BTCUSDT", "limit": "20"}),
        ("GET", "/fapi/v1/depth", {"symbol": "BTCUSDT", "limit": "1000"}),
    ]
    assert fake.write_calls() == []


async def test_write_calls_lists_every_non_get(fake: FakeExchange) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=fake.rest_url) as http:
            await http.get("/fapi/v1/time")
            refused = await http.post("/fapi/v1/order", data={"symbol": "BTCUSDT", "side": "BUY"})
            await http.delete("/fapi/v1/order", params={"symbol": "BTCUSDT", "orderId": "1"})
    # the fake now trades: an order without an API key is refused as the venues refuse it
    assert refused.status_code == 401 and refused.json()["code"] == -2014
    assert [(r.method, r.path, r.query) for r in fake.write_calls()] == [
        ("POST", "/fapi/v1/order", {"symbol": "BTCUSDT", "side": "BUY"}),
        ("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": "1"}),
    ]


async def test_added_routes_serve_signed_endpoints_later(fake: FakeExchange) -> None:
    from tests.fake_exchange import HttpRequest, HttpResponse

    async def new_order(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, msgspec.json.encode({"orderId": 1, "symbol": request.params["symbol"]}))

    fake.add_route("POST", "/fapi/v1/order", new_order)
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=fake.rest_url) as http:
            response = await http.post("/fapi/v1/order", data={"symbol": "ETHUSDT"})
    assert response.json() == {"orderId": 1, "symbol": "ETHUSDT"}
    assert len(fake.write_calls()) == 1


async def test_5xx_is_retried_over_real_sockets(fake: FakeExchange) -> None:
    fake.fail_next(2, status=503)
    with trio.fail_after(TIMEOUT):
        async with rest_client(fake) as rest:
            book = await rest.depth("BTCUSDT")
    assert book.best_bid is not None
    assert [r.status for r in fake.requests] == [503, 503, 200]
    assert rest.stats.retries == 2


async def test_429_is_retried_over_real_sockets(fake: FakeExchange) -> None:
    fake.rate_limit_next(1, retry_after=0.05)
    with trio.fail_after(TIMEOUT):
        async with rest_client(fake, max_attempts=2) as rest:
            await rest.premium_index("BTCUSDT")
            assert [r.status for r in fake.requests] == [429, 200]
            assert fake.requests[1].at - fake.requests[0].at >= 0.05  # Retry-After honoured
            fake.rate_limit_next(2)
            with pytest.raises(RateLimited) as caught:
                await rest.depth("BTCUSDT", 5)
    assert caught.value.code == -1003 and caught.value.retry_after is None
    assert rest.stats.backoffs_429 == 2


async def test_418_stops_all_requests_until_the_ban_ends(fake: FakeExchange) -> None:
    fake.ban(0.3)
    with trio.fail_after(TIMEOUT):
        async with rest_client(fake) as rest:
            with pytest.raises(VenueBanned) as caught:
                await rest.depth("BTCUSDT")
            assert 0 < caught.value.retry_after <= 1  # Retry-After is whole seconds
            with pytest.raises(VenueBanned):
                await rest.premium_index("BTCUSDT")
            assert len(fake.requests) == 1  # the second call never left the client
            await trio.sleep(rest.ban_seconds_left())  # waiting out the ban is the point here
            await rest.premium_index("BTCUSDT")
    assert [r.status for r in fake.requests] == [418, 200]


async def test_latency_is_injected(fake: FakeExchange) -> None:
    fake.latency = 0.1
    with trio.fail_after(TIMEOUT):
        async with rest_client(fake) as rest:
            started = trio.current_time()
            await rest.ping()
    assert trio.current_time() - started >= 0.1


# -- websocket dialect -------------------------------------------------------------------------


async def test_combined_stream_subscribe_list_unsubscribe(fake: FakeExchange) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(f"{fake.ws_url}/stream?streams=btcusdt@bookTicker") as ws:
            await fake.wait_until(lambda: bool(fake.sessions))
            assert await fake.push_market("BTCUSDT") == 1
            frame = msgspec.json.decode(await ws.get_message())
            assert frame["stream"] == "btcusdt@bookTicker" and frame["data"]["e"] == "bookTicker"
            assert Decimal(frame["data"]["b"]) == Decimal("59999.9")

            await ws.send_message('{"method": "SUBSCRIBE", "params": ["ethusdt@markPrice@1s"], "id": 1}')
            assert msgspec.json.decode(await ws.get_message()) == {"result": None, "id": 1}
            await ws.send_message('{"method": "LIST_SUBSCRIPTIONS", "id": 2}')
            listed = msgspec.json.decode(await ws.get_message())
            assert listed == {"result": ["btcusdt@bookTicker", "ethusdt@markPrice@1s"], "id": 2}
            await ws.send_message('{"method": "UNSUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 3}')
            assert msgspec.json.decode(await ws.get_message()) == {"result": None, "id": 3}
            await ws.send_message('{"method": "FLY", "id": 4}')
            assert msgspec.json.decode(await ws.get_message())["code"] == 2
            await ws.send_message("{nope")
            assert msgspec.json.decode(await ws.get_message())["code"] == 3

            assert await fake.push_market("BTCUSDT") == 0
            assert await fake.push_market("ETHUSDT") == 1
            frame = msgspec.json.decode(await ws.get_message())
            assert frame["stream"] == "ethusdt@markPrice@1s" and frame["data"]["e"] == "markPriceUpdate"
    assert [c.method for c in fake.commands()] == ["SUBSCRIBE", "LIST_SUBSCRIPTIONS", "UNSUBSCRIBE", "FLY"]


async def test_raw_stream_sends_bare_events(fake: FakeExchange) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(f"{fake.ws_url}/ws/solusdt@depth5@100ms") as ws:
            await fake.wait_until(lambda: bool(fake.sessions))
            await fake.push_market("SOLUSDT")
            event = msgspec.json.decode(await ws.get_message())
    assert event["e"] == "depthUpdate" and len(event["b"]) == 5 and event["s"] == "SOLUSDT"


async def test_silence_and_drop(fake: FakeExchange) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(f"{fake.ws_url}/stream?streams=btcusdt@markPrice@1s") as ws:
            await fake.wait_until(lambda: bool(fake.sessions))
            fake.silence_websockets(True)
            assert await fake.push_market("BTCUSDT") == 0
            fake.silence_websockets(False)
            assert await fake.push_market("BTCUSDT") == 1
            await ws.get_message()
            assert fake.drop_websockets() == 1
            await fake.wait_until(lambda: not fake.sessions)
            with pytest.raises(Exception) as closed:
                await ws.get_message()
    assert closed.type.__name__ == "ConnectionClosed"
    assert closed.value.reason.code == 1006  # abnormal closure: no closing handshake


async def test_unknown_websocket_path_is_refused(fake: FakeExchange) -> None:
    from trio_websocket import ConnectionRejected

    with trio.fail_after(TIMEOUT):
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(f"{fake.ws_url}/nowhere"):
                pass
    assert rejected.value.status_code == 404
