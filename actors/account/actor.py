"""The account actor: one task per account that owns its book, its adapter and its pacing.

It takes one message at a time — control first (trading state, close-all, risk limits), then what
the venue sent on its own, then the inbox (decisions are serialized without locks) — and handles
each the same way: **receive, plan, commit, send, apply**.

* *plan*: the pure planner and ledger (``actors.domain``) write what the message changes into a
  :class:`~actors.domain.book.Changes` overlay;
* *commit*: the persistence actor makes it durable (shielded: a commit in flight is never
  abandoned); when the adapter talks to a venue, an order's intent is committed *before* it is
  sent (write-ahead) and every answer is committed before the account acts on it;
* *send*: the execution adapter works the order (paper or live, one protocol);
* *apply*: only then does the book move (:meth:`AccountBook.apply`).

A crash at any point therefore leaves the database and a rebuilt actor in agreement. Decisions live
in :mod:`.decisions`; the control commands, venue messages and housekeeping are here.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec
import trio

from ..domain import planner
from ..domain.book import AccountBook, Applied, Changes, DecisionEntry, marks_of
from ..domain.events import CloseAllDone, OrderCanceled, ProtectionPartial, ReconciliationFailed, RiskChanged
from ..domain.execution import CancelIntent, Report
from ..domain.filters import UNKNOWN_ORDER, VenueReject
from ..domain.ledger import Batch, LedgerContext, OrderExecution, apply_reports
from ..domain.money import fmt
from ..domain.orders import OrderRecord
from ..domain.positions import Position
from ..domain.protection import tpsl_problem
from ..domain.risk import InvalidLimits, loss_state, merge_limits, stricter_state
from ..domain.views import fill_view, order_view, position_view
from ..execution.live import ReconcileRequested
from ..execution.protocol import ExecutionAdapter
from ..venues.rest import VenueIOError
from ..logs import log_context
from ..messages import (
    CancelOrder, CloseAll, CommandRefused, DecisionConflict, Envelope, InjectCrash, SetProtection, SetTradingState,
    SubmitDecision, UpdateRiskLimits,
)
from ..persistence.queries import (
    changes_statements, event_records, first_order_at, order_fills, pending_decision_orders,
)
from . import decisions, protection, reconcile
from .context import AccountContext, AccountSnapshot, snapshot_of

log = logging.getLogger("actors.account")

HOUSEKEEPING_SECONDS = 1.0
PEAK_STEP = Decimal("0.0001")
_encode = msgspec.json.Encoder(decimal_format="string").encode  # a new equity peak is committed once it beats the last by 1 bp


class AccountActor:
    def __init__(self, ctx: AccountContext, book: AccountBook, adapter: ExecutionAdapter) -> None:
        self.ctx = ctx
        self.book = book
        self.adapter = adapter
        self.mailbox = ctx.mailbox
        self.recent: collections.OrderedDict[str, tuple[str, bytes]] = collections.OrderedDict()
        self.crash_next_decision = False
        self._snapshot: tuple[int, AccountSnapshot] | None = None
        #: executions of orders being sent, by order id: every batch applied, wherever (a nested
        #: wait included), is folded into them
        self._tracked: dict[str, OrderExecution] = {}
        self.deciding: str | None = None  # the decision being handled (its own code stores its result)
        #: orders whose decision was answered ``pending`` (the venue's answer was lost): their
        #: decision's stored result is settled when the venue has decided them
        #: live accounts: what reconciliation keeps between passes (None: a paper account)
        reconcilable = getattr(adapter, "reconcilable", False)
        self.reconciliation = reconcile.ReconcileState(income_since=self.now()) if reconcilable else None
        self._reconcile_due = 0.0 if reconcilable else math.inf  # trio time of the next pass
        self._reconcile_failures = 0
        self.pending_orders: set[str] = set()  # loaded by :meth:`_settle_pending_decisions`

    @property
    def account_id(self) -> str:
        return self.book.account_id

    @property
    def state(self) -> AccountBook:
        """The book (read-only for anyone but this actor)."""
        return self.book

    def now(self) -> float:
        return self.ctx.clock.now()

    def snapshot(self) -> AccountSnapshot:
        """The committed state, immutable; rebuilt only when the book changed since."""
        cached = self._snapshot
        if cached is None or cached[0] != self.book.version:
            cached = self._snapshot = (self.book.version, snapshot_of(self.book))
        return cached[1]

    def effective_state(self) -> str:
        return stricter_state(self.book.trading_state, self.ctx.global_state())

    # ------------------------------------------------------------------------------ the loop

    async def run(self, task_status: trio.TaskStatus[AccountActor]) -> None:
        for symbol in self.book.positions:  # live feeds keep the symbols of open positions subscribed
            await self.ctx.market.acquire(symbol, self.account_id)
        if self.reconciliation is not None:
            # the start gate: no decision before the book agrees with the venue (the account stays
            # ``starting``, its decisions answered 503, for as long as the venue cannot be asked)
            first = await self.ctx.persistence.call(first_order_at, self.account_id)
            self.reconciliation.income_since = first if first is not None else self.now()
            while not await self._reconcile("start"):
                await trio.sleep(reconcile.next_delay(self._reconcile_failures))
        if self.adapter.write_ahead:  # only a venue's answers can be lost
            await self._settle_pending_decisions()
        task_status.started(self)
        mailbox = self.mailbox
        next_housekeeping = trio.current_time() + HOUSEKEEPING_SECONDS
        while True:
            envelope = mailbox.take_control()
            if envelope is not None:
                await self._handle(envelope)
                continue
            message = mailbox.take_venue()
            if message is not None:
                await self._on_venue(message)
                continue
            # An absolute schedule: steady traffic must not starve the loss watcher, funding and
            # the trigger safety net. An idle account with nothing to watch sleeps until a message.
            if trio.current_time() >= next_housekeeping:
                if self._needs_housekeeping():
                    await self._housekeeping()
                next_housekeeping = trio.current_time() + HOUSEKEEPING_SECONDS
                continue
            deadline = next_housekeeping if self._needs_housekeeping() else math.inf
            try:
                envelope = await mailbox.receive(deadline)
            except trio.EndOfChannel:
                return
            if envelope is not None:
                await self._handle(envelope)

    def _needs_housekeeping(self) -> bool:
        book = self.book
        return bool(book.positions or book.orders or book.trading_state != "active" or self.reconciliation)

    async def _reconcile(self, reason: str) -> bool:
        """One reconciliation pass (decisions queue behind it, as behind any message); while
        passes fail, decisions are refused (the gate)."""
        try:
            await reconcile.reconcile(self, reason)
        except VenueIOError as exc:
            self._reconcile_failures += 1
            delay = reconcile.next_delay(self._reconcile_failures)
            self._reconcile_due = trio.current_time() + delay
            # a periodic pass is a safety net while the user stream follows the venue: its failure
            # gates decisions only once the stream is down too (or at start, after a reconnect)
            gated = reason != "periodic" or not getattr(self.adapter, "stream_connected", False)
            if gated:
                self.ctx.gate(f"reconciling with the venue ({reason}): cannot ask it: {exc}")
            log.error("account %s: reconciliation (%s) failed (attempt %d): %s; %s, next try in %.1f s",
                      self.account_id, reason, self._reconcile_failures, exc,
                      "decisions refused" if gated else "the user stream still follows the venue", delay)
            if self._reconcile_failures in (1, 10, 100):  # alert, without flooding the event stream
                changes = self.changes()
                changes.emit(ReconciliationFailed(reason=reason, error=str(exc), attempts=self._reconcile_failures))
                await self.commit(changes)
            return False
        self._reconcile_failures = 0
        self._reconcile_due = trio.current_time() + self.ctx.reconcile_interval_seconds
        assert self.reconciliation is not None
        if self.reconciliation.ask_again_at is not None:  # an order in flight the venue cannot tell yet
            self._reconcile_due = min(self._reconcile_due, trio.current_time() + max(
                0.05, self.reconciliation.ask_again_at - self.now()))
        if getattr(self.adapter, "gap", False):
            self.adapter.gap = False  # type: ignore[attr-defined]
        self.ctx.gate(None)
        return True

    async def _handle(self, envelope: Envelope) -> None:
        # ``current`` stays set if the handler raises: the supervisor answers it with an error.
        self.mailbox.current = envelope
        try:
            result = await self._dispatch(envelope.msg)
        except (DecisionConflict, CommandRefused) as exc:
            if envelope.reply is not None:
                envelope.reply.fail(exc)
        else:
            if envelope.reply is not None:
                envelope.reply.set(result)
        self.mailbox.current = None

    async def _dispatch(self, msg: Any) -> Any:
        match msg:
            case SubmitDecision():
                try:
                    with log_context(decision_id=msg.decision.decision_id):
                        return await decisions.decide(self, msg)
                finally:
                    self.mailbox.answered(msg.decision.decision_id)
            case CloseAll(reason=reason):
                return await self.close_all(reason)
            case SetTradingState(state=state, reason=reason, source=source):
                return await self.set_trading_state(state, reason, source)
            case UpdateRiskLimits(overrides=overrides):
                return await self.update_limits(overrides)
            case SetProtection():
                return await self.set_protection(msg)
            case CancelOrder(order_id=order_id):
                return await self.cancel_order(order_id)
            case InjectCrash(where=where):
                if where == "now":
                    raise decisions.InjectedCrash(f"injected crash in account {self.account_id}")
                self.crash_next_decision = True
                return None
            case _:
                raise TypeError(f"account actor got an unknown message {type(msg).__name__}")

    # ------------------------------------------------------------------------------ commit

    def changes(self) -> Changes:
        return Changes(self.book, self.now())

    async def commit(self, changes: Changes) -> None:
        """Make ``changes`` durable, then the book's state; then tell the adapter."""
        book = self.book
        statements = changes_statements(book, changes)
        events = event_records(book, changes)
        applied: list[Applied] = []
        with trio.CancelScope(shield=True):
            try:
                await self.ctx.persistence.commit(statements, events, on_commit=lambda: applied.append(book.apply(changes)))
            except BaseException:
                if not applied:
                    await self.adapter.settle(committed=False)
                raise
            (effects,) = applied
            if self.ctx.record_global_order is not None and changes.order_times:
                committed_at = self.now()  # commit order is time order across accounts
                for _ in changes.order_times:
                    self.ctx.record_global_order(committed_at)
            market = self.ctx.market
            for symbol in effects.acquired:
                await market.acquire(symbol, self.account_id)
            for symbol in effects.released:
                await market.release(symbol, self.account_id)
            await self.adapter.settle(committed=True)

    async def checkpoint(self, changes: Changes) -> None:
        """Around a venue call: with a write-ahead adapter, what is planned so far becomes durable
        (an intent before it is sent, an answer before it is acted on), and ``changes`` starts over
        on the updated book. A paper adapter's answers are local and provisional: intent and
        outcome commit together, at the end."""
        if self.adapter.write_ahead:
            await self.commit(changes)
            changes.reset(self.now())

    # ------------------------------------------------------------------------------ orders

    def ledger_context(self) -> LedgerContext:
        market = self.ctx.market
        return LedgerContext(account_id=self.account_id, default_leverage=self.book.config.default_leverage,
                             instrument_of=market.instrument, mark_of=marks_of(market))

    async def apply(self, changes: Changes, reports: Sequence[Report]) -> Batch:
        """Apply a venue's answer, then what it calls for (a closed position's other leg
        cancelled, a resting entry's protection placed once it fills)."""
        batch = apply_reports(changes, reports, self.ledger_context())
        for execution in batch.executions:
            tracked = self._tracked.get(execution.order.id)
            if tracked is not None:
                tracked.absorb(execution)
        for report in batch.unknown:
            log.warning("account %s: report for an order it does not know: %s %s %s", self.account_id,
                        report.client_order_id, report.exec_type, report.status)
        for execution in batch.executions:
            await self._follow_up(changes, execution)
            order = execution.order
            if order.id in self.pending_orders and order.decision_id != self.deciding and order.decided:
                self.pending_orders.discard(order.id)
                await self.settle_decision(changes, order)
        return batch

    async def _settle_pending_decisions(self) -> None:
        """After a start: a decision still ``pending`` whose order the venue has decided (the
        service stopped before storing its result) gets its result now; the others are settled
        when their order is."""
        orders = await self.ctx.persistence.call(pending_decision_orders, self.account_id)
        if not orders:
            return
        changes = self.changes()
        for order in orders:
            order = self.book.orders.get(order.id, order)
            if order.decided:
                await self.settle_decision(changes, order, cooldown=False)
            else:
                self.pending_orders.add(order.id)
        await self.commit(changes)

    async def settle_decision(self, changes: Changes, order: OrderRecord, *, cooldown: bool = True) -> None:
        """A decision answered ``pending`` (its order's answer was lost): now the venue has
        decided the order, its stored result becomes the truth (``GET .../decisions/{id}``)."""
        committed = await self.ctx.persistence.call(order_fills, self.account_id, order.id)
        fills = {f.id: f for f in committed}
        fills.update((f.id, f) for f in changes.fills if f.order_id == order.id)
        result = planner.settled_result(changes, order, [fill_view(f) for f in fills.values()],
                                        marks_of(self.ctx.market), cooldown=cooldown)
        changes.decisions.append(DecisionEntry(order.decision_id or "", "", "", result.status, _encode(result),
                                               insert=False))

    async def _follow_up(self, changes: Changes, execution: OrderExecution) -> None:
        order, position = execution.order, execution.position
        if execution.closed and position is not None:
            for cancel in planner.cancels_for_closed(changes, position):
                await self.cancel(changes, cancel)
            return
        if not execution.fills or position is None:
            return
        if order.is_protective and order.status == "PARTIALLY_FILLED" and position.is_open:
            # the venue left the trigger armed for the rest (the book ran out)
            changes.emit(ProtectionPartial(order_id=order.id, filled_quantity=fmt(execution.filled),
                                           remaining=fmt(position.quantity)))
        if order.purpose == "entry" and (order.take_profit is not None or order.stop_loss is not None) and (
                order.settled and not execution.was_settled if order.type == "MARKET"
                else order.filled_quantity == execution.filled):
            # an entry's protection goes on, whenever and however its fills come (at once, a
            # resting limit later, an answer settled after a lost one): a market order's once all
            # its fills are in (a level already crossed closes the whole position), a limit
            # order's with its first fill (closePosition triggers cover what fills later)
            await self.protect(changes, position, order.take_profit, order.stop_loss, decision_id=order.decision_id)

    async def send(self, changes: Changes, planned: planner.PlannedOrder, *,
                   timeout: float | None = None) -> OrderExecution:
        """Put one order to the venue and apply its answer: durable first with a write-ahead
        adapter, and, when the venue answers later (a live venue's user stream), what it sends is
        applied until the order is answered (a market order done, any other accepted or refused)
        or ``timeout`` passes; the order then stays ``PENDING_NEW`` until the venue is asked."""
        order = planned.order
        changes.put_order(order)
        await self.checkpoint(changes)
        if self.ctx.paper_twin is not None:  # a live account's paper twin: the same order, the same market
            self.ctx.paper_twin.order_sent(order, self.ctx.market.quote(order.symbol))
        execution = self._tracked[order.id] = OrderExecution(
            order=order, position_before=changes.position(order.symbol), initial_status=order.status,
            was_settled=order.settled)
        deferred: list[ReconcileRequested] = []
        try:
            await self.apply(self._answered_at_arrival(changes), await self.adapter.submit(planned.intent))
            if not _answered(execution):
                with trio.move_on_after(self.ctx.venue_answer_seconds if timeout is None else timeout):
                    while not _answered(execution):
                        message = self.mailbox.take_venue()
                        if message is None:
                            await self.mailbox.wait_posted()
                            continue
                        if isinstance(message, ReconcileRequested):  # the account's own step, after this one
                            deferred.append(message)
                            continue
                        reports = await self.adapter.on_message(message)
                        await self.apply(self._answered_at_arrival(changes), reports)
                        await self.checkpoint(changes)
        finally:
            del self._tracked[order.id]
            for request in deferred:  # never dropped: what the venue said may have been missed
                if not self.mailbox.post_venue(request):
                    self._reconcile_due = trio.current_time()  # the path is full: the next housekeeping
        if not _answered(execution):
            log.warning("account %s: no complete answer for %s %s within the wait: %s, filled %s of the venue's %s",
                        self.account_id, order.purpose, order.client_order_id, execution.order.status,
                        execution.order.filled_quantity, execution.order.venue_filled)
        await self.checkpoint(changes)
        return execution

    def _answered_at_arrival(self, changes: Changes) -> Changes:
        """A write-ahead adapter's answer (its fills, the order's new state) is stamped with the
        time it arrived, not with the time the order went out (what ``changes`` already holds
        keeps its own times). A paper venue answers at once, in one moment with the decision."""
        if self.adapter.write_ahead:
            changes.now = self.now()
        return changes

    async def cancel(self, changes: Changes, intent: CancelIntent) -> VenueReject | None:
        """Cancel one order on the venue; the venue's refusal if it would not (the order then
        stays open: a rate limit, a venue that cannot be reached)."""
        reports = await self.adapter.cancel(intent)
        refusals = [r.reject for r in reports if r.exec_type == "REJECTED" and r.reject is not None]
        if reports and len(refusals) == len(reports):
            order = changes.order(intent.order_id)
            if refusals[0].code != UNKNOWN_ORDER or (order is not None and order.status == "PENDING_NEW"):
                # refused, or an order in flight the venue does not know yet: it may still arrive
                log.warning("account %s: cancel of %s refused: %s %s", self.account_id, intent.order_id,
                            refusals[0].code, refusals[0].msg)
                return refusals[0]
            # the venue no longer has it: a protective order of a closed position, or a working
            # order the venue swept; nothing is left to cancel
            if order is not None and order.is_open:
                cancelled = msgspec.structs.replace(order, status="CANCELED", updated_at=changes.now)
                changes.put_order(cancelled)
                changes.emit(OrderCanceled(order_id=order.id, reason=intent.reason))
                if cancelled.id in self.pending_orders and cancelled.decision_id != self.deciding:
                    self.pending_orders.discard(cancelled.id)
                    await self.settle_decision(changes, cancelled)
            return None
        await self.apply(changes, reports)
        return None

    async def protect(self, changes: Changes, position: Position, take_profit: Decimal | None,
                      stop_loss: Decimal | None, *, decision_id: str | None) -> protection.Protected:
        return await protection.protect(self, changes, position, take_profit, stop_loss, decision_id=decision_id)

    async def flatten(self, changes: Changes, position: Position, *, purpose: str, order_id: str) -> OrderExecution:
        """Close a position reduce-only at market (close-all, a protection that failed)."""
        return await self.send(changes, planner.exit_order(changes, position, purpose=purpose, order_id=order_id))

    # ------------------------------------------------------------------------------ venue messages

    async def _on_venue(self, message: Any) -> None:
        if isinstance(message, ReconcileRequested):  # what the venue said may have been missed
            await self._reconcile(message.reason)
            return
        changes = self.changes()
        reports = await self.adapter.on_message(message)
        if not reports:
            return
        await self.apply(changes, reports)
        await self.commit(changes)

    # ------------------------------------------------------------------------------ control

    async def close_all(self, reason: str) -> dict[str, Any]:
        """Shielded: cancel every open order, close every position reduce-only."""
        with trio.CancelScope(shield=True):
            changes = self.changes()
            cancelled: list[str] = []
            closed: list[dict[str, Any]] = []
            failed: list[dict[str, Any]] = []
            if self.reconciliation is not None:  # what became of them, first: flatten what the venue holds
                for order in self.book.unsettled_orders():
                    try:
                        await reconcile.settle(self, changes, order, self.now())
                    except VenueIOError as exc:
                        log.warning("account %s: close-all cannot ask about %s: %s", self.account_id, order.id, exc)
            async def cancel_all(orders: list[OrderRecord]) -> None:
                for order in orders:
                    if order.status == "PENDING_NEW":  # not known to the venue (yet): nothing to cancel
                        failed.append({"order_id": order.id, "reason": "in flight: the venue's answer is awaited"})
                        continue
                    refusal = await self.cancel(changes, planner.cancel_of(order, reason))
                    if refusal is None:
                        cancelled.append(order.id)
                    else:
                        failed.append({"order_id": order.id,
                                       "reason": f"cancel refused: {refusal.code} {refusal.msg}"})

            # working orders first; a position keeps its stop-loss and take-profit until it is closed
            # (they go with it), so a close the venue does not fill never leaves it naked
            await cancel_all([o for o in changes.open_orders() if not o.is_protective])
            for position in changes.open_positions():
                symbol = position.symbol
                protective = [o.id for o in changes.protective_orders(position.id)]
                execution = await self.flatten(changes, position, purpose="close_all",
                                               order_id=f"{position.id}:close_all:{changes.now:.6f}")
                cancelled.extend(i for i in protective if (o := changes.order(i)) is None or not o.is_open)
                if execution is None or not execution.fills:
                    reason_text = "no market data" if self.ctx.market.quote(symbol) is None else (
                        execution.rejected.msg if execution is not None and execution.rejected else "not filled")
                    failed.append({"symbol": symbol, "reason": f"{reason_text}; its stop-loss and take-profit "
                                   "stay in force"})
                    continue
                after = execution.position
                closed.append({"symbol": symbol, "position_id": position.id, "quantity": fmt(execution.filled),
                               "avg_price": fmt(execution.avg_price),
                               "remaining": fmt(after.quantity if after is not None else position.quantity)})
            # protective orders left over from positions already closed
            open_ids = {p.id for p in changes.open_positions()}
            await cancel_all([o for o in changes.open_orders() if o.is_protective and o.position_id not in open_ids])
            changes.emit(CloseAllDone(reason=reason, cancelled=cancelled, closed=closed))
            await self.commit(changes)
            if self.reconciliation is not None:  # the venue's word on what is left, at the next housekeeping
                self._reconcile_due = trio.current_time()
            return {"account_id": self.account_id, "cancelled_orders": cancelled, "closed_positions": closed,
                    "failed": failed}

    async def set_trading_state(self, state: str, reason: str | None, source: str) -> dict[str, Any]:
        previous = self.book.trading_state
        changes = self.changes()
        planner.set_trading_state(changes, state, reason, source)  # type: ignore[arg-type]
        await self.commit(changes)
        return {"account_id": self.account_id, "trading_state": state, "previous": previous, "reason": reason,
                "effective_state": self.effective_state()}

    async def update_limits(self, overrides: dict[str, Any]) -> dict[str, Any]:
        try:
            limits = merge_limits(self.book.limits, overrides)
        except InvalidLimits as exc:
            raise CommandRefused("INVALID_LIMIT", exc.message, field=exc.field) from None
        default = self.book.config.default_leverage
        if default > limits.max_leverage:
            raise CommandRefused(
                "INVALID_LIMIT", f"max_leverage {limits.max_leverage} is below the account's default_leverage "
                f"{default}: decisions that name no leverage could never trade", field="max_leverage")
        changes = self.changes()
        changes.limits = limits
        changes.emit(RiskChanged(limits=msgspec.to_builtins(limits)))
        await self.commit(changes)
        return msgspec.to_builtins(limits)

    async def set_protection(self, msg: SetProtection) -> Any:
        position = self.book.positions.get(msg.symbol)
        if position is None:
            raise CommandRefused("NO_POSITION", f"no open {msg.symbol} position to protect")
        quote = self.ctx.market.quote(msg.symbol)
        mark = quote.mark_price if quote is not None else position.entry_price
        instrument = self.ctx.market.instrument(msg.symbol)
        problem = tpsl_problem(position.side, mark, msg.take_profit, msg.stop_loss,
                               filters=instrument.filters if instrument is not None else None)
        if problem:
            raise CommandRefused("INVALID_TPSL", problem)
        changes = self.changes()
        position, kept = await self.protect(changes, position, msg.take_profit, msg.stop_loss, decision_id=None)
        await self.commit(changes)
        if kept:
            raise CommandRefused("VENUE_REFUSED", "; ".join(
                f"the venue would not cancel the {purpose.replace('_', '-')} at {fmt(getattr(position, purpose))} "
                f"({refusal.code}: {refusal.msg}); it stays in force" for purpose, refusal in kept.items()), status=502)
        return msgspec.to_builtins(position_view(position, mark))

    async def cancel_order(self, order_id: str) -> Any:
        order = self.book.orders.get(order_id)
        if order is None:
            raise CommandRefused("UNKNOWN_ORDER", f"no open order {order_id!r}", status=404)
        changes = self.changes()
        refusal = await self.cancel(changes, planner.cancel_of(order, "client"))
        if refusal is not None:
            await self.commit(changes)
            raise CommandRefused("VENUE_REFUSED", f"the venue would not cancel order {order_id!r} "
                                 f"({refusal.code}: {refusal.msg}); it is still working", status=502)
        position = changes.open_position(order.symbol)
        if position is not None and order.is_protective:
            changes.put_position(msgspec.structs.replace(position, **{order.purpose: None}))
        await self.commit(changes)
        return msgspec.to_builtins(order_view(changes.order(order_id) or _cancelled(order, changes.now)))

    # ------------------------------------------------------------------------------ housekeeping

    async def _housekeeping(self) -> None:
        """Funding and the trigger safety net (the venue's), then the loss watcher (the account's)."""
        changes = self.changes()
        reports = await self.adapter.poll(changes.now)
        if reports:
            await self.apply(changes, reports)
            await self.commit(changes)
        if self.reconciliation is not None and (trio.current_time() >= self._reconcile_due
                                                or getattr(self.adapter, "gap", False)):
            await self._reconcile("periodic" if not getattr(self.adapter, "gap", False) else "venue path overflowed")
        await self._watch_losses()

    async def _watch_losses(self) -> None:
        changes = self.changes()
        book = self.book
        mark_of = marks_of(self.ctx.market)
        if (planner.roll_day(changes, mark_of) and book.state_source == "loss_limit" and book.state_reason
                and "DAILY_LOSS_LIMIT" in book.state_reason):
            planner.set_trading_state(changes, "active", "new UTC day: daily loss limit reset", "loss_limit")
        equity = planner.equity(changes, mark_of)
        if equity > book.peak_equity * (1 + PEAK_STEP):
            changes.peak_equity = equity
        view = planner.account_view(changes, mark_of, self.service_context())
        limits = changes.limits or book.limits
        peak = changes.peak_equity or book.peak_equity
        view = msgspec.structs.replace(view, peak_equity=max(peak, equity))
        breach = loss_state(view, equity, limits, changes.now)
        current = (changes.trading_state or (book.trading_state,))[0]
        if breach is not None and stricter_state(current, breach.action) != current:
            planner.set_trading_state(changes, breach.action, f"{breach.code}: {breach.message}", "loss_limit")
        if changes.day is not None or changes.peak_equity is not None or changes.trading_state is not None:
            await self.commit(changes)

    def service_context(self) -> planner.ServiceContext:
        ctx = self.ctx
        return planner.ServiceContext(global_state=ctx.global_state(),
                                      global_order_times=ctx.global_order_times,
                                      global_limits=ctx.global_limits)


def _answered(execution: OrderExecution) -> bool:
    """Whether the venue has given its answer: a market order is done and every fill it reported
    is in (reports may come out of order), any other order was accepted or refused."""
    order = execution.order
    if execution.unknown:
        return True  # the answer was lost: the adapter is asking the venue, the outcome comes later
    return order.decided


def _cancelled(order: OrderRecord, now: float) -> OrderRecord:
    return msgspec.structs.replace(order, status="CANCELED", updated_at=now)
