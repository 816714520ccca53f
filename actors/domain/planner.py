"""The planner: from a decision, the account's book and the market to orders and results. Pure.

* :func:`gate` runs the risk gate over the book as it would be (the pending :class:`Changes`
  over the committed book), with the leverage decided once (:func:`risk.effective_leverage`).
* :func:`plan_order` turns an accepted decision into the order to send: an
  :class:`~.orders.OrderRecord` (``PENDING_NEW``) and the :class:`~.execution.OrderIntent` the
  adapter sends, with its deterministic client order id.
* :func:`plan_protection` places (or moves) a position's stop-loss, then its take-profit.
* :func:`reject` / :func:`result` build the decision's stored result, with its audit row and
  events.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import NamedTuple

import msgspec

from .book import UNCHANGED, AccountConfig, AuditEntry, Changes
from .decisions import Decision
from .events import DecisionAccepted, DecisionRejected, ProtectionPlaced, StateChanged
from .execution import CancelIntent, OrderIntent
from .filters import NOT_SENT_CODE, RATE_BUDGET_CODE
from .market import Instrument, Quote
from .money import fmt, round_step_down
from .orders import PROTECTIVE, OrderRecord, client_order_id
from .positions import Position, entry_side, exit_side, unrealized_total
from .protection import ORDER_TYPES
from .risk import (
    AccountView, CheckResult, GlobalLimits, MarketView, Rejection, RiskVerdict, TradingState,
    cooldown_until_after, evaluate, stricter_state, utc_day,
)
from .views import DecisionResult, ErrorView, FillView, PositionView, RejectionView, order_view, position_view

WORKING_TYPES = {"mark": "MARK_PRICE", "last": "CONTRACT_PRICE"}


class MarketContext(NamedTuple):
    """What the planner reads of the market: the decision symbol's rules and quote, and marks."""

    instrument: Instrument | None
    quote: Quote | None
    mark_of: Callable[[str], Decimal | None]


class ServiceContext(NamedTuple):
    """What the planner reads of the service around the account."""

    global_state: TradingState = "active"
    global_order_times: Sequence[float] = ()  # ascending; the supervisor's window itself, not a copy
    global_limits: GlobalLimits | None = None


class PlannedOrder(NamedTuple):
    order: OrderRecord
    intent: OrderIntent


def equity(changes: Changes, mark_of: Callable[[str], Decimal | None]) -> Decimal:
    return changes.balance + unrealized_total(changes.open_positions(), mark_of)


def roll_day(changes: Changes, mark_of: Callable[[str], Decimal | None]) -> bool:
    """Start a new UTC day's loss count at the equity of its first moment the account sees.

    A flat account's equity does not move between midnight and its next decision, so rolling
    lazily (before an evaluation, and on the watcher's tick) is exact for it.
    """
    book = changes.book
    day = utc_day(changes.now)
    current = changes.day[0] if changes.day is not None else book.day
    if current == day:
        return False
    changes.day = (day, equity(changes, mark_of))
    return True


def account_view(changes: Changes, mark_of: Callable[[str], Decimal | None], service: ServiceContext) -> AccountView:
    book = changes.book
    positions = tuple(changes.open_positions())
    marks = {}
    for position in positions:
        mark = mark_of(position.symbol)
        if mark is not None:
            marks[position.symbol] = mark
    notional, margin = book.resting_exposure()
    day, day_start = changes.day if changes.day is not None else (book.day, book.day_start_equity)
    cooldown = book.cooldown_until if changes.cooldown_until is UNCHANGED else changes.cooldown_until
    global_times = service.global_order_times
    if service.global_limits is None or (service.global_limits.max_orders_per_second is None
                                         and service.global_limits.max_orders_per_minute is None):
        global_times = ()
    return AccountView(
        account_id=book.account_id,
        trading_state=(changes.trading_state or (book.trading_state,))[0],
        global_state=service.global_state,
        balance=changes.balance,
        positions=positions,
        open_orders_notional=notional,
        open_orders_margin=margin,
        cooldown_until=cooldown,
        recent_order_times=book.recent_order_times,
        global_recent_order_times=global_times,
        default_leverage=book.config.default_leverage,
        day_start_equity=day_start,
        peak_equity=changes.peak_equity or book.peak_equity,
        day=day,
        marks=marks,
    )


