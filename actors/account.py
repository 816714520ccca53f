"""The account actor: owns one account's adapter, cooldown clock, positions, orders and state.

One task per account. It takes one message at a time from its inbox (decisions are serialized
without locks) and, before each, drains its *priority mailbox* (trading-state changes, close-all,
fired price alarms), which never waits behind queued decisions: posting to it wakes the actor out
of its idle wait, and close-all also cancels the in-flight decision's work scope.

Every state change follows *compute, commit, apply*: the new state is computed with the pure
domain, its records are committed through the persistence actor (shielded from cancellation, so
a commit in flight is never abandoned), and only then does the in-memory state move. A crash at
any point therefore leaves the database and a rebuilt actor in agreement.
"""

from __future__ import annotations

import collections
import logging
import math
import sqlite3
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import msgspec
import trio

from .clock import ServiceClock
from .domain import margin as margin_math
from .domain.alarms import Alarm
from .domain.decisions import Decision
from .domain.filters import VenueReject, check_leverage
from .domain.market import Instrument, Quote
from .domain.money import ZERO, fmt, round_step_down, round_to_tick
from .domain.positions import (
    Position, apply_close_fill, apply_funding, apply_open_fill, entry_side, exit_side, new_position,
)
from .domain.risk import (
    AccountView, LossBreach, MarketView, RiskLimits, RiskVerdict, cooldown_until_after, evaluate,
    loss_state, stricter_state, utc_day,
)
from .execution.paper import ExecutionReport, OrderRequest, PaperAdapter, SimFill
from .market_data import MarketData
from .messages import (
    AlarmFired, CancelOrder, CloseAll, DecisionConflict, Envelope, InjectCrash, Rejection, SetProtection,
    SetTradingState, SubmitDecision, UpdateRiskLimits,
)
from .persistence import EventRecord, Persistence, Statement, text, upsert
from .records import (
    FillRecord, OrderRecord, position_from_row, position_statement, position_view,
)
from .settings import AccountSettings

log = logging.getLogger("actors.account")

HOUSEKEEPING_SECONDS = 1.0
RECENT_DECISIONS = 256


class InjectedCrash(RuntimeError):
    """Raised by the test-only fault hook."""


class Mailbox:
    """An account's mailboxes; they belong to the supervisor and survive actor restarts."""

    def __init__(self, account_id: str, inbox_size: int, priority_size: int = 1024) -> None:
        self.account_id = account_id
        self.inbox_send, self.inbox_receive = trio.open_memory_channel[Envelope](inbox_size)
        self.priority: collections.deque[Envelope] = collections.deque()
        self.priority_size = priority_size
        self.priority_dropped = 0
        self.idle_scope: trio.CancelScope | None = None
        self.work_scope: trio.CancelScope | None = None
        self.current: Envelope | None = None
        # decisions accepted into the inbox and not answered yet: decision id -> fingerprint
        self.pending_decisions: dict[str, str] = {}

    @property
    def inbox_depth(self) -> int:
        return self.inbox_send.statistics().current_buffer_used

    def post_priority(self, envelope: Envelope, *, preempt: bool = False) -> bool:
        """Put a control message ahead of every queued decision; wake the actor.

        ``preempt`` also cancels the decision in flight (close-all). Never blocks: a full
        priority mailbox drops the message and counts it.
        """
        if len(self.priority) >= self.priority_size:
            self.priority_dropped += 1
            return False
        self.priority.append(envelope)
        if preempt and self.work_scope is not None:
            self.work_scope.cancel()
        if self.idle_scope is not None:
            self.idle_scope.cancel()
        return True

    def send_nowait(self, envelope: Envelope) -> None:
        """For the market-data actor: alarm deliveries are priority messages."""
        if not self.post_priority(envelope):
            raise trio.WouldBlock


class AccountContext(msgspec.Struct, kw_only=True):
    """Everything an account actor is given by its supervisor."""

    settings: AccountSettings
    limits: RiskLimits
    market: MarketData
    persistence: Persistence
    clock: ServiceClock
    mailbox: Any  # Mailbox
    global_state: Any  # callable -> TradingState
    global_order_times: Any  # the supervisor's service-wide rate window (read here)
    global_limits: Any = None  # GlobalLimits
    record_global_order: Any = None  # callable(now): tells the supervisor an order was sent
    paper_latency: float = 0.0


# ----------------------------------------------------------------------------------- state


class AccountState:
    """The in-memory state of one account; only its actor mutates it (others read it)."""

    def __init__(self, account_id: str, settings: AccountSettings, limits: RiskLimits) -> None:
        self.account_id = account_id
        self.settings = settings
        self.is_paper = settings.mode == "paper"
        self.limits = limits
        self.initial_balance = settings.balance
        self.realized_pnl = ZERO
        self.fees = ZERO
        self.funding = ZERO
        self.trading_state = "active"
        self.state_reason: str | None = None
        self.state_source = "account"
        self.cooldown_until: float | None = None
        self.positions: dict[str, Position] = {}  # open positions by symbol
        self.orders: dict[str, OrderRecord] = {}  # active protective / resting orders by id
        self.recent_order_times: collections.deque[float] = collections.deque(maxlen=512)
        self.peak_equity = settings.balance
        self.day_start_equity = settings.balance
        self.day: int | None = None
        self.funded_until: dict[str, int] = {}  # position id -> last funding time paid (epoch ms)
        self.recent: collections.OrderedDict[str, tuple[str, bytes]] = collections.OrderedDict()
        self.last_error: str | None = None

    @property
    def balance(self) -> Decimal:
        return self.initial_balance + self.realized_pnl - self.fees + self.funding

    @property
    def margin(self) -> Decimal:
        return sum((p.margin for p in self.positions.values()), ZERO)

    def unrealized(self, market: MarketData) -> Decimal:
        total = ZERO
        for position in self.positions.values():
            quote = market.quote(position.symbol)
            if quote is not None:
                total += position.unrealized_pnl(quote.mark_price)
        return total

    def equity(self, market: MarketData) -> Decimal:
        return self.balance + self.unrealized(market)

    def row(self) -> dict[str, Any]:
        return {
            "id": self.account_id, "mode": self.settings.mode, "venue": self.settings.venue,
            "initial_balance": text(self.initial_balance), "balance": text(self.balance),
            "realized_pnl": text(self.realized_pnl), "fees": text(self.fees),
            "funding": text(self.funding), "trading_state": self.trading_state,
            "state_reason": self.state_reason, "state_source": self.state_source,
            "cooldown_until": self.cooldown_until, "peak_equity": text(self.peak_equity),
            "day_start_equity": text(self.day_start_equity), "day": self.day,
            "risk_overrides": msgspec.json.encode(self.limits).decode(),
            "settings": msgspec.json.encode(self.settings).decode(),
        }


