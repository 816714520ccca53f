"""The supervisor: account registry, message routing and one-for-one restarts.

trio nurseries are one-cancels-all, so each account runs inside a restart loop in the
supervisor's nursery: an ``Exception`` escaping an account actor is recorded (event
``actor.restarted``), the actor restarts after an exponential backoff with jitter and rebuilds its
state from the database before it takes the next message. The account's mailbox belongs to the
supervisor and survives restarts, so queued messages are not lost; the message in flight gets an
error reply. Too many restarts within a window leaves the account ``failed`` until an operator
restarts it. ``trio.Cancelled`` and other ``BaseException``\\ s are never swallowed.
"""

from __future__ import annotations

import collections
import logging
import math
import random
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import trio

from .account import AccountActor, AccountContext, AccountSnapshot, Mailbox, account_actor
from .account.context import AdapterFactory
from .account.twin import paper_twin_link
from .backoff import backoff_delay
from .clock import ServiceClock
from .domain.events import ActorFailed, ActorRestarted, GlobalStateChanged, Payload
from .domain.risk import GlobalLimits, RiskLimits
from .execution import open_adapter
from .logs import set_log_context
from .market_data import MarketData
from .messages import (
    AccountCannotStart, AccountUnavailable, ActorCrashed, ActorState, CloseAll, Envelope, Reply, SubmitDecision,
    TradingState, UnknownAccount,
)
from .persistence import Claim, Fenced, Persistence, Statement
from .persistence.queries import event_record
from .settings import AccountSettings, Settings, SupervisorSettings
from .venues.limits import VenueLimiter
from .venues.profiles import get_profile

log = logging.getLogger("actors.supervisor")

E = TypeVar("E", bound=BaseException)


class AccountSlot:
    """The supervisor's record of one account: mailbox, actor state and restart history."""

    def __init__(self, settings: AccountSettings, limits: RiskLimits, inbox_size: int) -> None:
        self.account_id = settings.id
        self.settings = settings
        self.limits = limits
        self.mailbox = Mailbox(settings.id, inbox_size)
        self.status: ActorState = "starting"
        self.actor: AccountActor | None = None
        self.restarts = 0
        self.restart_times: collections.deque[float] = collections.deque()
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.next_restart_at: float | None = None
        self.reset = trio.Event()
        self.stopped = trio.Event()
        #: cluster mode: the shard lease the account runs under (its commits are fenced by it)
        self.claim: Claim | None = None
        self.leaving = False  # being stopped because its shard moves to another node
        #: why the account takes no decision for now (a live account reconciling with its venue)
        self.gate: str | None = None
        self.scope = trio.CancelScope()  # cancelled to stop the account at once (its lease is lost)

    def inspect(self) -> dict[str, Any]:
        return {
            "state": self.status,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "next_restart_at": self.next_restart_at,
            "gate": self.gate,
            "inbox_depth": self.mailbox.inbox_depth,
            "inbox_capacity": self.mailbox.inbox_capacity,
            "priority_depth": self.mailbox.priority_depth,
            "priority_dropped": self.mailbox.dropped,
        }

    def snapshot(self) -> AccountSnapshot | None:
        """The account's committed state (None while its actor is not running)."""
        return self.actor.snapshot() if self.actor is not None else None