def gate(changes: Changes, decision: Decision, market: MarketContext, service: ServiceContext) -> RiskVerdict:
    roll_day(changes, market.mark_of)
    limits = changes.limits or changes.book.limits
    return evaluate(decision, account_view(changes, market.mark_of, service),
                    MarketView(instrument=market.instrument, quote=market.quote), limits, changes.now,
                    global_limits=service.global_limits)


def _record(changes: Changes, *, order_id: str, purpose: str, decision_id: str | None, position_id: str | None,
            symbol: str, side: str, type_: str, reduce_only: bool, quantity: Decimal | None,
            price: Decimal | None = None, trigger_price: Decimal | None = None, leverage: int | None = None,
            take_profit: Decimal | None = None, stop_loss: Decimal | None = None, revision: int = 0,
            created_at: float | None = None) -> OrderRecord:
    account_id = changes.book.account_id
    return OrderRecord(
        id=order_id, account_id=account_id, decision_id=decision_id, position_id=position_id, symbol=symbol,
        side=side, type=type_, purpose=purpose, reduce_only=reduce_only, quantity=quantity, price=price,
        trigger_price=trigger_price, status="PENDING_NEW", leverage=leverage, take_profit=take_profit,
        stop_loss=stop_loss, client_order_id=client_order_id(account_id, order_id, purpose, revision),
        revision=revision, sent_at=changes.now, created_at=changes.now if created_at is None else created_at,
        updated_at=changes.now,
    )


def intent_for(order: OrderRecord, config: AccountConfig, *, max_slippage_bps: Decimal | None = None) -> OrderIntent:
    return OrderIntent(
        order_id=order.id, client_order_id=order.client_order_id, symbol=order.symbol,
        side=order.side,  # type: ignore[arg-type]
        type=order.type,  # type: ignore[arg-type]
        purpose=order.purpose, quantity=order.quantity, price=order.price, trigger_price=order.trigger_price,
        reduce_only=order.reduce_only and order.quantity is not None,
        close_position=order.is_protective and order.is_conditional, working_type=WORKING_TYPES[config.trigger_price],  # type: ignore[arg-type]
        leverage=order.leverage, max_slippage_bps=max_slippage_bps,
    )


def plan_order(changes: Changes, decision: Decision, verdict: RiskVerdict,
               instrument: Instrument, quote: Quote) -> PlannedOrder | Rejection:
    """The order an accepted decision sends (an entry, or a reduce-only exit)."""
    book = changes.book
    config = book.config
    slippage = decision.max_slippage_bps or config.max_slippage_bps
    step = instrument.filters.step_size
    limit = decision.order_type == "limit"
    if decision.action == "close":
        position = changes.open_position(decision.symbol)
        assert position is not None  # the gate checked it
        quantity = position.quantity if decision.quantity is None else min(decision.quantity, position.quantity)
        order = _record(changes, order_id=f"{decision.decision_id}.exit", purpose="exit",
                        decision_id=decision.decision_id, position_id=position.id, symbol=decision.symbol,
                        side=exit_side(position.side), type_="LIMIT" if limit else "MARKET", reduce_only=True,
                        quantity=round_step_down(quantity, step), price=decision.price if limit else None)
        return PlannedOrder(order, intent_for(order, config, max_slippage_bps=None if limit else slippage))
    assert decision.side is not None and verdict.leverage is not None
    existing = changes.open_position(decision.symbol)
    leverage = verdict.leverage
    if existing is not None and leverage != existing.leverage:
        return Rejection(
            code="LEVERAGE_MISMATCH",
            message=f"the open {decision.symbol} position is at {existing.leverage}x; increase it at "
                    f"{existing.leverage}x or close it first (asked {leverage}x)",
            details={"position_leverage": str(existing.leverage), "requested": str(leverage)},
        )
    if decision.quantity is not None:
        quantity = round_step_down(decision.quantity, step)
    else:
        assert decision.notional is not None
        quantity = round_step_down(decision.notional / quote.mark_price, step)
    position_id = existing.id if existing is not None else f"{book.account_id}.{decision.decision_id}"
    order = _record(changes, order_id=f"{decision.decision_id}.entry", purpose="entry",
                    decision_id=decision.decision_id, position_id=position_id, symbol=decision.symbol,
                    side=entry_side(decision.side), type_="LIMIT" if limit else "MARKET", reduce_only=False,
                    quantity=quantity, price=decision.price if limit else None, leverage=leverage,
                    take_profit=decision.take_profit, stop_loss=decision.stop_loss)
    return PlannedOrder(order, intent_for(order, config, max_slippage_bps=None if limit else slippage))


