"""Feed-ingest benchmark: how many market messages per second one venue feed decodes and publishes.

``measure_feed_ingest(seconds)`` starts the firehose venue (:mod:`actors.tools.firehose`) in its
own process, as a real venue would be, connects one :func:`~actors.venues.feed.venue_feed` to it
with a counting sink, and has the venue write bookTicker / markPrice@1s / depth20 frames, in
turn, as fast as the socket takes them. The stages
are also measured on their own, so the figure comes with a breakdown:

* ``decode``: :func:`~actors.venues.parsing.parse_stream_message` alone, per message kind;
* ``on_frame``: the feed's whole per-frame path (decode, ordering check, publish), no I/O;
* ``ws_receive``: a bare trio-websocket client draining the same firehose, no decoding (the
  transport's own ceiling: wsproto framing and trio-websocket's message channel);
* ``end_to_end``: the real feed over loopback.

Run it with ``python -m actors.tools.bench_feed [seconds]``.
"""

from __future__ import annotations

import functools
import itertools
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import trio

from actors.clock import ServiceClock
from actors.domain.market import MarkPrice, OrderBook
from actors.messages import AcquireSymbol
from actors.venues.feed import FeedCommand, FeedSettings, _VenueFeed, venue_feed
from actors.venues.parsing import parse_stream_message
from actors.venues.profiles import get_profile
from actors.venues.rest import PublicRestClient
from actors.venues.stream import stream_names

from . import venue_market

__all__ = ["measure_feed_ingest"]

_SYMBOL = "BTCUSDT"


class _CountingSink:
    """A FeedSink that only counts (the cheapest possible consumer)."""

    def __init__(self) -> None:
        self.published = 0
        self.state = ""

    def publish_book(self, book: OrderBook) -> None:
        self.published += 1

    def publish_mark(self, mark: MarkPrice) -> None:
        self.published += 1

    def set_feed_state(self, state: str, detail: str = "") -> None:
        self.state = state

    def count(self, name: str, n: int = 1) -> None:
        pass


def _sample_frames(depth_levels: int) -> dict[str, bytes]:
    """One frame of each market stream, as the firehose venue sends them."""
    state = venue_market.MarketState.from_specs(venue_market.DEFAULT_SYMBOLS)
    frames = {}
    for stream in stream_names(_SYMBOL, depth_levels=depth_levels, depth_speed="100ms"):
        event = venue_market.event_for_stream(stream, state.markets, 1_700_000_000_000)
        frames[stream.partition("@")[2].split("@")[0]] = msgspec.json.encode({"stream": stream, "data": event})
    return frames


def _rate(fn: Callable[[], object], budget: float) -> float:
    """Calls per second of ``fn`` over about ``budget`` seconds of wall time."""
    calls, batch = 0, 2_000
    started = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        calls += batch
        elapsed = time.perf_counter() - started
        if elapsed >= budget:
            return calls / elapsed


def _measure_decode(frames: dict[str, bytes], budget: float) -> dict[str, float]:
    texts = {kind: raw.decode() for kind, raw in frames.items()}  # trio-websocket delivers str
    rates = {kind: _rate(functools.partial(parse_stream_message, text, 0.0), budget / 4) for kind, text in texts.items()}
    mixed = itertools.cycle(list(texts.values()))
    rates["mixed"] = _rate(lambda: parse_stream_message(next(mixed), 0.0), budget / 4)
    return rates


def _measure_on_frame(frames: dict[str, bytes], count: int = 30_000) -> float:
    """The feed's per-frame path (decode, ordering check, publish) without any I/O."""
    sink = _CountingSink()
    feed = _VenueFeed(get_profile("asterdex"), None, sink, lambda: 0.0, FeedSettings())  # type: ignore[arg-type]
    feed.refs[_SYMBOL] = 1
    # text frames (as trio-websocket delivers them) with increasing event times, so that the
    # ordering check keeps every one of them
    templates = [raw.decode().replace("1700000000000", "%d", 1) for raw in frames.values()]
    texts = [templates[i % len(templates)] % (1_700_000_000_000 + i) for i in range(count)]
    started = time.perf_counter()
    for text in texts:
        feed.on_frame(text)
    elapsed = time.perf_counter() - started
    if sink.published != count:
        raise RuntimeError(f"{count - sink.published} of {count} frames were not published")
    return count / elapsed


class _FakeVenueProcess:
    """The fake exchange in its own process (as a real venue is), with a firehose armed."""

    def __init__(self, process: trio.Process, rest_url: str, ws_url: str) -> None:
        self.process = process
        self.rest_url = rest_url
        self.ws_url = ws_url


async def _read_line(process: trio.Process) -> bytes:
    assert process.stdout is not None
    buffer = bytearray()
    while not buffer.endswith(b"\n"):
        chunk = await process.stdout.receive_some(1)
        if not chunk:
            raise RuntimeError("the fake exchange process ended unexpectedly")
        buffer += chunk
    return bytes(buffer)


