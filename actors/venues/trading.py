"""``TradingClient``: the signed REST client of one live account -- the only thing in the service
that can write to a venue.

One client per account and venue; every client of a venue shares one
:class:`~actors.venues.limits.VenueLimiter` (request weight is counted per IP). Paths follow the
venue and the API generation of the credentials: HMAC credentials use the profile's ``paths``
(Binance ``/fapi/v1`` + ``/fapi/v3/positionRisk`` + ``/fapi/v3/balance`` + the Algo Order API;
Aster V1 ``/fapi/v1`` + ``/fapi/v2/positionRisk`` + ``/fapi/v2/balance``), API-wallet
credentials the profile's ``api_wallet_paths`` (Aster V3 ``/fapi/v3/*``).

What each error means, and which calls retry, is described in :mod:`actors.venues.signed_http`.
In short: :class:`~actors.venues.rest.VenueError` is a definitive refusal (nothing happened),
:class:`~actors.venues.signed_http.AmbiguousOutcome` means "maybe": resolve it with
:meth:`TradingClient.query_order` on the client order id before acting again. ``place_order`` is
never resent automatically once it may have reached the venue.

Conditional orders (STOP_MARKET / TAKE_PROFIT_MARKET) go to the order endpoint on Aster and to
``POST /fapi/v1/algoOrder`` on Binance; pass ``conditional=True`` to query or cancel them there.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

import httpx

from actors.venues.credentials import Credentials
from actors.venues.limits import Priority, VenueLimiter
from actors.venues.parsing import ParseError
from actors.venues.profiles import EndpointPaths, VenueProfile
from actors.venues.rest import VenueError
from actors.venues.signed_http import AmbiguousOutcome, SignedHttp, TradingSettings, TradingStats
from actors.venues.trading_parsing import (
    parse_algo_cancel,
    parse_algo_order,
    parse_algo_orders,
    parse_balances,
    parse_income,
    parse_leverage_change,
    parse_listen_key,
    parse_order,
    parse_orders,
    parse_positions,
    parse_trades,
)
from actors.venues.trading_types import (
    LeverageChange,
    OrderRequest,
    VenueBalance,
    VenueIncome,
    VenueOrder,
    VenuePosition,
    VenueTrade,
    order_params,
)

__all__ = ["TradingClient"]

_T = TypeVar("_T")

#: the venue does not know the order (query): -2013 NO_SUCH_ORDER (also the Algo Service's)
_NOT_FOUND: Final = frozenset({-2013})
#: the venue does not know the order (cancel): -2011 CANCEL_REJECTED "Unknown order sent."
_UNKNOWN_ON_CANCEL: Final = frozenset({-2011, -2013})
#: "No need to change margin type." / "No need to change position side.": already so
_NO_CHANGE: Final = frozenset({-4046, -4059})

_ALL_SYMBOLS_WEIGHT: Final = 40  # openOrders / openAlgoOrders without a symbol


class TradingClient:
    """Signed trading and account access of one account on one venue.

    ``clock`` returns epoch seconds (the service's clock): it stamps ``timestamp`` / ``nonce``
    (corrected by the offset that :meth:`sync_time` measures) and places the rate-limit windows.
    Point it anywhere with ``rest_url`` (default: the profile's); tests inject ``transport``.
    """

    def __init__(
        self,
        profile: VenueProfile,
        credentials: Credentials,
        *,
        account_id: str,
        clock: Callable[[], float],
        limiter: VenueLimiter | None = None,
        settings: TradingSettings | None = None,
        rest_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.profile = profile
        self.account_id = account_id
        self.limiter = limiter or VenueLimiter.for_profile(profile)
        self._http = SignedHttp(
            profile,
            credentials,
            account_id=account_id,
            clock=clock,
            limiter=self.limiter,
            settings=settings,
            rest_url=rest_url,
            transport=transport,
            rng=rng,
        )
        self._algo = profile.conditional_orders == "algo"

    def __repr__(self) -> str:
        return f"<TradingClient {self.profile.name} account={self.account_id} key={self._http.key_id}>"

    @property
    def stats(self) -> TradingStats:
        """Requests by endpoint and outcome, latency, venue error codes, weight and order counts."""
        return self._http.stats

    @property
    def paths(self) -> EndpointPaths:
        """The paths this client uses (the API generation of its credentials)."""
        return self._http.paths

    @property
    def clock_offset_ms(self) -> int | None:
        return self._http.clock_offset_ms

    @property
    def algo(self) -> bool:
        """Whether conditional orders live in the venue's Algo Service (Binance)."""
        return self._algo

    @property
    def key_id(self) -> str:
        """The credentials' masked id (never the key itself)."""
        return self._http.key_id

    @property
    def recv_window_seconds(self) -> float:
        """How long after it was sent a request can still be accepted: the receive window for
        HMAC requests, the nonce window (10 s) for API-wallet ones."""
        return 10.0 if self._http.api_wallet else self._http.settings.recv_window_ms / 1000

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> TradingClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- session ----------------------------------------------------------------------------

    async def sync_time(self) -> float:
        """Measure and adopt the venue's clock offset (``GET /time``); seconds, server − local."""
        return await self._http.sync_time()

    async def check_credentials(self) -> list[VenueBalance]:
        """A cheap signed read (the balances).

        Raises:
            CredentialsRejected: the venue refused the key, the signature or this IP.
        """
        return await self.balances()

    # -- orders -----------------------------------------------------------------------------

    async def place_order(self, request: OrderRequest, *, priority: Priority | None = None) -> VenueOrder:
        """Place one order; conditional types go to the Algo Order API on Binance.

        ``priority`` defaults to EXIT for reduce-only / close-position orders, ENTRY otherwise.

        Raises:
            VenueError: refused (nothing placed); LocalRateLimited: refused here, not sent.
            AmbiguousOutcome: maybe placed: query ``request.client_order_id`` (with
                ``conditional=request.is_conditional``) before placing it again.
        """
        algo = self._algo and request.is_conditional
        path = self.paths.conditional_order if request.is_conditional else self.paths.order
        if priority is None:
            priority = Priority.EXIT if request.reduces else Priority.ENTRY
        raw = await self._http.call(
            "POST", path, order_params(request, algo=algo), kind="write", priority=priority, order_count=1
        )
        return self._parse_written(parse_algo_order if algo else parse_order, raw, "POST", path)

    async def query_order(self, symbol: str, client_order_id: str, *, conditional: bool = False) -> VenueOrder | None:
        """The order with this client order id, or None if the venue does not know it."""
        if conditional and self._algo:
            path, params, parse = self.paths.conditional_order, [("clientAlgoId", client_order_id)], parse_algo_order
        else:
            path, params, parse = self.paths.order, [("symbol", symbol), ("origClientOrderId", client_order_id)], parse_order
        try:
            raw = await self._http.call("GET", path, params, kind="read", priority=Priority.EXIT)
        except VenueError as exc:
            if exc.code in _NOT_FOUND:
                return None
            raise
        return parse(raw)

    async def cancel_order(
        self, symbol: str, client_order_id: str, *, conditional: bool = False, priority: Priority = Priority.EXIT
    ) -> VenueOrder | None:
        """Cancel one order; returns it as cancelled, or None if the venue does not know it
        (never placed, or already gone: -2011 "Unknown order sent.").

        On Binance a conditional order is cancelled in the Algo Service, which answers with ids
        only; the order is then read back (``GET /fapi/v1/algoOrder``).

        Raises:
            AmbiguousOutcome: maybe cancelled: query the order.
        """
        algo = conditional and self._algo
        if algo:
            path, params = self.paths.conditional_order, [("clientAlgoId", client_order_id)]
        else:
            path, params = self.paths.order, [("symbol", symbol), ("origClientOrderId", client_order_id)]
        try:
            raw = await self._http.call("DELETE", path, params, kind="write", priority=priority)
        except VenueError as exc:
            if exc.code in _UNKNOWN_ON_CANCEL:
                return None
            raise
        if not algo:
            return self._parse_written(parse_order, raw, "DELETE", path)
        self._parse_written(parse_algo_cancel, raw, "DELETE", path)
        return await self.query_order(symbol, client_order_id, conditional=True)

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        """Open orders of the order endpoint (on Aster they include the conditional ones)."""
        params = [("symbol", symbol)] if symbol else []
        weight = 1 if symbol else _ALL_SYMBOLS_WEIGHT
        raw = await self._http.call("GET", self.paths.open_orders, params, weight=weight)
        return parse_orders(raw)

    async def open_conditional_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        """Open conditional orders: Binance's open algo orders, or Aster's conditional open orders."""
        if not self._algo:
            return [order for order in await self.open_orders(symbol) if order.is_conditional]
        params = [("symbol", symbol)] if symbol else []
        weight = 1 if symbol else _ALL_SYMBOLS_WEIGHT
        raw = await self._http.call("GET", self.paths.open_conditional_orders, params, weight=weight)
        return parse_algo_orders(raw)

    async def cancel_all(self, symbol: str) -> None:
        """Cancel every open order of ``symbol``, conditional ones included (idempotent)."""
        params = [("symbol", symbol)]
        await self._http.call("DELETE", self.paths.all_open_orders, params, kind="idempotent", priority=Priority.EXIT)
        if self.paths.cancel_all_conditional is not None:
            await self._http.call(
                "DELETE", self.paths.cancel_all_conditional, params, kind="idempotent", priority=Priority.EXIT
            )

    # -- account ----------------------------------------------------------------------------

    async def positions(self, symbol: str | None = None) -> list[VenuePosition]:
        """``positionRisk`` (v3 on Binance: no leverage / margin type there)."""
        params = [("symbol", symbol)] if symbol else []
        return parse_positions(await self._http.call("GET", self.paths.position_risk, params, weight=5))

    async def balances(self) -> list[VenueBalance]:
        return parse_balances(await self._http.call("GET", self.paths.balance, (), weight=5))

    async def user_trades(
        self,
        symbol: str,
        *,
        order_id: int | None = None,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> list[VenueTrade]:
        """Fills of ``symbol`` (``fromId`` cannot be combined with a time window; 7 days max)."""
        if from_id is not None and (start_ms is not None or end_ms is not None):
            raise ValueError("from_id cannot be combined with start_ms / end_ms")
        params = _present(symbol=symbol, orderId=order_id, fromId=from_id, startTime=start_ms, endTime=end_ms, limit=limit)
        return parse_trades(await self._http.call("GET", self.paths.user_trades, params, weight=5))

    async def income(
        self,
        *,
        symbol: str | None = None,
        income_type: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> list[VenueIncome]:
        """Income history: realized PnL, commissions, funding, transfers..."""
        params = _present(symbol=symbol, incomeType=income_type, startTime=start_ms, endTime=end_ms, limit=limit)
        return parse_income(await self._http.call("GET", self.paths.income, params, weight=30))

    async def set_leverage(self, symbol: str, leverage: int) -> LeverageChange:
        if not 1 <= leverage <= 125:
            raise ValueError(f"leverage must be between 1 and 125, got {leverage}")
        params = [("symbol", symbol), ("leverage", str(leverage))]
        raw = await self._http.call("POST", self.paths.leverage, params, kind="idempotent", priority=Priority.EXIT)
        return self._parse_written(parse_leverage_change, raw, "POST", self.paths.leverage)

    async def set_margin_type(self, symbol: str, margin_type: Literal["ISOLATED", "CROSSED"]) -> bool:
        """Set the margin type; True if it changed, False if it already was (-4046)."""
        if margin_type not in ("ISOLATED", "CROSSED"):
            raise ValueError(f"margin_type must be ISOLATED or CROSSED, got {margin_type!r}")
        params = [("symbol", symbol), ("marginType", margin_type)]
        try:
            await self._http.call("POST", self.paths.margin_type, params, kind="idempotent", priority=Priority.EXIT)
        except VenueError as exc:
            if exc.code in _NO_CHANGE:
                return False
            raise
        return True

    # -- user-data stream -------------------------------------------------------------------

    async def new_listen_key(self) -> str:
        """Create (or, if one is active, get and extend) the account's listen key."""
        raw = await self._listen_key_call("POST")
        return parse_listen_key(raw)

    async def keepalive_listen_key(self) -> None:
        """Extend the listen key by 60 minutes.

        Raises:
            ListenKeyInvalid: the key is gone (-1125): create a new one.
        """
        await self._listen_key_call("PUT")

    async def close_listen_key(self) -> None:
        await self._listen_key_call("DELETE")

    async def _listen_key_call(self, method: str) -> bytes:
        # USER_STREAM: the API key alone on Binance / Aster V1, a signature on Aster V3
        auth: Literal["signed", "api_key"] = "signed" if self._http.api_wallet else "api_key"
        return await self._http.call(
            method, self.paths.listen_key, (), auth=auth, kind="idempotent", priority=Priority.EXIT
        )

    # -- helpers ----------------------------------------------------------------------------

    def _parse_written(self, parse: Callable[[bytes], _T], raw: bytes, method: str, path: str) -> _T:
        """A write succeeded but its answer cannot be read: its outcome is unknown."""
        try:
            return parse(raw)
        except ParseError as exc:
            self._http.stats.ambiguous += 1
            raise AmbiguousOutcome(self.profile.name, method, path, f"unreadable answer: {exc.detail}") from exc


def _present(**params: Any) -> list[tuple[str, str]]:
    return [(name, str(value)) for name, value in params.items() if value is not None]