class ProtectionPlan(NamedTuple):
    cancels: list[CancelIntent]  # the levels being moved: cancelled before their replacement
    orders: list[PlannedOrder]  # stop-loss first, then take-profit
    position: Position  # with its new levels


def plan_protection(changes: Changes, position: Position, take_profit: Decimal | None,
                    stop_loss: Decimal | None, *, decision_id: str | None) -> ProtectionPlan:
    """Place or move a position's protective orders (``closePosition`` triggers). Every
    placement round is an order of its own (``<position>:stop_loss``, moved: ``<position>:stop_loss.2``...):
    the one it replaces is cancelled and keeps its history."""
    config = changes.book.config
    cancels: list[CancelIntent] = []
    orders: list[PlannedOrder] = []
    levels = {"stop_loss": stop_loss, "take_profit": take_profit}
    revision = position.protection_revision  # placement rounds so far
    working = {o.purpose: o for o in changes.protective_orders(position.id) if o.is_open}
    for purpose in PROTECTIVE:
        price = levels[purpose]
        if price is None:
            continue
        previous = working.get(purpose)
        if previous is not None:
            cancels.append(cancel_of(previous, "replaced"))
        order_id = f"{position.id}:{purpose}" if revision == 0 else f"{position.id}:{purpose}.{revision + 1}"
        order = _record(changes, order_id=order_id, purpose=purpose, decision_id=decision_id,
                        position_id=position.id, symbol=position.symbol, side=exit_side(position.side),
                        type_=ORDER_TYPES[purpose], reduce_only=True, quantity=None, trigger_price=price,
                        revision=revision)
        orders.append(PlannedOrder(order, intent_for(order, config)))
    position = msgspec.structs.replace(
        position,
        take_profit=take_profit if take_profit is not None else position.take_profit,
        stop_loss=stop_loss if stop_loss is not None else position.stop_loss,
        protection_revision=revision + 1 if orders else revision,
    )
    return ProtectionPlan(cancels, orders, position)


def exit_order(changes: Changes, position: Position, *, purpose: str, order_id: str) -> PlannedOrder:
    """A reduce-only market order for the whole position (close-all, a protection that failed,
    a level the market is already through)."""
    order = _record(changes, order_id=order_id, purpose=purpose, decision_id=None, position_id=position.id,
                    symbol=position.symbol, side=exit_side(position.side), type_="MARKET", reduce_only=True,
                    quantity=position.quantity)
    return PlannedOrder(order, intent_for(order, changes.book.config))


def decision_status(order: OrderRecord) -> str:
    """A decision's status from its order: a market order is filled, partially filled (the venue
    expired the rest) or still pending; a limit order rests until it fills."""
    if order.status == "PENDING_NEW":
        return "pending"
    if order.type == "MARKET" and order.status in ("FILLED", "EXPIRED", "CANCELED") and not order.settled:
        return "pending"  # done on the venue, but fills it counted are still on their way
    if order.type == "LIMIT":
        if order.remaining == 0:
            return "filled"
        return "partially_filled" if order.filled_quantity > 0 else "resting"
    if order.status == "FILLED":
        return "filled"
    return "partially_filled" if order.filled_quantity > 0 else "pending"


