"""How far a live account's paper twin is from it: pure figures, decision by decision.

A live account with ``paper_twin: true`` forwards every decision its gate accepts to a paper
account (its twin) as its order goes out; the twin executes it on the market of that moment. For
each such decision this module compares what each side did with the decision's order (the entry
of an ``open``, the exit of a ``close``; the protective orders that fire later are not part of it):

* **price difference** (bps of the live average price), signed so that a positive figure means the
  paper fill was kinder than the live one: it paid less on a buy, received more on a sell;
* **slippage** of each side against the decision's reference price (its ``reference_price``, else
  the mark when the live account took the decision), in bps, positive when worse than it;
* **fees** of each side and their difference (live minus paper: positive when paper paid less);
* **time to fill** of each side: from the live account's receipt of the decision to the side's
  last fill of that order, as the service recorded it;
* **outcome** of each side: its status (``filled``, ``partially_filled``, ``resting``, ``pending``,
  ``rejected``) and rejection code; outcomes differ when either differs.

No I/O and no clock: the rows come in, the figures go out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Literal, NamedTuple

import msgspec

from .decisions import Decision
from .market import Instrument
from .money import ZERO
from .positions import Position
from .risk import Rejection

BPS = Decimal(10_000)
BPS_PLACES = Decimal("0.0001")  # figures in bps are given to 4 decimal places
SECONDS_PLACES = 6


class TwinRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What the twin stores as the request of a decision it executed (``decisions.request``):
    the live account's decision and what the comparison needs of the moment it went out."""

    twin_of: str  # the live account
    received_at: float  # when the live account took the decision (service clock, epoch seconds)
    reference_price: Decimal
    reference: Literal["decision", "mark"]  # where the reference price comes from
    order_id: str  # the decision's order (the same id on both sides)
    side: Literal["BUY", "SELL"]  # of that order
    best_bid: Decimal | None  # the book as the live order went out
    best_ask: Decimal | None
    mark: Decimal
    request: str  # the decision as the live account received it (JSON)


class Fill(NamedTuple):
    price: Decimal
    quantity: Decimal
    fee: Decimal
    ts: float


class Outcome(NamedTuple):
    """What one side did with a decision: its stored status and its order's fills."""

    status: str
    rejection_code: str | None
    venue_code: str | None
    fills: Sequence[Fill]


