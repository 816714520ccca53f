"""SIGKILL at every point of a live open with TP/SL, then a restart: exactly one entry on the venue,
the position protected, the decision's stored result true to the venue, no order placed twice.

The service runs as its own process (``execd serve``) against the fake exchange in this one, with
a kill point armed (``actors.kill_points``): the process kills itself there, mid-order. It is then
started again on the same database, without the kill point, and must put everything right by
itself (reconciliation at start, pending decisions settled, missing protection placed).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from actors.domain.orders import client_order_id
from actors.kill_points import POINTS
from tests.fake_exchange import FakeExchange, open_fake_exchange
from tests.live.support import BIDS, decision, wait_until, working_protection

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "kx-1"


def settings_text(fake: FakeExchange, db: Path) -> str:
    return f"""
server: {{host: 127.0.0.1, port: 0, request_timeout_seconds: 10, shutdown_grace_seconds: 2}}
database: {{path: {db}}}
venues:
  binance-usdm: {{rest_url: "{fake.rest_url}", ws_url: "{fake.ws_url}", symbols: [BTCUSDT],
                 stale_after_seconds: 2, poll_interval_seconds: 0.2, request_timeout_seconds: 1.5,
                 recv_window_ms: 1500, settle_margin_seconds: 0.3, user_stream_reconnect_seconds: 0.05}}
risk: {{cooldown_seconds: 0, market_data_max_age_seconds: 5}}
accounts:
  - {{id: {ACCOUNT}, mode: live, venue: binance-usdm, protection_deadline_seconds: 5,
      credentials: {{api_key_env: KX_KEY, api_secret_env: KX_SECRET}}}}
"""


class Server:
    def __init__(self, process: trio.Process, url: str, log: list[str]) -> None:
        self.process, self.url, self.log = process, url, log


async def start(nursery: trio.Nursery, settings: Path, env: dict[str, str], log: list[str]) -> Server:
    process = await trio.lowlevel.open_process(
        [sys.executable, str(ROOT / "bin" / "execd"), "serve", "--settings", str(settings)],
        stderr=subprocess.PIPE, env=env)
    assert process.stderr is not None
    url = None
    buffer = b""
    while url is None:
        chunk = await process.stderr.receive_some()
        if not chunk:
            raise AssertionError("execd exited before listening:\n" + "".join(log[-40:]))
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            log.append(line.decode(errors="replace") + "\n")
            found = re.search(r"execd listening on (http://\S+)", log[-1])
            url = url or (found.group(1) if found else None)
    nursery.start_soon(drain, process.stderr, log)
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while (await client.get(f"/v1/accounts/{ACCOUNT}")).json()["actor"]["state"] != "running":
            await trio.sleep(0.05)
    return Server(process, url, log)


async def drain(stream: trio.abc.ReceiveStream, sink: list[str]) -> None:
    async for chunk in stream:
        sink.append(chunk.decode(errors="replace"))


def accepted_orders(fake: FakeExchange) -> Counter[str]:
    """Client ids of the orders the venue accepted (classic and algo), with how many times."""
    counted: Counter[str] = Counter()
    for r in fake.requests:
        if r.method == "POST" and r.path in ("/fapi/v1/order", "/fapi/v1/algoOrder") and r.status == 200:
            counted[r.query.get("newClientOrderId") or r.query.get("clientAlgoId") or "?"] += 1
    return counted


@pytest.mark.parametrize("point", POINTS)
async def test_a_kill_mid_order_and_a_restart_leave_one_entry_protected_and_a_true_result(
        tmp_path: Path, point: str) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        fake.set_book("BTCUSDT", BIDS, [("60000.0", "0.05"), ("60000.5", "0.1"), ("60001.0", "10")])
        fake.set_mark("BTCUSDT", "60000")
        account = fake.add_account(ACCOUNT, wallet="10000")
        settings = tmp_path / "settings.yaml"
        settings.write_text(settings_text(fake, tmp_path / "live.sqlite3"))
        env = {**os.environ, "KX_KEY": account.api_key, "KX_SECRET": account.api_secret, "PYTHONUNBUFFERED": "1",
               "EXECD_LOG_LEVEL": "INFO"}
        log: list[str] = []
        body = decision("kx-d1", stop_loss="59000", take_profit="62000")
        entry_id = client_order_id(ACCOUNT, "kx-d1.entry", "entry")
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                doomed = await start(nursery, settings, {**env, "EXECD_TEST_FAULTS": "1",
                                                         "EXECD_TEST_KILL_AT": point}, log)
                async with httpx.AsyncClient(base_url=doomed.url, timeout=10) as client:
                    with pytest.raises(httpx.TransportError):
                        await client.post(f"/v1/accounts/{ACCOUNT}/decisions", json=body)
                assert await doomed.process.wait() == -9, "".join(log[-40:])

                server = await start(nursery, settings, env, log)
                async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                    result = await settled(client)
                    await wait_until(lambda: len(working_protection(fake, ACCOUNT)) == 2, step=0.05)
                    again = await client.post(f"/v1/accounts/{ACCOUNT}/decisions", json=body)  # the client retries
                    assert again.status_code == 200 and again.json()["status"] == "filled", again.text
                    book = (await client.get(f"/v1/accounts/{ACCOUNT}")).json()
                server.process.terminate()
                await server.process.wait()

        # exactly one entry on the venue, never sent twice
        assert len(fake.order_requests(entry_id)) == 1
        assert fake.position(ACCOUNT, "BTCUSDT").amount == D("0.1")
        # protected: one stop-loss and one take-profit, at the levels asked
        assert sorted(working_protection(fake, ACCOUNT).values()) == [
            ("STOP_MARKET", "59000"), ("TAKE_PROFIT_MARKET", "62000")]
        # no order placed twice
        assert [cid for cid, n in accepted_orders(fake).items() if n > 1] == []
        assert sum(1 for cid in accepted_orders(fake) if cid.startswith("sl-")) == 1
        # the stored result is the venue's
        assert result["status"] == "filled"
        venue_fills = sorted((t.price, t.qty) for t in fake.trades(ACCOUNT, "BTCUSDT"))
        assert sorted((D(f["price"]), D(f["quantity"])) for f in result["fills"]) == venue_fills
        assert D(result["position"]["quantity"]) == D("0.1")
        # and the book agrees with the venue
        (position,) = book["positions"]
        assert D(position["quantity"]) == D("0.1") and position["stop_loss"] == "59000"
        assert {o["client_order_id"] for o in book["open_orders"]} == set(working_protection(fake, ACCOUNT))


async def settled(client: httpx.AsyncClient) -> dict[str, Any]:
    while True:
        response = await client.get(f"/v1/accounts/{ACCOUNT}/decisions/kx-d1")
        if response.status_code == 200 and response.json()["status"] != "pending":
            result: dict[str, Any] = response.json()
            return result
        await trio.sleep(0.05)
