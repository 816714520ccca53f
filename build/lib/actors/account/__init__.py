"""The account actor and what it is made of.

``mailbox`` (its ways in, owned by the supervisor), ``context`` (what the supervisor gives it, how
it rebuilds its book, its read-only snapshot), ``actor`` (the loop: receive, plan, commit, send,
apply), ``decisions`` and ``protection`` (how a decision and a position's protection are executed).
The rules themselves are pure, in ``actors.domain`` (planner, ledger, book).
"""

from __future__ import annotations

import trio

from .actor import HOUSEKEEPING_SECONDS as HOUSEKEEPING_SECONDS
from .actor import AccountActor as AccountActor
from .context import AccountContext as AccountContext
from .context import AccountSnapshot as AccountSnapshot
from .context import load_book
from .mailbox import Mailbox as Mailbox

__all__ = ["HOUSEKEEPING_SECONDS", "AccountActor", "AccountContext", "AccountSnapshot", "Mailbox", "account_actor"]


async def account_actor(ctx: AccountContext, *,
                        task_status: trio.TaskStatus[AccountActor] = trio.TASK_STATUS_IGNORED) -> None:
    """Rebuild the account from the database, open its adapter in the account's own nursery, then
    serve its mailbox until the inbox closes."""
    book = await load_book(ctx)
    async with trio.open_nursery() as nursery:
        adapter = await ctx.adapter_factory(ctx, book, nursery)
        await AccountActor(ctx, book, adapter).run(task_status)
        nursery.cancel_scope.cancel()
