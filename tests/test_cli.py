"""The ``execd`` command line against a real running service (loopback socket, real SQLite file).

Client commands run in a worker thread (they use a blocking HTTP client) while the service runs
in the test's trio loop; their output is captured with ``capsys``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import actors.cli
from actors.service import Service

pytestmark = pytest.mark.slow

BIN_EXECD = Path(__file__).resolve().parent.parent / "bin" / "execd"
BOUND = 20


async def execd(capsys: pytest.CaptureFixture[str], service: Service, *argv: str) -> tuple[int, str, str]:
    """Run ``execd ARGV --url <service>``; return (exit status, stdout, stderr)."""
    capsys.readouterr()
    assert service.url is not None
    with trio.fail_after(BOUND):
        status = await trio.to_thread.run_sync(actors.cli.main, [*argv, "--url", service.url, "--timeout", "10"])
    out, err = capsys.readouterr()
    return status, out, err


async def execd_json(capsys: pytest.CaptureFixture[str], service: Service, *argv: str) -> Any:
    status, out, err = await execd(capsys, service, *argv, "--json")
    assert status == 0, err
    return json.loads(out)


async def inspection(client: httpx.AsyncClient, account: str = "paper-1") -> dict[str, Any]:
    with trio.fail_after(BOUND):
        response = await client.get(f"/v1/accounts/{account}")
    assert response.status_code == 200
    return response.json()


async def test_submit(capsys: pytest.CaptureFixture[str], service: Service, client: httpx.AsyncClient) -> None:
    status, out, err = await execd(capsys, service, "submit", "paper-1", "--symbol", "BTCUSDT", "--side", "long",
                                   "--notional", "500", "--leverage", "5", "--tp", "999999", "--sl", "1",
                                   "--id", "cli-1")
    assert status == 0, err
    assert err == ""
    assert out.startswith("decision cli-1: filled (paper)")
    assert "BUY" in out and "BTCUSDT" in out and "fee" in out and "balance" in out
    result = await execd_json(capsys, service, "submit", "paper-1", "--symbol", "ETHUSDT", "--side", "short",
                              "--quantity", "0.2")
    assert result["status"] == "filled"
    assert result["decision_id"].startswith("cli-")  # a fresh id when none is given
    assert (result["position"]["side"], result["position"]["quantity"]) == ("short", "0.2")
    body = await inspection(client)
    assert {p["symbol"] for p in body["positions"]} == {"BTCUSDT", "ETHUSDT"}
    btc = next(p for p in body["positions"] if p["symbol"] == "BTCUSDT")
    assert (btc["take_profit"], btc["stop_loss"], btc["leverage"]) == ("999999", "1", 5)


async def test_submit_rejected_prints_the_rejection_and_fails(capsys: pytest.CaptureFixture[str],
                                                               service: Service) -> None:
    status, out, _ = await execd(capsys, service, "submit", "paper-1", "--symbol", "NOPEUSDT", "--side", "long",
                                 "--notional", "100", "--id", "cli-rej")
    assert status != 0
    assert "decision cli-rej: rejected" in out
    assert "UNKNOWN_SYMBOL" in out


async def test_inspect(capsys: pytest.CaptureFixture[str], service: Service) -> None:
    await execd_json(capsys, service, "submit", "paper-1", "--symbol", "SOLUSDT", "--side", "long",
                     "--notional", "300", "--id", "cli-insp")
    status, out, err = await execd(capsys, service, "inspect", "paper-1")
    assert status == 0, err
    assert out.startswith("account paper-1 (paper on sim)")
    assert "actor: running, restarts 0" in out
    assert "trading: active" in out
    assert "balance" in out and "equity" in out and "SOLUSDT" in out
    body = await execd_json(capsys, service, "inspect", "paper-1")
    assert body["id"] == "paper-1"
    assert [p["symbol"] for p in body["positions"]] == ["SOLUSDT"]
    assert Decimal(body["balance"]) < Decimal(10000)
    assert body["performance"]["trades"] == 0


async def test_positions(capsys: pytest.CaptureFixture[str], service: Service) -> None:
    await execd_json(capsys, service, "submit", "paper-1", "--symbol", "BTCUSDT", "--side", "long",
                     "--notional", "500", "--id", "cli-pos-1")
    await execd_json(capsys, service, "submit", "paper-1", "--symbol", "ETHUSDT", "--side", "long",
                     "--notional", "500", "--id", "cli-pos-2")
    await execd_json(capsys, service, "close", "paper-1", "ETHUSDT", "--id", "cli-pos-3")
    status, out, err = await execd(capsys, service, "positions", "paper-1")
    assert status == 0, err
    header, *lines = out.strip().splitlines()
    assert header.split()[:3] == ["symbol", "side", "status"]
    assert len(lines) == 1 and lines[0].split()[:3] == ["BTCUSDT", "long", "open"]
    closed = await execd_json(capsys, service, "positions", "paper-1", "--status", "closed")
    assert [(p["symbol"], p["status"]) for p in closed["items"]] == [("ETHUSDT", "closed")]
    status, out, _ = await execd(capsys, service, "positions", "paper-2")
    assert status == 0 and out.strip() == "(none)"


async def test_trades(capsys: pytest.CaptureFixture[str], service: Service) -> None:
    await execd_json(capsys, service, "submit", "paper-1", "--symbol", "BTCUSDT", "--side", "long",
                     "--notional", "500", "--id", "cli-tr-1")
    await execd_json(capsys, service, "close", "paper-1", "BTCUSDT", "--id", "cli-tr-2")
    await execd_json(capsys, service, "submit", "paper-1", "--symbol", "ETHUSDT", "--side", "short",
                     "--notional", "500", "--id", "cli-tr-3")
    status, out, err = await execd(capsys, service, "trades", "paper-1", "--limit", "2")
    assert status == 0, err
    assert out.splitlines()[0].split()[:3] == ["id", "symbol", "side"]
    assert "cli-tr-3.entry" in out and "cli-tr-2.exit" in out
    assert "next page: --cursor " in out
    first = await execd_json(capsys, service, "trades", "paper-1", "--limit", "2")
    assert [t["decision_id"] for t in first["items"]] == ["cli-tr-3", "cli-tr-2"]
    rest = await execd_json(capsys, service, "trades", "paper-1", "--limit", "2", "--cursor", first["next_cursor"])
    assert [t["decision_id"] for t in rest["items"]] == ["cli-tr-1"]
    assert rest["next_cursor"] is None


async def test_close(capsys: pytest.CaptureFixture[str], service: Service, client: httpx.AsyncClient) -> None:
    await execd_json(capsys, service, "submit", "paper-1", "--symbol", "BTCUSDT", "--side", "long",
                     "--quantity", "0.01", "--id", "cli-cl-1")
    status, out, err = await execd(capsys, service, "close", "paper-1", "BTCUSDT", "--quantity", "0.004",
                                   "--id", "cli-cl-2")
    assert status == 0, err
    assert out.startswith("decision cli-cl-2: filled (paper)")
    assert "SELL 0.004 BTCUSDT" in out
    result = await execd_json(capsys, service, "close", "paper-1", "BTCUSDT", "--id", "cli-cl-3")
    assert (result["status"], result["action"], result["position"]["status"]) == ("filled", "close", "closed")
    assert result["order"]["filled_quantity"] == "0.006"
    status, out, _ = await execd(capsys, service, "close", "paper-1", "BTCUSDT")
    assert status != 0 and "NO_POSITION" in out
    assert (await inspection(client))["positions"] == []


async def test_halt_and_resume(capsys: pytest.CaptureFixture[str], service: Service,
                               client: httpx.AsyncClient) -> None:
    status, out, err = await execd(capsys, service, "halt", "paper-1", "--reason", "desk review")
    assert status == 0, err
    assert out.strip() == "paper-1 trading state: halted"
    body = await inspection(client)
    assert (body["trading_state"], body["state_reason"]) == ("halted", "desk review")
    status, out, _ = await execd(capsys, service, "submit", "paper-1", "--symbol", "BTCUSDT", "--side", "long",
                                 "--notional", "100")
    assert status != 0 and "TRADING_HALTED" in out

    reducing = await execd_json(capsys, service, "halt", "paper-1", "--reducing")
    assert reducing["trading_state"] == "reducing"
    resumed = await execd_json(capsys, service, "resume", "paper-1")
    assert (resumed["trading_state"], resumed["previous"]) == ("active", "reducing")

    status, out, err = await execd(capsys, service, "halt")
    assert status == 0, err
    assert out.strip() == "global trading state: halted"
    assert (await inspection(client, "paper-2"))["effective_trading_state"] == "halted"
    resumed = await execd_json(capsys, service, "resume")
    assert resumed["trading_state"] == "active"
    body = await inspection(client, "paper-2")
    assert (body["global_trading_state"], body["effective_trading_state"]) == ("active", "active")


async def test_close_all(capsys: pytest.CaptureFixture[str], service: Service, client: httpx.AsyncClient) -> None:
    await execd_json(capsys, service, "submit", "paper-1", "--symbol", "BTCUSDT", "--side", "long",
                     "--notional", "500", "--tp", "999999", "--sl", "1", "--id", "cli-ca-1")
    await execd_json(capsys, service, "submit", "paper-2", "--symbol", "ETHUSDT", "--side", "short",
                     "--notional", "500", "--id", "cli-ca-2")
    status, out, err = await execd(capsys, service, "close-all", "paper-1")
    assert status == 0, err
    assert out.strip() == "paper-1: cancelled 2 orders, closed 1 positions"
    body = await inspection(client)
    assert body["positions"] == [] and body["open_orders"] == []
    assert len((await inspection(client, "paper-2"))["positions"]) == 1
    result = await execd_json(capsys, service, "close-all")
    by_account = {item["account_id"]: item for item in result["items"]}
    assert set(by_account) == {"paper-1", "paper-2"}
    assert [p["symbol"] for p in by_account["paper-2"]["closed_positions"]] == ["ETHUSDT"]
    assert by_account["paper-1"]["closed_positions"] == []
    assert (await inspection(client, "paper-2"))["positions"] == []


@pytest.mark.parametrize("argv", [
    ["inspect", "nobody"],
    ["positions", "nobody"],
    ["trades", "nobody"],
    ["submit", "nobody", "--symbol", "BTCUSDT", "--side", "long", "--notional", "100"],
    ["halt", "nobody"],
    ["close-all", "nobody"],
])
async def test_an_error_from_the_service_goes_to_stderr(capsys: pytest.CaptureFixture[str], service: Service,
                                                         argv: list[str]) -> None:
    status, out, err = await execd(capsys, service, *argv)
    assert status != 0
    assert out == ""
    assert err.strip() == "execd: 404 UNKNOWN_ACCOUNT: no account 'nobody'"


async def test_a_bad_request_names_the_field(capsys: pytest.CaptureFixture[str], service: Service) -> None:
    status, out, err = await execd(capsys, service, "submit", "paper-1", "--symbol", "BTCUSDT", "--side", "long",
                                   "--notional", "-5")
    assert status != 0 and out == ""
    assert err.startswith("execd: 400 INVALID_DECISION:")
    assert "(field: notional)" in err


def test_an_unreachable_service_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    status = actors.cli.main(["inspect", "paper-1", "--url", "http://127.0.0.1:9", "--timeout", "2"])
    _, err = capsys.readouterr()
    assert status != 0
    assert err.startswith("execd: cannot reach the service at http://127.0.0.1:9")


def test_serve_with_bad_settings_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {prot: 8080}\n", encoding="utf-8")
    assert actors.cli.main(["serve", "--settings", str(bad)]) == 2
    _, err = capsys.readouterr()
    assert "server.prot" in err and str(bad) in err


def test_bin_execd_serve_with_bad_settings_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("accounts:\n  - {id: a1, risk: {max_leverage: 30}}\n", encoding="utf-8")
    done = subprocess.run([sys.executable, str(BIN_EXECD), "serve", "--settings", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "accounts[0].risk.max_leverage" in done.stderr and str(bad) in done.stderr


def test_bin_execd_help() -> None:
    done = subprocess.run([sys.executable, str(BIN_EXECD), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ("serve", "submit", "inspect", "positions", "trades", "close", "halt", "resume", "close-all"):
        assert command in done.stdout
