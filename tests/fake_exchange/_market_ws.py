"""Market-data websockets of the fake: raw ``/ws/<stream>`` and combined ``/stream?streams=`` sessions.

Live SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS, pings, malformed frames on demand, and a
firehose for benchmarks. A mixin of :class:`FakeExchange` (see ``_exchange.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import trio
import wsproto
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from . import _market as market
from ._http import WebSocketUpgrade
from ._market import MarketState

_E_SENTINEL: Final = 987_654_321_987_654
_U_SENTINEL: Final = 876_543_219_876_543
_encode = msgspec.json.Encoder().encode

#: frames that :meth:`FakeExchange.send_malformed` sends: each must be counted as malformed
MALFORMED_FRAMES: Final[tuple[str, ...]] = (
    "this is not json",
    '{"stream": "btcusdt@bookTicker", "data": {"e": "bookTicker", "s": "BTCUSDT", "b": "1"',
    '{"stream": "btcusdt@bookTicker", "data": {"e": "bookTicker", "E": 1, "s": "BTCUSDT",'
    ' "b": "not-a-number", "B": "1", "a": "2", "A": "1"}}',
    '{"stream": "btcusdt@depth20@100ms", "data": {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "b": [["1"]], "a": []}}',
    '{"stream": "btcusdt@markPrice@1s"}',
)


class WsCommand(msgspec.Struct, frozen=True, kw_only=True):
    """A control message received on a websocket (SUBSCRIBE, UNSUBSCRIBE...)."""

    session: int
    method: str
    params: tuple[str, ...]
    id: int | str | None


class _WsRequest(msgspec.Struct, frozen=True):
    method: str
    params: list[str] = []
    id: int | str | None = None


_decode_ws_request = msgspec.json.Decoder(_WsRequest).decode


@dataclass(eq=False)
class WsSession:
    """One market-data websocket client of the fake."""

    id: int
    path: str
    combined: bool
    stream: trio.abc.Stream
    ws: wsproto.connection.Connection
    streams: set[str] = field(default_factory=set)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    lock: trio.StrictFIFOLock = field(default_factory=trio.StrictFIFOLock)
    frames_sent: int = 0

    def frame(self, stream: str, event: dict[str, Any]) -> str:
        payload = {"stream": stream, "data": event} if self.combined else event
        return _encode(payload).decode()

    async def send_text(self, text: str) -> bool:
        """Send one text frame; False (and the session ends) if the client is gone."""
        if self.ws.state is not wsproto.ConnectionState.OPEN:
            return False
        return await self.send_raw(self.ws.send(TextMessage(data=text)), frames=1)

    async def send_raw(self, data: bytes, frames: int) -> bool:
        if self.ws.state is not wsproto.ConnectionState.OPEN:
            return False
        async with self.lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.scope.cancel()
                return False
        self.frames_sent += frames
        return True


class MarketWebsockets:
    """Market websocket sessions; mixed into :class:`FakeExchange`."""

    state: MarketState
    sessions: dict[int, WsSession]
    ws_commands: list[WsCommand]
    sessions_opened: int
    max_concurrent_sessions: int
    answer_pings: bool
    max_streams: int
    _last_event_ms: int
    _session_ids: itertools.count[int]
    _notify: Callable[[], None]
    _record: Callable[..., None]

    async def send_malformed(self, frames: Sequence[str] = MALFORMED_FRAMES) -> int:
        """Send malformed frames to every market websocket. Returns frames sent per session."""
        for session in list(self.sessions.values()):
            for text in frames:
                await session.send_text(text)
        return len(frames)

    async def send_frame(self, text: str) -> None:
        """Send one arbitrary text frame to every market websocket."""
        for session in list(self.sessions.values()):
            await session.send_text(text)

    def subscriptions(self) -> set[str]:
        """Streams of every open websocket session."""
        return set().union(*(s.streams for s in self.sessions.values()))

    def commands(self, method: str | None = None) -> list[WsCommand]:
        return [c for c in self.ws_commands if method is None or c.method == method]

    # -- firehose (benchmarks) --------------------------------------------------------------

    async def blast(self, symbol: str, *, seconds: float, batch: int = 256) -> int:
        """Send the market streams of ``symbol`` as fast as the sockets take them.

        Frames are pre-encoded (only ``E`` and ``u`` change) and written in batches straight to
        every subscribed combined-stream session. Returns the number of frames sent.
        """
        deadline = trio.current_time() + seconds
        sent = 0
        while trio.current_time() < deadline:
            templates = self._frame_templates(symbol)
            if not templates:
                await trio.sleep(0.01)
                continue
            base = self._last_event_ms + 1
            self._last_event_ms = base + batch
            for session, session_templates in templates:
                frames = b"".join(
                    _text_frame(session_templates[i % len(session_templates)] % {b"E": base + i, b"u": base + i})
                    for i in range(batch)
                )
                if await session.send_raw(frames, batch):
                    sent += batch
        return sent

    def _frame_templates(self, symbol: str) -> list[tuple[WsSession, list[bytes]]]:
        """Per combined session, one bytes %-template per subscribed stream of ``symbol``."""
        prefix = symbol.lower() + "@"
        out = []
        for session in list(self.sessions.values()):
            if not session.combined:
                continue
            templates = []
            for stream in sorted(s for s in session.streams if s.startswith(prefix)):
                event = market.event_for_stream(stream, self.state.markets, 0)
                if event is None:
                    continue
                event["E"] = _E_SENTINEL
                if "u" in event:
                    event["u"] = _U_SENTINEL
                text = _encode({"stream": stream, "data": event}).replace(b"%", b"%%")
                text = text.replace(b"%d" % _E_SENTINEL, b"%(E)d").replace(b"%d" % _U_SENTINEL, b"%(u)d")
                templates.append(text)
            if templates:
                out.append((session, templates))
        return out

    # -- sessions ---------------------------------------------------------------------------

    async def serve_market_websocket(self, upgrade: WebSocketUpgrade) -> None:
        request = upgrade.request
        combined = request.path == "/stream"
        if combined:
            streams = {s for s in request.query.get("streams", "").split("/") if s}
        else:
            raw = request.path.removeprefix("/ws").strip("/")
            streams = {raw} if raw else set()
        session = WsSession(
            id=next(self._session_ids),
            path=request.path,
            combined=combined,
            stream=upgrade.stream,
            ws=upgrade.ws,
            streams=streams,
        )
        self.sessions[session.id] = session
        self.sessions_opened += 1
        self.max_concurrent_sessions = max(self.max_concurrent_sessions, len(self.sessions))
        self._record(request, 101, websocket=True)
        try:
            with session.scope:
                await self._serve_session(session)
        finally:
            del self.sessions[session.id]
            self._notify()

    async def _serve_session(self, session: WsSession) -> None:
        ws = session.ws
        parts: list[str] = []
        for event in ws.events():  # anything that arrived with the upgrade request
            await self._on_ws_event(session, event, parts)
        while True:
            data = await session.stream.receive_some(65_536)
            ws.receive_data(data or None)
            for event in ws.events():
                if not await self._on_ws_event(session, event, parts):
                    return
            if not data:
                return

    async def _on_ws_event(self, session: WsSession, event: wsproto.events.Event, parts: list[str]) -> bool:
        if isinstance(event, TextMessage):
            parts.append(event.data)
            if event.message_finished:
                text, parts[:] = "".join(parts), []
                await self._on_ws_text(session, text)
        elif isinstance(event, Ping) and self.answer_pings and session.ws.state is wsproto.ConnectionState.OPEN:
            async with session.lock:
                await session.stream.send_all(session.ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            if session.ws.state is wsproto.ConnectionState.REMOTE_CLOSING:
                async with session.lock:
                    await session.stream.send_all(session.ws.send(event.response()))
            return False
        elif isinstance(event, BytesMessage):
            pass
        return True

    async def _on_ws_text(self, session: WsSession, text: str) -> None:
        try:
            request = _decode_ws_request(text)
        except msgspec.DecodeError as exc:
            await session.send_text(_encode({"code": 3, "msg": f"Invalid JSON: {exc}", "id": None}).decode())
            return
        self.ws_commands.append(
            WsCommand(session=session.id, method=request.method, params=tuple(request.params), id=request.id)
        )
        reply: dict[str, Any]
        if request.method == "SUBSCRIBE":
            if len(session.streams | set(request.params)) > self.max_streams:
                reply = {"code": 2, "msg": f"Invalid request: more than {self.max_streams} streams", "id": request.id}
            else:
                session.streams.update(request.params)
                reply = {"result": None, "id": request.id}
        elif request.method == "UNSUBSCRIBE":
            session.streams.difference_update(request.params)
            reply = {"result": None, "id": request.id}
        elif request.method == "LIST_SUBSCRIPTIONS":
            reply = {"result": sorted(session.streams), "id": request.id}
        else:
            reply = {"code": 2, "msg": f"Invalid request: unknown method {request.method!r}", "id": request.id}
        await session.send_text(_encode(reply).decode())
        self._notify()


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
