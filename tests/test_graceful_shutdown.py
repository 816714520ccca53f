"""Graceful shutdown under load: in-flight decisions finish and are durable, new ones are refused,
the service stops within its grace period, no task is left behind."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
import trio

from actors.service import Service, run_service
from tests.conftest import TEST_SETTINGS, make_settings


@pytest.mark.slow
async def test_stop_under_load_finishes_in_flight_decisions(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, TEST_SETTINGS.replace("inbox_size: 16", "inbox_size: 64"))
    answered: dict[str, int] = {}
    answered_after_stop = 0
    stop_requested = float("inf")
    refused = 0
    in_flight = trio.Event()
    async with trio.open_nursery() as nursery:
        # each decision takes 0.3 s on its way to the (paper) venue, so many are in flight at the stop
        service: Service = await nursery.start(lambda task_status: run_service(
            settings, paper_latency=0.3, task_status=task_status))
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:

            async def trader(n: int) -> None:
                nonlocal refused, answered_after_stop
                for k in range(1_000):
                    decision_id = f"g-{n}-{k}"
                    try:
                        response = await client.post(f"/v1/accounts/paper-{1 + n % 2}/decisions", json={
                            "decision_id": decision_id, "symbol": ("BTCUSDT", "ETHUSDT", "SOLUSDT")[n % 3],
                            "action": "open", "side": "long", "notional": "100", "leverage": 2})
                    except httpx.TransportError:
                        refused += 1  # the listener is closed: refused at the door
                        return
                    if response.status_code == 503:
                        refused += 1
                        assert response.headers.get("Retry-After")
                        return
                    answered[decision_id] = response.status_code
                    if trio.current_time() > stop_requested:
                        answered_after_stop += 1  # was in flight when the stop came: finished
                    if len(answered) >= 4:
                        in_flight.set()

            with trio.fail_after(60):
                async with trio.open_nursery() as traders:
                    for n in range(8):
                        traders.start_soon(trader, n)
                    await in_flight.wait()
                    await trio.sleep(0.1)  # let a new wave of decisions get in flight
                    stop_requested = trio.current_time()
                    service.request_stop()
                    await service.stopped.wait()
                    stop_seconds = trio.current_time() - stop_requested
    assert stop_seconds < settings.server.shutdown_grace_seconds + 5
    assert refused >= 1
    assert answered_after_stop >= 1
    assert set(answered.values()) <= {200, 422}
    conn = sqlite3.connect(settings.database.path)
    stored = dict(conn.execute("SELECT decision_id, status FROM decisions").fetchall())
    conn.close()
    # acknowledged => durable: every answered decision is stored
    missing = [d for d in answered if d not in stored]
    assert not missing, missing
    # and nothing is left running: the nursery above exited, so every actor task has returned
