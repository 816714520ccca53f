"""``execd bench``: the benchmark suite. Prints a table, writes JSON, reports ratios to floors
measured in the same run.

Sections:

* ``http``: paper decisions through HTTP to durable commit (the real service in its own process,
  pinned to one core) at 1, 32 and 64 connections, driven by ``wrk`` (an independent generator
  that is not the bottleneck), next to the bare Quart-Trio endpoint of :mod:`actors.tools.bench_bare`
  driven the same way; ratio = service / bare.
* ``stream``: the same decisions over the decision stream (:mod:`actors.tools.bench_stream`) against
  HTTP (wrk, 64 connections) on the same service, in the same run.
* ``inprocess``: decisions through supervisor → account → persistence with durable group commit,
  no HTTP, next to a bare group-commit loop of the same number of rows per decision.
* ``memory``: RSS per idle account actor with 10,000 accounts (fresh process).
* ``startup``: start to ready with 10,000 accounts and 1,000,000 fills in the database.
* ``memory_position``, ``memory_busy``, ``startup_100k``, ``positions``: how costs grow (:mod:`actors.tools.bench_growth`):
  memory per account with a position and its TP/SL, start-up with 100,000 accounts, decision latency
  with 10 / 1,000 / 10,000 open positions on one account and across accounts.
* ``alarms``: price-alarm tick cost at 100,000 vs 1,000 resting alarms.
* ``feed``: websocket market-data ingest (the fake exchange on loopback; source checkout only).
* ``live``: a live account against the fake exchange in its own process: decision-to-fill latency
  and venue requests per decision, next to one bare signed market order (source checkout only).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import trio

from ..clock import ServiceClock
from ..domain.decisions import DecisionIn, request_fingerprint, validate_decision
from ..messages import SubmitDecision
from ..persistence import insert, migrate, open_connection, persistence_actor
from ..runtime import tune_collector
from ..service import run_service
from ..settings import AccountSettings, parse_settings
from .bench_alarms import measure_tick_cost
from .bench_feed import measure_feed_ingest
from .bench_live import measure_live
from .bench_process import PACKAGE_PARENT, in_subprocess, scratch, startup_line, stop
from .bench_growth import bench_memory_busy, bench_memory_position, bench_positions, bench_startup_100k
from .bench_growth import table_lines as growth_table_lines
from .bench_stream import bench_stream, table_lines as stream_table_lines

SECTIONS = ("http", "stream", "inprocess", "memory", "memory_position", "memory_busy", "startup", "startup_100k",
            "positions", "alarms", "feed", "live")

WRK_SCRIPT = r"""
local counter = 0
local prefix = "x"
local accounts = 64
init = function(args)
  prefix = args[1] .. "-" .. tostring(math.random(1, 1000000000))
  accounts = tonumber(args[2])
end
request = function()
  counter = counter + 1
  local account = counter % accounts
  local round = math.floor(counter / accounts)
  local body
  if round % 2 == 0 then
    body = string.format('{"decision_id":"%s-%d","symbol":"BTCUSDT","action":"open","side":"long","quantity":"0.002","leverage":2,"meta":{"bench":true}}', prefix, counter)
  else
    body = string.format('{"decision_id":"%s-%d","symbol":"BTCUSDT","action":"close","meta":{"bench":true}}', prefix, counter)
  end
  return wrk.format("POST", "/v1/accounts/bench-" .. account .. "/decisions", {["Content-Type"] = "application/json"}, body)
end
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def _pinned(cmd: list[str], cpus: str) -> list[str]:
    return (["taskset", "-c", cpus] + cmd) if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1 else cmd  # type: ignore[operator]


def _settings_text(db: str, accounts: int, port: int = 0) -> str:
    rows = "\n".join(f'  - {{id: bench-{i}, mode: paper, venue: sim, balance: "100000000"}}' for i in range(accounts))
    return (f"server: {{host: 127.0.0.1, port: {port}, request_timeout_seconds: 30}}\n"
            f"database: {{path: {db}}}\nlog_level: WARNING\n"
            f"venues:\n  sim: {{seed: 5, symbols: [BTCUSDT, ETHUSDT, SOLUSDT], tick_interval_seconds: 0.25}}\n"
            f"risk: {{cooldown_seconds: 0}}\nsupervisor: {{inbox_size: 256}}\naccounts:\n{rows}\n")


