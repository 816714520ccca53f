"""``execd bench --only stream``: paper decisions over the decision stream (``/v1/decisions/stream``)
against the HTTP figure, in the same run, on the same service.

The service runs in its own process pinned to core 0 (as in the ``http`` section), with 64 paper
accounts. The same decision mix as the HTTP section (per account: open 0.002 BTCUSDT, close, open,
...) goes to it:

* over HTTP: ``wrk`` at 64 connections (the HTTP section's generator and script), pinned to core 1;
* over the stream: a Python client (trio-websocket) pinned to core 1 with 64 decisions in flight
  in all, as wrk's 64 connections (1 connection; 4 connections of 16), and 1 connection sending
  256 ahead (the service holds 64 in flight, the rest waits in the socket); every answer's status is
  counted. Latency: from handing the frame to the socket to its answer.

Ratio = stream decisions/s / HTTP decisions/s (64 connections).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from .bench_process import stop

ACCOUNTS = 64


def _body(prefix: str, n: int) -> dict[str, Any]:
    """Decision ``n`` of the HTTP section's mix, as a stream frame."""
    account = n % ACCOUNTS
    if (n // ACCOUNTS) % 2 == 0:
        decision = {"decision_id": f"{prefix}-{n}", "symbol": "BTCUSDT", "action": "open", "side": "long",
                    "quantity": "0.002", "leverage": 2, "meta": {"bench": True}}
    else:
        decision = {"decision_id": f"{prefix}-{n}", "symbol": "BTCUSDT", "action": "close", "meta": {"bench": True}}
    return {"account_id": f"bench-{account}", "decision": decision}


async def _drive(url: str, decisions: int, connections: int, prefix: str, window: int) -> dict[str, Any]:
    from ..stream_client import stream_decisions

    # connection c sends the decisions n = c, c + connections, ...: each account's open/close
    # alternation stays in order as long as connections divides the account count
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sent_at: dict[str, float] = {}

    async def one(c: int) -> None:
        numbers = range(c, decisions, connections)
        frames = [json.dumps(_body(prefix, n), separators=(",", ":")) for n in numbers]

        def answered(answer: dict[str, Any]) -> None:
            statuses[answer["status"]] = statuses.get(answer["status"], 0) + 1
            started = sent_at.pop(answer["decision_id"], None)
            if started is not None:
                latencies.append(time.perf_counter() - started)

        timed = _Timed(frames, [f"{prefix}-{n}" for n in numbers], sent_at)
        await stream_decisions(url, timed, answered, window=window)  # type: ignore[arg-type]

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for c in range(connections):
            nursery.start_soon(one, c)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"connections": connections, "window": window, "decisions": decisions, "seconds": round(elapsed, 3),
            "per_second": round(decisions / elapsed, 1), "statuses": statuses,
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2) if latencies else None,
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2) if latencies else None}


class _Timed(list):  # type: ignore[type-arg]
    """The frames to send, noting when each is handed to the socket (for its latency)."""

    def __init__(self, frames: list[str], ids: list[str], sent_at: dict[str, float]) -> None:
        super().__init__(frames)
        self._ids = ids
        self._sent_at = sent_at

    def __iter__(self) -> Any:
        for frame, decision_id in zip(list.__iter__(self), self._ids):
            self._sent_at[decision_id] = time.perf_counter()
            yield frame


def client_entry(url: str, decisions: int, connections: int, prefix: str, window: int = 64) -> dict[str, Any]:
    return trio.run(_drive, url, decisions, connections, prefix, window)


def _client(url: str, decisions: int, connections: int, prefix: str, env: dict[str, str],
            window: int = 64) -> dict[str, Any]:
    from .bench import _pinned

    code = ("import json, sys; from actors.tools.bench_stream import client_entry; "
            f"print(json.dumps(client_entry({url!r}, {decisions}, {connections}, {prefix!r}, {window})))")
    out = subprocess.run(_pinned([sys.executable, "-c", code], "1"), capture_output=True, text=True,
                         timeout=600, env=env)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_stream(quick: bool) -> dict[str, Any]:
    from .bench import PACKAGE_PARENT, WRK_SCRIPT, _free_port, _pinned, _settings_text, _wait_port, _wrk

    seconds = 3 if quick else 10
    decisions = 3_000 if quick else 12_000
    work = Path(tempfile.mkdtemp(prefix="execd-bench-"))
    port = _free_port()
    settings = work / "settings.yaml"
    settings.write_text(_settings_text(str(work / "bench.sqlite3"), ACCOUNTS, port))
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_PARENT)}
    service = subprocess.Popen(_pinned([sys.executable, "-m", "actors.cli", "serve", "--settings", str(settings)], "0"),
                               cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=open(work / "service.log", "w"))
    url = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {"server": "1 process pinned to cpu 0", "client": "pinned to cpu 1",
                               "accounts": ACCOUNTS}
    try:
        _wait_port(port)
        time.sleep(1.0)
        _client(url, 256, 1, "warm", env)  # warm up: the accounts' first decisions, imports
        if shutil.which("wrk") is not None:
            script = work / "decisions.lua"
            script.write_text(WRK_SCRIPT)
            results["http"] = _wrk(url, 64, seconds, script, ["h64", str(ACCOUNTS)])
            results["http"]["connections"] = 64
        else:
            results["http"] = {"skipped": "wrk is not installed (apt-get install wrk)"}
        # 64 in flight in all (as wrk's 64 connections): on 1 connection, on 4 of 16; and 1 connection
        # with 256 sent ahead (the server's bound of 64 holds the rest in the socket)
        results["stream"] = [_client(url, decisions, 1, "s1", env, 64), _client(url, decisions, 4, "s4", env, 16),
                             _client(url, decisions, 1, "s1w", env, 256)]
        http_rps = results["http"].get("rps")
        best = max((row.get("per_second") or 0 for row in results["stream"]), default=0)
        results["ratio"] = round(best / http_rps, 3) if http_rps else None
    finally:
        stop(service)
        shutil.rmtree(work, ignore_errors=True)
    return results


def table_lines(result: dict[str, Any]) -> list[str]:
    http = result.get("http", {})
    lines = ["Decision stream vs HTTP (same service process pinned to cpu 0, 64 accounts, the HTTP section's mix)"]
    if "rps" in http:
        lines.append(f"  HTTP, wrk, 64 connections: {http['rps']}/s (p50 {http['p50_ms']} ms, p99 {http['p99_ms']} ms)")
    else:
        lines.append(f"  HTTP: {http}")
    for row in result.get("stream", []):
        if "error" in row:
            lines.append(f"  stream: {row['error'][-300:]}")
            continue
        lines.append(f"  stream, {row['connections']} connection(s), {row['window']} sent ahead each: {row['per_second']}/s "
                     f"(p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms; answers {row['statuses']})")
    lines.append(f"  ratio stream (best) / HTTP: {result.get('ratio')}")
    return lines
