"""The persistence actor: sole owner of the database's write connection.

**Group commit**: writers send :class:`~.items.Commit` batches; each round the actor drains
everything queued and runs it in *one* transaction in a worker thread (one thread hop and one
fsync per round, not per decision), then wakes every waiter. Acknowledged => durable. Reads that an
actor needs on its hot path ride the same rounds, so they cost no extra thread hop. Reads for the
HTTP API use separate read connections (:class:`~.sqlite.Reader`).

The backend (SQLite here) only runs rounds; the actor's loop, batching and delivery are the same
for every backend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec
import trio

from ..messages import Reply
from .items import Call, Claim, Commit, CommitResult, CommittedEvent, EventRecord, Item, Query
from .rows import Statement
from .sqlite import SqliteBackend

log = logging.getLogger("actors.persistence")


class Backend(Protocol):
    """A database's write connection. Every method runs in the persistence worker thread."""

    dialect: str

    def run_round(self, items: list[Item]) -> list[Any]:
        """Run ``items`` in one transaction (each alone if that fails); one result per item:
        :class:`CommitResult`, rows, a Call's return value, or the exception that item raised."""
        ...

    def close(self) -> None: ...


class PersistenceStats(msgspec.Struct, kw_only=True):
    rounds: int = 0
    commits: int = 0
    queries: int = 0
    statements: int = 0
    largest_round: int = 0
    failed: int = 0
    #: seconds spent in rounds (thread hop included), for the commit-time metric
    round_seconds: float = 0.0


class Persistence:
    """The handle other actors use: ``await commit(...)`` returns once the data is durable."""

    def __init__(self, send: trio.MemorySendChannel[Item], stats: PersistenceStats, dialect: str,
                 claim: Claim | None = None) -> None:
        self._send = send
        self.stats = stats
        self.dialect = dialect
        #: the lease every commit through this handle is fenced by (see :meth:`fenced`)
        self.claim = claim
        self.on_committed: Callable[[list[CommittedEvent]], None] | None = None

    def fenced(self, claim: Claim) -> Persistence:
        """A handle on the same actor whose commits all carry ``claim`` (cluster mode: an account
        started under a shard lease commits only while its node holds that lease at that epoch)."""
        return Persistence(self._send, self.stats, self.dialect, claim)

    async def commit(self, statements: Sequence[Statement], events: Sequence[EventRecord] = (), *,
                     on_commit: Callable[[], None] | None = None, claim: Claim | None = None) -> list[int]:
        """Queue a batch and wait until it is committed; returns the events' sequence numbers.

        ``on_commit`` runs as soon as the batch is committed, before its events are published
        (see :class:`~.items.Commit`); if it raises, the commit stands and this call raises.
        A fenced commit (``claim``, or the handle's) raises :class:`~.errors.Fenced` when the
        lease is no longer held: nothing of it was written.
        """
        reply: Reply[list[int]] = Reply()
        await self._post(Commit(statements=statements, events=events, reply=reply, on_commit=on_commit,
                                claim=claim or self.claim))
        return await reply.wait()

    async def _post(self, item: Item) -> None:
        """Queue an item; wait only while the queue is full (the wait for its reply that always
        follows is the checkpoint: no second trip through the scheduler for a queue with room)."""
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            await self._send.send(item)

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        reply: Reply[list[tuple[Any, ...]]] = Reply()
        await self._post(Query(sql=sql, params=params, reply=reply))
        return await reply.wait()

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(connection, *args)`` inside a round (reads that belong together: one hop)."""
        reply: Reply[Any] = Reply()
        await self._post(Call(fn=fn, args=args, reply=reply))
        return await reply.wait()

    async def aclose(self) -> None:
        await self._send.aclose()


async def persistence_actor(
    path: str,
    *,
    synchronous: str = "FULL",
    max_batch: int = 1024,
    queue_size: int = 4096,
    inline: bool = False,
    backend: Backend | None = None,
    task_status: trio.TaskStatus[Persistence] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Own the write connection; run queued items in rounds until the channel closes.

    ``inline`` runs each round on the trio thread instead of a worker thread: slower for a
    service, but deterministic under a virtual clock (``execd replay``), where a task waiting on a
    thread would count as blocked and let virtual time run ahead of the commit.
    """
    writer = trio.CapacityLimiter(1)
    if backend is None:
        backend = SqliteBackend(path, synchronous) if inline else await trio.to_thread.run_sync(
            SqliteBackend, path, synchronous, limiter=writer)
    send, receive = trio.open_memory_channel[Item](queue_size)
    stats = PersistenceStats()
    handle = Persistence(send, stats, backend.dialect)
    task_status.started(handle)

    async def run(batch: list[Item]) -> None:
        started = trio.current_time()
        # Shielded: a batch taken from the channel is always run and answered. (to_thread.run_sync
        # checks for cancellation before it starts the thread: unshielded, a cancellation arriving
        # between the take and the round would drop the batch and strand its waiting writers.)
        if inline:
            results = backend.run_round(batch)
        else:
            with trio.CancelScope(shield=True):
                results = await trio.to_thread.run_sync(backend.run_round, batch, limiter=writer)
        stats.round_seconds += trio.current_time() - started
        _deliver(handle, batch, results)

    try:
        async with receive:
            try:
                while True:
                    try:
                        first = await receive.receive()
                    except trio.EndOfChannel:
                        break
                    await run(_take(receive, [first], max_batch))
            finally:
                # Cancelled (a hard stop): what is queued was sent by tasks that wait for its answer,
                # often shielded (a commit in flight is never abandoned). Commit it, then close the
                # channel with no checkpoint in between: a later send fails at once, none waits for ever.
                while batch := _take(receive, [], max_batch):
                    await run(batch)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(backend.close, limiter=writer)


def _take(receive: trio.MemoryReceiveChannel[Item], batch: list[Item], max_batch: int) -> list[Item]:
    """Add what is queued to ``batch``, up to ``max_batch`` items, without waiting."""
    while len(batch) < max_batch:
        try:
            batch.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    return batch


def _deliver(handle: Persistence, batch: list[Item], results: list[Any]) -> None:
    stats = handle.stats
    stats.rounds += 1
    stats.largest_round = max(stats.largest_round, len(batch))
    committed: list[CommittedEvent] = []
    for item, result in zip(batch, results):
        if isinstance(result, Exception):
            stats.failed += 1
            if item.reply is not None:
                item.reply.fail(result)
            continue
        if isinstance(item, Commit):
            assert isinstance(result, CommitResult)
            if item.on_commit is not None:
                try:
                    item.on_commit()
                except Exception as exc:  # the writer's own failure: it learns of it, the others do not
                    if item.reply is not None:
                        item.reply.fail(exc)
                    item = msgspec.structs.replace(item, reply=None)
            stats.commits += 1
            stats.statements += len(item.statements)
            for seq, payload, event in zip(result.seqs, result.payloads, item.events):
                committed.append(CommittedEvent(seq=seq, type=event.type, account_id=event.account_id,
                                                is_paper=event.is_paper, ts=event.ts,
                                                payload_json=msgspec.Raw(payload)))
            result = result.seqs
        elif isinstance(item, Query):
            stats.queries += 1
        if item.reply is not None:
            item.reply.set(result)
    if committed and handle.on_committed is not None:
        handle.on_committed(committed)


__all__ = ["Backend", "Persistence", "PersistenceStats", "persistence_actor"]
