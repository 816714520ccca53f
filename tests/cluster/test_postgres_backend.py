"""The persistence actor on PostgreSQL: the SQLite checks (group commit, a failing batch fails
alone, versioned migrations, acknowledged => committed), plus what a cluster needs: fenced commits
and an outbox whose ``seq`` order is its commit order."""

from __future__ import annotations

import threading

import psycopg
import pytest
import trio

from actors.cluster import leases
from actors.persistence import (
    SCHEMA_VERSION, Claim, EventRecord, Fenced, IntegrityError, Statement, insert, persistence_actor,
)
from actors.persistence.postgres import PostgresBackend, connect, migrate_postgres, translate


def fill_row(n: int | str) -> dict[str, object]:
    return {"id": f"f-{n}", "account_id": "a", "order_id": "o", "symbol": "BTCUSDT", "side": "BUY",
            "quantity": "1", "price": "2", "fee": "0", "liquidity": "taker", "realized_pnl": "0",
            "top_of_book_only": 0, "ts": 0.0}


def event(n: int) -> EventRecord:
    return EventRecord(type="x", account_id="a", is_paper=True, ts=0.0, payload={"n": n})


def test_translate_keeps_quoted_text_and_escapes_percent() -> None:
    assert translate("SELECT * FROM t WHERE a = ? AND b LIKE 'x?%'") == "SELECT * FROM t WHERE a = %s AND b LIKE 'x?%%'"


async def test_group_commit_and_acknowledged_means_committed(pg_url: str) -> None:
    backend = await trio.to_thread.run_sync(PostgresBackend, pg_url)
    async with trio.open_nursery() as nursery:
        persistence = await nursery.start(lambda **kw: persistence_actor("", backend=backend, **kw))
        seqs: list[int] = []
        visible: list[bool] = []

        async def writer(n: int) -> None:
            (seq,) = await persistence.commit([insert("fills", fill_row(n))], [event(n)])
            seqs.append(seq)
            if n % 50 == 0:  # acknowledged => another connection sees it now
                def look() -> bool:
                    with psycopg.connect(pg_url) as other:
                        return other.execute("SELECT 1 FROM fills WHERE id = %s", (f"f-{n}",)).fetchone() is not None
                visible.append(await trio.to_thread.run_sync(look))

        with trio.fail_after(60):
            async with trio.open_nursery() as writers:
                for n in range(500):
                    writers.start_soon(writer, n)
        stats = persistence.stats
        assert stats.commits == 500
        assert stats.rounds < 150 and stats.largest_round > 10  # batched into far fewer transactions
        assert sorted(seqs) == list(range(1, 501))
        assert visible and all(visible)
        await persistence.aclose()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM fills").fetchone() == (500,)
        assert conn.execute("SELECT version FROM execd_schema").fetchone() == (SCHEMA_VERSION,)


async def test_a_failing_batch_fails_alone_with_the_neutral_error(pg_url: str) -> None:
    backend = await trio.to_thread.run_sync(PostgresBackend, pg_url)
    async with trio.open_nursery() as nursery:
        persistence = await nursery.start(lambda **kw: persistence_actor("", backend=backend, **kw))
        await persistence.commit([insert("fills", fill_row("dup"))])
        results: dict[str, object] = {}

        async def good() -> None:
            results["good"] = await persistence.commit([insert("fills", fill_row("other"))], [event(1)])

        async def bad() -> None:
            try:
                await persistence.commit([insert("fills", fill_row("dup"))], [event(2)])
            except IntegrityError as exc:
                results["bad"] = exc

        async with trio.open_nursery() as both:
            both.start_soon(good)
            both.start_soon(bad)
        assert isinstance(results["bad"], IntegrityError)
        assert results["good"] == [1]  # the refused batch's event took no seq
        assert await persistence.query("SELECT id FROM fills ORDER BY id") == [("f-dup",), ("f-other",)]
        assert await persistence.query("SELECT key FROM service_state WHERE key LIKE 'x%'") == []
        await persistence.aclose()


