"""The paper execution adapter: fills simulated against the venue's real (or sim) market data.

It is given a read-only market view (quotes, books, instruments) and nothing that could write to an
exchange. Market orders walk the current L2 book; liquidity taken stays consumed for this account
until the venue's book updates; the venue's filters and fee rates apply; an order the venue would
reject is rejected with the venue's code.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, Protocol

import msgspec

from ..domain.fills import BookWalk, consume, walk_book
from ..domain.filters import VenueReject, check_min_notional, check_price, check_quantity
from ..domain.market import Instrument, OrderSide, Quote
from ..domain.money import ZERO


class MarketView(Protocol):
    """What an execution adapter may read of the market (no write methods anywhere)."""

    venue: str

    def quote(self, symbol: str) -> Quote | None: ...

    def instrument(self, symbol: str) -> Instrument | None: ...


class OrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    symbol: str
    side: OrderSide
    quantity: Decimal
    reduce_only: bool = False
    max_slippage_bps: Decimal | None = None
    purpose: str = "entry"  # entry | exit | take_profit | stop_loss | close_all
    trigger_price: Decimal | None = None


class SimFill(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    liquidity: Literal["taker", "maker"]
    top_of_book_only: bool


class ExecutionReport(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    status: Literal["NEW", "FILLED", "PARTIALLY_FILLED", "EXPIRED", "REJECTED"]
    requested: Decimal
    filled: Decimal
    avg_price: Decimal | None
    fills: tuple[SimFill, ...]
    fee: Decimal
    reject: VenueReject | None = None
    stopped_by: str | None = None

    @property
    def unfilled(self) -> Decimal:
        return self.requested - self.filled


class PaperAdapter:
    """Paper execution for one account on one venue."""

    is_paper = True

    def __init__(self, market: MarketView) -> None:
        self._market = market
        # symbol -> (book identity, price -> quantity already taken by this account)
        self._consumed: dict[str, tuple[tuple[int, int], dict[Decimal, Decimal]]] = {}

    def snapshot(self) -> dict[str, tuple[tuple[int, int], dict[Decimal, Decimal]]]:
        """The consumed-liquidity memory, to restore if what was planned is not committed."""
        return {symbol: (identity, dict(taken)) for symbol, (identity, taken) in self._consumed.items()}

    def restore(self, snapshot: dict[str, tuple[tuple[int, int], dict[Decimal, Decimal]]]) -> None:
        self._consumed = snapshot

    def _consumed_for(self, quote: Quote) -> dict[Decimal, Decimal]:
        identity = (quote.book.venue_ms, quote.book.update_id)
        current = self._consumed.get(quote.symbol)
        if current is None or current[0] != identity:
            current = (identity, {})
            self._consumed[quote.symbol] = current
        return current[1]

    def execute_market(self, order: OrderRequest, quote: Quote, instrument: Instrument) -> ExecutionReport:
        """Fill a market order now against ``quote``; synchronous and pure but for the
        consumed-liquidity memory."""
        market = True
        reject = check_quantity(instrument, order.quantity, market=market)
        if reject is None:
            reject = check_min_notional(instrument, order.quantity, quote.mark_price, reduce_only=order.reduce_only)
        if reject is not None:
            return _rejected(order, reject)
        consumed = self._consumed_for(quote)
        walk = walk_book(
            quote.book, order.side, order.quantity, consumed=consumed, max_slippage_bps=order.max_slippage_bps
        )
        if walk.filled == 0:
            reason = "slippage cap" if walk.stopped_by == "slippage_cap" else "no liquidity"
            return _rejected(order, VenueReject(-2020, f"Unable to fill ({reason})."))
        consume(consumed, walk)
        return _report(order, walk, instrument.fees.taker, "taker")


    def validate_limit(self, order: OrderRequest, price: Decimal, quote: Quote, instrument: Instrument) -> VenueReject | None:
        """What the venue checks when a limit order arrives: price grid and band, size, notional."""
        return (check_price(instrument, price, side=order.side, mark=quote.mark_price)
                or check_quantity(instrument, order.quantity, market=False)
                or check_min_notional(instrument, order.quantity, price, reduce_only=order.reduce_only))

    def execute_limit(self, order: OrderRequest, price: Decimal, quote: Quote, instrument: Instrument, *,
                      resting: bool) -> ExecutionReport:
        """Match a limit order against the book, never beyond its price nor beyond the size at
        crossing levels. On arrival (``resting=False``) what crosses pays the taker fee; a resting
        order filled later by the book moving through it pays the maker fee. ``NEW`` = no fill."""
        consumed = self._consumed_for(quote)
        walk = walk_book(quote.book, order.side, order.quantity, consumed=consumed, limit_price=price)
        if walk.filled == 0:
            return ExecutionReport(order_id=order.order_id, status="NEW", requested=order.quantity, filled=ZERO,
                                   avg_price=None, fills=(), fee=ZERO)
        consume(consumed, walk)
        if resting:
            return _report(order, walk, instrument.fees.maker, "maker")
        return _report(order, walk, instrument.fees.taker, "taker")


def _rejected(order: OrderRequest, reject: VenueReject) -> ExecutionReport:
    return ExecutionReport(
        order_id=order.order_id, status="REJECTED", requested=order.quantity, filled=ZERO,
        avg_price=None, fills=(), fee=ZERO, reject=reject,
    )


def _report(order: OrderRequest, walk: BookWalk, rate: Decimal, liquidity: Literal["taker", "maker"]) -> ExecutionReport:
    fills = tuple(
        SimFill(
            id=f"{order.order_id}.{index + 1}",
            price=leg.price,
            quantity=leg.quantity,
            fee=leg.price * leg.quantity * rate,
            liquidity=liquidity,
            top_of_book_only=walk.top_of_book_only,
        )
        for index, leg in enumerate(walk.legs)
    )
    return ExecutionReport(
        order_id=order.order_id,
        status="FILLED" if walk.filled == order.quantity else "PARTIALLY_FILLED",
        requested=order.quantity,
        filled=walk.filled,
        avg_price=walk.vwap,
        fills=fills,
        fee=sum((f.fee for f in fills), ZERO),
        stopped_by=walk.stopped_by,
    )
