"""Three ``execd serve`` nodes on loopback, one PostgreSQL database: ownership spread fairly, any
node answers any account, and a node that is killed, paused past its lease or stopped gives its
accounts up to the others without losing or repeating an acknowledged decision.

Leases are short (1.5 s) to keep the tests fast. A client that gets no answer from a node (it was
killed or paused) re-sends the same decision to another node, as a client behind a load balancer
would; every decision answered 200/422 is *acknowledged* and must be stored exactly once, and the
books must replay exactly (``actors.tools.loadtest`` invariants, read from PostgreSQL).
"""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import httpx
import pytest
import trio

from actors.tools.loadtest import ROUNDING_TAG, Ack, DecisionMaker, check_acknowledged, check_invariants
from actors.cluster import shard_of
from tests.cluster.nodes import Node, cluster_view, start_nodes, stop_node, wait_settled, write_settings

pytestmark = pytest.mark.slow

ACCOUNTS = [f"c-{n}" for n in range(9)]
SHARDS = 12
LEASE = 1.5


class Load:
    """Clients spread over the nodes that are up; what was acknowledged, what is in doubt."""

    def __init__(self, nodes: list[Node], seed: int) -> None:
        self.up = list(nodes)
        self.rng = random.Random(seed)
        self.maker = DecisionMaker(self.rng)
        self.acks: dict[tuple[str, str], Ack] = {}
        self.count = 0
        self.problems: list[str] = []
        self.answered = 0
        self.transport_errors = 0
        self.refusals_503 = 0
        self.stop = trio.Event()

    async def client(self, http: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            self.count += 1
            account = self.rng.choice(ACCOUNTS)
            data = self.maker.body(account, f"cl-{self.count}")
            await self.submit(http, account, data["decision_id"], json.dumps(data).encode())

    async def submit(self, http: httpx.AsyncClient, account: str, decision_id: str, body: bytes) -> None:
        """Until answered: another node after a transport error, the same one after a 503."""
        node = self.rng.choice(self.up)
        while True:
            try:
                response = await http.post(f"{node.url}/v1/accounts/{account}/decisions", content=body,
                                           headers={"Content-Type": "application/json"})
            except httpx.HTTPError:
                self.transport_errors += 1
                node = self.rng.choice(self.up)
                continue
            if response.status_code == 503:  # retried, as behind a load balancer: on any node that is up
                self.refusals_503 += 1
                await trio.sleep(min(float(response.headers.get("Retry-After", "1")), 0.25))
                node = self.rng.choice(self.up)
                continue
            payload = response.json()
            if response.status_code in (200, 422):
                self.acks[(account, decision_id)] = Ack(account, decision_id, body, response.status_code, payload)
                self.answered += 1
            else:
                self.problems.append(f"{account}/{decision_id}: HTTP {response.status_code} {str(payload)[:200]}")
            return

    async def run(self, clients: int) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(self._client_task)

    async def _client_task(self) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(3.0)) as http:
            await self.client(http)

    async def wait_answers(self, more: int) -> None:
        target = self.answered + more
        with trio.fail_after(30):
            while self.answered < target:
                await trio.sleep(0.05)


def assert_books(load: Load, pg_url: str) -> None:
    assert not load.problems, load.problems[:5]
    assert len(load.acks) > 50
    assert check_acknowledged(pg_url, load.acks.values()) == []
    problems = [p for p in check_invariants(pg_url) if not p.startswith(ROUNDING_TAG)]
    assert problems == []


async def timed_takeover(http: httpx.AsyncClient, survivors: list[Node]) -> float:
    started = time.monotonic()
    await wait_settled(http, survivors, SHARDS, timeout=20)
    return time.monotonic() - started


async def test_three_nodes_spread_route_and_survive_a_sigkill(tmp_path: Path, pg_url: str) -> None:
    settings = write_settings(tmp_path / "cluster.yaml", pg_url, ACCOUNTS, shards=SHARDS, lease=LEASE)
    async with trio.open_nursery() as nursery, httpx.AsyncClient(timeout=5) as http:
        nodes = await start_nodes(nursery, settings, 3)
        held = await wait_settled(http, nodes, SHARDS, timeout=30)
        assert sorted(len(h) for h in held.values()) == [4, 4, 4]  # the fair share: 12 / 3
        # any node answers any account: forwarded to its owner
        for account in ACCOUNTS:
            answer = await http.get(f"{nodes[0].url}/v1/accounts/{account}")
            assert answer.status_code == 200 and answer.json()["id"] == account
        listed = (await http.get(f"{nodes[1].url}/v1/accounts")).json()["items"]
        assert sorted(item["id"] for item in listed) == ACCOUNTS
        assert {item["node"] for item in listed} <= {"n1", "n2", "n3"}

        load = Load(nodes, seed=3)
        async with trio.open_nursery() as clients:
            clients.start_soon(load.run, 12)
            await load.wait_answers(60)
            victim = nodes[2]
            load.up.remove(victim)
            victim.signal(signal.SIGKILL)
            took = await timed_takeover(http, nodes[:2])
            await load.wait_answers(60)  # the moved accounts trade on their new owners
            load.stop.set()
        print(f"\nSIGKILL: shards of n3 served again after {took:.2f} s (lease {LEASE} s); "
              f"{load.answered} acknowledged, {load.refusals_503} answers 503, {load.transport_errors} transport errors")
        assert took < 3 * LEASE + 2
        await victim.process.wait()
        for node in nodes[:2]:
            assert await stop_node(node) == 0
    assert_books(load, pg_url)