class Supervisor:
    def __init__(
        self,
        settings: SupervisorSettings,
        persistence: Persistence,
        markets: dict[str, MarketData],
        clock: ServiceClock,
        *,
        paper_latency: float = 0.0,
        rng: random.Random | None = None,
        global_limits: GlobalLimits | None = None,
        adapter_factory: AdapterFactory = open_adapter,
        service_settings: Settings | None = None,
    ) -> None:
        self.settings = settings
        self.persistence = persistence
        self.markets = markets
        self.clock = clock
        self.paper_latency = paper_latency
        self.adapter_factory = adapter_factory
        self.service_settings = service_settings
        self.limiters: dict[str, VenueLimiter] = {}  # per live venue: request weight is counted per IP
        self.slots: dict[str, AccountSlot] = {}
        self.global_state: TradingState = "active"
        self.global_reason: str | None = None
        self.draining = False
        self._rng = rng or random.Random()
        self._nursery: trio.Nursery | None = None
        # the service-wide order-rate window: owned here, appended through record_global_order
        self.global_order_times: collections.deque[float] = collections.deque(maxlen=4096)
        self.global_limits = global_limits or GlobalLimits()
        # cluster hooks (set by actors.cluster; None on a single node)
        self.lease_deadline: Callable[[str], float] | None = None  # account -> its lease's local deadline
        self.on_fenced: Callable[[str], None] | None = None  # an account's commit was refused (Fenced)
        self.claim_for: Callable[[str], Claim] | None = None  # the lease a new account starts under

    # ---- lifecycle

    async def start_account(self, settings: AccountSettings, limits: RiskLimits, *,
                            claim: Claim | None = None) -> AccountSlot:
        """Register an account and start its actor; returns once it has loaded (or failed to).
        ``claim``: cluster mode, the shard lease the account's commits are fenced by."""
        assert self._nursery is not None, "supervisor is not running"
        if settings.id in self.slots:
            raise ValueError(f"account {settings.id!r} already exists")
        if settings.venue not in self.markets:
            raise ValueError(f"venue {settings.venue!r} has no market-data actor")
        if claim is None and self.claim_for is not None:
            claim = self.claim_for(settings.id)  # cluster mode: refused (503) unless its shard is served here
        slot = AccountSlot(settings, limits, self.settings.inbox_size)
        slot.claim = claim
        self.slots[settings.id] = slot
        self.markets[settings.venue].register_account(settings.id, slot.mailbox)
        await self._nursery.start(self._supervise_in_scope, slot)
        return slot

    async def stop(self) -> None:
        """Graceful stop: close every inbox; actors finish what is queued, then return."""
        self.draining = True
        for slot in self.slots.values():
            await slot.mailbox.close()
            slot.reset.set()  # a failed account stops waiting for an operator
        for slot in self.slots.values():
            await slot.stopped.wait()

    async def stop_account(self, account_id: str, *, graceful: bool, reason: str) -> None:
        """Stop one account and forget it (cluster mode: its shard moves to another node).

        ``graceful``: its actor finishes what it holds (the lease is still ours); otherwise it is
        cancelled at once (the lease is lost: its commits would be refused anyway). Whatever it
        did not answer is refused with a 503, which a client retries on the new owner."""
        slot = self.slots.get(account_id)
        if slot is None:
            return
        slot.leaving = True
        if graceful:
            await slot.mailbox.close()
        else:
            slot.scope.cancel()
        slot.reset.set()  # a failed account stops waiting for an operator
        await slot.stopped.wait()
        refusal = AccountUnavailable(account_id, reason, retry_after=1)
        for envelope in [slot.mailbox.current, *slot.mailbox.drain_control(), *slot.mailbox.drain_inbox()]:
            if envelope is not None and envelope.reply is not None:
                envelope.reply.fail(refusal)
        slot.mailbox.current = None
        self.markets[slot.settings.venue].unregister_account(account_id)
        if self.slots.get(account_id) is slot:
            del self.slots[account_id]

    def _context(self, slot: AccountSlot) -> AccountContext:
        return AccountContext(
            settings=slot.settings,
            limits=slot.limits,
            market=self.markets[slot.settings.venue],
            persistence=self.persistence.fenced(slot.claim) if slot.claim is not None else self.persistence,
            lease_valid_until=(partial(self.lease_deadline, slot.account_id)
                               if self.lease_deadline is not None and slot.claim is not None else None),
            clock=self.clock,
            mailbox=slot.mailbox,
            global_state=lambda: self.global_state,
            global_order_times=self.global_order_times,
            global_limits=self.global_limits,
            record_global_order=self.global_order_times.append,
            paper_latency=self.paper_latency,
            adapter_factory=self.adapter_factory,
            service_settings=self.service_settings,
            venue_limiter=self._limiter(slot.settings) if slot.settings.mode == "live" else None,
            on_gate=partial(setattr, slot, "gate"),
            paper_twin=paper_twin_link(slot.settings, self.slots),
        )

    def _limiter(self, account: AccountSettings) -> VenueLimiter:
        limiter = self.limiters.get(account.venue)
        if limiter is None:
            assert self.service_settings is not None, "live accounts need the service settings"
            venue = self.service_settings.venue_settings(account.venue)
            profile = get_profile(account.venue, getattr(venue, "rest_url", None), getattr(venue, "ws_url", None))
            limiter = self.limiters[account.venue] = VenueLimiter.for_profile(
                profile, getattr(venue, "rate_limits", None))
            board = self.markets.get(account.venue)
            if board is not None and board.request_weight_per_minute:  # the venue's own figure (exchangeInfo)
                limiter.adopt_weight_limit(board.request_weight_per_minute)
        return limiter
    async def _supervise_in_scope(self, slot: AccountSlot, *,
                                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The restart loop inside the slot's own scope (cancelled when its lease is lost)."""
        with slot.scope:
            await self._supervise(slot, task_status=task_status)

    async def _supervise(self, slot: AccountSlot, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The one-for-one restart loop of one account."""
        set_log_context(account_id=slot.account_id, venue=slot.settings.venue)  # on every line of its tasks
        reported = False
        if slot.settings.mode == "live":
            # the service does not wait for a venue: a live account reports at once and stays
            # ``starting`` (its decisions answered 503) until it has reconciled with its venue
            reported = True
            task_status.started()
        try:
            while True:
                slot.status = "starting" if slot.restarts == 0 else "restarting"
                try:
                    async with trio.open_nursery() as account_nursery:
                        slot.actor = await account_nursery.start(account_actor, self._context(slot))
                        slot.status = "running"
                        slot.next_restart_at = None
                        if not reported:
                            reported = True
                            task_status.started()
                    slot.status = "stopped"
                    return
                except Exception as exc:  # one-for-one: record, back off, restart
                    slot.actor = None
                    if not reported:
                        reported = True
                        task_status.started()
                    cannot = _leaf(exc, AccountCannotStart)
                    if cannot is not None:  # restarting would not help: failed until an operator acts
                        await self._cannot_start(slot, cannot)
                        if self.draining or slot.leaving:
                            slot.status = "stopped"
                            return
                        continue
                    if self.draining or slot.leaving:
                        slot.status = "stopped"
                        self._fail_in_flight(slot, exc)
                        return
                    if trio.current_effective_deadline() == -math.inf:
                        # a hard stop (the service's scope cancelled): the account failed on its way
                        # down, often because an actor it talks to went first; nothing to restart
                        slot.status = "stopped"
                        log.warning("account %s stopped by a hard stop (%s)", slot.account_id, _describe(exc))
                        self._fail_in_flight(slot, exc, AccountUnavailable(slot.account_id, "service is shutting down"))
                        return
                    if _leaf(exc, Fenced) is not None and self.on_fenced is not None:
                        # its node lost the shard: the account runs elsewhere now, never again here
                        slot.status = "stopped"
                        slot.last_error = _describe(exc)
                        slot.leaving = True
                        log.warning("account %s stopped: %s", slot.account_id, slot.last_error)
                        self._fail_in_flight(slot, exc, AccountUnavailable(
                            slot.account_id, "the account moved to another node", retry_after=1))
                        self.on_fenced(slot.account_id)
                        return
                    await self._record_crash(slot, exc)
                    if self._intensity_exceeded(slot):
                        slot.reset = trio.Event()  # before anything awaits: a stop from now on wakes it
                        slot.status = "failed"
                        slot.next_restart_at = None
                        await self._event(slot, ActorFailed(error=slot.last_error, restarts=slot.restarts))
                        log.error("account %s failed: %d restarts within %.0f s", slot.account_id,
                                  len(slot.restart_times), self.settings.restart_window_seconds)
                        if not self.draining:
                            await slot.reset.wait()
                        slot.restart_times.clear()
                        if self.draining or slot.leaving:
                            slot.status = "stopped"
                            return
                        continue
                    delay = self._backoff(len(slot.restart_times))
                    slot.status = "restarting"
                    slot.next_restart_at = self.clock.now() + delay
                    await trio.sleep(delay)
        finally:
            self._fail_queued_if_stopping(slot)
            slot.stopped.set()

    async def _cannot_start(self, slot: AccountSlot, exc: AccountCannotStart) -> None:
        slot.reset = trio.Event()  # before anything awaits: a stop from now on wakes it
        slot.status = "failed"
        slot.next_restart_at = None
        slot.last_error, slot.last_error_at = str(exc), self.clock.now()
        log.error("account %s cannot start: %s", slot.account_id, exc)
        await self._event(slot, ActorFailed(error=slot.last_error, restarts=slot.restarts))
        if not self.draining:
            await slot.reset.wait()

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self.settings.restart_backoff_initial_seconds,
                             self.settings.restart_backoff_max_seconds, jitter=0.2, rng=self._rng)

    def _intensity_exceeded(self, slot: AccountSlot) -> bool:
        now = trio.current_time()
        window = self.settings.restart_window_seconds
        while slot.restart_times and slot.restart_times[0] < now - window:
            slot.restart_times.popleft()
        return len(slot.restart_times) > self.settings.max_restarts

    async def _record_crash(self, slot: AccountSlot, exc: BaseException) -> None:
        slot.restarts += 1
        slot.restart_times.append(trio.current_time())
        slot.last_error = _describe(exc)
        slot.last_error_at = self.clock.now()
        log.warning("account %s crashed (%s); restart #%d", slot.account_id, slot.last_error, slot.restarts)
        self._fail_in_flight(slot, exc)
        await self._event(slot, ActorRestarted(error=slot.last_error, restarts=slot.restarts))

    def _fail_in_flight(self, slot: AccountSlot, exc: BaseException, answer: Exception | None = None) -> None:
        envelope = slot.mailbox.current
        slot.mailbox.current = None
        if envelope is not None and isinstance(envelope.msg, SubmitDecision):
            slot.mailbox.answered(envelope.msg.decision.decision_id)
        if envelope is not None and envelope.reply is not None:
            envelope.reply.fail(answer or ActorCrashed(
                f"account {slot.account_id} crashed while handling this: {_describe(exc)}"))

    def _fail_queued_if_stopping(self, slot: AccountSlot) -> None:
        if not self.draining:
            return
        for envelope in slot.mailbox.drain_control():
            if envelope.reply is not None:
                envelope.reply.fail(AccountUnavailable(slot.account_id, "service is shutting down"))

    async def _event(self, slot: AccountSlot, payload: Payload) -> None:
        with trio.CancelScope(shield=True):
            try:
                await self.persistence.commit([], [event_record(
                    slot.account_id, slot.settings.mode == "paper", self.clock.now(), payload)])
            except trio.BrokenResourceError:  # the persistence actor returned: a hard stop
                log.warning("account %s: %s not recorded, the service is stopping", slot.account_id,
                            type(payload).__name__)

    def restart(self, account_id: str) -> AccountSlot:
        """Operator reset of a ``failed`` account."""
        slot = self.slot(account_id)
        if slot.status != "failed":
            raise ValueError(f"account {account_id} is {slot.status}, not failed")
        slot.reset.set()
        return slot

    # ---- routing

    def slot(self, account_id: str) -> AccountSlot:
        try:
            return self.slots[account_id]
        except KeyError:
            raise UnknownAccount(account_id) from None

    def submit(self, account_id: str, msg: Any) -> Reply[Any]:
        """Queue a command in the account's inbox without waiting; 503-style refusal when full."""
        slot = self.slot(account_id)
        if self.draining:
            raise AccountUnavailable(account_id, "service is shutting down", retry_after=5)
        if slot.leaving:
            raise AccountUnavailable(account_id, "account is moving to another node", retry_after=1)
        if slot.status in ("restarting", "failed", "stopped"):
            retry = 1.0
            if slot.next_restart_at is not None:
                retry = max(1.0, slot.next_restart_at - self.clock.now())
            raise AccountUnavailable(account_id, f"account actor is {slot.status}", retry_after=retry)
        decision = (msg.decision.decision_id, msg.fingerprint) if isinstance(msg, SubmitDecision) else None
        if decision is not None and (slot.gate is not None or (slot.status == "starting" and slot.settings.mode == "live")):
            raise AccountUnavailable(account_id, slot.gate or "reconciling with the venue before its first decision",
                                     retry_after=2)
        # the same id queued or in flight with another body is not refused here: which of the two
        # bodies is the one stored (or about to be) only the account knows; it answers the other 409
        reply: Reply[Any] = Reply()
        try:
            slot.mailbox.offer(Envelope(msg=msg, reply=reply, enqueued_at=trio.current_time()), decision)
        except trio.WouldBlock:
            raise AccountUnavailable(account_id, "inbox is full", retry_after=1) from None
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise AccountUnavailable(account_id, "account is stopping", retry_after=5) from None
        return reply

    def is_pending(self, account_id: str, decision_id: str) -> str | None:
        """The fingerprint of a decision queued or in flight on the account, if it is."""
        return self.slot(account_id).mailbox.pending(decision_id)

    def control(self, account_id: str, msg: Any) -> Reply[Any]:
        """Send a control message on the priority path (never queued behind decisions)."""
        slot = self.slot(account_id)
        if slot.status in ("failed", "stopped"):
            raise AccountUnavailable(account_id, f"account actor is {slot.status}", retry_after=5)
        reply: Reply[Any] = Reply()
        if not slot.mailbox.post_control(Envelope(msg=msg, reply=reply), preempt=isinstance(msg, CloseAll)):
            raise AccountUnavailable(account_id, "control mailbox is full", retry_after=1)
        return reply

    async def set_global_state(self, state: TradingState, reason: str | None) -> dict[str, Any]:
        previous = self.global_state
        self.global_state = state
        self.global_reason = reason
        await self.persistence.commit(
            [Statement("INSERT INTO service_state (key, value) VALUES ('global_state', ?) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (state,)),
             Statement("INSERT INTO service_state (key, value) VALUES ('global_reason', ?) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (reason,))],
            [event_record(None, True, self.clock.now(), GlobalStateChanged(previous=previous, to=state, reason=reason))],
        )
        return {"trading_state": state, "previous": previous, "reason": reason}

    async def load_global_state(self) -> None:
        rows = await self.persistence.query("SELECT key, value FROM service_state WHERE key LIKE 'global_%'")
        values = dict(rows)
        self.global_state = values.get("global_state") or "active"  # type: ignore[assignment]
        self.global_reason = values.get("global_reason")


def _leaf(exc: BaseException, kind: type[E]) -> E | None:
    """The first ``kind`` among an exception (group)'s leaves, if any."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _leaf(inner, kind)
            if found is not None:
                return found
    return None


def _describe(exc: BaseException) -> str:
    """A one-line description, unwrapping exception groups down to the first leaf."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


async def supervisor_actor(
    supervisor: Supervisor,
    accounts: list[tuple[AccountSettings, RiskLimits]],
    *,
    task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Start every configured account (each reports once loaded), then keep supervising."""
    async with trio.open_nursery() as nursery:
        supervisor._nursery = nursery
        await supervisor.load_global_state()
        async with trio.open_nursery() as starting:
            for settings, limits in accounts:
                starting.start_soon(supervisor.start_account, settings, limits)
        task_status.started(supervisor)
        await trio.sleep_forever()

