"""Book walking: how a market order fills against an L2 book.

A buy takes the asks from the best upward, a sell the bids from the best downward. Liquidity
already taken by earlier fills of the same account on the same book snapshot is passed in as
``consumed`` (price -> quantity) and is not available again until the venue's book updates. A
slippage cap in basis points from the touch ends the walk; what is left is unfilled.
"""

from __future__ import annotations

from decimal import Decimal
from collections.abc import Mapping

import msgspec

from .market import OrderBook, OrderSide, PriceLevel
from .money import BPS, ZERO


class FillLeg(msgspec.Struct, frozen=True):
    price: Decimal
    quantity: Decimal


class BookWalk(msgspec.Struct, frozen=True, kw_only=True):
    requested: Decimal
    filled: Decimal
    legs: tuple[FillLeg, ...]
    top_of_book_only: bool
    stopped_by: str | None = None  # "slippage_cap" | "book_exhausted" | None

    @property
    def vwap(self) -> Decimal | None:
        if self.filled == 0:
            return None
        return sum((leg.price * leg.quantity for leg in self.legs), ZERO) / self.filled

    @property
    def notional(self) -> Decimal:
        return sum((leg.price * leg.quantity for leg in self.legs), ZERO)

    @property
    def unfilled(self) -> Decimal:
        return self.requested - self.filled


def levels_for(book: OrderBook, side: OrderSide) -> tuple[PriceLevel, ...]:
    """The side of the book an order of ``side`` takes liquidity from."""
    return book.asks if side == "BUY" else book.bids


def walk_book(
    book: OrderBook,
    side: OrderSide,
    quantity: Decimal,
    *,
    consumed: Mapping[Decimal, Decimal] | None = None,
    max_slippage_bps: Decimal | None = None,
    limit_price: Decimal | None = None,
) -> BookWalk:
    """Fill ``quantity`` against ``book``, best level first.

    ``max_slippage_bps`` bounds how far from the touch (the first level with liquidity left)
    the walk may go; ``limit_price`` bounds it absolutely (a marketable limit order). The
    quantity is assumed to be on the venue's step grid already.
    """
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    consumed = consumed or {}
    levels = levels_for(book, side)
    remaining = quantity
    legs: list[FillLeg] = []
    touch: Decimal | None = None
    bound: Decimal | None = None
    stopped_by: str | None = None
    for price, size in levels:
        available = size - consumed.get(price, ZERO)
        if available <= 0:
            continue
        if touch is None:
            touch = price
            if max_slippage_bps is not None:
                delta = touch * max_slippage_bps / BPS
                bound = touch + delta if side == "BUY" else touch - delta
        if bound is not None and (price > bound if side == "BUY" else price < bound):
            stopped_by = "slippage_cap"
            break
        if limit_price is not None and (price > limit_price if side == "BUY" else price < limit_price):
            stopped_by = "limit_price"
            break
        take = min(available, remaining)
        legs.append(FillLeg(price, take))
        remaining -= take
        if remaining == 0:
            break
    else:
        if remaining > 0:
            stopped_by = "book_exhausted"
    return BookWalk(
        requested=quantity,
        filled=quantity - remaining,
        legs=tuple(legs),
        top_of_book_only=not book.depth,
        stopped_by=stopped_by if remaining > 0 else None,
    )


def consume(consumed: dict[Decimal, Decimal], walk: BookWalk) -> None:
    """Record the liquidity a walk took, so the next walk on the same book does not reuse it."""
    for leg in walk.legs:
        consumed[leg.price] = consumed.get(leg.price, ZERO) + leg.quantity
