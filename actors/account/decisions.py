"""How an account executes a decision: gate, order, venue, protection, stored result.

With a write-ahead adapter the decision row (``pending``), its audit row and the order's intent
are committed before the order is sent; the venue's answer is committed before the protection is
placed; the final result then replaces the pending one. With the paper venue all of it commits in
one round at the end (its answers are local and immediate).

Idempotency: recent ids are answered from memory; an older one is caught by the unique index on
(account, decision id) when the decision's first commit is refused, before anything of it is
applied. With a write-ahead adapter that commit comes before the venue is called, so a resent id
never reaches the venue; with the paper venue the simulated venue's provisional effects are
undone. A new decision (the common case) costs no extra database round.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING

import msgspec
import trio

from ..domain import planner
from ..domain.book import Changes, DecisionEntry, marks_of
from ..domain.decisions import Decision
from ..domain.events import DecisionRejected
from ..domain.risk import Rejection, RiskVerdict
from ..domain.views import DecisionResult, fill_view
from ..messages import DecisionConflict, SubmitDecision
from ..persistence import IntegrityError
from ..persistence.queries import stored_decision
from . import twin

if TYPE_CHECKING:
    from .actor import AccountActor

#: results answered from memory to a repeated id (retries come within seconds; an older repeat is
#: answered from the database when its commit is refused by the unique index)
RECENT_DECISIONS = 64
_encode = msgspec.json.Encoder(decimal_format="string").encode


class InjectedCrash(RuntimeError):
    """Raised by the test-only fault hook."""


async def decide(actor: AccountActor, msg: SubmitDecision) -> bytes:
    decision = msg.decision
    if actor.ctx.settings.twin_of is not None and msg.mirror is None:  # a paper twin takes no client's decision
        raise twin.refusal(actor.ctx.settings)
    cached = actor.recent.get(decision.decision_id)
    if cached is not None:
        return _replay_stored(decision.decision_id, cached, msg.fingerprint)
    if actor.crash_next_decision:
        actor.crash_next_decision = False
        raise InjectedCrash(f"injected crash in account {actor.account_id} while handling a decision")
    actor.deciding = decision.decision_id
    try:
        return await _decide(actor, msg)
    finally:
        actor.deciding = None


async def _decide(actor: AccountActor, msg: SubmitDecision) -> bytes:
    if msg.mirror is not None:  # a paper twin: its live account's decision, on the market as it went out
        return await twin.execute_mirrored(actor, msg)
    decision = msg.decision
    board = actor.ctx.market
    # a listed symbol nobody watches yet is subscribed now, and its first data awaited (bounded)
    if board.on_demand:
        await board.watch_for_decision(decision.symbol, actor.book.limits.market_data_max_age_seconds)
    market = planner.MarketContext(instrument=board.instrument(decision.symbol), quote=board.quote(decision.symbol),
                                   mark_of=marks_of(board))
    changes = actor.changes()
    verdict = planner.gate(changes, decision, market, actor.service_context())
    if not verdict.accepted:
        assert verdict.rejection is not None
        result = planner.reject(changes, decision, verdict.rejection, verdict.checks, market.mark_of)
        return await _store(actor, msg, changes, result)
    assert market.instrument is not None and market.quote is not None
    planned = planner.plan_order(changes, decision, verdict, market.instrument, market.quote)
    if isinstance(planned, Rejection):
        result = planner.reject(changes, decision, planned, verdict.checks, market.mark_of)
        return await _store(actor, msg, changes, result)
    if actor.ctx.paper_twin is not None:  # its paper twin gets it as the order goes out (AccountActor.send)
        actor.ctx.paper_twin.expect(msg, verdict, planned, market, received_at=changes.now)
    write_ahead = actor.adapter.write_ahead
    if write_ahead:
        pending = planner.result(changes, decision, "pending", market.mark_of, order=planned.order)
        changes.decisions.append(DecisionEntry(decision.decision_id, msg.fingerprint, msg.request_json, "pending",
                                               _encode(pending), insert=True))
        planner.audit(changes, decision.decision_id, verdict.checks, None)
    # an emergency close-all cancels the order's way to the venue; where nothing on that way can
    # wait (the paper venue without latency), there is nothing to interrupt and no scope to pay for
    work = trio.CancelScope() if actor.adapter.interruptible else None
    try:
        with work if work is not None else nullcontext():
            actor.mailbox.work_scope = work
            try:
                result = await _execute(actor, changes, decision, verdict, planned, market)
            finally:
                actor.mailbox.work_scope = None
    except IntegrityError:  # the intent's commit refused a resent id: nothing was sent
        return await _stored(actor, msg)
    cancelled = work is not None and work.cancelled_caught
    if cancelled:  # by an emergency close-all
        if write_ahead:  # the intent is durable and may have reached the venue: it stays pending
            # what the venue said meanwhile (the order's answer, fills taken from the user stream)
            # is its truth: committed, not dropped with the interrupted work
            await actor.commit(changes)
            order = actor.book.orders.get(planned.order.id)  # committed: still open, or settled since
            if order is not None:
                actor.pending_orders.add(order.id)  # settled with its order (close-all asks the venue)
            else:
                done = actor.book.order_by_client(planned.order.client_order_id)
                if done is not None and not done.decided:
                    # final at the venue, its fills still on their way: settled once they are in
                    actor.pending_orders.add(done.id)
                elif done is not None:  # the venue decided it before the cancel: its result now
                    settled = actor.changes()
                    await actor.settle_decision(settled, done)
                    await actor.commit(settled)
            return await _stored(actor, msg)
        await actor.adapter.settle(committed=False)
        changes = actor.changes()
        result = planner.reject(changes, decision, Rejection(
            code="CANCELLED", message="cancelled by an emergency close-all before it was executed",
        ), (), market.mark_of)
    return await _store(actor, msg, changes, result, inserted=write_ahead and not cancelled)


async def _execute(actor: AccountActor, changes: Changes, decision: Decision, verdict: RiskVerdict,
                   planned: planner.PlannedOrder, market: planner.MarketContext) -> DecisionResult:
    write_ahead = actor.adapter.write_ahead
    execution = await actor.send(changes, planned)
    order = execution.order
    rejection = planner.venue_rejection(order) if order.status == "REJECTED" else planner.unfilled(order)
    if rejection is not None:
        if write_ahead:  # the gate's audit row went with the intent
            changes.emit(DecisionRejected(decision_id=decision.decision_id, code=rejection.code,
                                                  message=rejection.message))
            return planner.result(changes, decision, "rejected", market.mark_of, order=order, rejection=rejection)
        return planner.reject(changes, decision, rejection, verdict.checks, market.mark_of, order=order)
    status = planner.decision_status(order)
    if status == "pending":  # no answer from the venue yet: asked again until it settles
        actor.pending_orders.add(order.id)  # its stored result is settled when the venue decides it
        return planner.result(changes, decision, "pending", market.mark_of, order=order)
    planner.accept(changes, decision, None if write_ahead else verdict, at=_first_event_of(changes, order.id))
    if execution.fills:
        planner.start_cooldown(changes)
    # the position as it stands after this order's fills and its protection (which went on with
    # the first fill, see AccountActor.apply), closed ones included
    position = execution.position
    position = changes.latest_position(position) if position is not None else changes.position(decision.symbol)
    return planner.result(changes, decision, planner.decision_status(order), market.mark_of, order=order,
                          fills=[fill_view(f) for f in execution.fills], position=position)


def _first_event_of(changes: Changes, order_id: str) -> int:
    """Where the order's own events start (``decision.accepted`` goes before them)."""
    for index, event in enumerate(changes.events):
        if getattr(event, "order_id", None) == order_id:
            return index
    return len(changes.events)