def protection_placed(changes: Changes, order: OrderRecord) -> None:
    changes.emit(ProtectionPlaced(position_id=order.position_id or "", order_id=order.id, order_type=order.type,
                                  trigger_price=fmt(order.trigger_price)))


def cancel_of(order: OrderRecord, reason: str) -> CancelIntent:
    return CancelIntent(order_id=order.id, client_order_id=order.client_order_id, symbol=order.symbol,
                        conditional=order.is_conditional, reason=reason)


def cancels_for_closed(changes: Changes, position: Position) -> list[CancelIntent]:
    """What is left working for a position that closed: its protective orders (OCO)."""
    return [cancel_of(o, f"position {position.close_reason}") for o in changes.protective_orders(position.id)]


# ------------------------------------------------------------------------------------- results


def audit(changes: Changes, decision_id: str | None, checks: Iterable[CheckResult], rejection: Rejection | None) -> None:
    changes.audit = AuditEntry(decision_id=decision_id, ts=changes.now, accepted=rejection is None,
                               code=rejection.code if rejection else None,
                               message=rejection.message if rejection else None, checks=tuple(checks))


def accept(changes: Changes, decision: Decision, verdict: RiskVerdict | None, *, at: int | None = None) -> None:
    """The gate and the venue took it: its audit row (unless written with the intent, when
    ``verdict`` is None) and ``decision.accepted`` (before the order's events when ``at`` marks
    where they start)."""
    if verdict is not None:
        audit(changes, decision.decision_id, verdict.checks, None)
    event = DecisionAccepted(decision_id=decision.decision_id)
    if at is None:
        changes.emit(event)
    else:
        changes.events.insert(at, event)


def start_cooldown(changes: Changes) -> None:
    changes.cooldown_until = cooldown_until_after(changes.now, changes.limits or changes.book.limits)


def reject(changes: Changes, decision: Decision, rejection: Rejection, checks: Iterable[CheckResult],
           mark_of: Callable[[str], Decimal | None], order: OrderRecord | None = None) -> DecisionResult:
    audit(changes, decision.decision_id, checks, rejection)
    changes.emit(DecisionRejected(decision_id=decision.decision_id, code=rejection.code, message=rejection.message))
    return result(changes, decision, "rejected", mark_of, order=order, rejection=rejection)


#: the venues' own rate-limit refusals (-1003 too many requests, -1015 too many orders)
RATE_LIMIT_CODES = ("-1003", "-1015")


def unfilled(order: OrderRecord) -> Rejection | None:
    """A market order the venue ended without a single fill (expired: no liquidity within its
    price protection, nothing left to reduce; or cancelled): the decision was not executed."""
    if order.type != "MARKET" or order.status not in ("EXPIRED", "CANCELED") or order.filled_quantity > 0 \
            or order.venue_filled > 0:
        return None
    return Rejection(code="NOT_FILLED", message=f"the venue ended the market order without a fill "
                     f"({order.status.lower()}{': ' + order.reject_message if order.reject_message else ''})",
                     details={"venue_status": order.status, "quantity": fmt(order.quantity) or "0"})


def venue_rejection(order: OrderRecord) -> Rejection:
    """Why the venue (or the way to it) refused an order. A refusal made here, before sending
    (the rate budget, a venue that cannot be reached), names no venue code: ``sent`` is false."""
    local = order.reject_code in (str(NOT_SENT_CODE), str(RATE_BUDGET_CODE))
    details = ({"sent": "false", "reason": order.reject_message or ""} if local else
               {"venue_code": order.reject_code or "", "venue_message": order.reject_message or ""})
    if order.purpose in ("entry", "exit"):
        details["quantity"] = fmt(order.quantity) or "0"
    if order.reject_code == str(NOT_SENT_CODE):
        return Rejection(code="VENUE_UNAVAILABLE", message=f"the venue could not be reached: {order.reject_message}",
                         details=details)
    if order.reject_code == str(RATE_BUDGET_CODE):
        return Rejection(code="RATE_LIMITED", message=f"not sent, to stay within the venue's rate limits: "
                         f"{order.reject_message}", details=details)
    if order.reject_code in RATE_LIMIT_CODES:
        return Rejection(code="RATE_LIMITED", message=f"the venue's rate limit: {order.reject_message}",
                         details=details)
    return Rejection(code="VENUE_REJECTED", message=f"the venue would reject this order: {order.reject_message}",
                     details=details)


