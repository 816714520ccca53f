"""The ledger: what the venue's reports do to an account's orders, fills, positions and balance.

:func:`apply_reports` takes a batch of reports (one venue answer, one trigger, one user-stream
message...) and writes its effects into a :class:`~.book.Changes`. It is the one place where a
fill becomes a position change, for paper and live alike, and it is robust to what a real venue
does:

* a fill seen twice (a REST answer and the user stream, a stream replayed after a reconnect) is
  applied once: fill ids are unique per account, and an order's applied fills are remembered;
* reports out of order never move an order's status back (:func:`~.orders.later_status`);
* a report for an order the account does not know is either a venue-originated liquidation
  (adopted as the position's liquidation order) or left to the caller (``unknown``).

Per order and batch it emits one summary (``order.placed`` when the venue first accepts it,
``order.filled`` for the batch's fills, ``order.canceled`` / ``order.failed``), then the position's
events (``trade.opened``, ``position.updated``, ``trade.closed``, ``position.liquidated``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

import msgspec

from .book import Changes
from .events import (
    FundingPaid, OrderCanceled, OrderFailed, OrderFilled, OrderPlaced, PositionLiquidated, TradeClosed,
    TradeOpened,
)
from .execution import ExecutionReport, FundingReport, Report
from .filters import VenueReject
from .margin import liquidation_price
from .market import Instrument
from .money import ZERO, fmt, round_to_tick
from .orders import TERMINAL_STATUSES, FillRecord, FundingPayment, OrderRecord, later_status
from .positions import Position, apply_close_fill, apply_open_fill, credit_funding, new_position
from .views import position_view

#: the close reason a position gets from the purpose of the order that closed it
CLOSE_REASONS: dict[str, str] = {
    "exit": "decision", "entry": "decision", "take_profit": "take_profit", "stop_loss": "stop_loss",
    "close_all": "close_all", "liquidation": "liquidation", "external": "external",
    "flatten": "protection_failed",
}


class LedgerContext(NamedTuple):
    account_id: str
    default_leverage: int
    instrument_of: Callable[[str], Instrument | None]
    mark_of: Callable[[str], Decimal | None]


@dataclass
class OrderExecution:
    """What one batch of reports did to one order."""

    order: OrderRecord
    fills: list[FillRecord] = field(default_factory=list)
    accepted: bool = False  # the venue acknowledged the order in this batch (first time)
    rejected: VenueReject | None = None
    canceled: str | None = None
    expired: str | None = None
    trigger_failed: VenueReject | None = None
    fill_status: str | None = None  # status after the batch's last fill
    venue_filled: Decimal = ZERO  # the most the venue said it filled (a fill may still be on its way)
    unknown: bool = False  # the venue's answer was lost: the outcome comes later
    initial_status: str = ""  # the order's status before this batch
    was_settled: bool = False  # the order was settled before this batch (OrderRecord.settled)
    trigger_price: Decimal | None = None
    position_before: Position | None = None
    position: Position | None = None
    liquidation: ExecutionReport | None = None

    def absorb(self, later: OrderExecution) -> None:
        """Fold a later batch's execution of the same order into this one (a venue that answers
        in several messages)."""
        self.order = later.order
        self.fills.extend(later.fills)
        self.accepted = self.accepted or later.accepted
        self.rejected = later.rejected or self.rejected
        self.canceled = later.canceled or self.canceled
        self.expired = later.expired or self.expired
        self.trigger_failed = later.trigger_failed or self.trigger_failed
        self.fill_status = later.fill_status or self.fill_status
        self.trigger_price = later.trigger_price or self.trigger_price
        self.venue_filled = max(self.venue_filled, later.venue_filled)
        self.unknown = later.unknown and self.order.status == "PENDING_NEW"
        if later.position is not None:
            self.position = later.position

    @property
    def filled(self) -> Decimal:
        return sum((f.quantity for f in self.fills), ZERO)

    @property
    def fee(self) -> Decimal:
        return sum((f.fee for f in self.fills), ZERO)

    @property
    def avg_price(self) -> Decimal | None:
        filled = self.filled
        if filled == 0:
            return None
        return sum((f.price * f.quantity for f in self.fills), ZERO) / filled

    @property
    def settled(self) -> bool:
        """The venue answered an order that was in flight (its decision can be settled)."""
        return self.initial_status == "PENDING_NEW" and self.order.status != "PENDING_NEW"

    @property
    def opened(self) -> bool:
        was_open = self.position_before is not None and self.position_before.is_open
        return not was_open and self.position is not None and self.position.is_open

    @property
    def closed(self) -> bool:
        return bool(self.fills) and self.position is not None and not self.position.is_open


class Batch(NamedTuple):
    executions: list[OrderExecution]  # in the order their first report came
    unknown: list[ExecutionReport]  # reports for orders the account does not know


def apply_reports(changes: Changes, reports: Sequence[Report], ctx: LedgerContext) -> Batch:
    executions: dict[str, OrderExecution] = {}
    unknown: list[ExecutionReport] = []
    for report in reports:
        if isinstance(report, FundingReport):
            _apply_funding(changes, report, ctx)
            continue
        order = changes.order_by_client(report.client_order_id)
        if order is None and report.order_type == "LIQUIDATION":
            order = _liquidation_order(changes, report, ctx)
        if order is None:
            unknown.append(report)
            continue
        execution = executions.get(order.id)
        if execution is None:
            execution = executions[order.id] = OrderExecution(
                order=order, position_before=changes.position(order.symbol), initial_status=order.status,
                was_settled=order.settled)
        _apply_report(changes, execution, report, ctx)
    batch = list(executions.values())
    for execution in batch:
        _summarize(changes, execution, ctx)
    return Batch(batch, unknown)


def _apply_report(changes: Changes, execution: OrderExecution, report: ExecutionReport, ctx: LedgerContext) -> None:
    order = execution.order
    was_terminal = order.status in TERMINAL_STATUSES
    status = later_status(order.status, report.status)
    if not order.venue_order_id and report.venue_order_id:
        order = msgspec.structs.replace(order, venue_order_id=report.venue_order_id)
    execution.venue_filled = max(execution.venue_filled, report.cumulative_quantity)
    if report.cumulative_quantity > order.venue_filled:
        order = msgspec.structs.replace(order, venue_filled=report.cumulative_quantity)
    match report.exec_type:
        case "NEW":
            if order.status == "PENDING_NEW":
                _accepted(changes, execution, order)
        case "REJECTED":
            if not was_terminal:
                execution.rejected = report.reject
                order = msgspec.structs.replace(
                    order, reject_code=str(report.reject.code) if report.reject else None,
                    reject_message=report.reject.msg if report.reject else None)
        case "CANCELED":
            if not was_terminal:
                execution.canceled = report.reason or "venue"
        case "EXPIRED":
            if not was_terminal:
                execution.expired = report.reason or "venue"
                if report.reject is not None:
                    order = msgspec.structs.replace(order, reject_code=str(report.reject.code),
                                                    reject_message=report.reject.msg)
        case "TRIGGERED":
            if report.reject is not None:
                execution.trigger_failed = report.reject
        case "UNKNOWN":
            execution.unknown = True
        case "TRADE" | "CALCULATED":
            if order.status == "PENDING_NEW" and not execution.accepted:
                _accepted(changes, execution, order)
            fill = report.fill
            if fill is not None and _new_fill(changes, order, fill.fill_id, fill.quantity):
                order = _apply_fill(changes, execution, order, report, ctx)
                execution.fill_status = report.status
                execution.trigger_price = report.trigger_price
    execution.order = msgspec.structs.replace(order, status=status, updated_at=changes.now)
    changes.put_order(execution.order)


def _new_fill(changes: Changes, order: OrderRecord, fill_id: str, quantity: Decimal) -> bool:
    """A fill to apply: not applied before (a venue sends some twice), and one the order can still
    take (a fill beyond an order's size is a duplicate whose id was forgotten). A fill that comes
    after the order's final status (reports out of order) is still applied."""
    if changes.fill_applied(order.id, fill_id):
        return False
    if order.quantity is not None and order.purpose not in ("take_profit", "stop_loss"):
        return order.filled_quantity + quantity <= order.quantity
    return True


def _accepted(changes: Changes, execution: OrderExecution, order: OrderRecord) -> None:
    """The venue took the order: an account order (not a trigger, not the venue's own) counts
    towards the order-rate limits from now on."""
    execution.accepted = True
    if order.purpose in ("entry", "exit", "close_all"):
        changes.order_times.append(changes.now)


def _apply_fill(changes: Changes, execution: OrderExecution, order: OrderRecord, report: ExecutionReport,
                ctx: LedgerContext) -> OrderRecord:
    fill = report.fill
    assert fill is not None
    position = changes.position(order.symbol)
    side = "long" if order.side == "BUY" else "short"
    # an entry opens or adds; so does a trade made outside the service in the position's direction
    opening = not order.reduce_only and (order.purpose == "entry" or (order.purpose == "external" and (
        position is None or not position.is_open or position.side == side)))
    if opening:
        if position is None or not position.is_open:
            position = new_position(
                position_id=_opened_position_id(order, fill.fill_id, ctx.account_id),
                account_id=ctx.account_id, symbol=order.symbol, side=side,  # type: ignore[arg-type]
                leverage=order.leverage or ctx.default_leverage, now=changes.now, opened_by=order.decision_id or "",
            )
            # the levels the entry asked for belong to the position from its first fill: a restart
            # before they are placed on the venue knows what to place
            position = msgspec.structs.replace(position, take_profit=order.take_profit, stop_loss=order.stop_loss,
                                               external=order.purpose == "external")
        effect = apply_open_fill(position, fill.quantity, fill.price, fill.fee, changes.now)
    else:
        if position is None or not position.is_open:
            raise ValueError(f"a reducing fill of {order.id} with no open {order.symbol} position")
        reason = CLOSE_REASONS.get(order.purpose, "decision")
        effect = apply_close_fill(position, min(fill.quantity, position.quantity), fill.price, fill.fee,
                                  changes.now, reason=reason)
    position = effect.position
    changes.realized += effect.realized_pnl
    changes.fees += fill.fee
    # a fill belongs to a decision when the decision's own order made it (an entry or an exit,
    # even a resting limit filled later); a trigger or a liquidation is the venue acting later
    decision_id = order.decision_id if order.purpose in ("entry", "exit") else None
    record = FillRecord(
        id=fill.fill_id, account_id=ctx.account_id, order_id=order.id, decision_id=decision_id,
        position_id=position.id, symbol=order.symbol, side=order.side, quantity=fill.quantity, price=fill.price,
        fee=fill.fee, fee_asset=fill.fee_asset, liquidity=fill.liquidity, realized_pnl=effect.realized_pnl,
        trigger_price=report.trigger_price, top_of_book_only=fill.top_of_book_only, ts=changes.now,
    )
    changes.add_fill(record)
    execution.fills.append(record)
    changes.put_position(position)
    execution.position = position
    filled = order.filled_quantity + fill.quantity
    cum_quote = order.cum_quote + fill.price * fill.quantity
    avg = cum_quote / filled
    quantity = order.quantity
    if order.quantity is None or order.purpose in ("take_profit", "stop_loss"):
        # a closePosition trigger: its size is what it filled so far plus what is still open
        quantity = filled + position.quantity
    return msgspec.structs.replace(order, filled_quantity=filled, avg_price=avg, cum_quote=cum_quote,
                                   fee=order.fee + fill.fee, quantity=quantity)


def _opened_position_id(order: OrderRecord, fill_id: str, account_id: str) -> str:
    """The id of the position a fill of ``order`` opens (no position of its symbol is open).

    The order names the position it was planned for: its own (an entry that opens one) or the
    one it adds to. When that one closed while the order was on its way, the fill opens the
    decision's own position; when the order's earlier fills went to a position that has closed
    since (a resting limit filling on), one named after the fill. A position id is never given to
    a second position: the closed one keeps its record, and its protective orders their client ids."""
    if order.filled_quantity > 0:
        return f"{order.position_id or account_id}.{fill_id}"
    if order.decision_id:
        return f"{account_id}.{order.decision_id}"
    return order.position_id or f"{account_id}.{order.id}"


def _liquidation_order(changes: Changes, report: ExecutionReport, ctx: LedgerContext) -> OrderRecord | None:
    """A liquidation is the venue's own order: adopt it as the position's liquidation order."""
    position = changes.open_position(report.symbol)
    if position is None:
        return None
    order = OrderRecord(
        id=f"{position.id}:liquidation", account_id=ctx.account_id, decision_id=None, position_id=position.id,
        symbol=position.symbol, side="SELL" if position.side == "long" else "BUY", type="LIQUIDATION",
        purpose="liquidation", reduce_only=True, quantity=position.quantity,
        trigger_price=position.liquidation_price, status="NEW", client_order_id=report.client_order_id,
        venue_order_id=report.venue_order_id, created_at=changes.now, updated_at=changes.now,
    )
    changes.put_order(order)
    return order


def _apply_funding(changes: Changes, report: FundingReport, ctx: LedgerContext) -> None:
    position = changes.open_position(report.symbol)
    if position is None:
        return
    if report.funding_time <= _funded_until(changes, position.id):
        return  # settled already (a restart, a repeated report)
    changes.put_position(credit_funding(position, report.amount, changes.now))
    changes.funding += report.amount
    changes.funding_payments.append(FundingPayment(
        account_id=ctx.account_id, position_id=position.id, symbol=report.symbol, rate=report.rate,
        mark=report.mark, amount=report.amount, funding_time=report.funding_time, ts=changes.now,
    ))
    changes.emit(FundingPaid(position_id=position.id, symbol=report.symbol, rate=fmt(report.rate),
                             mark=fmt(report.mark), amount=fmt(report.amount), funding_time=report.funding_time))


def _funded_until(changes: Changes, position_id: str) -> int:
    pending = [p.funding_time for p in changes.funding_payments if p.position_id == position_id]
    return max([changes.book.funded_until.get(position_id, 0), *pending])


def with_liquidation_price(position: Position, instrument: Instrument | None) -> Position:
    """The position with its liquidation price on the tick grid (rounded towards the entry: the
    earlier trigger), or none once closed."""
    if not position.is_open:
        return msgspec.structs.replace(position, liquidation_price=None)
    if instrument is None:
        return position
    price = liquidation_price(instrument, position.side, position.quantity, position.entry_price, position.margin)
    if price is not None:
        price = round_to_tick(price, instrument.filters.tick_size, up=position.side == "long")
    return msgspec.structs.replace(position, liquidation_price=price)


def _summarize(changes: Changes, execution: OrderExecution, ctx: LedgerContext) -> None:
    order = execution.order
    if execution.accepted:
        changes.emit(OrderPlaced(
            order_id=order.id, client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
            order_type=order.type, purpose=order.purpose, quantity=fmt(order.quantity), price=fmt(order.price),
            trigger_price=fmt(order.trigger_price)))
    if execution.rejected is not None:
        changes.emit(OrderFailed(order_id=order.id, code=str(execution.rejected.code), message=execution.rejected.msg))
    if execution.trigger_failed is not None:
        changes.emit(OrderFailed(order_id=order.id, code=str(execution.trigger_failed.code),
                                 message=execution.trigger_failed.msg))
    if execution.fills:
        changes.emit(OrderFilled(
            order_id=order.id, filled_quantity=fmt(execution.filled), avg_price=fmt(execution.avg_price),
            fee=fmt(execution.fee), status=execution.fill_status or order.status,
            trigger_price=fmt(execution.trigger_price)))
        position = execution.position
        assert position is not None
        position = with_liquidation_price(position, ctx.instrument_of(position.symbol))
        changes.put_position(position)
        execution.position = position
        if execution.opened:
            changes.emit(TradeOpened(position_id=position.id, symbol=position.symbol, side=position.side,
                                     quantity=fmt(position.quantity), entry_price=fmt(position.entry_price),
                                     leverage=position.leverage))
        mark = ctx.mark_of(position.symbol)
        view = position_view(position, mark)
        changes.last_position_view = (position, mark, view)
        changes.emit(view)
        if not position.is_open:
            changes.emit(TradeClosed(position_id=position.id, symbol=position.symbol, reason=position.close_reason,
                                     exit_price=fmt(position.exit_price), realized_pnl=fmt(position.realized_pnl),
                                     fees=fmt(position.fees), funding=fmt(position.funding),
                                     net_pnl=fmt(position.net_pnl)))
        if order.purpose == "liquidation":
            report_mark = execution.trigger_price
            fill = execution.fills[-1]
            changes.emit(PositionLiquidated(position_id=position.id, mark=fmt(report_mark), bankruptcy_price=fmt(fill.price),
                                            fee=fmt(execution.fee)))
    if execution.canceled is not None:
        changes.emit(OrderCanceled(order_id=order.id, reason=execution.canceled))
    if execution.expired is not None and not execution.fills:
        changes.emit(OrderCanceled(order_id=order.id, reason=execution.expired))
