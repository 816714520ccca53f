"""Structured-concurrency load test (DESIGN.md §11): the real service in-process on a loopback
port, ~200 paper accounts on ``sim``, 64 concurrent HTTP clients, ≥ 5,000 decisions with injected
actor crashes, kill switches thrown mid-run and duplicate submissions; then, from the database
file after shutdown: no acknowledged decision lost, none executed twice, decisions of one account
never overlapping, cooldowns honoured, every account's books balanced, and no task left behind.

Two small tests beside it pin service bugs the load exposed (now fixed): the same decision id on
two accounts, and a conflicting body answered 202.
"""

from __future__ import annotations

import os
import sqlite3
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from actors.tools.loadtest import check_acknowledged, check_invariants, format_report, run_load
from actors.service import Service, run_service
from tests.conftest import TEST_SETTINGS, make_settings

#: the run's random draws; ``EXECD_LOAD_SEED`` runs the same load with others (a soak)
SEED = int(os.environ.get("EXECD_LOAD_SEED", "20260101"))
ACCOUNTS = 200  # load-0 .. load-199
IN_SETTINGS = 180  # listed in the settings file; run_load creates the other 20 over HTTP
COOLDOWN = 0.2
DECISIONS = 3000
CONCURRENCY = 64


def settings_text() -> str:
    accounts = "\n".join(f'  - {{id: load-{n}, mode: paper, venue: sim, balance: "10000"}}' for n in range(IN_SETTINGS))
    # a short request timeout: decisions queued behind others answer 202 and the clients follow them
    return f"""
server: {{host: 127.0.0.1, port: 0, request_timeout_seconds: 0.3, shutdown_grace_seconds: 5}}
database: {{path: unused.sqlite3}}
venues:
  sim: {{seed: 5, symbols: [BTCUSDT, ETHUSDT, SOLUSDT], tick_interval_seconds: 0.1}}
risk: {{max_leverage: 25, cooldown_seconds: {COOLDOWN}}}
supervisor: {{inbox_size: 32, restart_backoff_initial_seconds: 0.05, restart_backoff_max_seconds: 0.5,
             max_restarts: 20, restart_window_seconds: 60}}
accounts:
{accounts}
"""


