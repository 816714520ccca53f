"""The SQLite backend: the write connection's rounds, and read connections for the HTTP API.

WAL mode, ``synchronous`` FULL by default (acknowledged => durable). A round runs every queued item
in one ``BEGIN IMMEDIATE`` transaction; if it fails, it is rolled back and each item is retried
alone, so one bad batch fails only its own writer.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import trio

from .errors import IntegrityError
from .items import Call, Commit, CommitResult, Item, Query
from .schema import migrate

log = logging.getLogger("actors.persistence")

_event_encoder = msgspec.json.Encoder(decimal_format="string")


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


def encode_payload(payload: Any) -> bytes:
    """An event's payload as JSON, encoded once (stored as is, and sent as is to subscribers)."""
    return _event_encoder.encode(payload)


class SqliteBackend:
    """The write connection of one SQLite file; every method runs in the persistence worker."""

    dialect = "sqlite"

    def __init__(self, path: str, synchronous: str = "FULL") -> None:
        self.path = path
        self.conn = open_connection(path, synchronous=synchronous)
        migrate(self.conn)

    def run_round(self, items: list[Item]) -> list[Any]:
        try:
            return self._transaction(items)
        except sqlite3.IntegrityError as exc:  # e.g. a resent decision id: expected, answered by its writer
            log.info("group commit of %d items refused (%s); retrying them one by one", len(items), exc)
        except sqlite3.Error:
            log.exception("group commit of %d items failed; retrying them one by one", len(items))
        results: list[Any] = []
        for item in items:
            try:
                results.extend(self._transaction([item]))
            except sqlite3.IntegrityError as exc:  # the backend-neutral kind, for the writer
                error = IntegrityError(str(exc))
                error.__cause__ = exc
                results.append(error)
            except sqlite3.Error as exc:
                results.append(exc)
        return results

    def _transaction(self, items: list[Item]) -> list[Any]:
        conn = self.conn
        results: list[Any] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for item in items:
                if isinstance(item, Query):
                    results.append(conn.execute(item.sql, item.params).fetchall())
                elif isinstance(item, Call):
                    results.append(item.fn(conn, *item.args))
                else:
                    results.append(_write(conn, item))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return results

    def close(self) -> None:
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.conn.close()


def _write(conn: sqlite3.Connection, item: Commit) -> CommitResult:
    for statement in item.statements:
        conn.execute(statement.sql, statement.params)
    seqs: list[int] = []
    payloads: list[bytes] = []
    for event in item.events:
        payload = encode_payload(event.payload)
        cursor = conn.execute(
            "INSERT INTO events (type, account_id, is_paper, ts, payload) VALUES (?, ?, ?, ?, ?)",
            (event.type, event.account_id, int(event.is_paper), event.ts, payload.decode()),
        )
        seqs.append(cursor.lastrowid or 0)
        payloads.append(payload)
    return CommitResult(seqs, payloads)


def rows_as_dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


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

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return await self.run(lambda conn: rows_as_dicts(conn.execute(sql, params)))

    def close(self) -> None:
        for conn in self._pool:
            conn.close()
        self._pool.clear()
