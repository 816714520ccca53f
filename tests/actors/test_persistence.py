"""The persistence actor: a real SQLite file, WAL, schema versions, group commit, durability."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from actors.persistence import (
    SCHEMA_VERSION, EventRecord, IntegrityError, insert, migrate, open_connection, persistence_actor,
)


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