def all_tasks() -> set[trio.lowlevel.Task]:
    """Every task of this trio run, walking the task tree from the root."""
    tasks: set[trio.lowlevel.Task] = set()
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:
            continue
        tasks.add(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return tasks


def query(db: str, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.mark.slow
async def test_load_with_crashes_kill_switches_and_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECD_TEST_FAULTS", "1")  # before the app is created: mounts the fault endpoint
    settings = make_settings(tmp_path, settings_text())
    db = settings.database.path
    tasks_before = all_tasks()

    # the duration only guards a stuck run: the load generator shares this process (and its two
    # cores) with the service, so a slow machine takes longer but must still make every decision
    with trio.fail_after(200):
        async with trio.open_nursery() as nursery:
            service: Service = await nursery.start(run_service, settings)
            assert service.url is not None
            report = await run_load(
                service.url, accounts=ACCOUNTS, decisions=DECISIONS, concurrency=CONCURRENCY, duration=150,
                crash_rate=0.015, duplicate_rate=0.08, kill_switch_every=150, seed=SEED, progress=False,
                account_risk={"cooldown_seconds": COOLDOWN}, max_crashes_per_minute=4,
            )
            print(format_report(report))
            restarts_seen = sum(slot.restarts for slot in service.supervisor.slots.values())
            running = all_tasks() - tasks_before
            assert len(running) > 2 * ACCOUNTS  # the walk sees the service's tasks (two per account at least)
            service.request_stop()
            with trio.fail_after(20):
                await service.stopped.wait()
        # the nursery exited: run_service returned, every actor it started has finished

    # ---- no task left behind: the task tree is what it was before the service started
    leftover = all_tasks() - tasks_before
    assert not leftover, f"tasks left running after shutdown: {[t.name for t in leftover]}"

    # ---- the run did what it claims (so that the invariants below are not vacuous)
    assert report.decisions >= DECISIONS, "the run was cut by its duration; the machine is too slow?"
    assert not report.unanswered, report.unanswered[:10]
    assert len(report.acks) == report.decisions
    assert report.accounts_created == ACCOUNTS - IN_SETTINGS
    assert report.crashes >= 20 and restarts_seen >= 10, (report.crashes, restarts_seen)
    assert report.retries_503 > 0  # decisions caught by a crash were retried with the same id
    assert report.close_alls > 0 and report.halts > 0 and report.resumes == report.halts
    assert report.duplicates >= 100 and report.conflict_probes > 0
    assert report.rejection_codes["COOLDOWN_ACTIVE"] > 0 and report.rejection_codes["TRADING_HALTED"] > 0
    assert report.final_status[200] > 1000
    assert not report.problems, "\n".join(report.problems[:20])  # no 409 for a same body, same results

    # ---- the database after shutdown
    (restarted,) = query(db, "SELECT COUNT(*) FROM events WHERE type = 'actor.restarted'")[0]
    assert restarted == restarts_seen
    (close_all_fills,) = query(db, "SELECT COUNT(*) FROM fills f JOIN orders o ON o.id = f.order_id "
                                   "WHERE o.purpose = 'close_all'")[0]
    assert close_all_fills > 0  # some close-alls closed positions mid-run
    assert check_acknowledged(db, report.acks.values()) == []
    problems = check_invariants(db)
    assert problems == [], "\n".join(problems[:30])


@pytest.mark.slow
async def test_two_accounts_may_use_the_same_decision_id(client: httpx.AsyncClient) -> None:
    """Load generators (and real decision engines) number decisions per account: ids repeat across accounts."""
    body = {"decision_id": "d-42", "symbol": "BTCUSDT", "action": "open", "side": "long", "notional": "500",
            "leverage": 5}
    with trio.fail_after(20):
        first = await client.post("/v1/accounts/paper-1/decisions", json=body)
        assert first.status_code == 200, first.text
        second = await client.post("/v1/accounts/paper-2/decisions", json=body)
        assert second.status_code == 200, second.text
        assert second.json()["fills"] and second.json()["account_id"] == "paper-2"


@pytest.mark.slow
async def test_a_conflicting_body_answered_202_never_reads_another_bodys_result(tmp_path: Path) -> None:
    text = TEST_SETTINGS.replace("request_timeout_seconds: 5", "request_timeout_seconds: 0.3")
    settings = make_settings(tmp_path, text)
    first = {"decision_id": "c-1", "symbol": "BTCUSDT", "action": "open", "side": "long", "notional": "500",
             "leverage": 5}
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            service: Service = await nursery.start(partial(run_service, settings, paper_latency=1.0))
            async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
                answer = await client.post("/v1/accounts/paper-1/decisions", json=first)
                assert answer.status_code == 202  # slower than the request timeout: queued
                while (stored := await client.get(answer.json()["result_url"])).status_code in (202, 404):
                    await trio.sleep(0.05)
                assert stored.json()["status"] == "filled"
                # the account is busy with another decision; the conflicting body waits behind it
                busy = await client.post("/v1/accounts/paper-1/decisions", json={**first, "decision_id": "c-2"})
                assert busy.status_code == 202
                conflict = await client.post("/v1/accounts/paper-1/decisions", json={**first, "notional": "900"})
                if conflict.status_code == 202:
                    while (conflict := await client.get(conflict.json()["result_url"])).status_code in (202, 404):
                        await trio.sleep(0.05)
            service.request_stop()
    assert conflict.status_code == 409, (
        f"the client sent notional 900 and was told {conflict.status_code}: {conflict.json()}")


@pytest.mark.slow
@pytest.mark.timeout(120)  # a hang here is the failure: shielded waits cannot be cut by fail_after
async def test_a_hard_stop_mid_load_returns_promptly_and_leaves_balanced_books(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's whole scope cancelled while 64 clients drive it, crashes injected (what a
    parent's deadline or an operator's second Ctrl-C does): every actor returns, a commit in flight
    is answered rather than stranded, and the database holds no half-applied decision."""
    monkeypatch.setenv("EXECD_TEST_FAULTS", "1")
    settings = make_settings(tmp_path, settings_text())
    db = settings.database.path
    tasks_before = all_tasks()
    committed_events = 0
    busy = trio.Event()

    with trio.fail_after(60):
        with trio.CancelScope() as hard:
            async with trio.open_nursery() as nursery:
                service: Service = await nursery.start(run_service, settings)
                assert service.url is not None
                publish = service.persistence.on_committed

                def counting(events: list) -> None:  # type: ignore[type-arg]
                    nonlocal committed_events
                    committed_events += len(events)
                    if committed_events >= 2000:  # decisions, fills, kill switches: well into the run
                        busy.set()
                    if publish is not None:
                        publish(events)

                service.persistence.on_committed = counting
                nursery.start_soon(partial(
                    run_load, service.url, accounts=ACCOUNTS, decisions=DECISIONS, concurrency=CONCURRENCY,
                    duration=50, crash_rate=0.012, duplicate_rate=0.05, kill_switch_every=100, seed=7,
                    progress=False, account_risk={"cooldown_seconds": COOLDOWN}, max_crashes_per_minute=4))
                await busy.wait()
                stop_at = trio.current_time()
                hard.cancel()
        stopped_in = trio.current_time() - stop_at
    assert hard.cancelled_caught
    assert stopped_in < 10, f"the hard stop took {stopped_in:.1f} s"
    leftover = all_tasks() - tasks_before
    assert not leftover, f"tasks left running after the hard stop: {[t.name for t in leftover]}"
    (decisions,) = query(db, "SELECT COUNT(*) FROM decisions")[0]
    assert decisions > 100
    problems = check_invariants(db)
    assert problems == [], "\n".join(problems[:30])
