"""An account's mailbox. It belongs to the supervisor and survives actor restarts.

Three ways in, each with one kind of writer:

* the **inbox** (bounded, FIFO): decisions and commands from the front door, through the
  supervisor (:meth:`Mailbox.offer`); a full inbox refuses at once (503) instead of queueing;
* the **control** path: trading-state changes, close-all, risk limits (:meth:`post_control`);
  they never wait behind queued decisions, and close-all also cancels the decision in flight;
* the **venue** path: what the venue sends on its own — the paper venue's fired price alarms from
  the market-data actor, a live venue's user-data stream (:meth:`post_venue`); never blocks: a
  full path drops and counts (the account's periodic re-check covers a dropped alarm).

The actor takes from them (control first, then venue, then the inbox) and is woken out of its idle
wait, or out of a wait for a venue's answer, by any post. Fields written by the actor are marked.
"""

from __future__ import annotations

import collections
from typing import Any

import trio

from ..messages import Envelope

#: at most this many commands are taken from a full inbox without a yield to the other tasks
YIELD_EVERY = 16


class Mailbox:
    def __init__(self, account_id: str, inbox_size: int, priority_size: int = 1024) -> None:
        self.account_id = account_id
        self._inbox_send, self._inbox_receive = trio.open_memory_channel[Envelope](inbox_size)
        # the priority paths and the wake-up are created when first used: most accounts are idle,
        # and every byte of an idle account counts ten thousand times
        self._control: collections.deque[Envelope] | None = None
        self._venue: collections.deque[Any] | None = None
        self._priority_size = priority_size
        self._posted: trio.Event | None = None
        #: decisions queued or in flight: decision id -> fingerprint (added by offer, removed by answer)
        self._pending: dict[str, str] = {}
        self.dropped = 0  # control or venue messages refused because their path was full
        self._taken_in_a_row = 0  # commands taken without an idle wait since the last yield
        # written by the actor only
        self.work_scope: trio.CancelScope | None = None  # the decision in flight (close-all cancels it)
        self.current: Envelope | None = None  # the message being handled (answered if the actor crashes)

    # ------------------------------------------------------------------ front door / supervisor

    def offer(self, envelope: Envelope, decision: tuple[str, str] | None = None) -> None:
        """Queue a command without waiting. Raises ``trio.WouldBlock`` when the inbox is full and
        ``trio.ClosedResourceError`` once the account stops. ``decision`` = (id, fingerprint)."""
        self._inbox_send.send_nowait(envelope)
        if decision is not None:
            self._pending.setdefault(*decision)

    def post_control(self, envelope: Envelope, *, preempt: bool = False) -> bool:
        """Put a control message ahead of every queued decision and wake the actor; ``preempt``
        also cancels the decision in flight. Never blocks: False when the path is full."""
        if self._control is None:
            self._control = collections.deque()
        if len(self._control) >= self._priority_size:
            self.dropped += 1
            return False
        self._control.append(envelope)
        if preempt and self.work_scope is not None:
            self.work_scope.cancel()
        self._wake()
        return True

    def pending(self, decision_id: str) -> str | None:
        """The fingerprint of a decision queued or in flight, if it is."""
        return self._pending.get(decision_id)

    async def close(self) -> None:
        """No more commands: the actor finishes what is queued, then returns."""
        await self._inbox_send.aclose()

    # ------------------------------------------------------------------ venue

    def post_venue(self, message: Any) -> bool:
        """A message the venue sent on its own. Never blocks: False (and counted) when full."""
        if self._venue is None:
            self._venue = collections.deque()
        if len(self._venue) >= self._priority_size:
            self.dropped += 1
            return False
        self._venue.append(message)
        self._wake()
        return True

    # ------------------------------------------------------------------ the actor's side

    def take_control(self) -> Envelope | None:
        return self._control.popleft() if self._control else None

    def take_venue(self) -> Any | None:
        return self._venue.popleft() if self._venue else None

    def drain_control(self) -> list[Envelope]:
        """Every queued control message (answered with a refusal when the service stops)."""
        drained = list(self._control or ())
        self._control = None
        return drained

    def drain_inbox(self) -> list[Envelope]:
        """Every command still queued (answered with a refusal when the account moves to another
        node: its actor was stopped without finishing them)."""
        drained: list[Envelope] = []
        while True:
            try:
                drained.append(self._inbox_receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return drained

    async def receive(self, deadline: float) -> Envelope | None:
        """The next command, or None when something was posted on a priority path or the
        deadline passed first. Raises ``trio.EndOfChannel`` once closed and drained."""
        if self._control or self._venue:
            return None
        await trio.lowlevel.checkpoint_if_cancelled()
        try:  # a busy account's next command is already queued: no idle wait (and no cancel scope)
            envelope = self._inbox_receive.receive_nowait()
        except trio.WouldBlock:
            pass
        else:
            # a decision yields while its commit is made; a run of commands that never wait (answers
            # from memory to resent ids) yields here, so the other tasks still get their turn
            self._taken_in_a_row += 1
            if self._taken_in_a_row >= YIELD_EVERY:
                self._taken_in_a_row = 0
                await trio.lowlevel.cancel_shielded_checkpoint()
            return envelope
        self._taken_in_a_row = 0
        with trio.CancelScope(deadline=deadline) as idle:
            self._waiter = idle
            try:
                return await self._inbox_receive.receive()
            finally:
                self._waiter = None
        return None

    async def wait_posted(self) -> None:
        """Until something is posted on a priority path (inside a wait for a venue's answer)."""
        if self._control or self._venue:
            return
        if self._posted is None:
            self._posted = trio.Event()
        await self._posted.wait()

    def answered(self, decision_id: str) -> None:
        self._pending.pop(decision_id, None)

    # ------------------------------------------------------------------ inspection

    @property
    def inbox_depth(self) -> int:
        return self._inbox_send.statistics().current_buffer_used

    @property
    def inbox_capacity(self) -> float:
        return self._inbox_send.statistics().max_buffer_size

    @property
    def priority_depth(self) -> int:
        return len(self._control or ()) + len(self._venue or ())

    _waiter: trio.CancelScope | None = None

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.cancel()
        if self._posted is not None:
            self._posted.set()
            self._posted = None
