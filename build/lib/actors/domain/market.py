"""Market data and instrument rules, as plain immutable values.

Every venue feed (sim, replay, AsterDEX, Binance) produces these types; the paper fill model and
the risk gate consume them. Times: ``venue_ms`` is the venue's event time (epoch milliseconds),
``received_at`` the local receive time (epoch seconds, from the service clock).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

Side = Literal["long", "short"]
OrderSide = Literal["BUY", "SELL"]

PriceLevel = tuple[Decimal, Decimal]  # (price, quantity)


class OrderBook(msgspec.Struct, frozen=True, kw_only=True):
    """An L2 book snapshot. ``bids`` descending, ``asks`` ascending by price.

    ``depth`` is False when the book is only a top of book (bookTicker), in which case a fill
    against it is marked as such.
    """

    symbol: str
    bids: tuple[PriceLevel, ...]
    asks: tuple[PriceLevel, ...]
    venue_ms: int
    received_at: float
    depth: bool = True
    update_id: int = 0

    @property
    def best_bid(self) -> Decimal | None:
        return self.bids[0][0] if self.bids else None

    @property
    def best_ask(self) -> Decimal | None:
        return self.asks[0][0] if self.asks else None

    @property
    def mid(self) -> Decimal | None:
        if not self.bids or not self.asks:
            return None
        return (self.bids[0][0] + self.asks[0][0]) / 2


class MarkPrice(msgspec.Struct, frozen=True, kw_only=True):
    """Mark price and funding state of a perpetual (``markPriceUpdate`` / ``premiumIndex``)."""

    symbol: str
    mark: Decimal
    index: Decimal | None = None
    funding_rate: Decimal = Decimal(0)
    next_funding_ms: int = 0
    venue_ms: int
    received_at: float


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    """The latest market view of one symbol: its book and its mark price."""

    symbol: str
    book: OrderBook
    mark: MarkPrice | None = None
    last_price: Decimal | None = None

    @property
    def mark_price(self) -> Decimal:
        if self.mark is not None:
            return self.mark.mark
        mid = self.book.mid
        if mid is None:
            raise ValueError(f"{self.symbol}: no mark price and an empty book")
        return mid

    @property
    def received_at(self) -> float:
        """When the freshest part of this quote arrived (epoch seconds)."""
        if self.mark is None:
            return self.book.received_at
        return max(self.book.received_at, self.mark.received_at)

    def age(self, now: float) -> float:
        return max(0.0, now - self.received_at)


class SymbolFilters(msgspec.Struct, frozen=True, kw_only=True):
    """The exchangeInfo filters the venue enforces on an order."""

    tick_size: Decimal
    min_price: Decimal = Decimal(0)
    max_price: Decimal = Decimal(0)  # 0 = no maximum
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal = Decimal(0)
    market_step_size: Decimal | None = None
    market_min_qty: Decimal | None = None
    market_max_qty: Decimal | None = None
    min_notional: Decimal = Decimal(0)
    # PERCENT_PRICE: a limit price must lie within mark * [down, up]
    percent_up: Decimal | None = None
    percent_down: Decimal | None = None


class FeeRates(msgspec.Struct, frozen=True, kw_only=True):
    maker: Decimal
    taker: Decimal


class LeverageBracket(msgspec.Struct, frozen=True, kw_only=True):
    """One maintenance-margin bracket (``GET /fapi/v1/leverageBracket``)."""

    bracket: int
    initial_leverage: int
    notional_floor: Decimal
    notional_cap: Decimal
    maint_margin_ratio: Decimal
    cum: Decimal


class Instrument(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the domain needs to know about one tradable symbol on one venue."""

    symbol: str
    base_asset: str
    quote_asset: str
    filters: SymbolFilters
    fees: FeeRates
    brackets: tuple[LeverageBracket, ...]
    max_leverage: int = 125
    liquidation_fee_rate: Decimal = Decimal("0.015")
    status: str = "TRADING"

    def bracket_for(self, notional: Decimal) -> LeverageBracket:
        """The bracket whose [floor, cap) holds ``notional`` (the last one if above all caps)."""
        for bracket in self.brackets:
            if notional < bracket.notional_cap:
                return bracket
        return self.brackets[-1]
