"""The fake exchange: a loopback server speaking the AsterDEX / Binance USDⓈ-M futures dialect.

REST and websockets share one port. This module assembles the parts:

* market data (``_market.py``, ``_public.py``, ``_market_ws.py``): scripted books and marks,
  public endpoints, market streams with live SUBSCRIBE;
* the trading side (``_trading.py`` and the modules it wires: accounts, authentication, matching
  engine, Binance algo orders, user-data streams), whose API is :class:`TradingFacade`
  (``_trading_api.py``);
* fault injection: latency, 5xx / 429 / 418 on any request, dropped or silent websockets,
  malformed frames (methods below), and faults on trading writes (:meth:`fault_next`,
  ``_faults.py``);
* a request log (:attr:`FakeExchange.requests`, :meth:`write_calls`, :meth:`order_requests`) and
  :meth:`wait_until`, which is event-driven.

Clocks: :meth:`FakeExchange.clock` is the shared wall clock (trio time on a realistic epoch) that
tests hand to clients. The venue's own time, :meth:`FakeExchange.server_ms`, is that clock plus
:attr:`FakeExchange.clock_offset_ms`: a skew makes a client that trusts its clock get -1021 until
it measures the offset with ``GET /fapi/v1/time``, and a large offset moves time forward for the
venue's own deadlines (listenKey expiry, nonce window, countdownCancelAll).
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import msgspec
import trio

from actors.tools import venue_market as market
from ._faults import WriteFaults
from actors.tools.loopback import DropConnection, HttpRequest, HttpResponse, WebSocketUpgrade, serve_connection
from actors.tools.venue_market import Flavour, MarketState, SymbolSpec
from ._market_ws import MALFORMED_FRAMES, MarketWebsockets, WsCommand, WsSession
from ._public import PublicRoutes, error, public_weight
from ._trading import TradingSide, route_table
from ._trading_api import TradingFacade

__all__ = [
    "EPOCH_BASE",
    "MALFORMED_FRAMES",
    "FakeExchange",
    "RequestRecord",
    "WsCommand",
    "WsSession",
    "open_fake_exchange",
]

log = logging.getLogger("tests.fake_exchange")

EPOCH_BASE: Final = 1_700_000_000.0

Route = Callable[[HttpRequest], Awaitable[HttpResponse]]
_decode = msgspec.json.decode


class RequestRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One request the fake received (websocket upgrades included)."""

    method: str
    path: str
    #: every parameter, query string and form body merged (the query string wins, as on Binance)
    query: dict[str, str]
    #: HTTP status answered; 0 when no answer was sent (a ``timeout`` or ``drop`` fault)
    status: int
    websocket: bool = False
    at: float = 0.0
    #: the form-body parameters alone
    body: dict[str, str] = {}
    #: the request carried an ``X-MBX-APIKEY`` header
    api_key: bool = False
    #: name of the account the request authenticated as (None: unsigned or refused)
    account: str | None = None
    #: the venue error code of the answer, if it was an error body
    code: int | None = None
    #: the write fault applied to this request, if any
    fault: str | None = None


@dataclass
class _Faults:
    latency: float = 0.0
    fail: list[tuple[int, str | None]] = field(default_factory=list)  # (status, path filter)
    rate_limit: list[tuple[float | None, str | None]] = field(default_factory=list)
    banned_until: float = -math.inf  # trio time
    silent: bool = False
    refuse_ws: list[int] = field(default_factory=list)  # statuses for the next upgrade requests