@asynccontextmanager
async def _open_fake_venue_process(seconds: float) -> AsyncIterator[_FakeVenueProcess]:
    """``python -m actors.tools.firehose``: the benchmark's venue, in a process of its own."""
    command = [sys.executable, "-m", "actors.tools.firehose", "--symbol", _SYMBOL, "--seconds", str(seconds)]
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            functools.partial(trio.run_process, command, stdout=subprocess.PIPE, check=False)
        )
        try:
            with trio.fail_after(20):
                urls = msgspec.json.decode(await _read_line(process))
            yield _FakeVenueProcess(process, urls["rest_url"], urls["ws_url"])
        finally:
            process.terminate()  # only the process started here, by its handle


async def _measure_ws_receive(seconds: float) -> float:
    """A bare trio-websocket client draining the firehose: the transport alone, no decoding."""
    from trio_websocket import open_websocket_url

    streams = "/".join(stream_names(_SYMBOL, depth_levels=20, depth_speed="100ms"))
    async with _open_fake_venue_process(seconds) as venue:
        url = f"{venue.ws_url}/stream?streams={streams}"
        async with open_websocket_url(url, message_queue_size=256, receive_buffer_size=65_536) as ws:
            await ws.get_message()  # the firehose has started
            received, started = 0, time.perf_counter()
            with trio.move_on_after(seconds * 0.8):
                while True:
                    await ws.get_message()
                    received += 1
            return received / (time.perf_counter() - started)


async def _measure_end_to_end(seconds: float, depth_levels: int) -> dict[str, float]:
    """The real feed (websocket, decode, ordering check, publish) on the firehose."""
    async with _open_fake_venue_process(seconds) as venue:
        clock = ServiceClock().now
        profile = get_profile("asterdex", rest_url=venue.rest_url, ws_url=venue.ws_url)
        sink = _CountingSink()
        settings = FeedSettings(depth_levels=depth_levels)  # type: ignore[arg-type]
        async with PublicRestClient(profile, clock=clock) as rest:
            send, receive = trio.open_memory_channel[FeedCommand](4)
            async with trio.open_nursery() as nursery:
                status = await nursery.start(venue_feed, profile, rest, sink, receive, clock, settings)
                await send.send(AcquireSymbol(_SYMBOL))
                with trio.fail_after(20):
                    while sink.published < 10:  # subscribed, and the firehose is flowing
                        await trio.sleep(0.005)
                warm_up = seconds * 0.1
                await trio.sleep(warm_up)
                before, started = sink.published, time.perf_counter()
                await trio.sleep(seconds * 0.8)  # inside the firehose window
                published, elapsed = sink.published - before, time.perf_counter() - started
                out_of_order = status.out_of_order
                await send.aclose()
    return {"messages_per_s": published / elapsed, "published": published, "dropped_out_of_order": out_of_order}


async def measure_feed_ingest(seconds: float = 3.0, *, depth_levels: int = 20) -> dict[str, Any]:
    """Messages per second one venue feed decodes and publishes, with a breakdown by stage.

    Returns a dict: ``messages_per_s`` (end to end, over loopback), ``us_per_message`` and
    ``breakdown`` (rates of each stage alone, in messages per second, and µs per message).
    Takes about ``2 * seconds + 2`` seconds.
    """
    frames = _sample_frames(depth_levels)
    decode = _measure_decode(frames, budget=min(1.0, seconds))
    on_frame = _measure_on_frame(frames, count=int(min(30_000, 10_000 * seconds)))
    ws_receive = await _measure_ws_receive(seconds)
    end_to_end = await _measure_end_to_end(seconds, depth_levels)
    rate = end_to_end["messages_per_s"]
    return {
        "messages_per_s": round(rate),
        "us_per_message": round(1e6 / rate, 2),
        "seconds": seconds,
        "mix": "bookTicker, markPrice@1s, depth%d@100ms in turn" % depth_levels,
        "published": end_to_end["published"],
        "dropped_out_of_order": end_to_end["dropped_out_of_order"],
        "breakdown": {
            "decode_per_s": {kind: round(r) for kind, r in decode.items()},
            "decode_us": {kind: round(1e6 / r, 2) for kind, r in decode.items()},
            "on_frame_per_s": round(on_frame),
            "on_frame_us": round(1e6 / on_frame, 2),
            "ws_receive_only_per_s": round(ws_receive),
            "ws_receive_us": round(1e6 / ws_receive, 2),
            "end_to_end_us": round(1e6 / rate, 2),
        },
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    seconds = float(args[0]) if args else 3.0
    result = trio.run(measure_feed_ingest, seconds)
    print(msgspec.json.format(msgspec.json.encode(result), indent=2).decode())


if __name__ == "__main__":
    main()