class SideFigures(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    rejection_code: str | None
    venue_code: str | None
    filled_quantity: Decimal
    avg_price: Decimal | None
    fees: Decimal
    slippage_bps: Decimal | None
    time_to_fill_seconds: float | None


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    decision_id: str
    side: Literal["BUY", "SELL"]
    received_at: float
    reference_price: Decimal
    reference: str
    live: SideFigures
    paper: SideFigures
    price_difference_bps: Decimal | None  # None unless both sides filled something
    fee_difference: Decimal  # live fees - paper fees
    same_outcome: bool


class Aggregate(msgspec.Struct, frozen=True, kw_only=True):
    decisions: int
    compared: int  # decisions where both sides filled (those the price figures are over)
    mean_price_difference_bps: Decimal | None
    median_price_difference_bps: Decimal | None
    live_fees: Decimal
    paper_fees: Decimal
    fee_difference: Decimal  # live - paper
    mean_time_to_fill_live_seconds: float | None
    mean_time_to_fill_paper_seconds: float | None
    different_outcomes: int


def bps(value: Decimal) -> Decimal:
    return value.quantize(BPS_PLACES)


def slippage_bps(side: str, avg_price: Decimal, reference: Decimal) -> Decimal:
    """How much worse than ``reference`` the average price was, in bps of it (negative: better)."""
    worse = avg_price - reference if side == "BUY" else reference - avg_price
    return bps(worse / reference * BPS)


def price_difference_bps(side: str, live_avg: Decimal, paper_avg: Decimal) -> Decimal:
    """Paper against live, in bps of the live price; positive when paper was kinder (a lower
    price on a buy, a higher one on a sell)."""
    kinder = live_avg - paper_avg if side == "BUY" else paper_avg - live_avg
    return bps(kinder / live_avg * BPS)


def side_figures(outcome: Outcome, side: str, reference: Decimal, received_at: float) -> SideFigures:
    quantity = sum((f.quantity for f in outcome.fills), ZERO)
    fees = sum((f.fee for f in outcome.fills), ZERO)
    avg = sum((f.price * f.quantity for f in outcome.fills), ZERO) / quantity if quantity > 0 else None
    last = max((f.ts for f in outcome.fills), default=None)
    return SideFigures(
        status=outcome.status, rejection_code=outcome.rejection_code, venue_code=outcome.venue_code,
        filled_quantity=quantity, avg_price=avg, fees=fees,
        slippage_bps=slippage_bps(side, avg, reference) if avg is not None else None,
        time_to_fill_seconds=round(last - received_at, SECONDS_PLACES) if last is not None else None)


def compare(decision_id: str, request: TwinRequest, live: Outcome, paper: Outcome) -> Comparison:
    reference, at = request.reference_price, request.received_at
    live_figures = side_figures(live, request.side, reference, at)
    paper_figures = side_figures(paper, request.side, reference, at)
    difference = None
    if live_figures.avg_price is not None and paper_figures.avg_price is not None:
        difference = price_difference_bps(request.side, live_figures.avg_price, paper_figures.avg_price)
    return Comparison(
        decision_id=decision_id, side=request.side, received_at=at, reference_price=reference,
        reference=request.reference, live=live_figures, paper=paper_figures, price_difference_bps=difference,
        fee_difference=live_figures.fees - paper_figures.fees,
        same_outcome=(live.status, live.rejection_code) == (paper.status, paper.rejection_code))


def aggregate(comparisons: Iterable[Comparison]) -> Aggregate:
    items = list(comparisons)
    differences = sorted(c.price_difference_bps for c in items if c.price_difference_bps is not None)
    live_times = [c.live.time_to_fill_seconds for c in items if c.live.time_to_fill_seconds is not None]
    paper_times = [c.paper.time_to_fill_seconds for c in items if c.paper.time_to_fill_seconds is not None]
    live_fees = sum((c.live.fees for c in items), ZERO)
    paper_fees = sum((c.paper.fees for c in items), ZERO)
    return Aggregate(
        decisions=len(items), compared=len(differences),
        mean_price_difference_bps=bps(sum(differences, ZERO) / len(differences)) if differences else None,
        median_price_difference_bps=median(differences),
        live_fees=live_fees, paper_fees=paper_fees, fee_difference=live_fees - paper_fees,
        mean_time_to_fill_live_seconds=_mean(live_times), mean_time_to_fill_paper_seconds=_mean(paper_times),
        different_outcomes=sum(1 for c in items if not c.same_outcome))


def median(values: Sequence[Decimal]) -> Decimal | None:
    """The median of sorted ``values`` (the mean of the two middle ones for an even count)."""
    if not values:
        return None
    middle = len(values) // 2
    if len(values) % 2:
        return values[middle]
    return bps((values[middle - 1] + values[middle]) / 2)


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), SECONDS_PLACES) if values else None


def mirror_refusal(decision: Decision, position: Position | None, instrument: Instrument | None) -> Rejection | None:
    """Why the twin cannot execute a decision its live account's gate accepted: its own book
    differs from the live account's (nothing to close, a position on the other side)."""
    if instrument is None:
        return Rejection(code="UNKNOWN_SYMBOL", message=f"{decision.symbol} has no market data for the paper twin")
    if decision.action == "close":
        if position is None:
            return Rejection(code="NO_POSITION", message=f"the paper twin holds no {decision.symbol} position to close "
                             "(its book differs from the live account's)", details={"symbol": decision.symbol})
        return None
    if position is not None and position.side != decision.side:
        return Rejection(code="OPPOSITE_POSITION", message=(
            f"the paper twin holds a {position.side} {decision.symbol} position (its book differs from the live "
            f"account's); one-way mode: it cannot open {decision.side}"),
            details={"side": str(decision.side), "position_side": position.side})
    return None
