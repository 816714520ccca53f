"""The PostgreSQL backend: the store of a cluster (several nodes on one database).

Same promise as SQLite: a round runs every queued item in *one* transaction in the persistence
worker thread (psycopg 3, one connection), acknowledged => committed (``synchronous_commit`` is the
server's, ``on`` by default), and a round that fails is rolled back and each item retried alone.

* **Same SQL.** The queries are written once with ``?`` placeholders (``queries.py``);
  :func:`translate` turns them into psycopg's ``%s`` in one place, and :class:`PgConnection` gives
  the functions written for ``sqlite3`` (``conn.execute(sql, params).fetchone()``, ``fetchall()``,
  iteration) the same surface, so ``load_account`` and friends run unchanged.
* **Same schema.** :func:`migrate_postgres` generates the DDL from ``schema.MIGRATIONS`` (data,
  not SQL) and keeps the version in ``execd_schema``; several nodes starting at once migrate one
  at a time (an advisory lock).
* **Outbox order = commit order.** PostgreSQL hands out ``events.seq`` when a row is inserted,
  not when it commits, so two nodes committing at once could make ``seq`` 8 visible before 7 and
  a relay reading ``seq > 7`` would skip 7 forever. Each round therefore inserts its events last,
  under a transaction-scoped advisory lock held until its commit: the next round's events get
  higher numbers *and* commit later, so every snapshot sees a prefix of ``seq``.
* **Fencing.** A :class:`~.items.Commit` may carry a :class:`~.items.Claim` (lease, epoch). The
  round asks the injected ``fence`` check, *inside its own transaction and before any write*,
  which claims its node no longer holds, and fails just those commits with
  :class:`~.errors.Fenced`. The check locks the lease rows (``FOR SHARE``, see
  ``actors.cluster.leases``) until the commit, so a takeover waits for it or refuses it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import trio

from .errors import Fenced, IntegrityError
from .items import Call, Claim, Commit, CommitResult, Item, Query
from .schema import MIGRATIONS, SCHEMA_VERSION, AddColumn, CreateIndex, CreateTable, DropIndex, Operation, index_ddl
from .sqlite import encode_payload, rows_as_dicts

log = logging.getLogger("actors.persistence")

#: advisory lock keys (arbitrary constants, the same in every node)
MIGRATION_LOCK = 0x657865630001
EVENTS_LOCK = 0x657865630002
#: events per INSERT statement (5 parameters each; PostgreSQL allows 65535 per statement)
EVENTS_PER_STATEMENT = 1000

FenceCheck = Callable[["PgConnection", set[Claim]], dict[Claim, Fenced]]
"""Given the distinct claims of a round, the refused ones; runs inside the round's transaction."""

_TRANSLATED: dict[str, str] = {}


