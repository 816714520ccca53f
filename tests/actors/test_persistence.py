"""The persistence actor: a real SQLite file, WAL, schema versions, group commit, durability."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from actors.messages import Reply
from actors.persistence import (
    SCHEMA_VERSION, EventRecord, IntegrityError, insert, migrate, open_connection, persistence_actor,
)
from actors.persistence import schema
from actors.persistence.items import Commit
from actors.persistence.schema import MIGRATIONS, OPEN_ORDER_STATUSES_SQL


async def test_group_commit_puts_everything_queued_in_one_round(tmp_path: Path) -> None:
    db = str(tmp_path / "p.sqlite3")
    async with trio.open_nursery() as nursery:
        persistence = await nursery.start(persistence_actor, db)
        seqs: list[list[int]] = []

        async def writer(n: int) -> None:
            row = {"id": f"f-{n}", "account_id": "a", "order_id": "o", "symbol": "BTCUSDT", "side": "BUY",
                   "quantity": "1", "price": "2", "fee": "0", "liquidity": "taker", "realized_pnl": "0",
                   "top_of_book_only": 0, "ts": 0.0}
            seqs.append(await persistence.commit(
                [insert("fills", row)], [EventRecord(type="x", account_id="a", is_paper=True, ts=0.0, payload={"n": n})]))

        with trio.fail_after(30):
            async with trio.open_nursery() as writers:
                for n in range(500):
                    writers.start_soon(writer, n)
        stats = persistence.stats
        assert stats.commits == 500
        assert stats.rounds < 100  # batched: far fewer transactions than writers
        assert stats.largest_round > 10
        assert sorted(s[0] for s in seqs) == list(range(1, 501))  # every event got its own seq
        await persistence.aclose()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0] == 500
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_failing_batch_fails_alone(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        persistence = await nursery.start(persistence_actor, str(tmp_path / "p.sqlite3"))
        row = {"id": "dup", "account_id": "a", "order_id": "o", "symbol": "S", "side": "BUY", "quantity": "1",
               "price": "1", "fee": "0", "liquidity": "taker", "realized_pnl": "0", "top_of_book_only": 0, "ts": 0.0}
        await persistence.commit([insert("fills", row)])
        results: dict[str, object] = {}

        async def good() -> None:
            results["good"] = await persistence.commit([insert("fills", {**row, "id": "other"})])

        async def bad() -> None:
            try:
                await persistence.commit([insert("fills", row)])
            except IntegrityError as exc:
                results["bad"] = exc

        async with trio.open_nursery() as both:
            both.start_soon(good)
            both.start_soon(bad)
        assert results["good"] == []
        assert isinstance(results["bad"], IntegrityError)
        rows = await persistence.query("SELECT id FROM fills ORDER BY id")
        assert rows == [("dup",), ("other",)]
        await persistence.aclose()


def test_migrations_are_versioned_and_refuse_a_newer_schema(tmp_path: Path) -> None:
    conn = open_connection(str(tmp_path / "m.sqlite3"))
    assert migrate(conn) == SCHEMA_VERSION
    assert migrate(conn) == SCHEMA_VERSION  # idempotent
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"accounts", "decisions", "orders", "fills", "positions", "events", "audit", "credentials"} <= tables
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        migrate(conn)



def test_open_orders_have_a_partial_index_and_a_filled_order_takes_no_entry(tmp_path: Path) -> None:
    """The account's start-up read of its open orders uses an index that holds only open orders
    (schema version 4); a database at version 3 is migrated from the index on every order's status,
    and what it held is still found."""
    conn = open_connection(str(tmp_path / "v3.sqlite3"))
    migrations = dict(MIGRATIONS)
    try:  # a version-3 database, as the previous release left it
        MIGRATIONS.pop(4)
        schema.SCHEMA_VERSION = 3
        assert migrate(conn) == 3
    finally:
        MIGRATIONS.clear()
        MIGRATIONS.update(migrations)
        schema.SCHEMA_VERSION = SCHEMA_VERSION
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"idx_orders_account_id_status", "idx_orders_account_id_client_order_id"} <= indexes
    for n, status in enumerate(("NEW", "FILLED", "PARTIALLY_FILLED", "CANCELED", "PENDING_NEW")):
        conn.execute("INSERT INTO orders (id, account_id, status, created_at) VALUES (?, 'a', ?, ?)", (f"o{n}", status, n))
    conn.commit()
    assert migrate(conn) == SCHEMA_VERSION == 4
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "idx_orders_account_id_status" not in indexes and "idx_orders_open" in indexes
    assert "idx_orders_account_id_client_order_id" not in indexes  # read by no query
    sql = f"SELECT id FROM orders WHERE account_id = ? AND {OPEN_ORDER_STATUSES_SQL}"  # as the load reads it
    plan = " ".join(str(row) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, ("a",)))
    assert "idx_orders_open" in plan
    assert sorted(r[0] for r in conn.execute(sql, ("a",))) == ["o0", "o2", "o4"]
    # only open orders are in the index: the filled and the canceled one take no entry
    entries = conn.execute("SELECT COUNT(*) FROM orders INDEXED BY idx_orders_open"
                           f" WHERE account_id = 'a' AND {OPEN_ORDER_STATUSES_SQL}").fetchone()[0]
    assert entries == 3


@pytest.mark.timeout(60)  # the failure is a hang: shielded waits outlive fail_after
async def test_a_cancelled_actor_commits_what_was_queued_before_it_returns(tmp_path: Path) -> None:
    """A hard stop (the service's scope cancelled) must not strand a shielded commit: an account
    waiting on a commit it queued gets its answer, and a commit queued after the actor returned
    fails at once instead of waiting for ever."""
    db = str(tmp_path / "p.sqlite3")
    row = {"id": "f", "account_id": "a", "order_id": "o", "symbol": "BTCUSDT", "side": "BUY", "quantity": "1",
           "price": "2", "fee": "0", "liquidity": "taker", "realized_pnl": "0", "top_of_book_only": 0, "ts": 0.0}
    round_may_end = threading.Event()
    answered: list[str] = []
    late: list[BaseException] = []

    def slow_read(connection: object) -> None:  # holds the actor in a round on its thread
        round_may_end.wait(10)

    async def shielded(coro_fn: Callable[[], Awaitable[object]], done: Callable[[], None]) -> None:
        with trio.CancelScope(shield=True):
            await coro_fn()
            done()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            persistence = await nursery.start(persistence_actor, db)
            nursery.start_soon(shielded, partial(persistence.call, slow_read), lambda: None)
            await trio.testing.wait_all_tasks_blocked()
            for n in range(50):  # queued while the round runs: none of them taken yet
                nursery.start_soon(shielded, partial(persistence.commit, [insert("fills", {**row, "id": f"f-{n}"})]),
                                   partial(answered.append, f"f-{n}"))
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()  # the actor returns once its round is over
            round_may_end.set()
        with trio.CancelScope(shield=True):
            try:
                await persistence.commit([insert("fills", {**row, "id": "late"})])
            except trio.BrokenResourceError as exc:
                late.append(exc)
    assert sorted(answered) == sorted(f"f-{n}" for n in range(50))
    assert len(late) == 1  # refused at once: nobody will ever answer it
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0] == 50


@pytest.mark.timeout(60)  # the failure is a hang: shielded waits outlive fail_after
async def test_a_batch_taken_as_the_actor_is_cancelled_is_still_committed_and_answered(tmp_path: Path) -> None:
    """The race a hard stop hit under load: the actor is handed a commit (woken with it) and is
    cancelled before it has started the round's thread. The batch it holds must still be run."""
    db = str(tmp_path / "p.sqlite3")
    row = {"id": "taken", "account_id": "a", "order_id": "o", "symbol": "BTCUSDT", "side": "BUY", "quantity": "1",
           "price": "2", "fee": "0", "liquidity": "taker", "realized_pnl": "0", "top_of_book_only": 0, "ts": 0.0}
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            persistence = await nursery.start(persistence_actor, db)
            await trio.testing.wait_all_tasks_blocked()  # the actor waits on its channel
            reply: Reply[list[int]] = Reply()
            persistence._send.send_nowait(Commit(statements=[insert("fills", row)], reply=reply))  # wakes it
            nursery.cancel_scope.cancel()  # before it runs
            with trio.CancelScope(shield=True):
                assert await reply.wait() == []
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT id FROM fills").fetchall() == [("taken",)]
