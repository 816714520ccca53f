"""What a trading route handler receives, and the parameter readers shared by the handlers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from ._accounts import Account, Order
from ._algo import AlgoService
from ._engine import Engine
from ._errors import VenueError, invalid, missing
from actors.tools.loopback import HttpRequest
from actors.tools.venue_market import Flavour, SymbolSpec
from ._timers import Timers
from ._user_stream import UserStreams

Api = Literal["v1", "v3"]  # Binance and Aster V1 sign with HMAC, Aster V3 with EIP-712
SEVEN_DAYS_MS: Final = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class Venue:
    """The parts of the fake a handler works with."""

    flavour: Flavour
    engine: Engine
    streams: UserStreams
    timers: Timers
    algos: AlgoService | None

    def spec(self, symbol: str) -> SymbolSpec:
        return self.engine.spec(symbol)


@dataclass(frozen=True)
class Call:
    """One authenticated request to a trading endpoint."""

    venue: Venue
    account: Account
    request: HttpRequest
    api: Api

    @property
    def params(self) -> dict[str, str]:
        return self.request.params

    @property
    def flavour(self) -> Flavour:
        return self.venue.flavour

    @property
    def engine(self) -> Engine:
        return self.venue.engine

    def symbol(self, *, required: bool = True) -> str | None:
        """The ``symbol`` parameter (-1102 if required and missing, -1121 if unknown)."""
        symbol = self.params.get("symbol", "")
        if not symbol:
            if required:
                raise missing("symbol")
            return None
        if symbol not in self.engine.state.specs:
            raise VenueError(-1121)
        return symbol

    def integer(self, name: str, default: int | None = None) -> int | None:
        text = self.params.get(name)
        if text is None or text == "":
            return default
        try:
            return int(text)
        except ValueError:
            raise invalid(name) from None

    def limit(self, default: int, maximum: int) -> int:
        limit = self.integer("limit", default) or default
        if not 0 < limit <= maximum:
            raise invalid("limit")
        return limit

    def window(self, max_span_ms: int = SEVEN_DAYS_MS) -> tuple[int, int]:
        """``startTime``/``endTime``: the last 7 days by default, at most ``max_span_ms`` apart (-1127)."""
        start, end = self.integer("startTime"), self.integer("endTime")
        if start is not None and end is not None and start > end:
            raise VenueError(-1023, "Start time is greater than end time.")
        if start is None and end is None:
            end = self.engine.server_ms()
            start = end - SEVEN_DAYS_MS
        elif start is None:
            assert end is not None
            start = end - SEVEN_DAYS_MS
        elif end is None:
            end = start + SEVEN_DAYS_MS
        if end - start > max_span_ms:
            raise VenueError(-1127, f"More than {max_span_ms // 3_600_000} hours between startTime and endTime.")
        return start, end

    def find_order(self, symbol: str, *, unknown_code: int) -> Order:
        """The order named by ``orderId`` or ``origClientOrderId`` (``unknown_code`` if none)."""
        order_id = self.integer("orderId")
        client_id = self.params.get("origClientOrderId")
        if order_id is None and not client_id:
            raise VenueError(-1102, "Param 'orderId' or 'origClientOrderId' must be sent, but both were empty/null!")
        if order_id is not None:
            order = self.account.orders.get(order_id)
        else:
            order = self.account.order_by_client_id(client_id or "", symbol)
        if order is None or order.symbol != symbol:
            raise VenueError(unknown_code)
        return order


Handler = Callable[[Call], Any]