def translate(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (and a literal ``%`` to ``%%``), outside quotes.

    The one place where the shared dialect meets psycopg; cached, as the service's statements are
    a small fixed set."""
    cached = _TRANSLATED.get(sql)
    if cached is not None:
        return cached
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if ch == "%":
            out.append("%%")
        elif quote is not None:
            out.append(ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        else:
            out.append(ch)
    translated = "".join(out)
    if len(_TRANSLATED) < 10_000:
        _TRANSLATED[sql] = translated
    return translated


class PgConnection:
    """A psycopg connection with the surface the service's SQL functions use on ``sqlite3``:
    ``execute(sql, params)`` with ``?`` placeholders, returning a cursor that has ``fetchone()``,
    ``fetchall()``, ``description`` and iterates over its rows (tuples)."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self.raw.execute(translate(sql), tuple(params))  # type: ignore[arg-type]

    @property
    def broken(self) -> bool:
        return self.raw.closed or self.raw.broken

    def close(self) -> None:
        self.raw.close()


def connect(url: str, *, application_name: str = "execd") -> PgConnection:
    """An autocommit connection (transactions are explicit: ``with conn.raw.transaction()``)."""
    return PgConnection(psycopg.connect(url, autocommit=True, application_name=application_name,
                                        connect_timeout=10))


# ------------------------------------------------------------------------------------ schema

_PG_TYPES: dict[type, str] = {str: "TEXT", int: "BIGINT", float: "DOUBLE PRECISION", bytes: "BYTEA"}


def ddl(operation: Operation) -> list[str]:
    """The PostgreSQL statements of one migration operation."""
    match operation:
        case CreateTable(table, columns, pk, indexes):
            definitions = []
            for name, type_ in columns.items():
                if name == pk and type_ is int:  # the row's insertion order, as SQLite's rowid
                    definitions.append(f"{name} BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
                elif name == pk:
                    definitions.append(f"{name} {_PG_TYPES[type_]} PRIMARY KEY")
                else:
                    definitions.append(f"{name} {_PG_TYPES[type_]}")
            statements = [f"CREATE TABLE {table} ({', '.join(definitions)})"]
            statements += [index_ddl(CreateIndex(table, index_columns, unique)) for index_columns, unique in indexes]
            return statements
        case AddColumn(table, column, type_):
            return [f"ALTER TABLE {table} ADD COLUMN {column} {_PG_TYPES[type_]}"]
        case CreateIndex():
            return [index_ddl(operation)]
        case DropIndex(name):
            return [f"DROP INDEX IF EXISTS {name}"]
    raise TypeError(f"unknown migration operation {operation!r}")


def migrate_postgres(conn: PgConnection) -> int:
    """Bring the database to :data:`SCHEMA_VERSION`, one transaction per version; the version is
    kept in ``execd_schema``. Nodes starting together take turns (advisory lock); a database
    newer than the code is refused."""
    raw = conn.raw
    target = 0
    while True:
        with raw.transaction():
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            raw.execute("CREATE TABLE IF NOT EXISTS execd_schema (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)")
            row = raw.execute("SELECT version FROM execd_schema WHERE id = 1").fetchone()
            version = row[0] if row else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"database schema version {version} is newer than this service ({SCHEMA_VERSION})")
            if version == SCHEMA_VERSION:
                return SCHEMA_VERSION
            target = version + 1
            for operation in MIGRATIONS[target]:
                for statement in ddl(operation):
                    raw.execute(statement)  # type: ignore[arg-type]
            raw.execute("INSERT INTO execd_schema (id, version) VALUES (1, %s) "
                        "ON CONFLICT (id) DO UPDATE SET version = excluded.version", (target,))
        log.info("database migrated to schema version %d", target)


# ------------------------------------------------------------------------------------ rounds


class PostgresBackend:
    """The write connection of one node; every method runs in the persistence worker thread."""

    dialect = "postgres"

    def __init__(self, url: str, *, fence: FenceCheck | None = None, application_name: str = "execd",
                 idle_in_transaction_seconds: float | None = None) -> None:
        self.url = url
        self.fence = fence
        self.application_name = application_name
        self.idle_in_transaction_seconds = idle_in_transaction_seconds
        self.conn = self._connect()
        migrate_postgres(self.conn)

    def _connect(self) -> PgConnection:
        conn = connect(self.url, application_name=self.application_name)
        if self.idle_in_transaction_seconds is not None:
            # a node paused in the middle of a round (SIGSTOP, a VM freeze) holds its lease rows'
            # share locks; the server ends its session after this long, so a takeover never waits
            # for it longer (the paused node's round then fails: it was never acknowledged)
            conn.raw.execute(f"SET idle_in_transaction_session_timeout = '{int(self.idle_in_transaction_seconds * 1000)}ms'")
        return conn

    def run_round(self, items: list[Item]) -> list[Any]:
        try:
            self._ensure_connected()
            return self._transaction(items)
        except psycopg.IntegrityError as exc:  # e.g. a resent decision id: answered by its writer
            log.info("group commit of %d items refused (%s); retrying them one by one", len(items),
                     str(exc).splitlines()[0])
        except psycopg.Error:
            log.exception("group commit of %d items failed; retrying them one by one", len(items))
        results: list[Any] = []
        for item in items:
            try:
                self._ensure_connected()
                results.extend(self._transaction([item]))
            except psycopg.IntegrityError as exc:
                error = IntegrityError(str(exc).splitlines()[0])
                error.__cause__ = exc
                results.append(error)
            except psycopg.Error as exc:
                results.append(exc)
        return results

    def _ensure_connected(self) -> None:
        if self.conn.broken:  # the server restarted or the link dropped: one new connection
            log.warning("database connection lost; reconnecting")
            try:
                self.conn.close()
            finally:
                self.conn = self._connect()

    def _transaction(self, items: list[Item]) -> list[Any]:
        conn = self.conn
        results: list[Any] = []
        commits: list[tuple[int, Commit]] = []
        with conn.raw.transaction():
            # pipeline mode: the statements go out without waiting for each answer (one round
            # trip for them all instead of one per statement); reads still wait for their rows
            with conn.raw.pipeline():
                refused = self._refused(items)
                for item in items:
                    if isinstance(item, Query):
                        results.append(conn.execute(item.sql, item.params).fetchall())
                    elif isinstance(item, Call):
                        results.append(item.fn(conn, *item.args))
                    elif item.claim is not None and item.claim in refused:
                        results.append(refused[item.claim])
                    else:
                        for statement in item.statements:
                            conn.execute(statement.sql, statement.params)
                        commits.append((len(results), item))
                        results.append(None)
            # synced: from here on (the outbox lock, which every node's rounds wait for, to the
            # commit) a frozen client leaves its session "idle in transaction", which the server
            # ends after ``idle_in_transaction_seconds``; a frozen unsynced pipeline would stay
            # "active" and hold the lock for as long as the client is frozen
            for index, result in self._insert_events(commits):
                results[index] = result
        return results

    def _refused(self, items: list[Item]) -> dict[Claim, Fenced]:
        claims = {item.claim for item in items if isinstance(item, Commit) and item.claim is not None}
        if not claims:
            return {}
        if self.fence is None:
            raise RuntimeError("a fenced commit reached a backend without a fence check (cluster mode is off)")
        return self.fence(self.conn, claims)

    def _insert_events(self, commits: list[tuple[int, Commit]]) -> list[tuple[int, CommitResult]]:
        """Every event of the round, last, under the outbox lock (held until the commit)."""
        rows: list[tuple[Any, ...]] = []
        payloads: list[bytes] = []
        for _, item in commits:
            for event in item.events:
                payload = encode_payload(event.payload)
                payloads.append(payload)
                rows.append((event.type, event.account_id, int(event.is_paper), event.ts, payload.decode()))
        seqs: list[int] = []
        if rows:
            raw = self.conn.raw
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (EVENTS_LOCK,))
            for start in range(0, len(rows), EVENTS_PER_STATEMENT):
                chunk = rows[start:start + EVENTS_PER_STATEMENT]
                values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
                params = [value for row in chunk for value in row]
                cursor = raw.execute(  # type: ignore[call-overload]
                    f"INSERT INTO events (type, account_id, is_paper, ts, payload) VALUES {values} RETURNING seq",
                    params)
                # identities are drawn in the order of the VALUES rows
                seqs.extend(sorted(seq for (seq,) in cursor.fetchall()))
        results: list[tuple[int, CommitResult]] = []
        position = 0
        for index, item in commits:
            count = len(item.events)
            results.append((index, CommitResult(seqs[position:position + count], payloads[position:position + count])))
            position += count
        return results

    def close(self) -> None:
        self.conn.close()


class PostgresReader:
    """Read connections for the HTTP API (autocommit: each read sees what is committed), used from
    worker threads, one connection per thread at a time; the same surface as SQLite's Reader."""

    def __init__(self, url: str, size: int = 4, *, application_name: str = "execd-reader") -> None:
        self._url = url
        self._application_name = application_name
        self._pool: list[PgConnection] = []
        self._limiter = trio.CapacityLimiter(size)

    def _take(self) -> PgConnection:
        while self._pool:
            conn = self._pool.pop()
            if not conn.broken:
                return conn
        return connect(self._url, application_name=self._application_name)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        async with self._limiter:
            conn = await trio.to_thread.run_sync(self._take)
            try:
                return await trio.to_thread.run_sync(fn, conn, *args)
            finally:
                if not conn.broken:
                    self._pool.append(conn)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return await self.run(lambda conn: rows_as_dicts(conn.execute(sql, params)))  # type: ignore[arg-type]

    def close(self) -> None:
        for conn in self._pool:
            conn.close()
        self._pool.clear()


__all__ = ["PgConnection", "PostgresBackend", "PostgresReader", "connect", "ddl", "migrate_postgres", "translate"]