# ------------------------------------------------------------------------------ HTTP (wrk)

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _parse_wrk(output: str) -> dict[str, Any]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float | None:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", output)
        return round(float(m.group(1)) * _UNITS[m.group(2)], 3) if m else None

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    total = re.search(r"(\d+) requests in", output)
    return {"rps": round(rps, 1), "p50_ms": pct("50"), "p99_ms": pct("99"),
            "requests": int(total.group(1)) if total else None,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def _wrk(url: str, connections: int, seconds: int, script: Path, args: list[str]) -> dict[str, Any]:
    cmd = _pinned(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url, "--"] + args, "1")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    return _parse_wrk(out)


def bench_http(quick: bool) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    seconds = 3 if quick else 10
    accounts = 64
    work = Path(tempfile.mkdtemp(prefix="execd-bench-"))
    script = work / "decisions.lua"
    script.write_text(WRK_SCRIPT)
    results: dict[str, Any] = {"duration_seconds": seconds, "generator": "wrk -t1 (pinned to cpu 1)",
                               "server": "1 process pinned to cpu 0", "rows": []}
    port_service, port_bare = _free_port(), _free_port()
    settings = work / "settings.yaml"
    settings.write_text(_settings_text(str(work / "bench.sqlite3"), accounts, port_service))
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_PARENT)}
    service = subprocess.Popen(_pinned([sys.executable, "-m", "actors.cli", "serve", "--settings", str(settings)], "0"),
                               cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=open(work / "service.log", "w"))
    bare = subprocess.Popen(_pinned([sys.executable, "-m", "hypercorn", "--worker-class", "trio", "-b",
                                     f"127.0.0.1:{port_bare}", "actors.tools.bench_bare:app"], "0"),
                            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=open(work / "bare.log", "w"))
    try:
        _wait_port(port_service)
        _wait_port(port_bare)
        time.sleep(1.0)
        for connections in (1, 32, 64):
            row: dict[str, Any] = {"connections": connections}
            # bare first, then the service, alternating, so drift spreads evenly
            row["bare"] = _wrk(f"http://127.0.0.1:{port_bare}", connections, seconds, script, [f"b{connections}", str(accounts)])
            row["service"] = _wrk(f"http://127.0.0.1:{port_service}", connections, seconds, script,
                                  [f"s{connections}", str(accounts)])
            row["ratio"] = round(row["service"]["rps"] / row["bare"]["rps"], 3) if row["bare"]["rps"] else None
            results["rows"].append(row)
        db = sqlite3.connect(work / "bench.sqlite3")
        results["decisions_stored"] = db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
        results["decisions_by_status"] = dict(db.execute("SELECT status, COUNT(*) FROM decisions GROUP BY status").fetchall())
        db.close()
    finally:
        for process in (service, bare):
            stop(process)
        shutil.rmtree(work, ignore_errors=True)
    return results


# ------------------------------------------------------------------------------ in-process


