"""``execd bench``: how costs grow with what the service holds (each in a fresh process).

* ``positions``: decision latency (in-process: supervisor -> account -> durable commit, one
  decision at a time) with 10, 1,000 and 10,000 open positions, on **one account** (each on its own
  symbol: the sim venue's ``synthetic_symbols``) and **across accounts** (one position on each of
  that many accounts, the decisions on one more). The positions are opened by the service's own
  decisions (the real path: rows, events, alarms), pipelined; the rate they open at is reported
  too. Flat is the goal: the ratio is the latency at 10,000 over the latency at 10.
* ``startup_100k``: start to ready with 100,000 accounts (and the ``startup`` section's 1,000,000
  fills), next to the ``startup`` section's 10,000.
* ``memory_position``: RSS per account actor holding an open position with a take-profit and a
  stop-loss, next to the same accounts idle (the ``memory`` section's figure), in one process.
* ``memory_busy``: the Python heap an account keeps after 1,400 decisions (tracemalloc), when its
  bounded caches are full: what a busy account costs next to an idle one.
"""

from __future__ import annotations

import gc
import statistics
import time
from decimal import Decimal
from typing import Any

import msgspec
import trio

from ..clock import ServiceClock
from ..domain.decisions import DecisionIn, request_fingerprint, validate_decision
from ..messages import SubmitDecision
from ..runtime import tune_collector
from ..service import run_service
from ..settings import AccountSettings, parse_settings
from .bench_process import in_subprocess, scratch, startup_line

PROBES = 200  # decisions timed at each level


def _settings(db: str, accounts: list[str], synthetic: int) -> Any:
    rows = "\n".join(f'  - {{id: {a}, mode: paper, venue: sim, balance: "1000000000"}}' for a in accounts)
    # the synthetic symbols do not tick during the run (a tick of 10,000 books is the market's cost,
    # not the account's): quotes stay valid for the run
    text = (f"server: {{host: 127.0.0.1, port: 0}}\ndatabase: {{path: {db}}}\nlog_level: WARNING\n"
            f"venues:\n  sim: {{seed: 3, symbols: [BTCUSDT, ETHUSDT], synthetic_symbols: {synthetic},"
            f" tick_interval_seconds: 3600}}\n"
            f"risk: {{cooldown_seconds: 0, market_data_max_age_seconds: 86400,"
            f" max_orders_per_second: 100000, max_orders_per_minute: 1000000}}\n"
            f"supervisor: {{inbox_size: 256}}\naccounts:\n{rows}\n")
    return parse_settings(text, source="bench", env={})


def _message(decision: dict[str, Any]) -> SubmitDecision:
    raw = msgspec.json.encode(decision)
    return SubmitDecision(decision=validate_decision(msgspec.json.decode(raw, type=DecisionIn)),
                          fingerprint=request_fingerprint(raw), request_json=raw.decode())


async def _submit_all(service: Any, items: list[tuple[str, dict[str, Any]]], concurrency: int = 64) -> int:
    """Submit every decision, ``concurrency`` at a time (a full inbox waits); the ones not filled."""
    send, receive = trio.open_memory_channel[tuple[str, dict[str, Any]]](len(items))
    for item in items:
        send.send_nowait(item)
    send.close()
    failed = 0

    async def worker() -> None:
        nonlocal failed
        async for account, decision in receive:
            message = _message(decision)
            while True:
                try:
                    reply = service.supervisor.submit(account, message)
                    break
                except Exception:  # inbox full: let the account drain a little
                    await trio.sleep(0.001)
            result = msgspec.json.decode(await reply.wait())
            failed += result["status"] != "filled"

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return failed


