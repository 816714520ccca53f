"""Execution: the seam between an account and its venue (``protocol``), and its adapters.

``paper`` is the simulated venue of a paper account; a live account's adapter (signed trading
client, user-data stream, reconciliation) plugs into the same protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from .paper import PaperVenue
from .protocol import ExecutionAdapter

if TYPE_CHECKING:
    from ..account.context import AccountContext
    from ..domain.book import AccountBook

__all__ = ["ExecutionAdapter", "PaperVenue", "open_adapter"]


async def open_adapter(ctx: AccountContext, book: AccountBook, nursery: trio.Nursery) -> ExecutionAdapter:
    """The adapter of an account, its background tasks (if any) started in the account's
    ``nursery``, its working orders back on the venue after a restart."""
    if ctx.settings.mode != "paper":
        raise NotImplementedError(f"account {ctx.settings.id}: no execution adapter for mode {ctx.settings.mode!r}")
    venue = PaperVenue(book.account_id, ctx.market, book.positions, book.funded_until,
                       trigger_price=ctx.settings.trigger_price, latency=ctx.paper_latency)
    await venue.restore(list(book.orders.values()))
    return venue
