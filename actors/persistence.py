"""The persistence actor: sole owner of the SQLite write connection.

* WAL mode, ``synchronous`` FULL by default, schema versioned with ``PRAGMA user_version``.
* **Group commit**: writers send :class:`Commit` batches; each round the actor drains everything
  queued and commits it in *one* transaction in a worker thread (one thread hop and one fsync per
  round, not per decision), then wakes every waiter. Acknowledged => durable.
* Reads that an actor needs on its hot path (idempotency lookups) ride the same rounds, so they
  cost no extra thread hop. Reads for the HTTP API use separate read connections (:class:`Reader`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import sqlite_utils
import trio

from .messages import Reply

log = logging.getLogger("actors.persistence")

SCHEMA_VERSION = 1


class Statement(NamedTuple):
    sql: str
    params: Sequence[Any] = ()


class EventRecord(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    account_id: str | None
    is_paper: bool
    ts: float
    payload: dict[str, Any]


class CommittedEvent(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    type: str
    account_id: str | None
    is_paper: bool
    ts: float
    payload: dict[str, Any]


class Commit(msgspec.Struct, kw_only=True):
    """Statements (and outbox events) that must be durable together."""

    statements: list[Statement]
    events: list[EventRecord] = []
    reply: Reply[list[int]] | None = None


class Query(msgspec.Struct, kw_only=True):
    """A read executed on the write connection inside a round (sees every committed write)."""

    sql: str
    params: Sequence[Any] = ()
    reply: Reply[list[tuple[Any, ...]]] | None = None


# ------------------------------------------------------------------------------------- schema


def _migration_1(db: sqlite_utils.Database) -> None:
    db["accounts"].create(
        {
            "id": str, "mode": str, "venue": str, "initial_balance": str, "balance": str,
            "realized_pnl": str, "fees": str, "funding": str, "trading_state": str,
            "state_reason": str, "state_source": str, "risk_overrides": str, "cooldown_until": float,
            "peak_equity": str, "day_start_equity": str, "day": int, "settings": str,
            "created_at": float, "updated_at": float,
        },
        pk="id",
    )
    db["decisions"].create(
        {
            "seq": int, "account_id": str, "decision_id": str, "fingerprint": str, "request": str,
            "status": str, "result": str, "created_at": float,
        },
        pk="seq",
    )
    db["decisions"].create_index(["account_id", "decision_id"], unique=True)
    db["orders"].create(
        {
            "seq": int, "id": str, "account_id": str, "decision_id": str, "position_id": str,
            "symbol": str, "side": str, "type": str, "purpose": str, "reduce_only": int,
            "quantity": str, "price": str, "trigger_price": str, "status": str,
            "filled_quantity": str, "avg_price": str, "fee": str, "leverage": int,
            "take_profit": str, "stop_loss": str, "reject_code": str,
            "reject_message": str, "created_at": float, "updated_at": float,
        },
        pk="seq",
    )
    db["orders"].create_index(["account_id", "id"], unique=True)  # ids are per account, like a venue's
    db["orders"].create_index(["account_id", "seq"])
    db["fills"].create(
        {
            "seq": int, "id": str, "account_id": str, "order_id": str, "decision_id": str,
            "position_id": str, "symbol": str, "side": str, "quantity": str, "price": str,
            "fee": str, "liquidity": str, "realized_pnl": str, "trigger_price": str,
            "top_of_book_only": int, "ts": float,
        },
        pk="seq",
    )
    db["fills"].create_index(["account_id", "id"], unique=True)
    db["fills"].create_index(["account_id", "seq"])
    db["positions"].create(
        {
            "seq": int, "id": str, "account_id": str, "symbol": str, "side": str, "status": str,
            "quantity": str, "entry_price": str, "cost": str, "leverage": int, "margin": str,
            "realized_pnl": str, "fees": str, "funding": str, "opened_at": float,
            "updated_at": float, "closed_at": float, "closed_quantity": str, "exit_notional": str,
            "max_quantity": str, "take_profit": str, "stop_loss": str, "liquidation_price": str,
            "close_reason": str, "opened_by": str,
        },
        pk="seq",
    )
    db["positions"].create_index(["id"], unique=True)
    db["positions"].create_index(["account_id", "status", "seq"])
    db["funding_payments"].create(
        {
            "seq": int, "account_id": str, "position_id": str, "symbol": str, "rate": str,
            "mark": str, "amount": str, "funding_time": int, "ts": float,
        },
        pk="seq",
    )
    db["funding_payments"].create_index(["position_id", "funding_time"], unique=True)
    db["events"].create(
        {"seq": int, "type": str, "account_id": str, "is_paper": int, "ts": float, "payload": str},
        pk="seq",
    )
    db["audit"].create(
        {
            "seq": int, "account_id": str, "decision_id": str, "ts": float, "accepted": int,
            "code": str, "message": str, "checks": str,
        },
        pk="seq",
    )
    db["audit"].create_index(["account_id", "seq"])
    db["credentials"].create(
        {"id": str, "venue": str, "account_id": str, "ciphertext": bytes, "created_at": float}, pk="id"
    )
    db["service_state"].create({"key": str, "value": str}, pk="key")


MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {1: _migration_1}


def open_connection(path: str, *, synchronous: str = "FULL", readonly: bool = False) -> sqlite3.Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`, one transaction per version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {version} is newer than this service ({SCHEMA_VERSION})"
        )
    db = sqlite_utils.Database(conn)
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[target](db)
            conn.execute(f"PRAGMA user_version={target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("database migrated to schema version %d", target)
    return SCHEMA_VERSION


# ------------------------------------------------------------------------------------- rows


def text(value: Decimal | None) -> str | None:
    """Decimals are stored as TEXT, exactly (no float on the way)."""
    return None if value is None else format(value, "f")


def dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


_SQL_CACHE: dict[tuple[str, tuple[str, ...], tuple[str, ...] | None], str] = {}


def upsert(table: str, row: dict[str, Any], *, key: tuple[str, ...] | None = ("id",)) -> Statement:
    """``INSERT ... ON CONFLICT(key) DO UPDATE`` (a plain insert when ``key`` is None)."""
    columns = tuple(row)
    cache_key = (table, columns, key)
    sql = _SQL_CACHE.get(cache_key)
    if sql is None:
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"
        if key is not None:
            updates = ", ".join(f"{c}=excluded.{c}" for c in columns if c not in key)
            sql += f" ON CONFLICT({', '.join(key)}) DO UPDATE SET {updates}"
        _SQL_CACHE[cache_key] = sql
    return Statement(sql, tuple(row.values()))


def insert(table: str, row: dict[str, Any]) -> Statement:
    return upsert(table, row, key=None)


_event_encoder = msgspec.json.Encoder(decimal_format="string")


def _run_round(conn: sqlite3.Connection, items: list[Commit | Query]) -> list[Any]:
    """Runs in the worker thread: every queued item in one transaction.

    If the transaction fails, it is rolled back and each commit is retried alone, so that one
    bad batch fails only its own writer.
    """
    try:
        return _transaction(conn, items)
    except sqlite3.IntegrityError as exc:  # e.g. a resent decision id: expected, answered by its writer
        log.info("group commit of %d items refused (%s); retrying them one by one", len(items), exc)
    except sqlite3.Error:
        log.exception("group commit of %d items failed; retrying them one by one", len(items))
    results: list[Any] = []
    for item in items:
        try:
            results.extend(_transaction(conn, [item]))
        except sqlite3.Error as exc:
            results.append(exc)
    return results


def _transaction(conn: sqlite3.Connection, items: list[Commit | Query]) -> list[Any]:
    results: list[Any] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for item in items:
            if isinstance(item, Query):
                results.append(conn.execute(item.sql, item.params).fetchall())
                continue
            for statement in item.statements:
                conn.execute(statement.sql, statement.params)
            seqs: list[int] = []
            for event in item.events:
                cursor = conn.execute(
                    "INSERT INTO events (type, account_id, is_paper, ts, payload) VALUES (?, ?, ?, ?, ?)",
                    (event.type, event.account_id, int(event.is_paper), event.ts,
                     _event_encoder.encode(event.payload).decode()),
                )
                seqs.append(cursor.lastrowid or 0)
            results.append(seqs)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return results


class PersistenceStats(msgspec.Struct, kw_only=True):
    rounds: int = 0
    commits: int = 0
    queries: int = 0
    statements: int = 0
    largest_round: int = 0
    failed: int = 0


class Persistence:
    """The handle other actors use: ``await commit(...)`` returns once the data is durable."""

    def __init__(self, send: trio.MemorySendChannel[Commit | Query], stats: PersistenceStats) -> None:
        self._send = send
        self.stats = stats
        self.on_committed: Callable[[list[CommittedEvent]], None] | None = None

    async def commit(self, statements: list[Statement], events: list[EventRecord] | None = None) -> list[int]:
        """Queue a batch and wait until it is committed; returns the events' sequence numbers."""
        reply: Reply[list[int]] = Reply()
        await self._send.send(Commit(statements=statements, events=events or [], reply=reply))
        return await reply.wait()

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        reply: Reply[list[tuple[Any, ...]]] = Reply()
        await self._send.send(Query(sql=sql, params=params, reply=reply))
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
    task_status: trio.TaskStatus[Persistence] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Own the write connection; commit queued batches in rounds until the channel closes.

    ``inline`` runs each round on the trio thread instead of a worker thread: slower for a
    service, but deterministic under a virtual clock (``execd replay``), where a task waiting on a
    thread would count as blocked and let virtual time run ahead of the commit.
    """
    conn = open_connection(path, synchronous=synchronous)
    migrate(conn)
    send, receive = trio.open_memory_channel[Commit | Query](queue_size)
    stats = PersistenceStats()
    handle = Persistence(send, stats)
    writer = trio.CapacityLimiter(1)
    task_status.started(handle)
    try:
        async with receive:
            while True:
                try:
                    first = await receive.receive()
                except trio.EndOfChannel:
                    break
                batch: list[Commit | Query] = [first]
                while len(batch) < max_batch:
                    try:
                        batch.append(receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                # Not cancellable: a round that started always finishes, so a reply is never lost.
                if inline:
                    results = _run_round(conn, batch)
                else:
                    results = await trio.to_thread.run_sync(_run_round, conn, batch, limiter=writer)
                _deliver(handle, batch, results)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_close, conn, limiter=writer)


def _deliver(handle: Persistence, batch: list[Commit | Query], results: list[Any]) -> None:
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
        if isinstance(item, Query):
            stats.queries += 1
        else:
            stats.commits += 1
            stats.statements += len(item.statements)
            for seq, event in zip(result, item.events):
                committed.append(CommittedEvent(seq=seq, type=event.type, account_id=event.account_id,
                                                is_paper=event.is_paper, ts=event.ts, payload=event.payload))
        if item.reply is not None:
            item.reply.set(result)
    if committed and handle.on_committed is not None:
        handle.on_committed(committed)


def _close(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


class Reader:
    """Read connections for the HTTP API, used from worker threads (one connection per thread)."""

    def __init__(self, path: str, size: int = 4) -> None:
        self._path = path
        self._pool: list[sqlite3.Connection] = []
        self._limiter = trio.CapacityLimiter(size)

    def _take(self) -> sqlite3.Connection:
        if self._pool:
            return self._pool.pop()
        return open_connection(self._path, readonly=True)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        async with self._limiter:
            conn = self._take()
            try:
                return await trio.to_thread.run_sync(fn, conn, *args)
            finally:
                self._pool.append(conn)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        def _fetch(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            cursor = conn.execute(sql, params)
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row)) for row in cursor.fetchall()]  # type: ignore[misc]

        return await self.run(_fetch)

    def close(self) -> None:
        for conn in self._pool:
            conn.close()
        self._pool.clear()