async def _inprocess(decisions: int, accounts: int, concurrency: int, db: str) -> dict[str, Any]:

    settings = parse_settings(_settings_text(db, accounts), source="bench", env={})
    async with trio.open_nursery() as nursery:
        service = await nursery.start(lambda task_status: run_service(settings, clock=ServiceClock(), serve_http=False,
                                                                      task_status=task_status))
        tune_collector()  # as ``execd serve`` does once started
        bodies = []
        for n in range(decisions):
            account = n % accounts
            opening = (n // accounts) % 2 == 0
            data = ({"decision_id": f"ip-{n}", "symbol": "BTCUSDT", "action": "open", "side": "long",
                     "quantity": "0.002", "leverage": 2} if opening else
                    {"decision_id": f"ip-{n}", "symbol": "BTCUSDT", "action": "close"})
            raw = msgspec.json.encode(data)
            bodies.append((f"bench-{account}", SubmitDecision(
                decision=validate_decision(msgspec.json.decode(raw, type=DecisionIn)),
                fingerprint=request_fingerprint(raw), request_json=raw.decode())))
        queue_send, queue_receive = trio.open_memory_channel[Any](len(bodies))
        for item in bodies:
            queue_send.send_nowait(item)
        queue_send.close()
        latencies: list[float] = []
        stats_before = (service.persistence.stats.rounds, service.persistence.stats.commits,
                        service.persistence.stats.statements)

        async def worker() -> None:
            async for account, message in queue_receive:
                while True:
                    try:
                        reply = service.supervisor.submit(account, message)
                        break
                    except Exception:  # inbox full: back off a little (backpressure)
                        await trio.sleep(0.001)
                t0 = time.perf_counter()
                await reply.wait()
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        async with trio.open_nursery() as workers:
            for _ in range(concurrency):
                workers.start_soon(worker)
        elapsed = time.perf_counter() - started
        stats = service.persistence.stats
        rounds = stats.rounds - stats_before[0]
        commits = stats.commits - stats_before[1]
        statements = stats.statements - stats_before[2]
        service.request_stop()
    latencies.sort()
    return {"decisions": decisions, "accounts": accounts, "concurrency": concurrency,
            "seconds": round(elapsed, 3), "per_second": round(decisions / elapsed, 1),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
            "commit_rounds": rounds, "decisions_per_round": round(commits / max(1, rounds), 1),
            "statements_per_decision": round(statements / max(1, commits), 2)}


async def _bare_group_commit(decisions: int, concurrency: int, rows_per_decision: int, db: str) -> dict[str, Any]:

    async with trio.open_nursery() as nursery:
        persistence = await nursery.start(persistence_actor, db)
        send, receive = trio.open_memory_channel[int](decisions)
        for n in range(decisions):
            send.send_nowait(n)
        send.close()
        row = {"account_id": "bench-0", "order_id": "o", "decision_id": "d", "position_id": "p",
               "symbol": "BTCUSDT", "side": "BUY", "quantity": "0.002", "price": "68000.1", "fee": "0.0476",
               "liquidity": "taker", "realized_pnl": "0", "trigger_price": None, "top_of_book_only": 0, "ts": 0.0}

        async def worker() -> None:
            async for n in receive:
                await persistence.commit([insert("fills", {**row, "id": f"bare-{n}-{k}"}) for k in range(rows_per_decision)])

        started = time.perf_counter()
        async with trio.open_nursery() as workers:
            for _ in range(concurrency):
                workers.start_soon(worker)
        elapsed = time.perf_counter() - started
        await persistence.aclose()
    return {"batches": decisions, "rows_per_batch": rows_per_decision, "seconds": round(elapsed, 3),
            "per_second": round(decisions / elapsed, 1)}


def bench_inprocess(quick: bool) -> dict[str, Any]:
    decisions = 5_000 if quick else 30_000
    work = Path(tempfile.mkdtemp(prefix="execd-bench-"))
    try:
        service = trio.run(_inprocess, decisions, 64, 64, str(work / "inprocess.sqlite3"))
        rows = max(1, round(service["statements_per_decision"]))
        bare = trio.run(_bare_group_commit, decisions, 64, rows, str(work / "bare.sqlite3"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"service": service, "bare_group_commit": bare,
            "ratio": round(service["per_second"] / bare["per_second"], 3)}


# ------------------------------------------------------------------------------ memory, startup


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


async def _memory(accounts: int, db: str) -> dict[str, Any]:

    settings = parse_settings(_settings_text(db, 1), source="bench", env={})
    async with trio.open_nursery() as nursery:
        service = await nursery.start(lambda task_status: run_service(settings, clock=ServiceClock(), serve_http=False,
                                                                      task_status=task_status))

        limits = settings.risk_defaults
        # warm up: one account's worth of imports and caches
        await service.supervisor.start_account(AccountSettings(id="warm", balance=Decimal(1000)), limits)
        gc.collect()
        before = _rss_kib()
        started = time.perf_counter()
        for i in range(accounts):
            await service.supervisor.start_account(AccountSettings(id=f"idle-{i}", balance=Decimal(1000)), limits)
        spawn_seconds = time.perf_counter() - started
        await trio.sleep(0.5)
        gc.collect()
        after = _rss_kib()
        running = sum(1 for s in service.supervisor.slots.values() if s.status == "running")
        service.request_stop()
    return {"accounts": accounts, "running": running, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_account": round((after - before) / accounts, 2), "start_seconds": round(spawn_seconds, 2)}


def _prepare_startup_db(path: str, accounts: int, fills: int) -> None:

    conn = open_connection(path, synchronous="OFF")
    migrate(conn)
    conn.execute("BEGIN")
    now = time.time()
    conn.executemany(
        "INSERT INTO accounts (id, mode, venue, initial_balance, balance, realized_pnl, fees, funding, trading_state,"
        " state_source, created_at, updated_at) VALUES (?, 'paper', 'sim', '10000', '10000', '0', '0', '0', 'active',"
        " 'account', ?, ?)", [(f"acct-{i}", now, now) for i in range(accounts)])
    rng = random.Random(1)
    batch = []
    for n in range(fills):
        batch.append((f"f-{n}", f"acct-{n % accounts}", f"o-{n}", f"d-{n}", f"p-{n}", "BTCUSDT",
                      "BUY" if n % 2 else "SELL", "0.001", f"{68000 + rng.random():.1f}", "0.0238", "taker", "0", 0, now))
        if len(batch) == 50_000:
            conn.executemany("INSERT INTO fills (id, account_id, order_id, decision_id, position_id, symbol, side,"
                             " quantity, price, fee, liquidity, realized_pnl, top_of_book_only, ts)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
            batch.clear()
    if batch:
        conn.executemany("INSERT INTO fills (id, account_id, order_id, decision_id, position_id, symbol, side,"
                         " quantity, price, fee, liquidity, realized_pnl, top_of_book_only, ts)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
    conn.execute("COMMIT")
    conn.close()


async def _startup(db: str, accounts: int) -> dict[str, Any]:

    rows = "\n".join(f'  - {{id: acct-{i}, venue: sim, balance: "10000"}}' for i in range(accounts))
    text = (f"server: {{host: 127.0.0.1, port: 0}}\ndatabase: {{path: {db}}}\nlog_level: WARNING\n"
            f"venues:\n  sim: {{seed: 1}}\naccounts:\n{rows}\n")
    settings = parse_settings(text, source="bench", env={})
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        service = await nursery.start(lambda task_status: run_service(settings, clock=ServiceClock(), task_status=task_status))
        listening = time.perf_counter() - started
        while service.readiness_problems():
            await trio.sleep(0.01)
        ready = time.perf_counter() - started
        service.request_stop()
    return {"accounts": accounts, "listening_seconds": round(listening, 2), "ready_seconds": round(ready, 2)}


def _in_subprocess(function: str, *args: Any) -> dict[str, Any]:
    return in_subprocess("bench", function, *args, timeout=1800)


def memory_entry(accounts: int, db: str) -> dict[str, Any]:
    return trio.run(_memory, accounts, db)


def startup_entry(accounts: int, fills: int, db: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    _prepare_startup_db(db, accounts, fills)
    prepared = time.perf_counter() - t0
    result = trio.run(_startup, db, accounts)
    result.update({"fills_in_db": fills, "prepare_seconds": round(prepared, 1)})
    return result


def bench_memory(quick: bool) -> dict[str, Any]:
    with scratch() as work:
        return _in_subprocess("memory_entry", 1_000 if quick else 10_000, str(work / "memory.sqlite3"))


def bench_startup(quick: bool) -> dict[str, Any]:
    with scratch() as work:
        return _in_subprocess("startup_entry", 1_000 if quick else 10_000, 100_000 if quick else 1_000_000,
                              str(work / "startup.sqlite3"))


def bench_alarms(quick: bool) -> dict[str, Any]:
    return measure_tick_cost(ticks=2_000 if quick else 20_000)  # type: ignore[call-arg]


def bench_feed(quick: bool) -> dict[str, Any]:
    return trio.run(measure_feed_ingest, 3.0 if quick else 10.0)


def bench_live(quick: bool) -> dict[str, Any]:
    return trio.run(measure_live, 20 if quick else 60)


# ------------------------------------------------------------------------------ report


def _table(results: dict[str, Any]) -> str:
    lines = []
    http = results.get("http")
    if http and "rows" in http:
        lines.append("HTTP decisions (wrk; service = paper decision to durable commit; bare = decode + tiny JSON)")
        lines.append(f"  {'conns':>5}  {'service rps':>11}  {'p50 ms':>7}  {'p99 ms':>7}  {'bare rps':>9}  {'p50 ms':>7}  {'p99 ms':>7}  ratio")
        for row in http["rows"]:
            s, b = row["service"], row["bare"]
            lines.append(f"  {row['connections']:>5}  {s['rps']:>11}  {s['p50_ms']!s:>7}  {s['p99_ms']!s:>7}  "
                         f"{b['rps']:>9}  {b['p50_ms']!s:>7}  {b['p99_ms']!s:>7}  {row['ratio']}")
    elif http:
        lines.append(f"HTTP: {http}")
    if results.get("stream"):
        lines += stream_table_lines(results["stream"])
    ip = results.get("inprocess")
    if ip:
        s, b = ip["service"], ip["bare_group_commit"]
        lines.append(f"In-process durable decisions: {s['per_second']}/s (p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms,"
                     f" {s['decisions_per_round']} decisions per commit round, {s['statements_per_decision']} rows each)"
                     f"; bare group commit of the same rows: {b['per_second']}/s; ratio {ip['ratio']}")
    mem = results.get("memory")
    if mem:
        lines.append(f"Memory: {mem.get('kib_per_account')} KiB per idle account actor ({mem.get('accounts')} accounts,"
                     f" started in {mem.get('start_seconds')} s)" if "error" not in mem else f"Memory: {mem}")
    start = results.get("startup")
    if start:
        lines.append(startup_line(start, "Startup"))
    lines += growth_table_lines(results)
    alarms = results.get("alarms")
    if alarms:
        lines.append(f"Alarms: {json.dumps(alarms)}")
    feed = results.get("feed")
    if feed:
        lines.append(f"Feed ingest: {json.dumps(feed)}")
    live = results.get("live")
    if live and "skipped" not in live:
        floor = live["floor_signed_market_order"]
        lines.append(f"Live (fake exchange, own process): one signed market order p50 {floor['p50_ms']} ms")
        for name in ("open", "open_with_protection"):
            row = live[name]
            lines.append(f"  {name}: open p50 {row['open']['p50_ms']} ms p99 {row['open']['p99_ms']} ms, close p50 "
                         f"{row['close']['p50_ms']} ms; {row['requests_per_decision']} venue requests per decision "
                         f"{json.dumps(row['by_endpoint'])}")
        lines.append(f"  ratio to the bare order (p50): open {live['ratio_open_p50']}, "
                     f"open with TP/SL {live['ratio_protected_open_p50']}")
    elif live:
        lines.append(f"Live: {live}")
    return "\n".join(lines)


def run_bench_cli(args: argparse.Namespace) -> int:
    sections = tuple(s.strip() for s in args.only.split(",")) if args.only else SECTIONS
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        print(f"execd bench: unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}",
              file=sys.stderr)
        return 2
    runners = {"http": bench_http, "stream": bench_stream, "inprocess": bench_inprocess, "memory": bench_memory,
               "startup": bench_startup, "alarms": bench_alarms, "feed": bench_feed,
               "live": bench_live, "memory_position": bench_memory_position, "startup_100k": bench_startup_100k,
               "positions": bench_positions, "memory_busy": bench_memory_busy}
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                               "quick": args.quick}
    for name in sections:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = runners[name](args.quick)
        except Exception as exc:  # one section's failure must not lose the others' figures
            print(f"execd bench: section {name} failed: {exc!r}", file=sys.stderr)
            results[name] = {"error": repr(exc)}
    print(_table(results))
    Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    print(f"(written to {args.out})", file=sys.stderr)
    return 0
