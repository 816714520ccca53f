"""A small HTTP/1.1 + websocket server on trio for fake venues: h11 for requests, wsproto for
upgraded sockets.

Keep-alive HTTP with JSON bodies, and websocket upgrades handed to a session handler together with
the raw stream (so that a test can drop a socket abruptly, or a benchmark write pre-encoded
frames). The feed benchmark's firehose venue runs on it, and so does the test suite's fake
exchange.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import h11
import trio
import wsproto
import wsproto.utilities
from wsproto.connection import ConnectionType
from wsproto.utilities import generate_accept_token

log = logging.getLogger("actors.tools.loopback")

_MAX_BODY: Final = 1 << 20


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    #: the query string exactly as sent (still percent-encoded): signatures are computed over it
    raw_query: str = ""

    @property
    def body_params(self) -> dict[str, str]:
        """Parameters of a form-encoded body."""
        if not self.body:
            return {}
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    @property
    def params(self) -> dict[str, str]:
        """Query parameters merged with a form-encoded body, as the venues read them.

        A parameter sent in both places takes the query string's value (Binance's documented rule).
        """
        if not self.body:
            return self.query
        merged = self.body_params
        merged.update(self.query)
        return merged


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


@dataclass
class WebSocketUpgrade:
    """An accepted websocket: the raw stream and the wsproto connection over it."""

    request: HttpRequest
    stream: trio.abc.Stream
    ws: wsproto.connection.Connection


HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]
# returns None to accept the upgrade, or a response to refuse it
UpgradeCheck = Callable[[HttpRequest], HttpResponse | None]
WebSocketHandler = Callable[[WebSocketUpgrade], Awaitable[None]]


class _PeerGone(Exception):
    pass


class DropConnection(Exception):
    """Raised by an HTTP handler to close the connection without answering (fault injection)."""


async def serve_connection(
    stream: trio.abc.Stream,
    on_http: HttpHandler,
    check_upgrade: UpgradeCheck,
    on_websocket: WebSocketHandler,
) -> None:
    """Serve one TCP connection until the peer closes it (errors end the connection, not the server)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    try:
        while True:
            event = await _next_event(conn, stream)
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")
            request, body = _to_request(event), await _read_body(conn, stream)
            request = HttpRequest(request.method, request.path, request.query, request.headers, body, request.raw_query)
            if request.headers.get("upgrade", "").lower() == "websocket":
                refusal = check_upgrade(request)
                if refusal is None:
                    upgrade = await _accept_websocket(conn, stream, request)
                    await on_websocket(upgrade)
                    return
                await _send_response(conn, stream, refusal)
                return
            response = await on_http(request)
            await _send_response(conn, stream, response)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (
        _PeerGone,
        DropConnection,
        h11.ProtocolError,
        wsproto.utilities.ProtocolError,
        trio.BrokenResourceError,
        trio.ClosedResourceError,
    ) as exc:
        log.debug("connection ended: %r", exc)
    finally:
        await trio.aclose_forcefully(stream)


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> h11.Event | type[h11.PAUSED]:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65_536)
            if not data and conn.their_state is h11.IDLE:
                return h11.ConnectionClosed()
            conn.receive_data(data)
            continue
        return event  # type: ignore[return-value]


async def _read_body(conn: h11.Connection, stream: trio.abc.Stream) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await _next_event(conn, stream)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > _MAX_BODY:
                raise h11.RemoteProtocolError("request body too large")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            raise _PeerGone()
        else:
            raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} in a request body")


def _to_request(event: h11.Request) -> HttpRequest:
    target = event.target.decode("ascii", "replace")
    parts = urlsplit(target)
    return HttpRequest(
        method=event.method.decode("ascii"),
        path=parts.path,
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers},
        raw_query=parts.query,
    )


async def _send_response(conn: h11.Connection, stream: trio.abc.Stream, response: HttpResponse) -> None:
    headers = [("content-type", response.content_type), ("content-length", str(len(response.body)))]
    headers += response.headers
    data = conn.send(h11.Response(status_code=response.status, headers=headers))
    data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)


async def _accept_websocket(conn: h11.Connection, stream: trio.abc.Stream, request: HttpRequest) -> WebSocketUpgrade:
    key = request.headers.get("sec-websocket-key", "").encode("ascii")
    response = h11.InformationalResponse(
        status_code=101,
        headers=[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", generate_accept_token(key).decode("ascii")),
        ],
    )
    await stream.send_all(conn.send(response) or b"")
    trailing, _closed = conn.trailing_data
    ws = wsproto.connection.Connection(ConnectionType.SERVER, trailing_data=bytes(trailing))
    return WebSocketUpgrade(request=request, stream=stream, ws=ws)
