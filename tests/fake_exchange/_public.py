"""Public REST endpoints of the fake (MARKET_DATA: no signature), a mixin of :class:`FakeExchange`.

``ping``, ``time``, ``exchangeInfo``, ``depth``, ``ticker/bookTicker``, ``premiumIndex`` and the
(historically public here) ``leverageBracket`` on ``/fapi/v1``; Aster also serves them on
``/fapi/v3``. ``time`` answers the server clock, which :attr:`FakeExchange.clock_offset_ms` skews.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from actors.tools import venue_market as market
from ._errors import json_response
from actors.tools.loopback import HttpRequest, HttpResponse
from actors.tools.venue_market import Flavour, MarketState

Route = Callable[[HttpRequest], Awaitable[HttpResponse]]


def public_weight(request: HttpRequest) -> int:
    """IP weight of a public request (depth by ``limit``; whole-market tickers weigh more)."""
    name = request.path.rsplit("/", 1)[-1]
    if name == "depth":
        text = request.params.get("limit", "500")
        limit = int(text) if text.isdigit() else 500
        return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
    if name in ("bookTicker", "premiumIndex"):
        return 1 if "symbol" in request.params else 10
    return 1


def error(status: int, code: int, msg: str, *, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    return json_response({"code": code, "msg": msg}, status=status, headers=headers)


class PublicRoutes:
    """Public market-data routes; mixed into :class:`FakeExchange`."""

    flavour: Flavour
    state: MarketState
    add_route: Callable[[str, str, Route], None]
    event_ms: Callable[[], int]
    server_ms: Callable[[], int]
    exchange_info: Callable[[], dict[str, Any]]

    def _install_public_routes(self) -> None:
        routes: dict[str, Route] = {
            "ping": self._ping,
            "time": self._time,
            "exchangeInfo": self._exchange_info,
            "depth": self._depth,
            "ticker/bookTicker": self._book_ticker,
            "premiumIndex": self._premium_index,
        }
        versions = ("v1", "v3") if self.flavour == "aster" else ("v1",)
        for version in versions:
            for name, handler in routes.items():
                self.add_route("GET", f"/fapi/{version}/{name}", handler)

    async def _ping(self, request: HttpRequest) -> HttpResponse:
        return json_response({})

    async def _time(self, request: HttpRequest) -> HttpResponse:
        return json_response({"serverTime": self.server_ms()})

    async def _exchange_info(self, request: HttpRequest) -> HttpResponse:
        return json_response(self.exchange_info())

    async def _depth(self, request: HttpRequest) -> HttpResponse:
        symbol, refusal = self._symbol_param(request)
        if refusal:
            return refusal
        limit_text = request.params.get("limit", "500")
        if limit_text not in {"5", "10", "20", "50", "100", "500", "1000"}:
            return error(400, -1130, "Data sent for parameter 'limit' is not valid.")
        m = self.state.markets[symbol]
        return json_response(market.depth(m, int(limit_text), self.event_ms()))

    async def _book_ticker(self, request: HttpRequest) -> HttpResponse:
        if request.params.get("symbol") is None:
            now = self.event_ms()
            return json_response([market.book_ticker(s, m, now) for s, m in self.state.markets.items()])
        symbol, refusal = self._symbol_param(request)
        if refusal:
            return refusal
        return json_response(market.book_ticker(symbol, self.state.markets[symbol], self.event_ms()))

    async def _premium_index(self, request: HttpRequest) -> HttpResponse:
        if request.params.get("symbol") is None:
            now = self.event_ms()
            return json_response([market.premium_index(s, m, now) for s, m in self.state.markets.items()])
        symbol, refusal = self._symbol_param(request)
        if refusal:
            return refusal
        return json_response(market.premium_index(symbol, self.state.markets[symbol], self.event_ms()))

    def _symbol_param(self, request: HttpRequest) -> tuple[str, HttpResponse | None]:
        symbol = request.params.get("symbol", "")
        if not symbol:
            return "", error(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if symbol not in self.state.markets:
            return "", error(400, -1121, "Invalid symbol.")
        return symbol, None