class Plan:
    """The outcome of handling one message, before it is committed."""

    def __init__(self, state: AccountState, now: float) -> None:
        self.now = now
        self.statements: list[Statement] = []
        self.events: list[EventRecord] = []
        self.realized = ZERO
        self.fees = ZERO
        self.funding = ZERO
        self.positions: dict[str, Position] = {}  # symbol -> new position value (closed included)
        self.funded_until: dict[str, int] = {}
        self.orders: dict[str, OrderRecord] = {}
        self.order_times: list[float] = []  # orders sent, for the rate limits (applied at commit)
        self.alarms_add: list[Alarm] = []
        self.alarms_next_update: list[Alarm] = []  # first checked on the venue's next update
        self.alarms_cancel: list[str] = []
        self.cooldown_until: float | None | bool = False  # False: unchanged
        self._state = state

    def event(self, type_: str, payload: dict[str, Any]) -> None:
        self.events.append(EventRecord(
            type=type_, account_id=self._state.account_id, is_paper=self._state.is_paper,
            ts=self.now, payload=payload,
        ))

    def position(self, symbol: str) -> Position | None:
        if symbol in self.positions:
            return self.positions[symbol]
        return self._state.positions.get(symbol)


# ----------------------------------------------------------------------------------- actor


class AccountActor:
    def __init__(self, ctx: AccountContext, state: AccountState) -> None:
        self.ctx = ctx
        self.state = state
        self.adapter = PaperAdapter(ctx.market)
        self.mailbox: Mailbox = ctx.mailbox
        self.crash_next_decision = False

    # ---- identity helpers

    @property
    def account_id(self) -> str:
        return self.state.account_id

    def now(self) -> float:
        return self.ctx.clock.now()

    # ---- the loop

    async def run(self, task_status: trio.TaskStatus[None]) -> None:
        await self._register_alarms_for_all()
        task_status.started()
        mailbox = self.mailbox
        next_housekeeping = trio.current_time() + HOUSEKEEPING_SECONDS
        while True:
            while mailbox.priority:
                envelope = mailbox.priority.popleft()
                await self._handle(envelope)
            # An absolute schedule: steady traffic must not starve the loss watcher, funding and
            # the trigger safety net. An idle account with nothing to watch sleeps until a message.
            if trio.current_time() >= next_housekeeping:
                if self._needs_housekeeping():
                    await self._housekeeping()
                next_housekeeping = trio.current_time() + HOUSEKEEPING_SECONDS
                continue
            deadline = next_housekeeping if self._needs_housekeeping() else math.inf
            with trio.CancelScope(deadline=deadline) as idle:
                mailbox.idle_scope = idle
                try:
                    envelope = await mailbox.inbox_receive.receive()
                except trio.EndOfChannel:
                    return
                finally:
                    mailbox.idle_scope = None
            if idle.cancelled_caught:
                continue
            await self._handle(envelope)

    def _needs_housekeeping(self) -> bool:
        state = self.state
        return bool(state.positions or state.orders or state.trading_state != "active")

    async def _handle(self, envelope: Envelope) -> None:
        # ``current`` stays set if the handler raises: the supervisor answers it with an error.
        self.mailbox.current = envelope
        try:
            result = await self._dispatch(envelope.msg)
        except (DecisionConflict, ProtectionError) as exc:
            if envelope.reply is not None:
                envelope.reply.fail(exc)
        else:
            if envelope.reply is not None:
                envelope.reply.set(result)
        self.mailbox.current = None

    async def _dispatch(self, msg: Any) -> Any:
        match msg:
            case SubmitDecision():
                return await self._submit_decision(msg)
            case AlarmFired():
                return await self._alarm_fired(msg)
            case CloseAll(reason=reason):
                return await self._close_all(reason)
            case SetTradingState(state=state, reason=reason, source=source):
                return await self._set_trading_state(state, reason, source)
            case UpdateRiskLimits(limits=limits):
                return await self._update_limits(limits)
            case SetProtection():
                return await self._set_protection(msg)
            case CancelOrder(order_id=order_id):
                return await self._cancel_order(order_id)
            case InjectCrash(where=where):
                if where == "now":
                    raise InjectedCrash(f"injected crash in account {self.account_id}")
                self.crash_next_decision = True
                return None
            case _:
                raise TypeError(f"account actor got an unknown message {type(msg).__name__}")

    # ---- commit

    async def _commit(self, plan: Plan) -> None:
        """Make the plan durable, then apply it to memory and to the alarm index."""
        state = self.state
        plan.statements.append(upsert("accounts", self._account_row_after(plan)))
        with trio.CancelScope(shield=True):
            await self.ctx.persistence.commit(plan.statements, plan.events)
            state.realized_pnl += plan.realized
            state.fees += plan.fees
            state.funding += plan.funding
            acquired, released = [], []
            for symbol, position in plan.positions.items():
                if position.is_open:
                    if symbol not in state.positions:
                        acquired.append(symbol)
                    state.positions[symbol] = position
                elif state.positions.pop(symbol, None) is not None:
                    released.append(symbol)
            for order_id, order in plan.orders.items():
                if order.status in ("NEW", "PARTIALLY_FILLED") and order.type != "MARKET":
                    state.orders[order_id] = order
                else:
                    state.orders.pop(order_id, None)
            if plan.cooldown_until is not False:
                state.cooldown_until = plan.cooldown_until  # type: ignore[assignment]
            state.funded_until.update(plan.funded_until)
            state.recent_order_times.extend(plan.order_times)
            if self.ctx.record_global_order is not None and plan.order_times:
                committed_at = self.now()  # commit order is time order across accounts
                for _ in plan.order_times:
                    self.ctx.record_global_order(committed_at)
            market = self.ctx.market
            for symbol in acquired:  # live feeds keep the symbols of open positions subscribed
                await market.acquire(symbol, self.account_id)
            for symbol in released:
                await market.release(symbol, self.account_id)
            if plan.alarms_cancel:
                await market.cancel_alarms(*plan.alarms_cancel)
            for alarm in plan.alarms_add:
                await market.add_alarm(alarm)
            for alarm in plan.alarms_next_update:
                await market.add_alarm(alarm, check_now=False)

    def _account_row_after(self, plan: Plan) -> dict[str, Any]:
        row = self.state.row()
        row["balance"] = text(self.state.balance + plan.realized - plan.fees + plan.funding)
        row["realized_pnl"] = text(self.state.realized_pnl + plan.realized)
        row["fees"] = text(self.state.fees + plan.fees)
        row["funding"] = text(self.state.funding + plan.funding)
        if plan.cooldown_until is not False:
            row["cooldown_until"] = plan.cooldown_until
        row["updated_at"] = plan.now
        return row

    # ---- decisions

    async def _submit_decision(self, msg: SubmitDecision) -> bytes:
        try:
            return await self._decide(msg)
        finally:
            self.mailbox.pending_decisions.pop(msg.decision.decision_id, None)

    async def _decide(self, msg: SubmitDecision) -> bytes:
        decision = msg.decision
        # Idempotency: recent ids are answered from memory; an older id is caught by the unique
        # index on (account_id, decision_id) when its commit fails, before anything is applied,
        # so a new decision (the common case) costs no extra database round.
        cached = self.state.recent.get(decision.decision_id)
        if cached is not None:
            return self._replay_stored(decision.decision_id, cached, msg.fingerprint)
        if self.crash_next_decision:
            self.crash_next_decision = False
            raise InjectedCrash(f"injected crash in account {self.account_id} while handling a decision")
        consumed = self.adapter.snapshot()  # restored if the commit is refused (a resent id)
        with trio.CancelScope() as work:
            self.mailbox.work_scope = work
            try:
                if self.ctx.paper_latency > 0:
                    await trio.sleep(self.ctx.paper_latency)  # the order's trip to the venue
                plan, result = self._plan_decision(decision, self.now())
            finally:
                self.mailbox.work_scope = None
        if work.cancelled_caught:
            now = self.now()
            plan = Plan(self.state, now)
            result = self._rejected(plan, decision, Rejection(
                code="CANCELLED", message="cancelled by an emergency close-all before it was executed",
            ), checks=())
        encoded = msgspec.json.encode(result)
        plan.statements.append(Statement(
            "INSERT INTO decisions (account_id, decision_id, fingerprint, request, status, result, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self.account_id, decision.decision_id, msg.fingerprint, msg.request_json,
             result["status"], encoded.decode(), plan.now),
        ))
        try:
            await self._commit(plan)
        except sqlite3.IntegrityError:
            stored = await self._stored_decision(decision.decision_id)
            if stored is None:
                raise
            self.adapter.restore(consumed)
            self._remember(decision.decision_id, *stored)
            return self._replay_stored(decision.decision_id, stored, msg.fingerprint)
        self._remember(decision.decision_id, msg.fingerprint, encoded)
        return encoded

    @staticmethod
    def _replay_stored(decision_id: str, stored: tuple[str, bytes], fingerprint: str) -> bytes:
        if stored[0] != fingerprint:
            raise DecisionConflict(f"decision_id {decision_id!r} was already used with a different body")
        return stored[1]

    def _remember(self, decision_id: str, fingerprint: str, encoded: bytes) -> None:
        recent = self.state.recent
        recent[decision_id] = (fingerprint, encoded)
        if len(recent) > RECENT_DECISIONS:
            recent.popitem(last=False)

    async def _stored_decision(self, decision_id: str) -> tuple[str, bytes] | None:
        rows = await self.ctx.persistence.query(
            "SELECT fingerprint, result FROM decisions WHERE account_id = ? AND decision_id = ?",
            (self.account_id, decision_id),
        )
        if not rows:
            return None
        return rows[0][0], rows[0][1].encode()

    def _account_view(self, now: float) -> AccountView:
        state = self.state
        market = self.ctx.market
        marks: dict[str, Decimal] = {}
        for symbol in state.positions:
            quote = market.quote(symbol)
            if quote is not None:
                marks[symbol] = quote.mark_price
        return AccountView(
            account_id=state.account_id,
            trading_state=state.trading_state,  # type: ignore[arg-type]
            global_state=self.ctx.global_state(),
            balance=state.balance,
            positions=tuple(state.positions.values()),
            open_orders_notional=sum((o.remaining * (o.price or ZERO) for o in state.orders.values()
                                      if o.is_resting and not o.reduce_only), ZERO),
            open_orders_margin=sum((o.remaining * (o.price or ZERO) / (o.leverage or 1) for o in state.orders.values()
                                    if o.is_resting and not o.reduce_only), ZERO),
            cooldown_until=state.cooldown_until,
            recent_order_times=tuple(state.recent_order_times),
            global_recent_order_times=self._global_order_times(),
            day_start_equity=state.day_start_equity,
            peak_equity=state.peak_equity,
            day=state.day,
            marks=marks,
        )

    def _global_order_times(self) -> tuple[float, ...]:
        limits = self.ctx.global_limits
        if limits is None or (limits.max_orders_per_second is None and limits.max_orders_per_minute is None):
            return ()
        return tuple(self.ctx.global_order_times)

    def effective_state(self) -> str:
        return stricter_state(self.state.trading_state, self.ctx.global_state())  # type: ignore[arg-type]

    def _plan_decision(self, decision: Decision, now: float) -> tuple[Plan, dict[str, Any]]:
        plan = Plan(self.state, now)
        self._roll_day(now)
        market = self.ctx.market
        instrument = market.instrument(decision.symbol)
        quote = market.quote(decision.symbol)
        verdict = evaluate(
            decision, self._account_view(now), MarketView(instrument=instrument, quote=quote),
            self.state.limits, now, global_limits=self.ctx.global_limits,
        )
        if not verdict.accepted:
            assert verdict.rejection is not None
            rejection = Rejection(
                code=verdict.rejection.code, message=verdict.rejection.message,
                details=dict(verdict.rejection.details),
            )
            return plan, self._rejected(plan, decision, rejection, verdict.checks)
        assert instrument is not None and quote is not None
        if decision.action == "open":
            return plan, self._plan_open(plan, decision, instrument, quote, verdict)
        return plan, self._plan_close(plan, decision, instrument, quote, verdict)

    def _audit(self, plan: Plan, decision: Decision, checks: Iterable[Any], rejection: Rejection | None) -> None:
        plan.statements.append(Statement(
            "INSERT INTO audit (account_id, decision_id, ts, accepted, code, message, checks) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self.account_id, decision.decision_id, plan.now, int(rejection is None),
             rejection.code if rejection else None, rejection.message if rejection else None,
             msgspec.json.encode([{"name": c.name, "passed": c.passed, "detail": c.detail} for c in checks]).decode()),
        ))

    def _rejected(self, plan: Plan, decision: Decision, rejection: Rejection, checks: Iterable[Any],
                  order: OrderRecord | None = None) -> dict[str, Any]:
        self._audit(plan, decision, checks, rejection)
        plan.event("decision.rejected", {"decision_id": decision.decision_id, "code": rejection.code,
                                         "message": rejection.message})
        if order is not None:
            plan.orders[order.id] = order
            plan.statements.append(order.statement())
            plan.event("order.failed", {"order_id": order.id, "code": order.reject_code,
                                        "message": order.reject_message})
        return self._result(plan, decision, "rejected", order=order, fills=(), rejection=rejection)

    def _venue_rejected(self, plan: Plan, decision: Decision, verdict: RiskVerdict, order: OrderRecord,
                        reject: VenueReject, **details: str) -> dict[str, Any]:
        """A decision the gate accepted but the venue would refuse: stored with the venue's code."""
        order.status, order.reject_code, order.reject_message = "REJECTED", str(reject.code), reject.msg
        return self._rejected(plan, decision, Rejection(
            code="VENUE_REJECTED", message=f"the venue would reject this order: {reject.msg}",
            details={"venue_code": str(reject.code), "venue_message": reject.msg, **details},
        ), verdict.checks, order=order)

    def _result(self, plan: Plan, decision: Decision, status: str, *, order: OrderRecord | None,
                fills: Iterable[FillRecord], rejection: Rejection | None = None,
                position: Position | None = None) -> dict[str, Any]:
        mark = None
        if position is not None:
            quote = self.ctx.market.quote(position.symbol)
            mark = quote.mark_price if quote is not None else None
        protective: list[OrderRecord] = []
        if position is not None:  # the plan's version of an order wins over the committed one
            orders = {**self.state.orders, **plan.orders}
            protective = [o for o in orders.values()
                          if o.position_id == position.id and o.purpose in ("take_profit", "stop_loss")]
        return {
            "decision_id": decision.decision_id,
            "account_id": self.account_id,
            "status": status,
            "is_paper": self.state.is_paper,
            "symbol": decision.symbol,
            "action": decision.action,
            "rejection": None if rejection is None else {
                "code": rejection.code, "message": rejection.message, "details": rejection.details,
            },
            "order": None if order is None else order.view(),
            "fills": [f.view() for f in fills],
            "position": None if position is None else position_view(position, mark),
            "protective_orders": [o.view() for o in protective],
            "balance": fmt(self.state.balance + plan.realized - plan.fees + plan.funding),
            "created_at": plan.now,
        }

    def _order(self, plan: Plan, *, order_id: str, decision_id: str | None, position_id: str, symbol: str,
               side: str, type_: str, purpose: str, reduce_only: bool, quantity: Decimal | None,
               trigger_price: Decimal | None = None) -> OrderRecord:
        return OrderRecord(
            id=order_id, account_id=self.account_id, decision_id=decision_id, position_id=position_id,
            symbol=symbol, side=side, type=type_, purpose=purpose, reduce_only=reduce_only,
            quantity=quantity, trigger_price=trigger_price, created_at=plan.now, updated_at=plan.now,
        )

    def _plan_open(self, plan: Plan, decision: Decision, instrument: Instrument, quote: Quote,
                   verdict: RiskVerdict) -> dict[str, Any]:
        assert decision.side is not None
        existing = self.state.positions.get(decision.symbol)
        leverage = decision.leverage or (existing.leverage if existing else self.state.settings.default_leverage)
        if existing is not None and leverage != existing.leverage:
            return self._rejected(plan, decision, Rejection(
                code="LEVERAGE_MISMATCH",
                message=f"the open {decision.symbol} position is at {existing.leverage}x; increase it at "
                        f"{existing.leverage}x or close it first (asked {leverage}x)",
                details={"position_leverage": str(existing.leverage), "requested": str(leverage)},
            ), verdict.checks)
        mark = quote.mark_price
        if decision.quantity is not None:
            quantity = round_step_down(decision.quantity, instrument.filters.step_size)
        else:
            assert decision.notional is not None
            quantity = round_step_down(decision.notional / mark, instrument.filters.step_size)
        side = entry_side(decision.side)
        position = existing or new_position(
            position_id=f"{self.account_id}.{decision.decision_id}", account_id=self.account_id,
            symbol=decision.symbol, side=decision.side, leverage=leverage, now=plan.now,
            opened_by=decision.decision_id,
        )
        order = self._order(
            plan, order_id=f"{decision.decision_id}.entry", decision_id=decision.decision_id,
            position_id=position.id, symbol=decision.symbol, side=side, type_="MARKET",
            purpose="entry", reduce_only=False, quantity=quantity,
        )
        if decision.order_type == "limit":
            order.leverage = leverage
            order.take_profit, order.stop_loss = decision.take_profit, decision.stop_loss
            reject = _leverage_reject(instrument, leverage, (position.quantity + quantity) * mark) if quantity > 0 else None
            return self._plan_limit(plan, decision, instrument, quote, verdict, order, position, reject)
        if quantity > 0:
            reject = _leverage_reject(instrument, leverage, (position.quantity + quantity) * mark)
            if reject is not None:
                return self._venue_rejected(plan, decision, verdict, order, reject, quantity=fmt(quantity) or "0")
        report = self.adapter.execute_market(
            OrderRequest(order_id=order.id, symbol=decision.symbol, side=side, quantity=quantity,
                         max_slippage_bps=self._slippage(decision)),
            quote, instrument,
        )
        if report.reject is not None:
            return self._venue_rejected(plan, decision, verdict, order, report.reject, quantity=fmt(quantity) or "0")
        self._audit(plan, decision, verdict.checks, None)
        plan.event("decision.accepted", {"decision_id": decision.decision_id})
        fills = self._apply_fills(plan, order, report, position, opening=True, decision_id=decision.decision_id)
        position = plan.positions[decision.symbol]
        if decision.take_profit is not None or decision.stop_loss is not None:
            position = self._protect(plan, position, decision.take_profit, decision.stop_loss,
                                     decision_id=decision.decision_id)
        plan.cooldown_until = cooldown_until_after(plan.now, self.state.limits)
        status = "filled" if report.status == "FILLED" else "partially_filled"
        return self._result(plan, decision, status, order=order, fills=fills, position=position)

    def _plan_close(self, plan: Plan, decision: Decision, instrument: Instrument, quote: Quote,
                    verdict: RiskVerdict) -> dict[str, Any]:
        position = self.state.positions[decision.symbol]
        quantity = position.quantity if decision.quantity is None else min(decision.quantity, position.quantity)
        quantity = round_step_down(quantity, instrument.filters.step_size)
        order = self._order(
            plan, order_id=f"{decision.decision_id}.exit", decision_id=decision.decision_id,
            position_id=position.id, symbol=decision.symbol, side=exit_side(position.side), type_="MARKET",
            purpose="exit", reduce_only=True, quantity=quantity,
        )
        if decision.order_type == "limit":
            return self._plan_limit(plan, decision, instrument, quote, verdict, order, position, None)
        report = self.adapter.execute_market(
            OrderRequest(order_id=order.id, symbol=decision.symbol, side=exit_side(position.side),
                         quantity=quantity, reduce_only=True, max_slippage_bps=self._slippage(decision)),
            quote, instrument,
        )
        if report.reject is not None:
            return self._venue_rejected(plan, decision, verdict, order, report.reject)
        self._audit(plan, decision, verdict.checks, None)
        plan.event("decision.accepted", {"decision_id": decision.decision_id})
        fills = self._apply_fills(plan, order, report, position, opening=False, decision_id=decision.decision_id,
                                  reason="decision")
        plan.cooldown_until = cooldown_until_after(plan.now, self.state.limits)
        status = "filled" if report.status == "FILLED" else "partially_filled"
        return self._result(plan, decision, status, order=order, fills=fills, position=plan.positions[decision.symbol])

    def _plan_limit(self, plan: Plan, decision: Decision, instrument: Instrument, quote: Quote,
                    verdict: RiskVerdict, order: OrderRecord, position: Position, reject: Any) -> dict[str, Any]:
        """A limit order: what crosses on arrival fills now (taker), the rest rests on the book."""
        assert decision.price is not None
        order.type, order.price = "LIMIT", decision.price
        request = OrderRequest(order_id=order.id, symbol=order.symbol, side=order.side,  # type: ignore[arg-type]
                               quantity=order.quantity or ZERO, reduce_only=order.reduce_only)
        reject = reject or self.adapter.validate_limit(request, decision.price, quote, instrument)
        if reject is not None:
            return self._venue_rejected(plan, decision, verdict, order, reject)
        self._audit(plan, decision, verdict.checks, None)
        plan.event("decision.accepted", {"decision_id": decision.decision_id})
        report = self.adapter.execute_limit(request, decision.price, quote, instrument, resting=False)
        fills: list[FillRecord] = []
        if report.filled > 0:
            fills = self._apply_fills(plan, order, report, position, opening=not order.reduce_only,
                                      decision_id=decision.decision_id, reason="decision", rests=True)
            position = plan.positions[order.symbol]
            if not order.reduce_only and (order.take_profit is not None or order.stop_loss is not None):
                position = self._protect(plan, position, order.take_profit, order.stop_loss,
                                         decision_id=decision.decision_id)
            plan.cooldown_until = cooldown_until_after(plan.now, self.state.limits)
        else:
            order.status = "NEW"
            plan.orders[order.id] = order
            plan.statements.append(order.statement())
            plan.event("order.placed", {"order_id": order.id, "symbol": order.symbol, "side": order.side,
                                        "order_type": "LIMIT", "purpose": order.purpose,
                                        "quantity": fmt(order.quantity), "price": fmt(order.price)})
        if order.remaining > 0:
            plan.alarms_next_update.append(self._limit_alarm(order))
        status = "filled" if order.remaining == 0 else ("partially_filled" if report.filled > 0 else "resting")
        shown = plan.positions.get(order.symbol, self.state.positions.get(order.symbol))
        return self._result(plan, decision, status, order=order, fills=fills, position=shown)

    def _limit_alarm(self, order: OrderRecord) -> Alarm:
        """A buy fills when the best ask comes down to its price, a sell when the best bid rises to it."""
        assert order.price is not None
        buy = order.side == "BUY"
        return Alarm(alarm_id=order.id, account_id=self.account_id, symbol=order.symbol,
                     price_type="ask" if buy else "bid", direction="below" if buy else "above",
                     threshold=order.price, kind="limit", ref=order.id)

    async def _limit_crossed(self, order: OrderRecord) -> None:
        market = self.ctx.market
        quote, instrument = market.quote(order.symbol), market.instrument(order.symbol)
        if quote is None or instrument is None or not order.is_resting or order.price is None:
            return
        plan = Plan(self.state, self.now())
        order = msgspec.structs.replace(order)
        position = self.state.positions.get(order.symbol)
        quantity = order.remaining
        if order.reduce_only:
            if position is None or exit_side(position.side) != order.side:
                order.status, order.updated_at = "EXPIRED", plan.now
                order.reject_code, order.reject_message = "-2022", "ReduceOnly Order is rejected."
                plan.orders[order.id] = order
                plan.statements.append(order.statement())
                plan.event("order.canceled", {"order_id": order.id, "reason": "reduce-only order with no position"})
                await self._commit(plan)
                return
            quantity = min(quantity, position.quantity)
        elif position is None:
            side = "long" if order.side == "BUY" else "short"
            position = new_position(position_id=order.position_id or f"{self.account_id}.{order.decision_id}",
                                    account_id=self.account_id, symbol=order.symbol, side=side,
                                    leverage=order.leverage or self.state.settings.default_leverage,
                                    now=plan.now, opened_by=order.decision_id or "")
        request = OrderRequest(order_id=order.id, symbol=order.symbol, side=order.side,  # type: ignore[arg-type]
                               quantity=quantity, reduce_only=order.reduce_only)
        report = self.adapter.execute_limit(request, order.price, quote, instrument, resting=True)
        if report.filled > 0:
            # unique per match: the quantity filled before it strictly grows from match to match
            report = _renumber(report, f"{order.id}.after-{fmt(order.filled_quantity)}")
            first_fill = order.filled_quantity == 0
            self._apply_fills(plan, order, report, position, opening=not order.reduce_only,
                              decision_id=order.decision_id, reason="decision", rests=True)
            if first_fill and not order.reduce_only and (order.take_profit or order.stop_loss):
                self._protect(plan, plan.positions[order.symbol], order.take_profit, order.stop_loss,
                              decision_id=order.decision_id)
        if order.remaining > 0 and order.status in ("NEW", "PARTIALLY_FILLED"):
            plan.alarms_next_update.append(self._limit_alarm(order))
        await self._commit(plan)

    def _slippage(self, decision: Decision) -> Decimal | None:
        return decision.max_slippage_bps or self.state.settings.max_slippage_bps

    def _apply_fills(self, plan: Plan, order: OrderRecord, report: ExecutionReport, position: Position, *,
                     opening: bool, decision_id: str | None, reason: str = "decision",
                     trigger_price: Decimal | None = None, rests: bool = False) -> list[FillRecord]:
        fills: list[FillRecord] = []
        was_open = position.is_open
        for sim_fill in report.fills:
            if opening:
                effect = apply_open_fill(position, sim_fill.quantity, sim_fill.price, sim_fill.fee, plan.now)
            else:
                effect = apply_close_fill(position, sim_fill.quantity, sim_fill.price, sim_fill.fee, plan.now,
                                          reason=reason)
            position = effect.position
            plan.realized += effect.realized_pnl
            plan.fees += sim_fill.fee
            record = FillRecord(
                id=sim_fill.id, account_id=self.account_id, order_id=order.id, decision_id=decision_id,
                position_id=position.id, symbol=order.symbol, side=order.side, quantity=sim_fill.quantity,
                price=sim_fill.price, fee=sim_fill.fee, liquidity=sim_fill.liquidity,
                realized_pnl=effect.realized_pnl, trigger_price=trigger_price,
                top_of_book_only=sim_fill.top_of_book_only, ts=plan.now,
            )
            fills.append(record)
            plan.statements.append(record.statement())
        previous = order.filled_quantity
        order.filled_quantity = previous + report.filled
        if report.avg_price is not None:
            order.avg_price = (report.avg_price if previous == 0 or order.avg_price is None else
                               (order.avg_price * previous + report.avg_price * report.filled) / order.filled_quantity)
        order.fee = order.fee + report.fee
        if order.quantity is not None and order.filled_quantity >= order.quantity:
            order.status = "FILLED"
        else:  # a market order's unfilled rest is cancelled by the venue; a limit order's rests
            order.status = "PARTIALLY_FILLED" if rests else "EXPIRED"
        order.updated_at = plan.now
        plan.orders[order.id] = order
        plan.statements.append(order.statement())
        plan.event("order.placed", {"order_id": order.id, "symbol": order.symbol, "side": order.side,
                                    "order_type": order.type, "purpose": order.purpose,
                                    "quantity": fmt(order.quantity)})
        plan.event("order.filled", {"order_id": order.id, "filled_quantity": fmt(report.filled),
                                    "avg_price": fmt(report.avg_price), "fee": fmt(report.fee),
                                    "status": report.status, "trigger_price": fmt(trigger_price)})
        plan.order_times.append(plan.now)
        position = self._with_liquidation_price(position)
        plan.positions[position.symbol] = position
        plan.statements.append(position_statement(position))
        if opening and not was_open:
            plan.event("trade.opened", {"position_id": position.id, "symbol": position.symbol,
                                        "side": position.side, "quantity": fmt(position.quantity),
                                        "entry_price": fmt(position.entry_price), "leverage": position.leverage})
        plan.event("position.updated", position_view(position))
        if not position.is_open:
            plan.event("trade.closed", {"position_id": position.id, "symbol": position.symbol,
                                        "reason": position.close_reason, "exit_price": fmt(position.exit_price),
                                        "realized_pnl": fmt(position.realized_pnl), "fees": fmt(position.fees),
                                        "funding": fmt(position.funding), "net_pnl": fmt(position.net_pnl)})
            self._cancel_protection(plan, position, reason=f"position {position.close_reason}")
        else:
            self._refresh_liquidation_alarm(plan, position)
        return fills

    def _with_liquidation_price(self, position: Position) -> Position:
        if not position.is_open:
            return msgspec.structs.replace(position, liquidation_price=None)
        instrument = self.ctx.market.instrument(position.symbol)
        if instrument is None:
            return position
        price = margin_math.liquidation_price(instrument, position.side, position.quantity,
                                              position.entry_price, position.margin)
        if price is not None:  # on the tick grid, rounded towards the entry (the earlier trigger)
            price = round_to_tick(price, instrument.filters.tick_size, up=position.side == "long")
        return msgspec.structs.replace(position, liquidation_price=price)

    def _refresh_liquidation_alarm(self, plan: Plan, position: Position) -> None:
        alarm_id = f"{position.id}:liquidation"
        if position.liquidation_price is None:
            plan.alarms_cancel.append(alarm_id)
            return
        plan.alarms_add.append(Alarm(
            alarm_id=alarm_id, account_id=self.account_id, symbol=position.symbol, price_type="mark",
            direction="below" if position.side == "long" else "above",
            threshold=position.liquidation_price, kind="liquidation", ref=position.id,
        ))

    # ---- protection (take-profit / stop-loss)

    def _protect(self, plan: Plan, position: Position, take_profit: Decimal | None, stop_loss: Decimal | None,
                 *, decision_id: str | None) -> Position:
        """Place (or move) the position's trigger orders: stop-loss first, then take-profit."""
        for purpose, price in (("stop_loss", stop_loss), ("take_profit", take_profit)):
            if price is None:
                continue
            order_id = f"{position.id}:{purpose}"
            previous = self.state.orders.get(order_id) or plan.orders.get(order_id)
            order = self._order(
                plan, order_id=order_id, decision_id=decision_id, position_id=position.id, symbol=position.symbol,
                side=exit_side(position.side), type_="STOP_MARKET" if purpose == "stop_loss" else "TAKE_PROFIT_MARKET",
                purpose=purpose, reduce_only=True, quantity=None, trigger_price=price,
            )
            if previous is not None:
                order.created_at = previous.created_at
            plan.orders[order_id] = order
            plan.statements.append(order.statement())
            plan.alarms_add.append(self._trigger_alarm(position, order))
            plan.event("protection.placed", {"position_id": position.id, "order_id": order_id,
                                             "order_type": order.type, "trigger_price": fmt(price)})
        position = msgspec.structs.replace(
            position,
            take_profit=take_profit if take_profit is not None else position.take_profit,
            stop_loss=stop_loss if stop_loss is not None else position.stop_loss,
        )
        plan.positions[position.symbol] = position
        plan.statements.append(position_statement(position))
        return position

    def _cancel_protection(self, plan: Plan, position: Position, *, reason: str, keep: str | None = None) -> None:
        for purpose in ("stop_loss", "take_profit"):
            order_id = f"{position.id}:{purpose}"
            if order_id == keep:
                continue
            order = plan.orders.get(order_id) or self.state.orders.get(order_id)
            plan.alarms_cancel.append(order_id)
            if order is None or order.status not in ("NEW", "PARTIALLY_FILLED"):
                continue
            order = msgspec.structs.replace(order, status="CANCELED", updated_at=plan.now)
            plan.orders[order_id] = order
            plan.statements.append(order.statement())
            plan.event("order.canceled", {"order_id": order_id, "reason": reason})
        plan.alarms_cancel.append(f"{position.id}:liquidation")

    async def _set_protection(self, msg: SetProtection) -> dict[str, Any]:
        position = self.state.positions.get(msg.symbol)
        if position is None:
            raise ProtectionError("NO_POSITION", f"no open {msg.symbol} position to protect")
        quote = self.ctx.market.quote(msg.symbol)
        mark = quote.mark_price if quote is not None else position.entry_price
        problem = _tpsl_problem(position.side, mark, msg.take_profit, msg.stop_loss)
        if problem:
            raise ProtectionError("INVALID_TPSL", problem)
        plan = Plan(self.state, self.now())
        position = self._protect(plan, position, msg.take_profit, msg.stop_loss, decision_id=None)
        await self._commit(plan)
        return position_view(position, mark)

    # ---- alarms: take-profit, stop-loss, liquidation

    async def _alarm_fired(self, msg: AlarmFired) -> None:
        if msg.kind == "limit":
            order = self.state.orders.get(msg.alarm_id)
            if order is not None and order.price == msg.threshold:
                await self._limit_crossed(order)
            return
        position = self.state.positions.get(msg.symbol)
        if position is None or position.id != msg.ref:
            return  # stale alarm: the position is gone
        if msg.kind == "liquidation":
            await self._liquidate(position, msg.price)
            return
        order = self.state.orders.get(msg.alarm_id)
        if order is None or order.status not in ("NEW", "PARTIALLY_FILLED") or order.trigger_price != msg.threshold:
            return  # cancelled or moved since
        await self._trigger(position, order, msg.price)

    async def _trigger(self, position: Position, order: OrderRecord, price: Decimal) -> None:
        market = self.ctx.market
        quote, instrument = market.quote(position.symbol), market.instrument(position.symbol)
        if quote is None or instrument is None:
            return
        plan = Plan(self.state, self.now())
        report = self.adapter.execute_market(
            OrderRequest(order_id=order.id, symbol=position.symbol, side=order.side, quantity=position.quantity,
                         reduce_only=True, max_slippage_bps=None, purpose=order.purpose,
                         trigger_price=order.trigger_price),
            quote, instrument,
        )
        if report.reject is not None or report.filled == 0:
            plan.event("order.failed", {"order_id": order.id, "code": report.reject.code if report.reject else None})
            plan.alarms_next_update.append(self._trigger_alarm(position, order))
            await self._commit(plan)
            return
        # a closePosition trigger: its size is what it filled so far plus what is still open
        order = msgspec.structs.replace(order, quantity=order.filled_quantity + position.quantity)
        if order.filled_quantity:  # a later match of the same trigger: unique fill ids
            report = _renumber(report, f"{order.id}.after-{fmt(order.filled_quantity)}")
        self._apply_fills(plan, order, report, position, opening=False, decision_id=None,
                          reason=order.purpose, trigger_price=order.trigger_price, rests=True)
        if plan.positions[position.symbol].is_open:  # the book ran out: the trigger stays armed
            plan.event("protection.partial", {"order_id": order.id, "filled_quantity": fmt(report.filled),
                                              "remaining": fmt(plan.positions[position.symbol].quantity)})
            plan.alarms_next_update.append(self._trigger_alarm(position, order))
        await self._commit(plan)

    def _trigger_alarm(self, position: Position, order: OrderRecord) -> Alarm:
        long = position.side == "long"
        take_profit = order.purpose == "take_profit"
        assert order.trigger_price is not None
        return Alarm(
            alarm_id=order.id, account_id=self.account_id, symbol=position.symbol,
            price_type=self.state.settings.trigger_price,
            direction=("above" if long else "below") if take_profit else ("below" if long else "above"),
            threshold=order.trigger_price, kind=order.purpose, ref=position.id,
        )

    async def _liquidate(self, position: Position, mark: Decimal) -> None:
        instrument = self.ctx.market.instrument(position.symbol)
        if instrument is None:
            return
        plan = Plan(self.state, self.now())
        price = margin_math.bankruptcy_price(position.side, position.quantity, position.entry_price, position.margin)
        if price is None:
            return
        fee = margin_math.liquidation_fee(instrument, position.quantity, price)
        order = self._order(
            plan, order_id=f"{position.id}:liquidation", decision_id=None, position_id=position.id,
            symbol=position.symbol, side=exit_side(position.side), type_="LIQUIDATION", purpose="liquidation",
            reduce_only=True, quantity=position.quantity, trigger_price=position.liquidation_price,
        )
        report = ExecutionReport(
            order_id=order.id, status="FILLED", requested=position.quantity, filled=position.quantity,
            avg_price=price, fee=fee,
            fills=(SimFill(id=f"{order.id}.1", price=price, quantity=position.quantity, fee=fee,
                           liquidity="taker", top_of_book_only=False),),
        )
        self._apply_fills(plan, order, report, position, opening=False, decision_id=None, reason="liquidation",
                          trigger_price=mark)
        plan.event("position.liquidated", {"position_id": position.id, "mark": fmt(mark),
                                           "bankruptcy_price": fmt(price), "fee": fmt(fee)})
        await self._commit(plan)

    # ---- orders

    async def _cancel_order(self, order_id: str) -> dict[str, Any]:
        order = self.state.orders.get(order_id)
        if order is None:
            raise ProtectionError("UNKNOWN_ORDER", f"no open order {order_id!r}")
        plan = Plan(self.state, self.now())
        order = msgspec.structs.replace(order, status="CANCELED", updated_at=plan.now)
        plan.orders[order_id] = order
        plan.statements.append(order.statement())
        plan.alarms_cancel.append(order_id)
        plan.event("order.canceled", {"order_id": order_id, "reason": "client"})
        position = self.state.positions.get(order.symbol)
        if position is not None and order.purpose in ("take_profit", "stop_loss"):
            changed = msgspec.structs.replace(position, **{order.purpose: None})
            plan.positions[position.symbol] = changed
            plan.statements.append(position_statement(changed))
        await self._commit(plan)
        return order.view()

    # ---- kill switches and states

    async def _close_all(self, reason: str) -> dict[str, Any]:
        """Shielded: cancel every open order, close every position reduce-only."""
        with trio.CancelScope(shield=True):
            cancelled: list[str] = []
            closed: list[dict[str, Any]] = []
            failed: list[dict[str, Any]] = []
            plan = Plan(self.state, self.now())
            for order_id, order in list(self.state.orders.items()):
                plan.orders[order_id] = msgspec.structs.replace(order, status="CANCELED", updated_at=plan.now)
                plan.statements.append(plan.orders[order_id].statement())
                plan.alarms_cancel.append(order_id)
                plan.event("order.canceled", {"order_id": order_id, "reason": reason})
                cancelled.append(order_id)
            market = self.ctx.market
            for symbol, position in list(self.state.positions.items()):
                quote, instrument = market.quote(symbol), market.instrument(symbol)
                if quote is None or instrument is None:
                    failed.append({"symbol": symbol, "reason": "no market data"})
                    continue
                order = self._order(
                    plan, order_id=f"{position.id}:close_all:{plan.now:.6f}", decision_id=None,
                    position_id=position.id, symbol=symbol, side=exit_side(position.side), type_="MARKET",
                    purpose="close_all", reduce_only=True, quantity=position.quantity,
                )
                report = self.adapter.execute_market(
                    OrderRequest(order_id=order.id, symbol=symbol, side=order.side, quantity=position.quantity,
                                 reduce_only=True, max_slippage_bps=None, purpose="close_all"),
                    quote, instrument,
                )
                if report.reject is not None:
                    failed.append({"symbol": symbol, "reason": report.reject.msg})
                    continue
                self._apply_fills(plan, order, report, position, opening=False, decision_id=None, reason="close_all")
                after = plan.positions[symbol]
                closed.append({"symbol": symbol, "position_id": position.id,
                               "quantity": fmt(report.filled), "avg_price": fmt(report.avg_price),
                               "remaining": fmt(after.quantity)})
            plan.event("account.close_all", {"reason": reason, "cancelled": cancelled, "closed": closed})
            await self._commit(plan)
            return {"account_id": self.account_id, "cancelled_orders": cancelled, "closed_positions": closed,
                    "failed": failed}

    async def _set_trading_state(self, state: str, reason: str | None, source: str) -> dict[str, Any]:
        previous = self.state.trading_state
        plan = Plan(self.state, self.now())
        self.state.trading_state, self.state.state_reason, self.state.state_source = state, reason, source
        plan.event("account.state_changed", {"from": previous, "to": state, "reason": reason, "source": source})
        await self._commit(plan)
        return {"account_id": self.account_id, "trading_state": state, "previous": previous, "reason": reason,
                "effective_state": self.effective_state()}

    async def _update_limits(self, limits: RiskLimits) -> dict[str, Any]:
        self.state.limits = limits
        plan = Plan(self.state, self.now())
        plan.event("account.risk_changed", {"limits": msgspec.to_builtins(limits)})
        await self._commit(plan)
        return msgspec.to_builtins(limits)

    # ---- housekeeping: funding, loss limits, trigger safety net

    async def _housekeeping(self) -> None:
        now = self.now()
        await self._pay_funding(now)
        await self._watch_losses(now)
        await self._recheck_triggers()

    async def _pay_funding(self, now: float) -> None:
        """Pay or receive funding for every funding time each open position has lived through.

        ``funded_until`` (per position, rebuilt from the database on a restart) makes this
        idempotent: a funding time is paid once, whether housekeeping runs a second or an hour
        after it. Mark and rate are those of the venue at the funding time when the market-data
        actor saw that settlement, else the current ones.
        """
        now_ms = int(now * 1000)
        state = self.state
        plan = Plan(state, now)
        for symbol, position in list(state.positions.items()):
            start = max(state.funded_until.get(position.id, 0), int(position.opened_at * 1000))
            for funding_time in margin_math.funding_times_between(start, now_ms):
                settlement = self.ctx.market.settlement(symbol, funding_time)
                if settlement is None:
                    quote = self.ctx.market.quote(symbol)
                    if quote is None or quote.mark is None:
                        break  # no mark yet: paid on a later round, still for this funding time
                    settlement = (quote.mark.mark, quote.mark.funding_rate)
                mark, rate = settlement
                position, amount = apply_funding(plan.positions.get(symbol, position), mark, rate, now)
                plan.positions[symbol] = position
                plan.funding += amount
                plan.funded_until[position.id] = funding_time
                plan.statements.append(Statement(
                    "INSERT INTO funding_payments (account_id, position_id, symbol, rate, mark, amount,"
                    " funding_time, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (self.account_id, position.id, symbol, text(rate), text(mark), text(amount), funding_time, now),
                ))
                plan.event("funding.paid", {"position_id": position.id, "symbol": symbol, "rate": fmt(rate),
                                            "mark": fmt(mark), "amount": fmt(amount), "funding_time": funding_time})
        if plan.positions:
            for position in plan.positions.values():
                plan.statements.append(position_statement(position))
            await self._commit(plan)

    def _roll_day(self, now: float) -> bool:
        """Start a new UTC day's loss count at the equity of its first moment the actor sees.

        Called before every risk evaluation and by the watcher; a flat account's equity does not
        move between midnight and its next decision, so rolling lazily is exact for it.
        """
        state = self.state
        day = utc_day(now)
        if state.day == day:
            return False
        state.day = day
        state.day_start_equity = state.equity(self.ctx.market)
        return True

    async def _watch_losses(self, now: float) -> None:
        state = self.state
        if self._roll_day(now) and state.state_source == "loss_limit" and state.state_reason \
                and "DAILY_LOSS_LIMIT" in state.state_reason:
            await self._set_trading_state("active", "new UTC day: daily loss limit reset", "loss_limit")
        equity = state.equity(self.ctx.market)
        if equity > state.peak_equity:
            state.peak_equity = equity
        breach: LossBreach | None = loss_state(self._account_view(now), equity, state.limits, now)
        if breach is None:
            return
        target = breach.action
        if stricter_state(state.trading_state, target) != state.trading_state:  # type: ignore[arg-type]
            await self._set_trading_state(target, f"{breach.code}: {breach.message}", "loss_limit")

    async def _recheck_triggers(self) -> None:
        """Safety net for alarms dropped under load: re-check every trigger against the market."""
        for position in list(self.state.positions.values()):
            quote = self.ctx.market.quote(position.symbol)
            if quote is None:
                continue
            mark = quote.mark_price
            if margin_math.is_liquidated(position.side, position.liquidation_price, mark):
                await self._liquidate(position, mark)
                continue
            for purpose in ("stop_loss", "take_profit"):
                order = self.state.orders.get(f"{position.id}:{purpose}")
                if order is None or order.trigger_price is None:
                    continue
                price = mark if self.state.settings.trigger_price == "mark" else (quote.book.mid or mark)
                if _trigger_crossed(position.side, purpose, order.trigger_price, price):
                    await self._trigger(position, order, price)
                    break

    async def _register_alarms_for_all(self) -> None:
        """After a (re)start: put every open position's alarms back in the index."""
        plan = Plan(self.state, self.now())
        for symbol in self.state.positions:
            await self.ctx.market.acquire(symbol, self.account_id)
        for position in self.state.positions.values():
            self._refresh_liquidation_alarm(plan, position)
            for order in self.state.orders.values():
                if order.position_id == position.id and order.purpose in ("take_profit", "stop_loss"):
                    plan.alarms_add.append(self._trigger_alarm(position, order))
        for order in self.state.orders.values():
            if order.is_resting:
                plan.alarms_add.append(self._limit_alarm(order))
        for alarm in plan.alarms_add:
            await self.ctx.market.add_alarm(alarm)