async def test_a_paused_node_is_fenced_and_a_stopped_one_hands_over(tmp_path: Path, pg_url: str) -> None:
    settings = write_settings(tmp_path / "cluster.yaml", pg_url, ACCOUNTS, shards=SHARDS, lease=LEASE)
    async with trio.open_nursery() as nursery, httpx.AsyncClient(timeout=5) as http:
        nodes = await start_nodes(nursery, settings, 3, env={"EXECD_TEST_FAULTS": "1"})
        await wait_settled(http, nodes, SHARDS, timeout=30)
        paused = nodes[1]
        load = Load(nodes, seed=5)
        async with trio.open_nursery() as clients:
            clients.start_soon(load.run, 12)
            await load.wait_answers(60)
            # SIGSTOP past the lease: the others take its shards
            load.up.remove(paused)
            paused.signal(signal.SIGSTOP)
            took_paused = await timed_takeover(http, [nodes[0], nodes[2]])
            await load.wait_answers(30)
            paused.signal(signal.SIGCONT)
            # it finds its leases gone, stops those accounts (their late commits are refused) ...
            with trio.fail_after(20):
                while True:
                    view = await cluster_view(http, paused)
                    if view is not None and view["stats"]["lost"] >= 4:
                        print(f"\npaused node after SIGCONT: {view['stats']}")
                        break
                    await trio.sleep(0.1)
            # ... and the three share the shards again (the others hand their extras over cleanly)
            await wait_settled(http, nodes, SHARDS, timeout=30)
            load.up.append(paused)
            await load.wait_answers(30)
            fenced = await stalled_renewal_is_fenced(http, load, nodes)
            # SIGTERM: a clean handover, faster than a lease
            leaving = nodes[0]
            load.up.remove(leaving)
            leaving.signal(signal.SIGTERM)
            took_term = await timed_takeover(http, nodes[1:])
            with trio.fail_after(20):
                assert await leaving.process.wait() == 0
            await load.wait_answers(30)
            load.stop.set()
        print(f"\nSIGSTOP: shards served again after {took_paused:.2f} s; SIGTERM: handed over in {took_term:.2f} s "
              f"(lease {LEASE} s); {load.answered} acknowledged, {load.refusals_503} answers 503")
        assert "handed over shards" in leaving.text
        assert "lost (epoch" in paused.text
        assert fenced >= 1
        assert took_paused < 3 * LEASE + 2
        for node in nodes[1:]:
            assert await stop_node(node) == 0
    assert_books(load, pg_url)


async def stalled_renewal_is_fenced(http: httpx.AsyncClient, load: Load, nodes: list[Node]) -> int:
    """A node whose lease loop stalls while its accounts keep working (the test-only fault): once
    the others took its shards, its commit is refused and answered 503; the same decision sent to
    another node is executed there, once. Returns the stalled node's count of fenced accounts."""
    stalled, others = nodes[2], nodes[:2]
    held = (await cluster_view(http, stalled) or {})["held"]
    account = next(f"f-{k}" for k in range(10_000) if shard_of(f"f-{k}", SHARDS) in held)
    created = await http.post(f"{others[0].url}/v1/accounts", json={"id": account, "balance": "10000",
                                                                       "risk": {"cooldown_seconds": 0}},
                              timeout=20)
    assert created.status_code == 201, created.text + "".join(
        line for node in nodes for line in node.log[-200:] if "WARNING" in line or "ERROR" in line)
    load.up.remove(stalled)
    assert (await http.post(f"{stalled.url}/v1/_cluster/renewal?held=1")).status_code == 200
    await timed_takeover(http, others)
    body = {"decision_id": "late-1", "symbol": "BTCUSDT", "action": "open", "side": "long", "notional": "100"}
    late = await http.post(f"{stalled.url}/v1/accounts/{account}/decisions", json=body)
    assert late.status_code == 503, late.text  # its commit was fenced: nothing of it was written
    fenced = (await cluster_view(http, stalled) or {})["stats"]["fenced"]
    again = await http.post(f"{others[1].url}/v1/accounts/{account}/decisions", json=body)
    assert again.status_code == 200, again.text
    load.acks[(account, "late-1")] = Ack(account, "late-1", json.dumps(body).encode(), 200, again.json())
    assert (await http.post(f"{stalled.url}/v1/_cluster/renewal?held=0")).status_code == 200
    await wait_settled(http, nodes, SHARDS, timeout=30)
    load.up.append(stalled)
    return fenced
