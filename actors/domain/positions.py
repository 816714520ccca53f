"""Positions (one-way mode, isolated margin) and the position lifecycle.

Pure: every function takes ``now`` and prices as arguments and returns new immutable values.

Money rules (linear USDⓈ-M perpetuals, contract multiplier 1):

* entry price: the quantity-weighted average of the entry fills, to 8 decimals
* unrealized PnL = qty * direction * (mark - entry)
* isolated margin = entry notional / leverage; a reduction releases it pro rata
* realized PnL on a reduction = direction * (closed qty * exit - cost basis released), fees
  booked apart; the cost basis is exact, so a full round trip realizes exactly
  direction * (exit notional - entry notional)
* the account balance moves by realized PnL, fees and funding, never by margin
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Literal

import msgspec

from .market import OrderSide, Side
from .money import ZERO

# Venues keep position figures to 8 decimals; averages and pro-rata margins are rounded there so
# that every later product (realized PnL, balances) is exact.
PRECISION = Decimal("1E-8")

PositionStatus = Literal["created", "submitting", "open", "closing", "closed", "failed"]
PositionEvent = Literal["submit", "fill", "reduce", "close", "fail", "reopen"]


class IllegalTransition(Exception):
    def __init__(self, status: str, event: str) -> None:
        super().__init__(f"position cannot go through {event!r} while {status!r}")
        self.status = status
        self.event = event


# The one transition table of the position lifecycle: (status, event) -> next status.
TRANSITIONS: dict[tuple[str, str], PositionStatus] = {
    ("created", "submit"): "submitting",
    ("created", "fail"): "failed",
    ("submitting", "fill"): "open",
    ("submitting", "fail"): "failed",
    ("open", "fill"): "open",  # an increase
    ("open", "reduce"): "closing",
    ("open", "close"): "closed",
    ("closing", "reopen"): "open",  # a reduction that leaves a smaller position
    ("closing", "close"): "closed",
}


def transition(status: str, event: str) -> PositionStatus:
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise IllegalTransition(status, event) from None


def direction(side: Side) -> int:
    return 1 if side == "long" else -1


def entry_side(side: Side) -> OrderSide:
    return "BUY" if side == "long" else "SELL"


def exit_side(side: Side) -> OrderSide:
    return "SELL" if side == "long" else "BUY"


class Position(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    account_id: str
    symbol: str
    side: Side
    status: PositionStatus = "created"
    quantity: Decimal = ZERO
    entry_price: Decimal = ZERO  # average entry, to 8 decimals (cost / quantity)
    cost: Decimal = ZERO  # exact entry cost basis of the open quantity (sum of qty * price)
    leverage: int
    margin: Decimal = ZERO
    realized_pnl: Decimal = ZERO  # trading PnL of the closed part, before fees
    fees: Decimal = ZERO  # fees paid (positive = cost)
    funding: Decimal = ZERO  # funding received (positive) or paid (negative)
    opened_at: float
    updated_at: float
    closed_at: float | None = None
    closed_quantity: Decimal = ZERO
    exit_notional: Decimal = ZERO  # sum of exit price * qty, for the average exit price
    max_quantity: Decimal = ZERO
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    liquidation_price: Decimal | None = None
    close_reason: str | None = None  # decision | take_profit | stop_loss | liquidation | close_all
    opened_by: str = ""  # decision id
    external: bool = False  # adopted from the venue: not opened by this service
    #: protective orders placed so far: each one (a moved stop-loss too) is a new order
    protection_revision: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in ("open", "closing") and self.quantity > 0

    @property
    def notional_at_entry(self) -> Decimal:
        return self.quantity * self.entry_price

    @property
    def exit_price(self) -> Decimal | None:
        if self.closed_quantity == 0:
            return None
        return self.exit_notional / self.closed_quantity

    @property
    def net_pnl(self) -> Decimal:
        return self.realized_pnl - self.fees + self.funding

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        return self.quantity * direction(self.side) * (mark - self.entry_price)

    def notional(self, mark: Decimal) -> Decimal:
        return self.quantity * mark


class FillEffect(msgspec.Struct, frozen=True, kw_only=True):
    """What one fill did to a position."""

    position: Position
    kind: Literal["opened", "increased", "reduced", "closed"]
    realized_pnl: Decimal  # trading PnL realized by this fill (before its fee)
    margin_delta: Decimal  # margin reserved (+) or released (-)


def new_position(
    *, position_id: str, account_id: str, symbol: str, side: Side, leverage: int, now: float, opened_by: str
) -> Position:
    return Position(
        id=position_id,
        account_id=account_id,
        symbol=symbol,
        side=side,
        leverage=leverage,
        opened_at=now,
        updated_at=now,
        opened_by=opened_by,
    )


def apply_open_fill(position: Position, quantity: Decimal, price: Decimal, fee: Decimal, now: float) -> FillEffect:
    """Apply a fill that opens or increases ``position`` (average entry, margin reserved)."""
    if quantity <= 0:
        raise ValueError("fill quantity must be positive")
    if position.status in ("created", "submitting"):
        status = position.status
        if status == "created":
            status = transition(status, "submit")
        status = transition(status, "fill")
        kind: Literal["opened", "increased"] = "opened"
    else:
        status = transition(position.status, "fill")
        kind = "increased"
    new_qty = position.quantity + quantity
    cost = position.cost + quantity * price
    entry = (cost / new_qty).quantize(PRECISION)
    # rounded up: the reserved margin never falls below notional / leverage
    margin_delta = (quantity * price / position.leverage).quantize(PRECISION, rounding=ROUND_UP)
    updated = msgspec.structs.replace(
        position,
        status=status,
        quantity=new_qty,
        entry_price=entry,
        cost=cost,
        margin=position.margin + margin_delta,
        fees=position.fees + fee,
        updated_at=now,
        max_quantity=max(position.max_quantity, new_qty),
    )
    return FillEffect(position=updated, kind=kind, realized_pnl=ZERO, margin_delta=margin_delta)


def apply_close_fill(
    position: Position, quantity: Decimal, price: Decimal, fee: Decimal, now: float, *, reason: str = "decision"
) -> FillEffect:
    """Apply a fill that reduces or closes ``position`` (realized PnL, margin released pro rata)."""
    if quantity <= 0:
        raise ValueError("fill quantity must be positive")
    if quantity > position.quantity:
        raise ValueError(f"cannot close {quantity} of a {position.quantity} position (flip refused)")
    remaining = position.quantity - quantity
    if remaining == 0:  # the last fill takes the whole remaining cost and margin: exact round trips
        released_cost, released = position.cost, position.margin
    else:  # pro rata, to 8 decimals; margin rounded down so what stays covers what stays open
        released_cost = (position.cost * quantity / position.quantity).quantize(PRECISION)
        released = (position.margin * quantity / position.quantity).quantize(PRECISION, rounding=ROUND_DOWN)
    pnl = direction(position.side) * (quantity * price - released_cost)
    closing = transition(position.status, "reduce") if position.status == "open" else position.status
    if remaining == 0:
        status = transition(closing, "close")
        kind: Literal["reduced", "closed"] = "closed"
    else:
        status = transition(closing, "reopen")
        kind = "reduced"
    updated = msgspec.structs.replace(
        position,
        status=status,
        quantity=remaining,
        cost=position.cost - released_cost,
        margin=position.margin - released,
        realized_pnl=position.realized_pnl + pnl,
        fees=position.fees + fee,
        updated_at=now,
        closed_at=now if remaining == 0 else None,
        closed_quantity=position.closed_quantity + quantity,
        exit_notional=position.exit_notional + quantity * price,
        close_reason=reason if remaining == 0 else position.close_reason,
    )
    return FillEffect(position=updated, kind=kind, realized_pnl=pnl, margin_delta=-released)


def funding_payment(side: Side, quantity: Decimal, mark: Decimal, rate: Decimal) -> Decimal:
    """Funding credited to a position's holder: ``-direction * quantity * mark * rate``
    (negative = paid). With a positive rate longs pay shorts."""
    return -direction(side) * quantity * mark * rate


def apply_funding(position: Position, mark: Decimal, rate: Decimal, now: float) -> tuple[Position, Decimal]:
    """Funding at ``rate`` on the position's notional at ``mark``.

    Returns the position and the amount credited to the account (negative = paid).
    """
    amount = funding_payment(position.side, position.quantity, mark, rate)
    return credit_funding(position, amount, now), amount


def credit_funding(position: Position, amount: Decimal, now: float) -> Position:
    """Book an amount of funding the venue settled on ``position`` (negative = paid)."""
    return msgspec.structs.replace(position, funding=position.funding + amount, updated_at=now)


def unrealized_total(positions: Iterable[Position], mark_of: Callable[[str], Decimal | None]) -> Decimal:
    """Unrealized PnL of the open ``positions`` at their marks (a position without one counts 0)."""
    total = ZERO
    for position in positions:
        if position.is_open:
            mark = mark_of(position.symbol)
            if mark is not None:
                total += position.unrealized_pnl(mark)
    return total


def fail_position(position: Position, now: float, reason: str) -> Position:
    return msgspec.structs.replace(
        position, status=transition(position.status, "fail"), updated_at=now, close_reason=reason
    )