async def _probe(service: Any, account: str, symbol: str, tag: str) -> dict[str, Any]:
    """``PROBES`` decisions one at a time (open, close, ...): their latencies."""
    latencies = []
    for n in range(PROBES):
        decision = ({"decision_id": f"{tag}-{n}", "symbol": symbol, "action": "open", "side": "long",
                     "quantity": "0.002" if symbol == "BTCUSDT" else "0.01", "leverage": 2} if n % 2 == 0 else
                    {"decision_id": f"{tag}-{n}", "symbol": symbol, "action": "close"})
        message = _message(decision)
        started = time.perf_counter()
        result = await service.supervisor.submit(account, message).wait()
        latencies.append(time.perf_counter() - started)
        assert b'"filled"' in result, result[:300]
    latencies.sort()
    return {"p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 3)}


def _open(decision_id: str, symbol: str, **extra: Any) -> dict[str, Any]:
    return {"decision_id": decision_id, "symbol": symbol, "action": "open", "side": "long", "notional": "20",
            "leverage": 1, **extra}


async def _positions_one_account(levels: list[int], db: str) -> dict[str, Any]:
    settings = _settings(db, ["one"], max(levels))
    rows = []
    async with trio.open_nursery() as nursery:
        service = await nursery.start(lambda task_status: run_service(
            settings, clock=ServiceClock(), serve_http=False, task_status=task_status))
        tune_collector()  # as ``execd serve`` does once started
        held = 0
        for level in levels:
            started = time.perf_counter()
            failed = await _submit_all(service, [("one", _open(f"seed-{i}", f"S{i:05d}USDT"))
                                                 for i in range(held, level)])
            seeded = time.perf_counter() - started
            opened = level - held
            held = level
            row = {"open_positions": level, **await _probe(service, "one", "BTCUSDT", f"probe-{level}"),
                   "seeded": opened, "seed_seconds": round(seeded, 2), "seed_failed": failed,
                   "seed_per_second": round(opened / seeded, 1) if seeded else None}
            rows.append(row)
        service.request_stop()
    return {"rows": rows, "ratio_p50": round(rows[-1]["p50_ms"] / rows[0]["p50_ms"], 2)}


async def _positions_across_accounts(levels: list[int], db: str) -> dict[str, Any]:
    settings = _settings(db, ["probe"], 0)
    rows = []
    async with trio.open_nursery() as nursery:
        service = await nursery.start(lambda task_status: run_service(
            settings, clock=ServiceClock(), serve_http=False, task_status=task_status))
        tune_collector()  # as ``execd serve`` does once started
        limits = settings.risk_defaults
        held = 0
        for level in levels:
            started = time.perf_counter()
            for i in range(held, level):
                await service.supervisor.start_account(
                    AccountSettings(id=f"acct-{i}", balance=Decimal(1_000_000)), limits)
            failed = await _submit_all(service, [(f"acct-{i}", _open(f"seed-{i}", "ETHUSDT"))
                                                 for i in range(held, level)])
            seeded = time.perf_counter() - started
            opened = level - held
            held = level
            rows.append({"open_positions": level, "accounts": level + 1,
                         **await _probe(service, "probe", "BTCUSDT", f"probe-{level}"),
                         "seeded": opened, "seed_seconds": round(seeded, 2), "seed_failed": failed})
        service.request_stop()
    return {"rows": rows, "ratio_p50": round(rows[-1]["p50_ms"] / rows[0]["p50_ms"], 2)}


def positions_entry(where: str, levels: list[int], db: str) -> dict[str, Any]:
    run = _positions_one_account if where == "one" else _positions_across_accounts
    return trio.run(run, levels, db)


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


async def _memory_position(accounts: int, db: str) -> dict[str, Any]:
    settings = _settings(db, ["warm"], 0)
    async with trio.open_nursery() as nursery:
        service = await nursery.start(lambda task_status: run_service(
            settings, clock=ServiceClock(), serve_http=False, task_status=task_status))
        tune_collector()  # as ``execd serve`` does once started
        limits = settings.risk_defaults
        mark = service.markets["sim"].quote("BTCUSDT").mark_price
        tp, sl = str((mark * Decimal("1.2")).quantize(Decimal("0.1"))), str((mark * Decimal("0.8")).quantize(Decimal("0.1")))
        protected = {"symbol": "BTCUSDT", "notional": "200", "leverage": 2, "take_profit": tp, "stop_loss": sl}
        # warm up: one account's worth of imports and caches, idle and with a protected position
        await _submit_all(service, [("warm", _open("warm-1", **protected))])
        gc.collect()
        before = _rss_kib()
        for i in range(accounts):
            await service.supervisor.start_account(AccountSettings(id=f"m-{i}", balance=Decimal(10_000)), limits)
        await trio.sleep(0.5)
        gc.collect()
        idle = _rss_kib()
        started = time.perf_counter()
        failed = await _submit_all(service, [(f"m-{i}", _open(f"m-{i}-1", **protected)) for i in range(accounts)])
        opened = time.perf_counter() - started
        await trio.sleep(0.5)
        gc.collect()
        after = _rss_kib()
        alarms = service.markets["sim"].health().get("alarms")
        service.request_stop()
    idle_kib = (idle - before) / accounts
    position_kib = (after - before) / accounts
    return {"accounts": accounts, "kib_per_idle_account": round(idle_kib, 2),
            "kib_per_account_with_position": round(position_kib, 2),
            "kib_for_position_and_orders": round(position_kib - idle_kib, 2),
            "ratio_to_idle": round(position_kib / idle_kib, 2), "open_seconds": round(opened, 2),
            "failed": failed, "alarms": alarms}


def memory_position_entry(accounts: int, db: str) -> dict[str, Any]:
    return trio.run(_memory_position, accounts, db)


async def _memory_busy(accounts: int, decisions: int, db: str) -> dict[str, Any]:
    """The Python heap an account keeps once it has made ``decisions`` decisions (open, close, ...):
    its bounded caches full (the recent results kept for idempotent replays, the recent finished
    orders kept to recognise late venue reports). tracemalloc counts the Python heap only (not
    SQLite's page cache, which the accounts share)."""
    import tracemalloc

    settings = _settings(db, ["warm"], 0)

    def batch(first: int, last: int) -> list[tuple[str, dict[str, Any]]]:
        # 500 USDT: 20 would round down to a quantity of 0 on BTCUSDT's 0.001 step (rejected, -4003)
        return [(f"b-{i}", _open(f"b-{i}-{k}", "BTCUSDT", notional="500") if k % 2 == 0 else
                 {"decision_id": f"b-{i}-{k}", "symbol": "BTCUSDT", "action": "close"})
                for k in range(first, last) for i in range(accounts)]

    async with trio.open_nursery() as nursery:
        service = await nursery.start(lambda task_status: run_service(
            settings, clock=ServiceClock(), serve_http=False, task_status=task_status))
        for i in range(accounts):
            await service.supervisor.start_account(AccountSettings(id=f"b-{i}", balance=Decimal(100_000)),
                                                   settings.risk_defaults)
        await _submit_all(service, batch(0, 2), concurrency=accounts)  # one per worker: each account in order
        gc.collect()
        tracemalloc.start(1)
        before = tracemalloc.take_snapshot()
        failed = await _submit_all(service, batch(2, decisions), concurrency=accounts)
        gc.collect()
        stats = tracemalloc.take_snapshot().compare_to(before, "lineno")
        tracemalloc.stop()
        actor = service.supervisor.slots["b-0"].actor
        kept = {"recent_results": len(actor.recent), "recent_finished_orders": len(actor.book.terminal)}
        service.request_stop()
    import os

    from .bench_process import PACKAGE_PARENT

    top = [{"kib_per_account": round(st.size_diff / 1024 / accounts, 1),
            "where": f"{os.path.relpath(st.traceback[0].filename, PACKAGE_PARENT)}:{st.traceback[0].lineno}"}
           for st in stats[:6]]
    return {"accounts": accounts, "decisions_each": decisions, "failed": failed,
            "python_heap_kib_per_account": round(sum(st.size_diff for st in stats) / 1024 / accounts, 1),
            "kept_per_account": kept, "largest": top}


def memory_busy_entry(accounts: int, decisions: int, db: str) -> dict[str, Any]:
    return trio.run(_memory_busy, accounts, decisions, db)


def bench_positions(quick: bool) -> dict[str, Any]:
    levels = [10, 1_000, 3_000] if quick else [10, 1_000, 10_000]
    with scratch() as work:
        return {"one_account": in_subprocess("bench_growth", "positions_entry", "one", levels, str(work / "one.sqlite3")),
                "across_accounts": in_subprocess("bench_growth", "positions_entry", "across", levels,
                                                 str(work / "across.sqlite3"))}


def bench_startup_100k(quick: bool) -> dict[str, Any]:
    with scratch() as work:
        return in_subprocess("bench", "startup_entry", 20_000 if quick else 100_000, 100_000 if quick else 1_000_000,
                             str(work / "startup.sqlite3"))


def bench_memory_position(quick: bool) -> dict[str, Any]:
    with scratch() as work:
        return in_subprocess("bench_growth", "memory_position_entry", 1_000 if quick else 10_000,
                             str(work / "memory.sqlite3"))


def bench_memory_busy(quick: bool) -> dict[str, Any]:
    with scratch() as work:
        return in_subprocess("bench_growth", "memory_busy_entry", 20 if quick else 50, 600 if quick else 1_400,
                             str(work / "busy.sqlite3"))



def table_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    positions = results.get("positions")
    if positions:
        for where in ("one_account", "across_accounts"):
            part = positions.get(where, {})
            if "rows" not in part:
                lines.append(f"Positions ({where}): {part}")
                continue
            cells = ", ".join(f"{r['open_positions']}: p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms" for r in part["rows"])
            seeds = ", ".join(f"{r['seeded']} in {r['seed_seconds']} s" for r in part["rows"])
            lines.append(f"Decision latency by open positions, {where.replace('_', ' ')}: {cells}; ratio (p50, most/"
                         f"fewest) {part['ratio_p50']}; opened {seeds}")
    start = results.get("startup_100k")
    if start:
        lines.append(startup_line(start, "Startup 100k"))
    mem = results.get("memory_position")
    if mem:
        lines.append(f"Memory: {mem.get('kib_per_account_with_position')} KiB per account with a position, TP and SL"
                     f" vs {mem.get('kib_per_idle_account')} KiB idle ({mem.get('accounts')} accounts; ratio "
                     f"{mem.get('ratio_to_idle')})" if "error" not in mem else f"Memory with a position: {mem}")
    busy = results.get("memory_busy")
    if busy:
        lines.append(f"Memory: {busy.get('python_heap_kib_per_account')} KiB of Python heap per account after "
                     f"{busy.get('decisions_each')} decisions each ({busy.get('accounts')} accounts; kept: "
                     f"{busy.get('kept_per_account')})" if "error" not in busy else f"Memory busy: {busy}")
    return lines