def _renumber(report: ExecutionReport, prefix: str) -> ExecutionReport:
    """Fill ids of a later match of a resting order: unique per match."""
    fills = tuple(msgspec.structs.replace(f, id=f"{prefix}.{i + 1}") for i, f in enumerate(report.fills))
    return msgspec.structs.replace(report, fills=fills)


class ProtectionError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _trigger_crossed(side: str, purpose: str, trigger: Decimal, price: Decimal) -> bool:
    long = side == "long"
    if purpose == "take_profit":
        return price >= trigger if long else price <= trigger
    return price <= trigger if long else price >= trigger


def _tpsl_problem(side: str, reference: Decimal, take_profit: Decimal | None, stop_loss: Decimal | None) -> str | None:
    long = side == "long"
    if take_profit is not None and (take_profit <= reference if long else take_profit >= reference):
        return (f"take_profit {fmt(take_profit)} must be {'above' if long else 'below'} the mark "
                f"{fmt(reference)} for a {side} position")
    if stop_loss is not None and (stop_loss >= reference if long else stop_loss <= reference):
        return (f"stop_loss {fmt(stop_loss)} must be {'below' if long else 'above'} the mark "
                f"{fmt(reference)} for a {side} position")
    return None


def _leverage_reject(instrument: Instrument, leverage: int, notional: Decimal) -> VenueReject | None:
    return check_leverage(instrument, leverage, notional)


