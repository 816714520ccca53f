"""The execution seam: what an account asks of its venue, paper or live (DESIGN.md §2).

The account actor never simulates and never signs. It plans (pure), makes the order's intent
durable when its adapter talks to a venue (:attr:`ExecutionAdapter.write_ahead`), hands the order
to its adapter, and commits every report before it acts on it. Both adapters speak the venues'
own order lifecycle (``actors.domain.execution``: intents in, execution reports out), the way
NautilusTrader's ``ExecutionClient`` and piker's paper engine ("a fake broker speaking the live
protocol") do:

* :class:`~actors.execution.paper.PaperVenue` is a simulated venue for its account: it works the
  account's resting limit orders and its TP/SL trigger orders, fires them from the market-data
  actor's price alarms, settles funding, liquidates, and answers with the reports a venue sends.
  Its answers are local and immediate, so the account commits intent and outcome in one round;
  until that commit its effects are provisional (:meth:`ExecutionAdapter.settle`).
* ``actors.execution.live.LiveAdapter`` (the live-trading work) talks to AsterDEX or Binance
  USDⓈ-M with signed requests; it is built on this same protocol and nothing here changes for it.

Messages the venue sends on its own (a price alarm of the simulated venue; the user-data stream
of a live one) reach the account's mailbox as :class:`~actors.messages.VenueMessage` and are
turned into reports by :meth:`ExecutionAdapter.on_message`, in the account's own task, so that an
account handles one thing at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..domain.execution import (
    CancelIntent, ExecutionReport, FundingReport, OrderIntent, Report, VenueOrderState, VenuePositionState,
)

__all__ = [
    "CancelIntent",
    "ExecutionAdapter",
    "ExecutionReport",
    "FundingReport",
    "OrderIntent",
    "Report",
    "VenueOrderState",
    "VenuePositionState",
]


class ExecutionAdapter(Protocol):
    """One account's connection to its venue."""

    venue: str
    is_paper: bool
    #: True: the intent must be durable before :meth:`submit` (anything that talks to a venue).
    #: False (paper): submit's effects are local and provisional until :meth:`settle`.
    write_ahead: bool
    #: True: sending an order may wait (for a venue's answer, a simulated latency), so an emergency
    #: close-all can interrupt a decision on its way; False: the order is answered without waiting.
    interruptible: bool

    async def submit(self, intent: OrderIntent) -> Sequence[Report]:
        """Send an order. Returns what the venue answered at once (possibly nothing); the rest
        arrives later as venue messages. An ambiguous outcome (timeout, 5xx...) is never resent:
        the adapter settles it by asking the venue for ``intent.client_order_id``."""
        ...

    async def cancel(self, intent: CancelIntent) -> Sequence[Report]:
        """Cancel an order; a venue that no longer has it answers a rejection (-2011)."""
        ...

    async def query(self, symbol: str, client_order_id: str, *, conditional: bool = False) -> VenueOrderState | None:
        """The venue's view of one order (None: the venue does not know it)."""
        ...

    async def open_orders(self) -> Sequence[VenueOrderState]:
        """Every order working on the venue for this account, conditional ones included."""
        ...

    async def positions(self) -> Sequence[VenuePositionState]:
        """Every open position on the venue."""
        ...

    async def on_message(self, message: Any) -> Sequence[Report]:
        """Turn a message the venue sent on its own into reports (in the account's task)."""
        ...

    async def poll(self, now: float) -> Sequence[Report]:
        """What the venue did on its own that no message told: funding settlements, triggers
        whose alarm was dropped (paper). Called on the account's housekeeping tick."""
        ...

    async def settle(self, committed: bool) -> None:
        """The account committed (True) or could not commit (False) what the adapter's last
        answers produced. A provisional adapter makes them final, or undoes them."""
        ...

    def connection(self) -> dict[str, Any] | None:
        """What an operator may see of the venue connection (a masked key id at most, never a
        secret); None for a paper venue."""
        ...
