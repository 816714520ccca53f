"""The leverage an open uses is decided once, and the gate checks that very value.

A decision that names no leverage opens at the account's ``default_leverage`` (or an open
position's, for an increase); the audit row of the evaluation shows that leverage, and a
``default_leverage`` that the account's ``max_leverage`` could never allow is refused, at start-up
and by ``PUT .../risk``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trio

from actors.service import Service, run_service
from actors.settings import Settings, SettingsError
from tests.conftest import db_rows, make_settings

pytestmark = pytest.mark.slow

SETTINGS = """
server: {host: 127.0.0.1, port: 0, request_timeout_seconds: 5, shutdown_grace_seconds: 5}
database: {path: unused.sqlite3}
venues:
  sim: {seed: 11, symbols: [BTCUSDT, ETHUSDT, SOLUSDT], tick_interval_seconds: 0.05}
risk: {max_leverage: 25, cooldown_seconds: 0}
accounts:
  - {id: lev-1, mode: paper, venue: sim, balance: "10000", default_leverage: 3, risk: {max_leverage: 5}}
"""


def test_a_default_leverage_above_the_accounts_cap_is_refused_at_start_up(tmp_path: Path) -> None:
    text = SETTINGS.replace("default_leverage: 3, risk: {max_leverage: 5}", "default_leverage: 20, risk: {max_leverage: 5}")
    with pytest.raises(SettingsError, match=r"accounts\[0\]\.default_leverage: 20 is above the account's max_leverage 5"):
        make_settings(tmp_path, text)


async def test_an_open_without_leverage_uses_the_default_and_the_audit_shows_it(
        tmp_path: Path, nursery: trio.Nursery, settings_factory: Callable[..., Settings]) -> None:
    service: Service = await nursery.start(run_service, settings_factory(SETTINGS))
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            with trio.fail_after(20):
                response = await client.post("/v1/accounts/lev-1/decisions", json={
                    "decision_id": "lev-a", "symbol": "BTCUSDT", "action": "open", "side": "long", "notional": "300"})
                assert response.status_code == 200, response.text
                assert response.json()["position"]["leverage"] == 3
                checks = json.loads(db_rows(service, "SELECT checks FROM audit WHERE decision_id = 'lev-a'")[0][0])
                leverage = next(c for c in checks if c["name"] == "leverage")
                assert leverage["passed"] is True
                assert (leverage["detail"]["leverage"], leverage["detail"]["max_leverage"]) == ("3", "5")

                refused = await client.put("/v1/accounts/lev-1/risk", json={"max_leverage": 2})
                assert refused.status_code == 422
                error = refused.json()["error"]
                assert (error["code"], error["field"]) == ("INVALID_LIMIT", "max_leverage")
                assert "default_leverage 3" in error["message"]
                kept = (await client.get("/v1/accounts/lev-1")).json()["risk_limits"]["max_leverage"]
                assert kept == 5
    finally:
        service.request_stop()
        with trio.fail_after(15):
            await service.stopped.wait()
