"""Venue filters, applied exactly as the venue applies them, with the venue's error codes.

A paper order that the venue would reject is rejected here, with the code and message the venue
would send (codes from the AsterDEX / Binance USDⓈ-M error lists).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

from .market import Instrument, OrderSide, SymbolFilters
from .money import fmt, is_multiple


#: not a venue's code: the request never reached the venue (it could not be connected to)
NOT_SENT_CODE = -1
#: not a venue's code either: not sent, to stay within the venue's rate limits (or during its ban)
RATE_BUDGET_CODE = -2
#: the venue's "Unknown order sent.": it does not hold the order (any more)
UNKNOWN_ORDER = -2011


class VenueReject(msgspec.Struct, frozen=True):
    code: int
    msg: str


def check_quantity(instrument: Instrument, quantity: Decimal, *, market: bool) -> VenueReject | None:
    f = instrument.filters
    step = (f.market_step_size if market and f.market_step_size else None) or f.step_size
    min_qty = (f.market_min_qty if market and f.market_min_qty else None) or f.min_qty
    max_qty = (f.market_max_qty if market and f.market_max_qty else None) or f.max_qty
    if quantity <= 0:
        return VenueReject(-4003, "Quantity less than or equal to zero.")
    if quantity < min_qty:
        return VenueReject(-4004, f"Quantity less than minimum quantity {fmt(min_qty)}.")
    if max_qty and quantity > max_qty:
        return VenueReject(-4005, f"Quantity greater than maximum quantity {fmt(max_qty)}.")
    if not is_multiple(quantity, step):
        return VenueReject(-4023, f"Quantity not increased by step size {fmt(step)}.")
    return None


def price_bound_crossed(f: SymbolFilters, price: Decimal) -> Literal["minimum", "maximum"] | None:
    """Which bound of PRICE_FILTER ``price`` lies beyond, if any (a bound of 0 is none)."""
    if f.min_price and price < f.min_price:
        return "minimum"
    if f.max_price and price > f.max_price:
        return "maximum"
    return None


def check_price(instrument: Instrument, price: Decimal, *, side: OrderSide, mark: Decimal) -> VenueReject | None:
    f = instrument.filters
    if price <= 0:
        return VenueReject(-4006, "Price less than or equal to zero.")
    crossed = price_bound_crossed(f, price)
    if crossed == "minimum":
        return VenueReject(-4013, f"Price less than minimum price {fmt(f.min_price)}.")
    if crossed == "maximum":
        return VenueReject(-4016, f"Price greater than maximum price {fmt(f.max_price)}.")
    if not is_multiple(price - (f.min_price or 0), f.tick_size):
        return VenueReject(-4014, f"Price not increased by tick size {fmt(f.tick_size)}.")
    if f.percent_up is not None and side == "BUY" and price > mark * f.percent_up:
        return VenueReject(-4016, f"Limit price can't be higher than {fmt(mark * f.percent_up)}.")
    if f.percent_down is not None and side == "SELL" and price < mark * f.percent_down:
        return VenueReject(-4024, f"Limit price can't be lower than {fmt(mark * f.percent_down)}.")
    return None


def check_min_notional(
    instrument: Instrument, quantity: Decimal, price: Decimal, *, reduce_only: bool
) -> VenueReject | None:
    """MIN_NOTIONAL: market orders are valued at the mark price; reduce-only orders are exempt."""
    notional = quantity * price
    if not reduce_only and notional < instrument.filters.min_notional:
        return VenueReject(
            -4164,
            f"Order's notional must be no smaller than {fmt(instrument.filters.min_notional)} "
            f"(unless you choose reduce only).",
        )
    return None


def check_leverage(instrument: Instrument, leverage: int, notional: Decimal) -> VenueReject | None:
    """The venue's own leverage limit for the bracket the position's notional falls in."""
    if leverage < 1 or leverage > instrument.max_leverage:
        return VenueReject(-4028, f"Leverage {leverage} is not valid")
    bracket = instrument.bracket_for(notional)
    if leverage > bracket.initial_leverage:
        return VenueReject(-2027, "Exceeded the maximum allowable position at current leverage.")
    return None
