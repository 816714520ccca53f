"""The fake exchange: a loopback server speaking the AsterDEX / Binance USDⓈ-M futures dialect.

REST and websocket share one port. Public endpoints are implemented; signed and trading
endpoints can be added with :meth:`FakeExchange.add_route` (every request, whatever its method,
is recorded, so a test can assert that a paper session made zero write calls).

Scripting (what the market looks like), fault injection (latency, 5xx, 429, 418, dropped or
silent websockets, malformed frames) and waiting helpers (:meth:`FakeExchange.wait_until`) are
methods of :class:`FakeExchange`; see :func:`open_fake_exchange`.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import msgspec
import trio
import wsproto
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from . import _market as market
from ._http import HttpRequest, HttpResponse, WebSocketUpgrade, serve_connection
from ._market import Flavour, MarketState, SymbolSpec

log = logging.getLogger("tests.fake_exchange")

EPOCH_BASE: Final = 1_700_000_000.0
_E_SENTINEL: Final = 987_654_321_987_654
_U_SENTINEL: Final = 876_543_219_876_543
_encode = msgspec.json.Encoder().encode

Route = Callable[[HttpRequest], Awaitable[HttpResponse]]

#: frames that :meth:`FakeExchange.send_malformed` sends: each must be counted as malformed
MALFORMED_FRAMES: Final[tuple[str, ...]] = (
    "this is not json",
    '{"stream": "btcusdt@bookTicker", "data": {"e": "bookTicker", "s": "BTCUSDT", "b": "1"',
    '{"stream": "btcusdt@bookTicker", "data": {"e": "bookTicker", "E": 1, "s": "BTCUSDT",'
    ' "b": "not-a-number", "B": "1", "a": "2", "A": "1"}}',
    '{"stream": "btcusdt@depth20@100ms", "data": {"e": "depthUpdate", "E": 1, "s": "BTCUSDT",'
    ' "b": [["1"]], "a": []}}',
    '{"stream": "btcusdt@markPrice@1s"}',
)


class RequestRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One request the fake received (websocket upgrades included)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    websocket: bool = False
    at: float = 0.0


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
    """One websocket client of the fake."""

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


@dataclass
class _Faults:
    latency: float = 0.0
    fail: list[tuple[int, str | None]] = field(default_factory=list)  # (status, path filter)
    rate_limit: list[tuple[float | None, str | None]] = field(default_factory=list)
    banned_until: float = -math.inf  # trio time
    silent: bool = False
    refuse_ws: list[int] = field(default_factory=list)  # statuses for the next upgrade requests


class FakeExchange:
    """A running fake venue. Create it with :func:`open_fake_exchange`."""

    def __init__(self, flavour: Flavour, specs: Iterable[SymbolSpec], nursery: trio.Nursery) -> None:
        self.flavour: Flavour = flavour
        self.state = MarketState.from_specs(specs)
        self.requests: list[RequestRecord] = []
        self.ws_commands: list[WsCommand] = []
        self.sessions: dict[int, WsSession] = {}
        self.sessions_opened = 0
        #: the most websocket sessions open at the same time (a rotation overlaps two)
        self.max_concurrent_sessions = 0
        #: answer websocket pings (turn off to simulate a half-open connection)
        self.answer_pings = True
        self.rest_url = ""
        self.ws_url = ""
        self.max_streams = 200 if flavour == "aster" else 1024
        self._nursery = nursery
        self._faults = _Faults()
        self._routes: dict[tuple[str, str], Route] = {}
        self._session_ids = itertools.count(1)
        self._last_event_ms = 0
        self._weight_minute = -1
        self._weight_used = 0
        self._changed = trio.Event()
        self._install_public_routes()

    # -- clock ------------------------------------------------------------------------------

    @staticmethod
    def clock() -> float:
        """The fake's epoch clock (seconds): trio time shifted to a realistic epoch."""
        return EPOCH_BASE + trio.current_time()

    def event_ms(self) -> int:
        """A strictly increasing event time ``E`` (milliseconds)."""
        self._last_event_ms = max(self._last_event_ms + 1, int(self.clock() * 1000))
        return self._last_event_ms

    # -- scripting --------------------------------------------------------------------------

    @property
    def symbols(self) -> dict[str, SymbolSpec]:
        return self.state.specs

    def exchange_info(self) -> dict[str, Any]:
        """The exchangeInfo payload this fake serves (official shape of its flavour)."""
        return market.exchange_info(self.flavour, self.state.specs.values(), int(self.clock() * 1000))

    def set_book(self, symbol: str, bids: Iterable[Sequence[Any]], asks: Iterable[Sequence[Any]]) -> None:
        """Replace the book of ``symbol``; levels are (price, quantity), best first."""
        m = self._market(symbol)
        m.bids, m.asks = market.to_levels(bids), market.to_levels(asks)
        m.update_id += 1

    def set_mark(
        self,
        symbol: str,
        mark: Decimal | str,
        funding_rate: Decimal | str = "0.0001",
        next_funding_ms: int = 0,
        *,
        index: Decimal | str | None = None,
    ) -> None:
        m = self._market(symbol)
        m.mark = market.wire(mark)
        m.index = market.wire(index if index is not None else mark)
        m.funding_rate = market.wire(funding_rate)
        m.next_funding_ms = next_funding_ms

    async def push_market(self, symbol: str) -> int:
        """Send the current book / mark of ``symbol`` to every subscribed websocket.

        Returns the number of frames sent (0 while silenced).
        """
        self._market(symbol)
        if self._faults.silent:
            return 0
        prefix = symbol.lower() + "@"
        sent = 0
        for session in list(self.sessions.values()):
            for stream in sorted(s for s in session.streams if s.startswith(prefix)):
                event = market.event_for_stream(stream, self.state.markets, self.event_ms())
                if event is not None and await session.send_text(session.frame(stream, event)):
                    sent += 1
        return sent

    async def push_all(self) -> int:
        sent = 0
        for symbol in list(self.state.markets):
            sent += await self.push_market(symbol)
        return sent

    def start_ticker(self, interval: float) -> trio.CancelScope:
        """Push every symbol every ``interval`` seconds (as ``markPrice@1s`` would); cancel to stop."""
        scope = trio.CancelScope()

        async def tick() -> None:
            with scope:
                while True:
                    await self.push_all()
                    await trio.sleep(interval)

        self._nursery.start_soon(tick)
        return scope

    def add_route(self, method: str, path: str, handler: Route) -> None:
        """Serve ``method path`` with ``handler`` (for signed / trading endpoints)."""
        self._routes[(method.upper(), path)] = handler

    # -- fault injection --------------------------------------------------------------------

    @property
    def latency(self) -> float:
        return self._faults.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        """Delay every REST answer by ``seconds``."""
        self._faults.latency = seconds

    def fail_next(self, n: int = 1, status: int = 500, *, path: str | None = None) -> None:
        """Answer the next ``n`` REST requests (to ``path`` if given) with a 5xx."""
        self._faults.fail.extend([(status, path)] * n)

    def rate_limit_next(self, n: int = 1, retry_after: float | None = None, *, path: str | None = None) -> None:
        """Answer the next ``n`` REST requests with 429 (and ``Retry-After`` if given)."""
        self._faults.rate_limit.extend([(retry_after, path)] * n)

    def ban(self, seconds: float) -> None:
        """Answer every REST request with 418 + ``Retry-After`` for ``seconds``."""
        self._faults.banned_until = trio.current_time() + seconds

    def set_used_weight(self, weight: int) -> None:
        """Pretend ``weight`` has been used in the current minute (``X-MBX-USED-WEIGHT-1M``)."""
        self._roll_weight()
        self._weight_used = weight

    def refuse_websockets(self, n: int = 1, status: int = 503) -> None:
        """Refuse the next ``n`` websocket handshakes with HTTP ``status``."""
        self._faults.refuse_ws.extend([status] * n)

    def drop_websockets(self) -> int:
        """Abort every websocket (TCP closed, no closing handshake). Returns how many."""
        for session in self.sessions.values():
            session.scope.cancel()
        return len(self.sessions)

    def silence_websockets(self, silent: bool = True) -> None:
        """Stop (or resume) market data on every websocket; control replies and pongs continue."""
        self._faults.silent = silent

    async def send_malformed(self, frames: Sequence[str] = MALFORMED_FRAMES) -> int:
        """Send malformed frames to every websocket. Returns frames sent per session."""
        for session in list(self.sessions.values()):
            for text in frames:
                await session.send_text(text)
        return len(frames)

    async def send_frame(self, text: str) -> None:
        """Send one arbitrary text frame to every websocket."""
        for session in list(self.sessions.values()):
            await session.send_text(text)

    # -- inspection -------------------------------------------------------------------------

    def write_calls(self) -> list[RequestRecord]:
        """Every request that was not a GET (POST, PUT, DELETE...)."""
        return [r for r in self.requests if r.method != "GET"]

    def calls(self, path: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.path == path and not r.websocket]

    def subscriptions(self) -> set[str]:
        """Streams of every open websocket session."""
        return set().union(*(s.streams for s in self.sessions.values()))

    def commands(self, method: str | None = None) -> list[WsCommand]:
        return [c for c in self.ws_commands if method is None or c.method == method]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait (event-driven: no polling) until ``predicate()`` is true.

        Re-evaluated whenever the fake's state changes: a request, a websocket opening or
        closing, a control message. Bound it with ``trio.fail_after``.
        """
        while not predicate():
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

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

    # -- HTTP -------------------------------------------------------------------------------

    async def handle_http(self, request: HttpRequest) -> HttpResponse:
        faults = self._faults
        if faults.latency:
            await trio.sleep(faults.latency)
        response = self._injected_fault(request)
        if response is None:
            route = self._routes.get((request.method, request.path))
            if route is None:
                response = _error(404, -1000, f"{request.method} {request.path} is not supported by the fake exchange")
            else:
                response = await route(request)
        response = self._with_weight(request, response)
        self._record(request, response.status)
        return response

    def _injected_fault(self, request: HttpRequest) -> HttpResponse | None:
        faults = self._faults
        remaining = faults.banned_until - trio.current_time()
        if remaining > 0:
            until_ms = int((self.clock() + remaining) * 1000)
            return _error(
                418,
                -1003,
                f"Way too many requests; IP(127.0.0.1) banned until {until_ms}. "
                "Please use the websocket for live updates to avoid bans.",
                headers=[("retry-after", str(math.ceil(remaining)))],
            )
        for i, (retry_after, path) in enumerate(faults.rate_limit):
            if path is None or path == request.path:
                del faults.rate_limit[i]
                headers = [] if retry_after is None else [("retry-after", f"{retry_after:g}")]
                return _error(
                    429,
                    -1003,
                    "Too many requests; current limit of IP(127.0.0.1) request weight per 1 minute is 2400. "
                    "Please use WebSocket Streams for live updates to avoid bans.",
                    headers=headers,
                )
        for i, (status, path) in enumerate(faults.fail):
            if path is None or path == request.path:
                del faults.fail[i]
                if status == 503:
                    return _error(503, -1001, "Service Unavailable.")
                return _error(status, -1000, "An unknown error occured while processing the request.")
        return None

    def _roll_weight(self) -> None:
        minute = int(self.clock() // 60)
        if minute != self._weight_minute:
            self._weight_minute, self._weight_used = minute, 0

    def _with_weight(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        self._roll_weight()
        self._weight_used += _weight_of(request)
        headers = [*response.headers, ("x-mbx-used-weight-1m", str(self._weight_used))]
        return HttpResponse(response.status, response.body, headers, response.content_type)

    def _record(self, request: HttpRequest, status: int, *, websocket: bool = False) -> None:
        self.requests.append(
            RequestRecord(
                method=request.method,
                path=request.path,
                query=dict(request.params),
                status=status,
                websocket=websocket,
                at=self.clock(),
            )
        )
        self._notify()

    def _market(self, symbol: str) -> market.SymbolMarket:
        try:
            return self.state.markets[symbol]
        except KeyError:
            raise KeyError(f"the fake exchange does not list {symbol!r}") from None

    # -- public REST routes -----------------------------------------------------------------

    def _install_public_routes(self) -> None:
        routes: dict[str, Route] = {
            "/fapi/v1/ping": self._ping,
            "/fapi/v1/time": self._time,
            "/fapi/v1/exchangeInfo": self._exchange_info,
            "/fapi/v1/depth": self._depth,
            "/fapi/v1/ticker/bookTicker": self._book_ticker,
            "/fapi/v1/premiumIndex": self._premium_index,
            "/fapi/v1/leverageBracket": self._leverage_bracket,
        }
        for path, handler in routes.items():
            self.add_route("GET", path, handler)

    async def _ping(self, request: HttpRequest) -> HttpResponse:
        return _json({})

    async def _time(self, request: HttpRequest) -> HttpResponse:
        return _json({"serverTime": int(self.clock() * 1000)})

    async def _exchange_info(self, request: HttpRequest) -> HttpResponse:
        return _json(self.exchange_info())

    async def _depth(self, request: HttpRequest) -> HttpResponse:
        symbol, refusal = self._symbol_param(request)
        if refusal:
            return refusal
        limit_text = request.params.get("limit", "500")
        if limit_text not in {"5", "10", "20", "50", "100", "500", "1000"}:
            return _error(400, -1130, "Data sent for parameter 'limit' is not valid.")
        m = self.state.markets[symbol]
        return _json(market.depth(m, int(limit_text), self.event_ms()))

    async def _book_ticker(self, request: HttpRequest) -> HttpResponse:
        symbol = request.params.get("symbol")
        if symbol is None:
            now = self.event_ms()
            return _json([market.book_ticker(s, m, now) for s, m in self.state.markets.items()])
        symbol, refusal = self._symbol_param(request)
        if refusal:
            return refusal
        return _json(market.book_ticker(symbol, self.state.markets[symbol], self.event_ms()))

    async def _premium_index(self, request: HttpRequest) -> HttpResponse:
        if request.params.get("symbol") is None:
            now = self.event_ms()
            return _json([market.premium_index(s, m, now) for s, m in self.state.markets.items()])
        symbol, refusal = self._symbol_param(request)
        if refusal:
            return refusal
        return _json(market.premium_index(symbol, self.state.markets[symbol], self.event_ms()))

    async def _leverage_bracket(self, request: HttpRequest) -> HttpResponse:
        if request.params.get("symbol") is None:
            return _json(market.leverage_brackets(self.flavour, self.state.specs.values(), single=False))
        symbol, refusal = self._symbol_param(request)
        if refusal:
            return refusal
        return _json(market.leverage_brackets(self.flavour, [self.state.specs[symbol]], single=True))

    def _symbol_param(self, request: HttpRequest) -> tuple[str, HttpResponse | None]:
        symbol = request.params.get("symbol", "")
        if not symbol:
            return "", _error(
                400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        if symbol not in self.state.markets:
            return "", _error(400, -1121, "Invalid symbol.")
        return symbol, None

    # -- websocket --------------------------------------------------------------------------

    def check_upgrade(self, request: HttpRequest) -> HttpResponse | None:
        """None to accept a websocket handshake, or the refusal to answer instead."""
        if not (request.path == "/stream" or request.path == "/ws" or request.path.startswith("/ws/")):
            refusal = _error(404, -1000, f"no websocket endpoint at {request.path}")
        elif self._faults.refuse_ws:
            status = self._faults.refuse_ws.pop(0)
            refusal = _error(status, -1001, "Service Unavailable.")
        else:
            return None
        self._record(request, refusal.status, websocket=True)
        return refusal

    async def handle_websocket(self, upgrade: WebSocketUpgrade) -> None:
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


def _weight_of(request: HttpRequest) -> int:
    if request.path == "/fapi/v1/depth":
        text = request.params.get("limit", "500")
        limit = int(text) if text.isdigit() else 500
        return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
    if request.path in ("/fapi/v1/ticker/bookTicker", "/fapi/v1/premiumIndex"):
        return 1 if "symbol" in request.params else 10
    return 1


def _json(payload: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, _encode(payload))


def _error(status: int, code: int, msg: str, *, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    return HttpResponse(status, _encode({"code": code, "msg": msg}), headers or [])


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


@asynccontextmanager
async def open_fake_exchange(
    *,
    flavour: Flavour = "aster",
    symbols: Iterable[SymbolSpec] = market.DEFAULT_SYMBOLS,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[FakeExchange]:
    """Run a fake exchange on ``host``:``port`` (0: ephemeral) for the duration of the block.

    Yields the :class:`FakeExchange`; point a venue profile at ``fake.rest_url`` / ``fake.ws_url``.
    """
    async with trio.open_nursery() as nursery:
        fake = FakeExchange(flavour, symbols, nursery)

        async def handle(stream: trio.SocketStream) -> None:
            await serve_connection(stream, fake.handle_http, fake.check_upgrade, fake.handle_websocket)

        listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, port, host=host))
        port = listeners[0].socket.getsockname()[1]
        fake.rest_url = f"http://{host}:{port}"
        fake.ws_url = f"ws://{host}:{port}"
        log.debug("fake %s exchange listening on %s", flavour, fake.rest_url)
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()
