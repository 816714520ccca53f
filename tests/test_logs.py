"""Logs a machine can read: ``execd serve --log-format json`` writes one JSON object per line,
with the account, decision, order's client id, venue and latency on a decision's line."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from actors.logs import configure_logging, log_context

pytestmark = pytest.mark.slow

SETTINGS = """
server: {host: 127.0.0.1, port: 0}
venues:
  sim: {seed: 3, symbols: [BTCUSDT], tick_interval_seconds: 0.05}
risk: {cooldown_seconds: 0}
accounts:
  - {id: paper-1, mode: paper, venue: sim, balance: "10000"}
"""


async def test_a_session_of_execd_serve_logs_json_lines(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text(SETTINGS)
    env = {**os.environ, "EXECD_DB": str(tmp_path / "db.sqlite3"), "EXECD_LOG_LEVEL": "INFO"}
    env.pop("EXECD_API_TOKEN", None)
    lines: list[dict[str, object]] = []
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "actors.cli", "serve", "--settings", str(settings), "--log-format", "json"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, cwd=tmp_path)
        assert process.stderr is not None
        buffer = b""
        url = None
        try:
            while url is None:  # the start-up lines, up to the one with the address
                chunk = await process.stderr.receive_some(65536)
                assert chunk, "execd serve ended before it listened"
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    lines.append(json.loads(raw))  # every line is one JSON object
                    if str(lines[-1]["message"]).startswith("execd listening on "):
                        url = str(lines[-1]["message"]).removeprefix("execd listening on ")
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                answer = await client.post("/v1/accounts/paper-1/decisions", json={
                    "decision_id": "log-1", "symbol": "BTCUSDT", "action": "open", "side": "long",
                    "notional": "200", "leverage": 2})
                assert answer.status_code == 200, answer.text
                order = answer.json()["order"]
        finally:
            process.send_signal(signal.SIGTERM)
            async with process.stderr:
                while chunk := await process.stderr.receive_some(65536):
                    buffer += chunk
            await process.wait()
    lines += [json.loads(raw) for raw in buffer.split(b"\n") if raw.strip()]
    assert process.returncode == 0
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    (decided,) = [line for line in lines if line.get("decision_id") == "log-1" and line["logger"] == "actors.decisions"]
    assert decided["account_id"] == "paper-1" and decided["venue"] == "sim"
    assert decided["client_order_id"] == order["client_order_id"]
    assert isinstance(decided["latency_ms"], float) and decided["latency_ms"] > 0
    assert decided["result"] == "filled"
    assert any(line["message"] == "stopped" for line in lines)
    assert any("no API token configured" in str(line["message"]) for line in lines)  # the loopback warning


def test_context_fields_and_extras_land_on_the_line() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("DEBUG", "json", stream)
    try:
        with log_context(account_id="a-1", venue="sim"):
            logging.getLogger("actors.test").warning("boom %d", 7, extra={"decision_id": "d-9"})
            try:
                raise ValueError("bad")
            except ValueError:
                logging.getLogger("actors.test").exception("failed")
        logging.getLogger("actors.test").info("outside")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["message"], first["account_id"], first["venue"], first["decision_id"]) == ("boom 7", "a-1", "sim", "d-9")
    assert first["level"] == "WARNING" and first["time"].endswith("+00:00")
    assert "ValueError: bad" in second["exception"]
    assert "account_id" not in third
