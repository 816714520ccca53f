"""End to end: `execd serve` in a subprocess, from a settings file, driven over HTTP; SIGTERM ends it."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import trio

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = """
server: {host: 127.0.0.1, port: 0}
database: {path: %(db)s}
venues:
  sim: {seed: 3, symbols: [BTCUSDT, ETHUSDT], tick_interval_seconds: 0.1}
risk: {cooldown_seconds: 0}
accounts:
  - {id: e2e, mode: paper, venue: sim, balance: "5000"}
"""


async def start_server(tmp_path: Path) -> tuple[trio.Process, str, list[str]]:
    settings = tmp_path / "settings.yaml"
    settings.write_text(SETTINGS % {"db": tmp_path / "e2e.sqlite3"})
    env = {**os.environ, "EXECD_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    process = await trio.lowlevel.open_process(
        [sys.executable, str(ROOT / "bin" / "execd"), "serve", "--settings", str(settings)],
        stderr=subprocess.PIPE, env=env,
    )
    assert process.stderr is not None
    lines: list[str] = []
    buffer = b""
    with trio.fail_after(30):
        while True:
            chunk = await process.stderr.receive_some()
            if not chunk:
                raise AssertionError("execd exited before listening:\n" + "\n".join(lines))
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines += [line.decode() for line in complete]
            for line in lines:
                match = re.search(r"execd listening on (http://\S+)", line)
                if match:
                    return process, match.group(1), lines


async def drain(stream: trio.abc.ReceiveStream, sink: list[str]) -> None:
    async for chunk in stream:
        sink.append(chunk.decode(errors="replace"))


@pytest.mark.slow
async def test_serve_open_inspect_close_then_sigterm(tmp_path: Path) -> None:
    process, url, log = await start_server(tmp_path)
    rest: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain, process.stderr, rest)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            with trio.fail_after(30):
                while (await client.get("/ready")).status_code != 200:
                    await trio.sleep(0.05)
                opened = await client.post("/v1/accounts/e2e/decisions", json={
                    "decision_id": "e2e-open", "symbol": "ETHUSDT", "action": "open", "side": "long",
                    "quantity": "0.5", "leverage": 3, "stop_loss": "1000"})
                assert opened.status_code == 200, opened.text
                inspection = (await client.get("/v1/accounts/e2e")).json()
                assert inspection["positions"][0]["symbol"] == "ETHUSDT"
                assert inspection["actor"]["state"] == "running"
                closed = await client.post("/v1/accounts/e2e/decisions", json={
                    "decision_id": "e2e-close", "symbol": "ETHUSDT", "action": "close"})
                assert closed.status_code == 200, closed.text
                final = (await client.get("/v1/accounts/e2e")).json()
        fills = opened.json()["fills"] + closed.json()["fills"]
        fees = sum(Decimal(f["fee"]) for f in fills)
        realized = sum(Decimal(f["realized_pnl"]) for f in fills)
        assert fees > 0
        assert Decimal(final["balance"]) == Decimal("5000") - fees + realized
        assert final["positions"] == []
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            status = await process.wait()
        nursery.cancel_scope.cancel()
    assert status == 0, "".join(rest)
    text = "".join(rest)
    assert "shutting down" in text and "stopped" in text
    conn = sqlite3.connect(tmp_path / "e2e.sqlite3")
    try:
        (balance,) = conn.execute("SELECT balance FROM accounts WHERE id = 'e2e'").fetchone()
        (decisions,) = conn.execute("SELECT COUNT(*) FROM decisions").fetchone()
    finally:
        conn.close()
    assert Decimal(balance) == Decimal(final["balance"])
    assert decisions == 2
