"""Acknowledged means durable: ``execd serve`` under concurrent load, SIGKILLed at random moments
and restarted on the same database, never loses or repeats what it acknowledged.

Three times: start the service, let 16 HTTP clients submit decisions, SIGKILL it 0.3-1.5 s after
the load started. A decision answered 200/422 before the kill is *acknowledged*; one whose answer
never came is *in doubt* and is re-submitted (same body) after the restart, as a client would.
Then a last start: every acknowledged decision is re-submitted and must answer its stored result
without trading, and after a clean stop (SIGTERM) the database must hold every acknowledged
decision exactly once with its orders, fills and position changes, nothing traded without its
decision, and balances that are exactly the sum of their fills (``actors.tools.loadtest``).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import ssl
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from actors.tools.loadtest import Ack, DecisionMaker, check_acknowledged, check_invariants

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = [f"dur-{n}" for n in range(8)]
CLIENTS = 16
KILLS = 3
TLS = ssl.create_default_context()

SETTINGS = """
server: {host: 127.0.0.1, port: 0, request_timeout_seconds: 5, shutdown_grace_seconds: 5}
database: {path: %(db)s, synchronous: FULL}
venues:
  sim: {seed: 9, symbols: [BTCUSDT, ETHUSDT, SOLUSDT], tick_interval_seconds: 0.1}
risk: {max_leverage: 25, cooldown_seconds: 0}
supervisor: {inbox_size: 32}
accounts:
%(accounts)s
"""


class Server:
    """One ``execd serve`` process; its stderr is drained into ``log`` so it never blocks."""

    def __init__(self, process: trio.Process, url: str, log: list[str]) -> None:
        self.process = process
        self.url = url
        self.log = log


async def start_server(nursery: trio.Nursery, settings: Path, log: list[str]) -> Server:
    env = {**os.environ, "EXECD_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    env.pop("EXECD_TEST_FAULTS", None)
    process = await trio.lowlevel.open_process(
        [sys.executable, str(ROOT / "bin" / "execd"), "serve", "--settings", str(settings)],
        stderr=subprocess.PIPE, env=env,
    )
    assert process.stderr is not None
    url: str | None = None
    buffer = b""
    with trio.fail_after(30):
        while url is None:
            chunk = await process.stderr.receive_some()
            if not chunk:
                raise AssertionError("execd exited before listening:\n" + "".join(log[-50:]))
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                log.append(text + "\n")
                match = re.search(r"execd listening on (http://\S+)", text)
                if match:
                    url = match.group(1)
    nursery.start_soon(drain, process.stderr, log)
    async with http_client(url) as client:
        with trio.fail_after(30):
            while (await client.get("/ready")).status_code != 200:
                await trio.sleep(0.05)
    return Server(process, url, log)


async def drain(stream: trio.abc.ReceiveStream, sink: list[str]) -> None:
    async for chunk in stream:
        sink.append(chunk.decode(errors="replace"))


class Clients:
    """The client side: what was acknowledged, what is in doubt."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.maker = DecisionMaker(self.rng)
        self.acks: dict[tuple[str, str], Ack] = {}
        self.in_doubt: dict[tuple[str, str], bytes] = {}
        self.count = 0
        self.problems: list[str] = []
        self.answered = trio.Event()  # the load is flowing (set by the first answer of a phase)

    def next_decision(self) -> tuple[str, str, bytes]:
        if self.in_doubt:  # a client re-sends what it never got an answer for, first
            (account, decision_id), body = self.in_doubt.popitem()
            return account, decision_id, body
        self.count += 1
        account = self.rng.choice(ACCOUNTS)
        data = self.maker.body(account, f"dur-{self.count}")
        return account, data["decision_id"], json.dumps(data).encode()

    async def post(self, client: httpx.AsyncClient, account: str, decision_id: str,
                   body: bytes) -> tuple[int, dict[str, Any]]:
        """POST until answered; 503 honours Retry-After with the same id. Transport errors and
        cancellation propagate (the caller leaves the decision in doubt)."""
        while True:
            response = await client.post(f"/v1/accounts/{account}/decisions", content=body,
                                         headers={"Content-Type": "application/json"})
            if response.status_code == 503:
                await trio.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            payload = response.json()  # a rejection's answer is its stored result, error included
            return response.status_code, payload

    def acknowledge(self, account: str, decision_id: str, body: bytes, status: int, payload: dict[str, Any]) -> None:
        self.answered.set()
        if status in (200, 422):
            previous = self.acks.get((account, decision_id))
            if previous is not None and (previous.http_status, previous.result) != (status, payload):
                self.problems.append(f"{account}/{decision_id} answered {status} {payload}, "
                                     f"then {previous.http_status} {previous.result}")
            self.acks[(account, decision_id)] = Ack(account, decision_id, body, status, payload)
        else:
            self.problems.append(f"{account}/{decision_id}: HTTP {status}: {str(payload)[:300]}")

    async def worker(self, client: httpx.AsyncClient) -> None:
        while True:
            account, decision_id, body = self.next_decision()
            answered = False
            try:
                status, payload = await self.post(client, account, decision_id, body)
                answered = True
                if status == 202:  # took too long: in doubt until its result is known
                    self.in_doubt[(account, decision_id)] = body
                    continue
                self.acknowledge(account, decision_id, body, status, payload)
            except httpx.TransportError:
                return  # the service is gone
            finally:
                if not answered:
                    self.in_doubt[(account, decision_id)] = body


