"""Inter-actor messages: frozen msgspec Structs, one union per inbox.

Commands are imperative (``SubmitDecision``), events past tense (``AlarmFired``). A request that
needs an answer travels inside an :class:`Envelope` that carries its :class:`Reply` slot beside the
payload, so the payload itself stays a plain serializable value.

Directions:

* front door -> account (inbox, one at a time): :data:`AccountCommand`
* front door / supervisor -> account (priority path, never behind decisions): :data:`ControlCommand`
* venue -> account (priority path): :class:`AlarmFired` from the market-data actor for the paper
  venue, user-data stream events for a live one; the account hands them to its adapter
* account -> market data, market data -> venue feed: :data:`SymbolCommand`
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

import msgspec
import trio

from .domain.decisions import Decision
from .domain.market import Quote
from .domain.risk import Rejection, RiskVerdict, TradingState

__all__ = [
    "AccountCommand", "AccountUnavailable", "ActorCrashed", "ActorState", "AcquireSymbol", "AlarmFired",
    "CancelOrder", "CloseAll", "ControlCommand", "DecisionConflict", "Envelope", "InjectCrash", "Rejection",
    "ReleaseSymbol", "Reply", "SetProtection", "SetTradingState", "SubmitDecision", "SymbolCommand",
    "TradingState", "UnknownAccount", "UpdateRiskLimits",
]

T = TypeVar("T")

ActorState = Literal["starting", "running", "restarting", "failed", "stopped"]


class Reply(Generic[T]):
    """A one-shot reply slot: the waiting task is parked on the slot itself and woken with the
    answer (no Event, no parking lot: the cheapest request/reply in trio, taken twice by every
    decision). A wait is cancellable; the answer is kept, so a later wait has it at once."""

    __slots__ = ("_done", "_value", "_error", "_waiters")

    def __init__(self) -> None:
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None
        self._waiters: list[trio.lowlevel.Task] = []

    @property
    def done(self) -> bool:
        return self._done

    def set(self, value: T) -> None:
        if self._done:
            return
        self._value = value
        self._wake()

    def fail(self, error: BaseException) -> None:
        if self._done:
            return
        self._error = error
        self._wake()

    def _wake(self) -> None:
        self._done = True
        waiters, self._waiters = self._waiters, []
        for task in waiters:
            trio.lowlevel.reschedule(task)  # each waiter reads the answer from the slot

    async def wait(self) -> T:
        if self._done:
            await trio.lowlevel.checkpoint()
        else:
            task = trio.lowlevel.current_task()
            self._waiters.append(task)

            def abort(_: Any) -> trio.lowlevel.Abort:
                self._waiters.remove(task)
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


# ---------------------------------------------------------------- front door -> account (inbox)


class MirroredDecision(msgspec.Struct, frozen=True, kw_only=True):
    """What a live account tells its paper twin with a decision it accepted, as its order goes out
    (``actors.account.twin``): the twin executes it on this quote, whatever its own gate says."""

    live_account_id: str
    received_at: float  # when the live account took the decision (its clock)
    reference_price: Decimal  # the decision's reference price, else the mark at decision time
    reference: Literal["decision", "mark"]
    live_order_id: str
    live_order_side: Literal["BUY", "SELL"]
    verdict: RiskVerdict  # the live account's gate
    quote: Quote  # the market as the live order went out


class SubmitDecision(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    decision: Decision
    fingerprint: str
    request_json: str
    #: set only on what a live account forwards to its paper twin
    mirror: MirroredDecision | None = None


class CancelOrder(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    order_id: str


class SetProtection(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    symbol: str
    take_profit: Decimal | None
    stop_loss: Decimal | None


AccountCommand = SubmitDecision | CancelOrder | SetProtection


# ---------------------------------------------------------------- control path (priority)


class SetTradingState(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    state: TradingState
    reason: str | None = None
    source: Literal["account", "global", "loss_limit"] = "account"


class CloseAll(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    reason: str = "close_all"


class UpdateRiskLimits(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Risk-limit overrides (DESIGN §6 names); the account merges and validates them."""

    overrides: dict[str, Any]


class InjectCrash(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Test-only fault hook: the actor raises when it handles this (or in its next decision)."""

    where: Literal["now", "next_decision"] = "now"


ControlCommand = SetTradingState | CloseAll | UpdateRiskLimits | InjectCrash


# ---------------------------------------------------------------- venue -> account (priority)


class AlarmFired(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """From the market-data actor: one of the paper venue's price alarms was crossed."""

    alarm_id: str
    symbol: str
    kind: str
    ref: str
    threshold: Decimal
    price: Decimal


# ---------------------------------------------------------------- symbols (account -> market data -> feed)


class AcquireSymbol(msgspec.Struct, frozen=True, tag=True):
    """A consumer needs quotes of ``symbol`` (a feed subscribes on the first acquire)."""

    symbol: str


class ReleaseSymbol(msgspec.Struct, frozen=True, tag=True):
    """A consumer no longer needs ``symbol`` (a feed unsubscribes on the last release)."""

    symbol: str


SymbolCommand = AcquireSymbol | ReleaseSymbol


class Envelope(msgspec.Struct, kw_only=True):
    """A message and where to answer it."""

    msg: Any
    reply: Reply[Any] | None = None
    enqueued_at: float = 0.0


# ---------------------------------------------------------------- refusals


class AccountUnavailable(Exception):
    """The account cannot take the message now (restarting, failed, inbox full, stopping)."""

    def __init__(self, account_id: str, reason: str, retry_after: float = 1.0) -> None:
        super().__init__(f"account {account_id} is unavailable: {reason}")
        self.account_id = account_id
        self.reason = reason
        self.retry_after = retry_after


class UnknownAccount(Exception):
    def __init__(self, account_id: str) -> None:
        super().__init__(f"no account {account_id!r}")
        self.account_id = account_id


class DecisionConflict(Exception):
    """Same decision id, different body."""


class ActorCrashed(Exception):
    """The account actor crashed while handling this message; nothing of it was committed."""


class AccountCannotStart(Exception):
    """An account that restarting would not help (missing or refused credentials): it is left
    ``failed`` with this message until an operator restarts it."""


class CommandRefused(Exception):
    """The account refused a command (an unknown order, an invalid level, an invalid limit);
    ``code`` is stable, ``status`` the HTTP status it maps to."""

    def __init__(self, code: str, message: str, *, status: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.field = field
