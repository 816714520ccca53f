"""The feed benchmark's venue: one symbol's public REST, and a combined websocket stream that, once
subscribed, writes the symbol's market streams as fast as the socket takes them.

``python -m actors.tools.firehose [--symbol BTCUSDT] [--seconds 3]`` prints one JSON line
``{"rest_url": ..., "ws_url": ...}`` once it listens, blasts for ``--seconds`` after the first
subscription, prints ``{"firehose_sent": n}`` and serves on until interrupted. It runs in its own
process, as a real venue would; frames are pre-encoded (only ``E`` and ``u`` change) and written
in batches, so the venue is never what the benchmark measures.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import trio
import wsproto
from wsproto.events import CloseConnection, Ping, TextMessage

from . import venue_market as market
from .loopback import HttpRequest, HttpResponse, WebSocketUpgrade, serve_connection

_E: Final = 987_654_321_987_654  # placeholders of the event time and update id in a template
_U: Final = 876_543_219_876_543
_encode = msgspec.json.Encoder().encode


class _Command(msgspec.Struct, frozen=True):
    method: str
    params: list[str] = []
    id: int | str | None = None


@dataclass(eq=False)
class _Session:
    stream: trio.abc.Stream
    ws: wsproto.connection.Connection
    streams: set[str] = field(default_factory=set)
    lock: trio.StrictFIFOLock = field(default_factory=trio.StrictFIFOLock)

    async def send(self, data: bytes) -> bool:
        async with self.lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
        return True


class FirehoseVenue:
    def __init__(self, symbol: str, seconds: float) -> None:
        self.symbol = symbol.upper()
        self.seconds = seconds
        self.state = market.MarketState.from_specs(market.DEFAULT_SYMBOLS)
        self.sent = 0
        self.done = trio.Event()
        self._subscribed = trio.Event()
        self._event_ms = itertools.count(1_700_000_000_000)

    async def handle_http(self, request: HttpRequest) -> HttpResponse:
        now = next(self._event_ms)
        m = self.state.markets.get(request.params.get("symbol", self.symbol))
        if request.path.endswith("/time"):
            return _json({"serverTime": now})
        if request.path.endswith("/exchangeInfo"):
            return _json(market.exchange_info("aster", self.state.specs.values(), now))
        if m is not None and request.path.endswith("/depth"):
            return _json(market.depth(m, int(request.params.get("limit", "20")), now))
        if m is not None and request.path.endswith("/premiumIndex"):
            return _json(market.premium_index(request.params.get("symbol", self.symbol), m, now))
        if m is not None and request.path.endswith("/ticker/bookTicker"):
            return _json(market.book_ticker(request.params.get("symbol", self.symbol), m, now))
        return _json({"code": -1000, "msg": f"{request.path} is not served here"}, 404)

    def check_upgrade(self, request: HttpRequest) -> HttpResponse | None:
        return None if request.path == "/stream" else _json({"code": -1000, "msg": "only /stream"}, 404)

    async def handle_websocket(self, upgrade: WebSocketUpgrade) -> None:
        session = _Session(upgrade.stream, upgrade.ws,
                           {s for s in upgrade.request.query.get("streams", "").split("/") if s})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._blast, session)
            await self._read(session)
            nursery.cancel_scope.cancel()

    async def _read(self, session: _Session) -> None:
        ws = session.ws
        while True:
            data = await session.stream.receive_some(65_536)
            ws.receive_data(data or None)
            for event in ws.events():
                if isinstance(event, TextMessage):
                    command = msgspec.json.decode(event.data, type=_Command)
                    if command.method == "SUBSCRIBE":
                        session.streams.update(command.params)
                    elif command.method == "UNSUBSCRIBE":
                        session.streams.difference_update(command.params)
                    await session.send(ws.send(TextMessage(data=_encode({"result": None, "id": command.id}).decode())))
                elif isinstance(event, Ping):
                    await session.send(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    return
            if not data:
                return

    async def _blast(self, session: _Session, batch: int = 256) -> None:
        prefix = self.symbol.lower() + "@"
        while not any(s.startswith(prefix) for s in session.streams):
            await trio.sleep(0.01)
        await trio.sleep(0.05)  # let the rest of the subscription land
        templates = self._templates(sorted(s for s in session.streams if s.startswith(prefix)))
        deadline = trio.current_time() + self.seconds
        while trio.current_time() < deadline:
            base = next(self._event_ms)
            for _ in range(batch):
                next(self._event_ms)
            frames = b"".join(_text_frame(templates[i % len(templates)] % {b"E": base + i, b"u": base + i})
                              for i in range(batch))
            if not await session.send(frames):
                break
            self.sent += batch
        self.done.set()

    def _templates(self, streams: list[str]) -> list[bytes]:
        """One bytes %-template per stream, with the event time and update id left open."""
        out = []
        for stream in streams:
            event = market.event_for_stream(stream, self.state.markets, 0)
            if event is None:
                continue
            event["E"] = _E
            if "u" in event:
                event["u"] = _U
            text = _encode({"stream": stream, "data": event}).replace(b"%", b"%%")
            out.append(text.replace(b"%d" % _E, b"%(E)d").replace(b"%d" % _U, b"%(u)d"))
        return out


def _json(payload: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, _encode(payload))


def _text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented server text frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65_536:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + payload


async def serve(symbol: str, seconds: float, host: str = "127.0.0.1") -> None:
    venue = FirehoseVenue(symbol, seconds)

    async def handle(stream: trio.SocketStream) -> None:
        await serve_connection(stream, venue.handle_http, venue.check_upgrade, venue.handle_websocket)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0, host=host))
        port = listeners[0].socket.getsockname()[1]
        _print({"rest_url": f"http://{host}:{port}", "ws_url": f"ws://{host}:{port}"})
        await venue.done.wait()
        _print({"firehose_sent": venue.sent})


def _print(payload: object) -> None:
    sys.stdout.write(_encode(payload).decode() + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m actors.tools.firehose", description=__doc__.splitlines()[0])
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    try:
        trio.run(serve, args.symbol, args.seconds)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