async def _store(actor: AccountActor, msg: SubmitDecision, changes: Changes, result: DecisionResult, *,
                 inserted: bool = False) -> bytes:
    """Commit the result with what the decision changed (it replaces the pending result when the
    decision row went in with the intent); answer it."""
    decision = msg.decision
    encoded = _encode(result)
    changes.decisions.append(DecisionEntry(decision.decision_id, msg.fingerprint, msg.request_json, result.status,
                                           encoded, insert=not inserted))
    try:
        await actor.commit(changes)
    except IntegrityError:
        return await _stored(actor, msg)
    if result.status != "pending":  # a pending result is replaced once the venue answers
        _remember(actor, decision.decision_id, msg.fingerprint, encoded)
    return encoded


async def _stored(actor: AccountActor, msg: SubmitDecision) -> bytes:
    """The result stored for this decision id (a resent id, or one still pending at the venue)."""
    decision_id = msg.decision.decision_id
    stored = await actor.ctx.persistence.call(stored_decision, actor.account_id, decision_id)
    if stored is None:
        raise RuntimeError(f"decision {decision_id} was refused as a duplicate but is not stored")
    return _replay_stored(decision_id, stored, msg.fingerprint)


def _replay_stored(decision_id: str, stored: tuple[str, bytes], fingerprint: str) -> bytes:
    if stored[0] != fingerprint:
        raise DecisionConflict(f"decision_id {decision_id!r} was already used with a different body")
    return stored[1]


def _remember(actor: AccountActor, decision_id: str, fingerprint: str, encoded: bytes) -> None:
    recent = actor.recent
    recent[decision_id] = (fingerprint, encoded)
    if len(recent) > RECENT_DECISIONS:
        recent.popitem(last=False)