def result(changes: Changes, decision: Decision, status: str, mark_of: Callable[[str], Decimal | None], *,
           order: OrderRecord | None, fills: Iterable[FillView] = (), position: Position | None = None,
           rejection: Rejection | None = None) -> DecisionResult:
    protective = []
    if position is not None:
        protective = [order_view(o) for o in changes.open_orders()
                      if o.position_id == position.id and o.is_protective]
        protective += [order_view(o) for o in changes.orders.values()
                       if o.position_id == position.id and o.is_protective and not o.is_open]
    return DecisionResult(
        decision_id=decision.decision_id, account_id=changes.book.account_id, status=status,
        is_paper=changes.book.is_paper, symbol=decision.symbol, action=decision.action,
        rejection=None if rejection is None else RejectionView(code=rejection.code, message=rejection.message,
                                                               details=dict(rejection.details)),
        order=None if order is None else order_view(order),
        fills=_in_execution_order(fills),
        position=None if position is None else _position_view(changes, position, mark_of(position.symbol)),
        protective_orders=protective,
        balance=fmt(changes.balance),
        created_at=changes.now,
        error=None if rejection is None else ErrorView(code=rejection.code, message=rejection.message),
    )


def _position_view(changes: Changes, position: Position, mark: Decimal | None) -> PositionView:
    built = changes.last_position_view
    if built is not None and built[0] is position and built[1] == mark:
        return built[2]  # type: ignore[no-any-return]
    return position_view(position, mark)


def _in_execution_order(fills: Iterable[FillView]) -> list[FillView]:
    fills = list(fills)
    return fills if len(fills) < 2 else sorted(fills, key=lambda f: execution_order(f.id))


def execution_order(fill_id: str) -> tuple[tuple[int, int | str], ...]:
    """A fill id's place in execution order, whatever order its report came in: ids number the
    fills (paper ``<order>.<n>``, a venue's increasing trade ids), compared as numbers."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", fill_id) if part)


def settled_result(changes: Changes, order: OrderRecord, fills: list[FillView],
                   mark_of: Callable[[str], Decimal | None], *, cooldown: bool = True) -> DecisionResult:
    """The result of a decision whose order was in flight (its answer was lost) once the venue
    settled it: rejected with the venue's code, or accepted with the fills it got."""
    assert order.decision_id is not None
    opening = order.purpose == "entry"
    decision = Decision(decision_id=order.decision_id, symbol=order.symbol, action="open" if opening else "close",
                        side=("long" if order.side == "BUY" else "short") if opening else None)
    rejection = venue_rejection(order) if order.status == "REJECTED" else unfilled(order)
    if rejection is not None:
        changes.emit(DecisionRejected(decision_id=decision.decision_id, code=rejection.code, message=rejection.message))
        return result(changes, decision, "rejected", mark_of, order=order, rejection=rejection)
    changes.emit(DecisionAccepted(decision_id=decision.decision_id))
    if fills and cooldown:
        start_cooldown(changes)
    return result(changes, decision, decision_status(order), mark_of, order=order, fills=fills,
                  position=changes.position(order.symbol))


def set_trading_state(changes: Changes, state: TradingState, reason: str | None, source: str) -> None:
    previous = (changes.trading_state or (changes.book.trading_state,))[0]
    changes.trading_state = (state, reason, source)
    changes.emit(StateChanged(previous=previous, to=state, reason=reason, source=source))


def effective_state(changes: Changes, global_state: TradingState) -> TradingState:
    return stricter_state((changes.trading_state or (changes.book.trading_state,))[0], global_state)

