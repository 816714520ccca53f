"""One websocket connection to a venue's combined market stream, kept in sync with a stream set.

The connection is opened on ``<ws_url>/stream?streams=a/b/c`` with the streams wanted at that
moment; later changes are applied live with ``{"method": "SUBSCRIBE" | "UNSUBSCRIBE", ...}``,
paced below the venue's limit of incoming messages per second. The reader hands every frame to a
synchronous, non-blocking callback, so nothing ever stalls trio-websocket's reader task (which
answers the server's pings). The client also pings the server and drops a connection that does
not answer (a half-open TCP connection would otherwise look like a silent market).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Final

import msgspec
import trio
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from actors.venues.parsing import ControlReply

__all__ = [
    "CONNECTION_ERRORS",
    "ConnectionOptions",
    "DesiredStreams",
    "FrameHandler",
    "StreamConnection",
    "combined_stream_url",
    "run_stream_connection",
    "stream_names",
]

log = logging.getLogger("actors.venues")

#: what a broken or refused websocket raises (all mean: reconnect)
CONNECTION_ERRORS: Final = (
    HandshakeError,
    ConnectionClosed,
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)

#: handles one frame synchronously; returns the control reply if the frame was one
FrameHandler = Callable[[str | bytes], ControlReply | None]

_encoder: Final = msgspec.json.Encoder()
_STREAMS_PER_CONTROL_MESSAGE: Final = 200


def stream_names(symbol: str, *, depth_levels: int, depth_speed: str) -> tuple[str, str, str]:
    """The three streams of one symbol: top of book, mark price (1 s) and partial depth.

    >>> stream_names("BTCUSDT", depth_levels=20, depth_speed="100ms")
    ('btcusdt@bookTicker', 'btcusdt@markPrice@1s', 'btcusdt@depth20@100ms')
    """
    s = symbol.lower()
    speed = "" if depth_speed in ("", "250ms") else f"@{depth_speed}"  # 250 ms is the default
    return (f"{s}@bookTicker", f"{s}@markPrice@1s", f"{s}@depth{depth_levels}{speed}")


def combined_stream_url(ws_url: str, path: str, streams: Iterable[str]) -> str:
    """``wss://host/stream?streams=a/b/c`` (sorted, so that the URL is deterministic)."""
    return f"{ws_url.rstrip('/')}{path}?streams={'/'.join(sorted(streams))}"


class ConnectionOptions(msgspec.Struct, frozen=True, kw_only=True):
    connect_timeout: float = 10.0
    disconnect_timeout: float = 2.0
    ping_interval: float = 30.0
    pong_timeout: float = 10.0
    #: minimum gap between two control messages (venues accept 10 incoming messages/s)
    control_interval: float = 0.25
    max_streams: int = 200
    message_queue_size: int = 256
    receive_buffer_size: int = 65_536
    max_message_size: int = 4 * 1024 * 1024


class DesiredStreams:
    """The streams every connection should carry, with a change notification.

    Owned by the feed; connections only read it.
    """

    def __init__(self) -> None:
        self._streams: frozenset[str] = frozenset()
        self._changed = trio.Event()

    @property
    def streams(self) -> frozenset[str]:
        return self._streams

    @property
    def changed(self) -> trio.Event:
        """An event that is set at the next change (take it *before* reading :attr:`streams`)."""
        return self._changed

    def update(self, streams: Collection[str]) -> bool:
        """Replace the set; wakes the connections if it changed. Returns whether it changed."""
        new = frozenset(streams)
        if new == self._streams:
            return False
        self._streams = new
        self._changed.set()
        self._changed = trio.Event()
        return True