def http_client(url: str) -> httpx.AsyncClient:
    # one TLS context for all (plain HTTP here, but each client would load the CA bundle: ~30 ms)
    return httpx.AsyncClient(base_url=url, timeout=10, verify=TLS)


def db_count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


@pytest.mark.slow
async def test_acknowledged_decisions_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "durable.sqlite3"
    settings = tmp_path / "settings.yaml"
    settings.write_text(SETTINGS % {
        "db": db, "accounts": "\n".join(f'  - {{id: {a}, mode: paper, venue: sim, balance: "10000"}}'
                                        for a in ACCOUNTS)})
    clients = Clients(seed=random.randrange(1 << 30))
    log: list[str] = []
    kills: list[tuple[float, int]] = []  # (delay, acknowledged so far)

    with trio.fail_after(90):
        async with trio.open_nursery() as drains:
            # ---- load, SIGKILL at a random moment, restart on the same database
            for _ in range(KILLS):
                server = await start_server(drains, settings, log)
                clients.answered = trio.Event()
                async with AsyncExitStack() as stack, trio.open_nursery() as load:
                    for _ in range(CLIENTS):
                        load.start_soon(clients.worker, await stack.enter_async_context(http_client(server.url)))
                    with trio.fail_after(10):
                        await clients.answered.wait()  # the load runs (its first answer came)
                    delay = clients.rng.uniform(0.3, 1.5)
                    await trio.sleep(delay)  # the random kill moment (the only fixed wait)
                    server.process.kill()  # SIGKILL: no shutdown, no checkpoint
                    with trio.fail_after(10):
                        await server.process.wait()
                    load.cancel_scope.cancel()  # whatever was still waiting is in doubt
                assert server.process.returncode == -signal.SIGKILL
                kills.append((delay, len(clients.acks)))

            # ---- last start: in-doubt decisions re-sent, then every acknowledged one re-submitted
            server = await start_server(drains, settings, log)
            async with http_client(server.url) as client:
                for (account, decision_id), body in list(clients.in_doubt.items()):
                    status, payload = await clients.post(client, account, decision_id, body)
                    clients.acknowledge(account, decision_id, body, status, payload)
                    del clients.in_doubt[(account, decision_id)]
                fills_before = db_count(db, "SELECT COUNT(*) FROM fills")
                decisions_before = db_count(db, "SELECT COUNT(*) FROM decisions")
                mismatches: list[str] = []
                acks = list(clients.acks.values())

                async def resubmit(share: list[Ack]) -> None:
                    async with http_client(server.url) as own:
                        for ack in share:
                            status, payload = await clients.post(own, ack.account_id, ack.decision_id, ack.body)
                            if (status, payload) != (ack.http_status, ack.result):
                                mismatches.append(f"{ack.account_id}/{ack.decision_id}: first answered "
                                                  f"{ack.http_status} {ack.result}, re-submitted {status} {payload}")

                async with trio.open_nursery() as again:
                    for n in range(CLIENTS):
                        again.start_soon(resubmit, acks[n::CLIENTS])
                assert db_count(db, "SELECT COUNT(*) FROM fills") == fills_before, "a re-submission traded"
                assert db_count(db, "SELECT COUNT(*) FROM decisions") == decisions_before
            server.process.send_signal(signal.SIGTERM)
            with trio.fail_after(20):
                status = await server.process.wait()
            drains.cancel_scope.cancel()

    text = "".join(log)
    assert status == 0, text[-3000:]
    print(f"kills (delay s, acknowledged so far): {kills}; acknowledged {len(clients.acks)}, "
          f"fills {fills_before}, decisions {decisions_before}")
    # the load really ran into each kill
    assert all(acked > previous for (_, acked), (_, previous) in zip(kills, [(0, 0)] + kills)), kills
    assert len(clients.acks) >= 100
    assert sum(1 for a in clients.acks.values() if a.http_status == 200) >= 30
    assert not clients.problems, clients.problems[:10]
    assert not mismatches, mismatches[:10]
    assert check_acknowledged(str(db), clients.acks.values()) == []
    problems = check_invariants(str(db))
    assert problems == [], "\n".join(problems[:30])