def test_migrations_are_generated_versioned_and_refuse_a_newer_schema(pg_url: str) -> None:
    conn = connect(pg_url)
    try:
        assert migrate_postgres(conn) == SCHEMA_VERSION
        assert migrate_postgres(conn) == SCHEMA_VERSION  # idempotent
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"accounts", "decisions", "orders", "fills", "positions", "events", "audit", "credentials"} <= tables
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders'")}
        assert {"client_order_id", "venue_order_id", "sent_at", "revision"} <= columns  # migration 2
        conn.execute("UPDATE execd_schema SET version = ?", (SCHEMA_VERSION + 1,))
        with pytest.raises(RuntimeError, match="newer"):
            migrate_postgres(conn)
    finally:
        conn.close()


async def test_a_commit_under_a_lost_lease_is_refused_and_writes_nothing(pg_url: str) -> None:
    setup = connect(pg_url)
    await trio.to_thread.run_sync(leases.setup, setup, 4)
    name = leases.shard_lease(2)
    epoch = leases.acquire(setup, name, "n1", "http://n1", 30)
    assert epoch == 1
    backend = await trio.to_thread.run_sync(lambda: PostgresBackend(pg_url, fence=leases.fence_check("n1")))
    async with trio.open_nursery() as nursery:
        persistence = await nursery.start(lambda **kw: persistence_actor("", backend=backend, **kw))
        account = persistence.fenced(Claim(name, epoch))
        await account.commit([insert("fills", fill_row(1))], [event(1)])
        # n2 takes the shard over (the lease expired while n1 was paused)
        setup.execute("UPDATE cluster_leases SET expires_at = '-infinity' WHERE name = ?", (name,))
        assert leases.acquire(setup, name, "n2", "http://n2", 30) == 2
        unfenced_round: list[object] = []

        async def other_writer() -> None:  # in the same round, a commit of another shard still lands
            unfenced_round.append(await persistence.commit([insert("fills", fill_row(3))]))

        refused: list[Fenced] = []

        async def fenced_writer() -> None:
            try:
                await account.commit([insert("fills", fill_row(2))], [event(2)])
            except Fenced as exc:
                refused.append(exc)

        async with trio.open_nursery() as both:
            both.start_soon(other_writer)
            both.start_soon(fenced_writer)
        assert len(refused) == 1 and "n2 at epoch 2" in str(refused[0])
        assert unfenced_round == [[]]
        assert await persistence.query("SELECT id FROM fills ORDER BY id") == [("f-1",), ("f-3",)]
        assert await persistence.query("SELECT COUNT(*) FROM events") == [(1,)]
        await persistence.aclose()
    setup.close()


def test_the_outbox_is_visible_in_seq_order_while_two_nodes_commit(pg_url: str) -> None:
    """A reader following ``seq > last`` never skips an event, however two writers interleave."""
    backends = [PostgresBackend(pg_url) for _ in range(2)]
    from actors.persistence.items import Commit

    stop = threading.Event()

    def write(backend: PostgresBackend, tag: int) -> None:
        for n in range(150):
            backend.run_round([Commit(statements=[Statement("SELECT pg_sleep(0.0005)")], events=[event(tag * 1000 + n)])
                               for _ in range(3)])
        backend.close()

    threads = [threading.Thread(target=write, args=(b, i)) for i, b in enumerate(backends)]
    reader = connect(pg_url)
    seen: list[int] = []
    for thread in threads:
        thread.start()
    try:
        while not stop.is_set():
            done = not any(t.is_alive() for t in threads)
            last = seen[-1] if seen else 0
            rows = reader.execute("SELECT seq FROM events WHERE seq > ? ORDER BY seq", (last,)).fetchall()
            seen.extend(seq for (seq,) in rows)
            if done:
                rows = reader.execute("SELECT seq FROM events WHERE seq > ? ORDER BY seq", (seen[-1],)).fetchall()
                seen.extend(seq for (seq,) in rows)
                stop.set()
    finally:
        for thread in threads:
            thread.join()
        everything = [seq for (seq,) in reader.execute("SELECT seq FROM events ORDER BY seq").fetchall()]
        reader.close()
    assert len(everything) == 900
    assert seen == everything  # nothing skipped by the follower