# ----------------------------------------------------------------------------------- loading


async def load_account_state(ctx: AccountContext) -> AccountState:
    """Rebuild the account from the database (or create it on first start)."""
    settings = ctx.settings
    state = AccountState(settings.id, settings, ctx.limits)
    persistence = ctx.persistence
    rows = await persistence.query(
        "SELECT initial_balance, realized_pnl, fees, funding, trading_state, state_reason, state_source,"
        " cooldown_until, peak_equity, day_start_equity, day, risk_overrides FROM accounts WHERE id = ?",
        (settings.id,),
    )
    now = ctx.clock.now()
    if not rows:
        row = state.row()
        row["created_at"] = row["updated_at"] = now
        await persistence.commit([upsert("accounts", row)], [EventRecord(
            type="account.created", account_id=settings.id, is_paper=state.is_paper, ts=now,
            payload={"venue": settings.venue, "mode": settings.mode, "balance": fmt(settings.balance)},
        )])
        return state
    (initial, realized, fees, funding, trading_state, reason, source, cooldown, peak, day_start, day,
     risk_json) = rows[0]
    state.initial_balance = Decimal(initial)
    state.realized_pnl, state.fees, state.funding = Decimal(realized), Decimal(fees), Decimal(funding)
    state.trading_state, state.state_reason, state.state_source = trading_state, reason, source or "account"
    state.cooldown_until = cooldown
    state.peak_equity = Decimal(peak) if peak else state.initial_balance
    state.day_start_equity = Decimal(day_start) if day_start else state.initial_balance
    state.day = day
    if risk_json:
        state.limits = msgspec.json.decode(risk_json, type=RiskLimits)
    position_rows = await persistence.query(
        "SELECT * FROM positions WHERE account_id = ? AND status IN ('open', 'closing')", (settings.id,))
    columns = await _columns(persistence, "positions")
    for values in position_rows:
        position = position_from_row(dict(zip(columns, values)))
        state.positions[position.symbol] = position
    for position_id, funding_time in await persistence.query(
            "SELECT position_id, MAX(funding_time) FROM funding_payments WHERE account_id = ? GROUP BY position_id",
            (settings.id,)):
        state.funded_until[position_id] = funding_time
    for (created_at,) in await persistence.query(  # the rate limits survive a restart
            "SELECT created_at FROM orders WHERE account_id = ? AND created_at > ? AND filled_quantity != '0'"
            " ORDER BY created_at", (settings.id, now - 60)):
        state.recent_order_times.append(created_at)
    order_rows = await persistence.query(
        "SELECT * FROM orders WHERE account_id = ? AND status IN ('NEW', 'PARTIALLY_FILLED')", (settings.id,))
    order_columns = await _columns(persistence, "orders")
    for values in order_rows:
        order = OrderRecord.from_row(dict(zip(order_columns, values)))
        state.orders[order.id] = order
    return state


_COLUMNS: dict[str, list[str]] = {}


async def _columns(persistence: Persistence, table: str) -> list[str]:
    if table not in _COLUMNS:
        rows = await persistence.query(f"PRAGMA table_info({table})")
        _COLUMNS[table] = [r[1] for r in rows]
    return _COLUMNS[table]


async def account_actor(ctx: AccountContext, *, task_status: trio.TaskStatus[AccountActor] = trio.TASK_STATUS_IGNORED) -> None:
    """Load the account from the database, then serve its mailbox until the inbox closes."""
    state = await load_account_state(ctx)
    actor = AccountActor(ctx, state)
    await actor.run(_Started(task_status, actor))


class _Started:
    """Adapts ``task_status.started()`` so the actor hands its handle to the supervisor."""

    def __init__(self, task_status: trio.TaskStatus[AccountActor], actor: AccountActor) -> None:
        self._task_status = task_status
        self._actor = actor

    def started(self, value: Any = None) -> None:
        self._task_status.started(self._actor)
