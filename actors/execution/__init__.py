"""Execution: the seam between an account and its venue (``protocol``), and its adapters.

``paper`` is the simulated venue of a paper account; ``live`` the adapter of a live account
(signed trading client, user-data stream), on the same protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from .live import LiveAdapter, open_live_adapter
from .paper import PaperVenue
from .protocol import ExecutionAdapter
from .twin import TwinVenue

if TYPE_CHECKING:
    from ..account.context import AccountContext
    from ..domain.book import AccountBook

__all__ = ["ExecutionAdapter", "LiveAdapter", "PaperVenue", "TwinVenue", "open_adapter"]


async def open_adapter(ctx: AccountContext, book: AccountBook, nursery: trio.Nursery) -> ExecutionAdapter:
    """The adapter of an account, its background tasks (if any) started in the account's
    ``nursery``, its working orders back on the venue after a restart."""
    if ctx.settings.mode == "live":
        return await open_live_adapter(ctx, book, nursery)
    # a paper account: its simulated venue reads the market and nothing else (no client that
    # could write to an exchange exists for it); a live account's paper twin reads it as the
    # live orders went out
    venue_type = TwinVenue if ctx.settings.twin_of is not None else PaperVenue
    venue = venue_type(book.account_id, ctx.market, book.positions, book.funded_until,
                       trigger_price=ctx.settings.trigger_price, latency=ctx.paper_latency)
    await venue.restore(list(book.orders.values()))
    return venue