class StreamConnection:
    """A live combined-stream connection (created by :func:`run_stream_connection`)."""

    def __init__(
        self, ws: WebSocketConnection, streams: Collection[str], options: ConnectionOptions, label: str
    ) -> None:
        self.label = label
        #: streams the server has been asked to send on this connection
        self.subscribed: set[str] = set(streams)
        #: set once the connection is gone (for any reason)
        self.closed = trio.Event()
        self.close_reason = ""
        self.opened_at = trio.current_time()
        self.frames = 0
        self.control_errors = 0
        self._ws = ws
        self._options = options
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, tuple[str, ...]]] = {}
        self._next_control_at = -1e18
        self._scope = trio.CancelScope()

    def __repr__(self) -> str:
        return f"<StreamConnection {self.label} streams={len(self.subscribed)}>"

    async def aclose(self, reason: str = "closed by the client") -> None:
        """Close gracefully (bounded by the disconnect timeout) and wait until it is gone."""
        if not self.close_reason:
            self.close_reason = reason
        with trio.move_on_after(self._options.disconnect_timeout):
            await self._ws.aclose()
        self._scope.cancel()
        await self.closed.wait()

    def abort(self, reason: str) -> None:
        """Drop the connection now, without a closing handshake."""
        if not self.close_reason:
            self.close_reason = reason
        self._scope.cancel()

    async def _read(self, on_frame: FrameHandler) -> None:
        ws = self._ws
        try:
            while True:
                raw = await ws.get_message()
                self.frames += 1
                reply = on_frame(raw)
                if reply is not None:
                    self._on_reply(reply)
        except ConnectionClosed as exc:
            if not self.close_reason:
                self.close_reason = _describe(exc.reason)

    async def _sync_loop(self, desired: DesiredStreams) -> None:
        try:
            while True:
                changed = desired.changed
                await self._sync(desired.streams)
                await changed.wait()
        except ConnectionClosed:
            return  # the reader notices too and ends the connection

    async def _sync(self, wanted: frozenset[str]) -> None:
        remove = self.subscribed - wanted
        if remove:
            self.subscribed -= remove
            await self._send_control("UNSUBSCRIBE", sorted(remove))
        add = sorted(wanted - self.subscribed)
        room = self._options.max_streams - len(self.subscribed)
        if len(add) > room:
            log.warning(
                "%s: %d streams wanted but only room for %d (limit %d per connection)",
                self.label,
                len(add),
                room,
                self._options.max_streams,
            )
            add = add[: max(room, 0)]
        if add:
            self.subscribed.update(add)
            await self._send_control("SUBSCRIBE", add)

    async def _send_control(self, method: str, streams: list[str]) -> None:
        for start in range(0, len(streams), _STREAMS_PER_CONTROL_MESSAGE):
            chunk = tuple(streams[start : start + _STREAMS_PER_CONTROL_MESSAGE])
            await trio.sleep_until(self._next_control_at)
            self._next_control_at = trio.current_time() + self._options.control_interval
            request_id = next(self._ids)
            self._pending[request_id] = (method, chunk)
            log.debug("%s: %s %s (id %d)", self.label, method, ",".join(chunk), request_id)
            await self._ws.send_message(
                _encoder.encode({"method": method, "params": chunk, "id": request_id}).decode()
            )

    def _on_reply(self, reply: ControlReply) -> None:
        request = self._pending.pop(reply.id, None) if isinstance(reply.id, int) else None
        if reply.ok:
            return
        self.control_errors += 1
        method, streams = request or ("request", ())
        log.warning(
            "%s: %s %s refused: code %s: %s",
            self.label,
            method,
            ",".join(streams) or f"id {reply.id}",
            reply.error_code,
            reply.error_msg,
        )

    async def _heartbeat(self) -> None:
        options = self._options
        try:
            while True:
                await trio.sleep(options.ping_interval)
                with trio.move_on_after(options.pong_timeout) as wait:
                    await self._ws.ping()
                if wait.cancelled_caught:
                    log.warning("%s: no pong within %.1f s; dropping the connection", self.label, options.pong_timeout)
                    self.abort(f"no pong within {options.pong_timeout:g} s")
                    return
        except ConnectionClosed:
            return


async def run_stream_connection(
    ws_url: str,
    path: str,
    desired: DesiredStreams,
    on_frame: FrameHandler,
    options: ConnectionOptions,
    *,
    label: str = "stream",
    task_status: trio.TaskStatus[StreamConnection] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Connect, report the :class:`StreamConnection` as started, and serve it until it closes.

    The streams wanted at connection time go into the URL; later changes of ``desired`` are
    applied live. Returns (never raises a network error) once the connection is gone; errors
    while connecting propagate to ``nursery.start`` (one of :data:`CONNECTION_ERRORS`).
    """
    initial = sorted(desired.streams)[: options.max_streams]
    url = combined_stream_url(ws_url, path, initial)
    conn: StreamConnection | None = None
    try:
        async with open_websocket_url(
            url,
            message_queue_size=options.message_queue_size,
            max_message_size=options.max_message_size,
            receive_buffer_size=options.receive_buffer_size,
            connect_timeout=options.connect_timeout,
            disconnect_timeout=options.disconnect_timeout,
        ) as ws:
            conn = StreamConnection(ws, initial, options, label)
            task_status.started(conn)
            try:
                with conn._scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(conn._sync_loop, desired)
                        nursery.start_soon(conn._heartbeat)
                        await conn._read(on_frame)
                        nursery.cancel_scope.cancel()
            finally:
                conn.closed.set()  # gone for the feed, even while the closing handshake runs
    except CONNECTION_ERRORS as exc:
        if conn is None:
            raise
        if not conn.close_reason:
            conn.close_reason = f"{type(exc).__name__}: {exc}"
    finally:
        if conn is not None:
            conn.closed.set()


def _describe(reason: CloseReason | None) -> str:
    if reason is None:
        return "connection closed"
    text = f"closed with code {reason.code} ({reason.name})"
    return f"{text}: {reason.reason}" if reason.reason else text