class FakeExchange(PublicRoutes, MarketWebsockets, TradingFacade):
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
        #: the request weight per minute exchangeInfo announces (the venues' own: 2400)
        self.weight_limit = 2400
        self._nursery = nursery
        self._faults = _Faults()
        self._write_faults = WriteFaults()
        self._routes: dict[tuple[str, str], Route] = {}
        self._weights: dict[tuple[str, str], int | Callable[[HttpRequest], int]] = {}
        self._session_ids = itertools.count(1)
        self._account_ids = itertools.count(1)
        self._key_random = random.Random(5000)
        self._last_event_ms = 0
        self._clock_offset_ms = 0
        self._weight_minute = -1
        self._weight_used = 0
        self._changed = trio.Event()
        self._install_public_routes()
        self._trading = TradingSide(flavour, self.state, self.server_ms, self.event_ms, self._notify)
        for path, endpoint, api in route_table(flavour):
            self.add_route(endpoint.method, path, self._trading.route(endpoint, api))
            self._weights[(endpoint.method, path)] = endpoint.weight

    # -- clock ------------------------------------------------------------------------------

    @staticmethod
    def clock() -> float:
        """The shared wall clock (seconds): trio time shifted to a realistic epoch."""
        return EPOCH_BASE + trio.current_time()

    @property
    def clock_offset_ms(self) -> int:
        """How far the venue's clock is ahead of :meth:`clock` (negative: behind)."""
        return self._clock_offset_ms

    @clock_offset_ms.setter
    def clock_offset_ms(self, offset: int) -> None:
        self._clock_offset_ms = offset
        self._trading.timers.poke()

    def server_ms(self) -> int:
        """The venue's time in milliseconds: :meth:`clock` plus :attr:`clock_offset_ms`."""
        return int(self.clock() * 1000) + self._clock_offset_ms

    def event_ms(self) -> int:
        """A strictly increasing event time ``E`` (milliseconds of the server clock)."""
        self._last_event_ms = max(self._last_event_ms + 1, self.server_ms())
        return self._last_event_ms

    # -- market scripting -------------------------------------------------------------------

    @property
    def symbols(self) -> dict[str, SymbolSpec]:
        return self.state.specs

    def exchange_info(self) -> dict[str, Any]:
        """The exchangeInfo payload this fake serves (official shape of its flavour)."""
        return market.exchange_info(self.flavour, self.state.specs.values(), self.server_ms(),
                                    weight_limit=self.weight_limit)

    def set_book(self, symbol: str, bids: Iterable[Sequence[Any]], asks: Iterable[Sequence[Any]]) -> None:
        """Replace the book of ``symbol``; levels are (price, quantity), best first.

        Resting orders the new book crosses fill, and conditional orders on the contract price
        are evaluated (see ``_engine.py``).
        """
        m = self._market(symbol)
        m.bids, m.asks = market.to_levels(bids), market.to_levels(asks)
        m.update_id += 1
        self._trading.engine.book_changed(symbol)

    def set_mark(
        self,
        symbol: str,
        mark: Decimal | str,
        funding_rate: Decimal | str = "0.0001",
        next_funding_ms: int = 0,
        *,
        index: Decimal | str | None = None,
    ) -> None:
        """Set the mark (and index, funding) of ``symbol``; conditional orders on the mark are evaluated."""
        m = self._market(symbol)
        m.mark = market.wire(mark)
        m.index = market.wire(index if index is not None else mark)
        m.funding_rate = market.wire(funding_rate)
        m.next_funding_ms = next_funding_ms
        self._trading.engine.mark_changed(symbol)

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
        """Serve ``method path`` with ``handler`` (replacing what the fake serves there)."""
        self._routes[(method.upper(), path)] = handler

    # -- fault injection (any request) ------------------------------------------------------

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

    def clear_faults(self) -> None:
        """Forget every fault still queued: those of :meth:`fault_next`, and the REST failures,
        rate limits and websocket refusals."""
        super().clear_faults()
        self._faults.fail.clear()
        self._faults.rate_limit.clear()
        self._faults.refuse_ws.clear()

    def drop_websockets(self) -> int:
        """Abort every websocket, market and user-data (TCP closed, no closing handshake)."""
        for session in self.sessions.values():
            session.scope.cancel()
        return len(self.sessions) + self._trading.streams.drop_all()

    def silence_websockets(self, silent: bool = True) -> None:
        """Stop (or resume) market data on every websocket; control replies and pongs continue."""
        self._faults.silent = silent

    # -- inspection -------------------------------------------------------------------------

    def write_calls(self) -> list[RequestRecord]:
        """Every request that was not a GET (POST, PUT, DELETE...)."""
        return [r for r in self.requests if r.method != "GET"]

    def calls(self, path: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.path == path and not r.websocket]

    @property
    def user_sessions(self) -> dict[int, Any]:
        """Open user-data websockets (``UserSession``), by id."""
        return self._trading.streams.sessions

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait (event-driven: no polling) until ``predicate()`` is true.

        Re-evaluated whenever the fake's state changes: a request, a websocket opening or
        closing, a control message, a user-data event. Bound it with ``trio.fail_after``.
        """
        while not predicate():
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- HTTP -------------------------------------------------------------------------------

    async def handle_http(self, request: HttpRequest) -> HttpResponse:
        if self._faults.latency:
            await trio.sleep(self._faults.latency)
        response = self._injected_fault(request)
        fault = self._write_faults.take(request) if response is None else None
        if response is None:
            if fault is None or fault.placed:
                response = await self._route(request)
            if fault is not None:
                response = None if fault.silent else fault.response(self.server_ms())
        if response is None:  # a silent fault: record, then never answer
            assert fault is not None
            self._record(request, 0, fault=fault.label)
            if fault.kind == "drop":
                raise DropConnection()
            await trio.sleep_forever()
        response = self._with_weight(request, response)
        self._record(request, response.status, code=_error_code(response), fault=fault.label if fault else None)
        return response

    async def _route(self, request: HttpRequest) -> HttpResponse:
        route = self._routes.get((request.method, request.path))
        if route is None:
            return error(404, -1000, f"{request.method} {request.path} is not supported by the fake exchange")
        return await route(request)

    def _injected_fault(self, request: HttpRequest) -> HttpResponse | None:
        faults = self._faults
        remaining = faults.banned_until - trio.current_time()
        if remaining > 0:
            until_ms = int((self.clock() + remaining) * 1000)
            return error(
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
                return error(
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
                    return error(503, -1001, "Service Unavailable.")
                return error(status, -1000, "An unknown error occured while processing the request.")
        return None

    def _roll_weight(self) -> None:
        minute = int(self.clock() // 60)
        if minute != self._weight_minute:
            self._weight_minute, self._weight_used = minute, 0

    def _with_weight(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        self._roll_weight()
        weight = self._weights.get((request.method, request.path), public_weight)
        self._weight_used += weight(request) if callable(weight) else weight
        headers = [*response.headers, ("x-mbx-used-weight-1m", str(self._weight_used))]
        return HttpResponse(response.status, response.body, headers, response.content_type)

    def _record(
        self,
        request: HttpRequest,
        status: int,
        *,
        websocket: bool = False,
        code: int | None = None,
        fault: str | None = None,
    ) -> None:
        self.requests.append(
            RequestRecord(
                method=request.method,
                path=request.path,
                query=dict(request.params),
                status=status,
                websocket=websocket,
                at=self.clock(),
                body=request.body_params,
                api_key="x-mbx-apikey" in request.headers,
                account=self._trading.request_accounts.pop(id(request), None),
                code=code,
                fault=fault,
            )
        )
        self._notify()

    def _market(self, symbol: str) -> market.SymbolMarket:
        try:
            return self.state.markets[symbol]
        except KeyError:
            raise KeyError(f"the fake exchange does not list {symbol!r}") from None

    # -- websocket --------------------------------------------------------------------------

    def check_upgrade(self, request: HttpRequest) -> HttpResponse | None:
        """None to accept a websocket handshake, or the refusal to answer instead."""
        key = _listen_key_of(request.path)
        if not (request.path == "/stream" or request.path == "/ws" or request.path.startswith("/ws/")):
            refusal = error(404, -1000, f"no websocket endpoint at {request.path}")
        elif self._faults.refuse_ws:
            status = self._faults.refuse_ws.pop(0)
            refusal = error(status, -1001, "Service Unavailable.")
        elif key is not None and (refused := self._trading.streams.refusal(key)) is not None:
            refusal = refused
        else:
            return None
        self._record(request, refusal.status, websocket=True)
        return refusal

    async def handle_websocket(self, upgrade: WebSocketUpgrade) -> None:
        key = _listen_key_of(upgrade.request.path)
        if key is None:
            await self.serve_market_websocket(upgrade)
            return
        self._record(upgrade.request, 101, websocket=True)
        await self._trading.streams.serve(upgrade, key)


def _listen_key_of(path: str) -> str | None:
    """The listen key of a user-data websocket path ``/ws/<listenKey>`` (market streams have an @)."""
    if not path.startswith("/ws/"):
        return None
    name = path.removeprefix("/ws/").strip("/")
    return name if len(name) >= 32 and name.isalnum() else None


def _error_code(response: HttpResponse) -> int | None:
    if response.status < 400 or not response.body.startswith(b'{"code"'):
        return None
    try:
        code = _decode(response.body).get("code")
    except msgspec.DecodeError:
        return None
    return code if isinstance(code, int) else None


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
        nursery.start_soon(fake._trading.timers.run)

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
