"""Shared fixtures: a real service (real SQLite file, real loopback socket) built from settings text."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import trio

from actors.clock import ServiceClock
from actors.service import Service, run_service
from actors.settings import Settings, parse_settings

TEST_SETTINGS = """
server: {host: 127.0.0.1, port: 0, request_timeout_seconds: 5, shutdown_grace_seconds: 5}
database: {path: unused.sqlite3}
venues:
  sim: {seed: 11, symbols: [BTCUSDT, ETHUSDT, SOLUSDT], tick_interval_seconds: 0.05}
risk: {max_leverage: 25, cooldown_seconds: 0}
supervisor: {inbox_size: 16, restart_backoff_initial_seconds: 0.05, restart_backoff_max_seconds: 0.5}
accounts:
  - {id: paper-1, mode: paper, venue: sim, balance: "10000"}
  - {id: paper-2, mode: paper, venue: sim, balance: "10000", risk: {max_leverage: 10}}
"""


def make_settings(tmp_path: Path, text: str = TEST_SETTINGS, **env: str) -> Settings:
    return parse_settings(text, source="test-settings.yaml",
                          env={"EXECD_DB": str(tmp_path / "execd.sqlite3"), **env})


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    def factory(text: str = TEST_SETTINGS, **env: str) -> Settings:
        return make_settings(tmp_path, text, **env)

    return factory


@pytest.fixture
async def service(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Service]:
    """The whole service on a loopback port, on the real clock."""
    svc: Service = await nursery.start(run_service, make_settings(tmp_path))
    yield svc
    svc.request_stop()
    with trio.fail_after(15):
        await svc.stopped.wait()


@pytest.fixture
async def client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        yield http


def decision(decision_id: str, **fields: object) -> dict[str, object]:
    body: dict[str, object] = {"decision_id": decision_id, "symbol": "BTCUSDT", "action": "open", "side": "long",
                               "notional": "500", "leverage": 5}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def db_rows(service: Service, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read the service's real SQLite file directly (a separate connection)."""
    import sqlite3

    conn = sqlite3.connect(service.settings.database.path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture
def virtual_clock() -> ServiceClock:
    return ServiceClock(epoch_anchor=1_767_225_600.0)  # 2026-01-01T00:00:00Z


os.environ.setdefault("EXECD_LOG_LEVEL", "WARNING")
