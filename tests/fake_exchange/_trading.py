"""The trading side's REST surface: which paths exist per flavour, their security, weight and limits.

Aster serves its V1 API (HMAC) on ``/fapi/v1`` (+ ``/fapi/v2/positionRisk``, ``/fapi/v2/balance``,
``/fapi/v4/account``) and its V3 API (EIP-712 API wallets) on ``/fapi/v3`` (``accountWithJoinMargin``
and ``account`` both serve the account). Binance serves ``/fapi/v1`` (+ ``/fapi/v2|v3/positionRisk``,
``/fapi/v2|v3/balance``, ``/fapi/v3/account``) and the Algo Order API.

Request weights (``X-MBX-USED-WEIGHT-1M``) are the documented ones (a new order weighs 0 on
Binance and 1 on Aster). New orders also count, per account, in ``X-MBX-ORDER-COUNT-1M`` (and
``-10S`` on Binance); past :attr:`TradingSide.order_limits` the venue answers 429 with
``-1015 Too many new orders`` and places nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from actors.tools import venue_market as market
from . import _routes_account as accounts
from . import _routes_orders as orders
from ._algo import AlgoService
from ._auth import Authenticator
from ._calls import Api, Call, Handler, Venue
from ._engine import Engine
from ._errors import VenueError, json_response
from actors.tools.loopback import HttpRequest, HttpResponse
from actors.tools.venue_market import Flavour, MarketState
from ._timers import Timers
from ._user_stream import UserStreams

Security = Literal["SIGNED", "USER_STREAM", "OPTIONAL"]
Weight = int | Callable[[HttpRequest], int]
Route = Callable[[HttpRequest], Awaitable[HttpResponse]]

#: paths whose POST places a new order (for the order-count headers and :meth:`order_requests`)
NEW_ORDER_PATHS = frozenset({"/fapi/v1/order", "/fapi/v3/order", "/fapi/v1/algoOrder"})


def _with_symbol(light: int, heavy: int) -> Callable[[HttpRequest], int]:
    return lambda request: light if request.params.get("symbol") else heavy


@dataclass(frozen=True)
class Endpoint:
    method: str
    name: str  # the path after the version prefix
    handler: Handler
    security: Security = "SIGNED"
    weight: Weight = 1
    counts_order: bool = False


def _common_endpoints(flavour: Flavour) -> list[Endpoint]:
    return [
        Endpoint("POST", "order", orders.new_order, weight=0 if flavour == "binance" else 1, counts_order=True),
        Endpoint("GET", "order", orders.query_order),
        Endpoint("DELETE", "order", orders.cancel_order),
        Endpoint("GET", "openOrder", orders.open_order),
        Endpoint("GET", "openOrders", orders.open_orders, weight=_with_symbol(1, 40)),
        Endpoint("GET", "allOrders", orders.all_orders, weight=5),
        Endpoint("DELETE", "allOpenOrders", orders.cancel_all_orders),
        Endpoint("POST", "countdownCancelAll", orders.countdown_cancel_all, weight=10),
        Endpoint("POST", "leverage", accounts.change_leverage),
        Endpoint("POST", "marginType", accounts.change_margin_type),
        Endpoint("GET", "positionSide/dual", accounts.position_mode, weight=30),
        Endpoint("POST", "positionSide/dual", accounts.change_position_mode),
        Endpoint("GET", "userTrades", accounts.user_trades, weight=5),
        Endpoint("GET", "income", accounts.income, weight=30),
        Endpoint("GET", "commissionRate", accounts.commission_rate, weight=20),
        Endpoint("GET", "leverageBracket", accounts.leverage_bracket, security="OPTIONAL"),
        Endpoint("POST", "listenKey", accounts.start_listen_key, security="USER_STREAM"),
        Endpoint("PUT", "listenKey", accounts.keepalive_listen_key, security="USER_STREAM"),
        Endpoint("DELETE", "listenKey", accounts.close_listen_key, security="USER_STREAM"),
    ]


def route_table(flavour: Flavour) -> list[tuple[str, Endpoint, Api]]:
    """(path, endpoint, API generation) of every trading route of ``flavour``."""
    table: list[tuple[str, Endpoint, Api]] = []
    common = _common_endpoints(flavour)
    aster_v1 = {"positionRisk": "/fapi/v2/positionRisk", "balance": "/fapi/v2/balance", "account": "/fapi/v4/account"}
    if flavour == "aster":
        extra = [
            Endpoint("GET", "positionRisk", accounts.position_risk("aster"), weight=5),
            Endpoint("GET", "balance", accounts.balance, weight=5),
            Endpoint("GET", "account", accounts.account_info, weight=5),
        ]
        for endpoint in common + extra:
            table.append((aster_v1.get(endpoint.name, f"/fapi/v1/{endpoint.name}"), endpoint, "v1"))
            table.append((f"/fapi/v3/{endpoint.name}", endpoint, "v3"))
        table.append(("/fapi/v3/accountWithJoinMargin", extra[2], "v3"))
        return table
    binance = [
        ("/fapi/v2/positionRisk", Endpoint("GET", "positionRisk", accounts.position_risk("binance_v2"), weight=5)),
        ("/fapi/v3/positionRisk", Endpoint("GET", "positionRisk", accounts.position_risk("binance_v3"), weight=5)),
        ("/fapi/v2/balance", Endpoint("GET", "balance", accounts.balance, weight=5)),
        ("/fapi/v3/balance", Endpoint("GET", "balance", accounts.balance, weight=5)),
        ("/fapi/v3/account", Endpoint("GET", "account", accounts.account_info, weight=5)),
        ("/fapi/v1/symbolConfig", Endpoint("GET", "symbolConfig", accounts.symbol_config, weight=5)),
        ("/fapi/v1/algoOrder", Endpoint("POST", "algoOrder", orders.new_algo_order, weight=0, counts_order=True)),
        ("/fapi/v1/algoOrder", Endpoint("GET", "algoOrder", orders.query_algo_order)),
        ("/fapi/v1/algoOrder", Endpoint("DELETE", "algoOrder", orders.cancel_algo_order)),
        (
            "/fapi/v1/openAlgoOrders",
            Endpoint("GET", "openAlgoOrders", orders.open_algo_orders, weight=_with_symbol(1, 40)),
        ),
        ("/fapi/v1/algoOpenOrders", Endpoint("DELETE", "algoOpenOrders", orders.cancel_all_algo_orders)),
        ("/fapi/v1/allAlgoOrders", Endpoint("GET", "allAlgoOrders", orders.all_algo_orders, weight=5)),
    ]
    table += [(f"/fapi/v1/{e.name}", e, "v1") for e in common]
    table += [(path, e, "v1") for path, e in binance]
    return table


class TradingSide:
    """Accounts, authentication, matching, user streams and the routes that expose them."""

    def __init__(
        self,
        flavour: Flavour,
        state: MarketState,
        server_ms: Callable[[], int],
        event_ms: Callable[[], int],
        notify: Callable[[], None],
    ) -> None:
        self.flavour: Flavour = flavour
        self.server_ms = server_ms
        self.timers = Timers(server_ms)
        self.streams = UserStreams(flavour, server_ms, event_ms, self.timers, notify)
        self.engine = Engine(flavour, state, server_ms, self.streams.emit)
        self.algos = AlgoService(self.engine) if flavour == "binance" else None
        self.auth = Authenticator(server_ms)
        self.venue = Venue(flavour, self.engine, self.streams, self.timers, self.algos)
        #: new orders allowed per account and window ("10s" on Binance, "1m" on both)
        self.order_limits: dict[str, int] = {"10s": 300, "1m": 1200} if flavour == "binance" else {"1m": 1200}
        #: id(request) -> name of the account it authenticated as (read once by the request log)
        self.request_accounts: dict[int, str] = {}

    def route(self, endpoint: Endpoint, api: Api) -> Route:
        """The HTTP handler of ``endpoint``: authenticate, count, run, answer."""

        async def handle(request: HttpRequest) -> HttpResponse:
            headers: list[tuple[str, str]] = []
            try:
                if endpoint.security == "OPTIONAL" and not ({"signature", "signer"} & request.params.keys()):
                    return self._public_brackets(request)
                if api == "v3":
                    account = self.auth.eip712(request)
                else:
                    account = self.auth.hmac(request, "USER_STREAM" if endpoint.security == "USER_STREAM" else "SIGNED")
                self.request_accounts[id(request)] = account.name
                if endpoint.counts_order:
                    headers = self._count_order(account.order_times)
                payload = endpoint.handler(Call(self.venue, account, request, api))
            except VenueError as refused:
                return refused.response(headers)
            return json_response(payload, headers=headers)

        return handle

    def _public_brackets(self, request: HttpRequest) -> HttpResponse:
        """``leverageBracket`` without a signature: the fake has always served it public."""
        symbol = request.params.get("symbol")
        if symbol is not None and symbol not in self.engine.state.specs:
            raise VenueError(-1121)
        specs = [self.engine.spec(symbol)] if symbol else list(self.engine.state.specs.values())
        return json_response(market.leverage_brackets(self.flavour, specs, single=symbol is not None))

    def _count_order(self, times: deque[int]) -> list[tuple[str, str]]:
        now = self.server_ms()
        while times and times[0] <= now - 60_000:
            times.popleft()
        counts = {"10s": sum(1 for t in times if t > now - 10_000), "1m": len(times)}
        for window, limit in self.order_limits.items():
            if counts[window] >= limit:
                unit = "10 SECOND" if window == "10s" else "MINUTE"
                raise VenueError(-1015, f"Too many new orders; current limit is {limit} orders per {unit}.")
        times.append(now)
        headers = [("x-mbx-order-count-1m", str(counts["1m"] + 1))]
        if self.flavour == "binance":
            headers.insert(0, ("x-mbx-order-count-10s", str(counts["10s"] + 1)))
        return headers
