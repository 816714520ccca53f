"""Market-data websockets of the fake: raw ``/ws/<stream>`` and combined ``/stream?streams=`` sessions.

Live SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS, pings, malformed frames on demand, and a
A mixin of :class:`FakeExchange` (see ``_exchange.py``).
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

from actors.tools.loopback import WebSocketUpgrade
from actors.tools.venue_market import MarketState

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
            try:
                data = await session.stream.receive_some(65_536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the client's process died (a connection reset): its session ends
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
