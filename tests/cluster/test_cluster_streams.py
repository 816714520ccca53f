"""Three nodes, one Redis: decisions added to ``execd:decisions`` are executed by their account's
owner exactly once, even when the node that owns their shard (and relays the outbox) is SIGKILLed
while they flow: the new owner claims what it left pending, another node takes the relay over, and
the results and events streams end up holding each result and each event once, in ``seq`` order."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import coredis
import httpx
import psycopg
import pytest
import trio

from actors.cluster import shard_of
from tests.cluster.conftest import broker_yaml
from tests.cluster.nodes import Node, cluster_view, start_nodes, stop_node, wait_settled, write_settings

pytestmark = pytest.mark.slow

ACCOUNTS = [f"s-{n}" for n in range(9)]
SHARDS = 12
DECISIONS = 240


def decision(n: int) -> dict[str, Any]:
    account = ACCOUNTS[n % len(ACCOUNTS)]
    if (n // len(ACCOUNTS)) % 2:
        body: dict[str, Any] = {"decision_id": f"x-{n}", "symbol": "BTCUSDT", "action": "close"}
    else:
        body = {"decision_id": f"x-{n}", "symbol": "BTCUSDT", "action": "open", "side": "long", "notional": "50",
                "leverage": 2}
    return {"account_id": account, "decision": body}


async def test_stream_decisions_survive_the_owner_and_relay_being_killed(
        tmp_path: Path, pg_url: str, redis_url: str, redis_prefix: str) -> None:
    settings = write_settings(tmp_path / "cluster.yaml", pg_url, ACCOUNTS, shards=SHARDS, lease=1.5,
                              extra=broker_yaml(redis_url, redis_prefix))
    p = redis_prefix
    client: coredis.Redis[bytes] = coredis.Redis.from_url(redis_url)
    async with client, trio.open_nursery() as nursery:
        async with httpx.AsyncClient(timeout=5) as http:
            nodes = await start_nodes(nursery, settings, 3)
            await wait_settled(http, nodes, SHARDS, timeout=30)
            views = {n.node_id: await cluster_view(http, n) for n in nodes}
            victim: Node = next((n for n in nodes if (views[n.node_id] or {}).get("relay")), nodes[2])
            victim_shards = set((views[victim.node_id] or {})["held"])
            for n in range(DECISIONS):
                await client.xadd(f"{p}:decisions", {"data": json.dumps(decision(n))})
                if n == DECISIONS // 3:  # while they flow: the relay and owner of a third of the shards dies
                    victim.signal(signal.SIGKILL)
                if n % 20 == 0:
                    await trio.sleep(0.05)
            survivors = [n for n in nodes if n is not victim]
            await wait_settled(http, survivors, SHARDS, timeout=20)

            async def results() -> list[dict[str, Any]]:
                return [json.loads(e.field_values[b"data"]) for e in await client.xrange(f"{p}:results")]

            with trio.fail_after(40):
                while len({r["decision_id"] for r in await results()}) < DECISIONS:
                    await trio.sleep(0.1)
            # every intake entry acknowledged: the router's and each shard's group
            with trio.fail_after(20):
                while True:
                    pending = [(await client.xpending(f"{p}:decisions", "execd-router")).pending]
                    for shard in range(SHARDS):
                        pending.append((await client.xpending(f"{p}:decisions:shard:{shard}", "execd")).pending)
                    if not any(pending):
                        break
                    await trio.sleep(0.1)
            moved = [decision(n)["decision"]["decision_id"] for n in range(DECISIONS)
                     if shard_of(decision(n)["account_id"], SHARDS) in victim_shards]
            assert moved  # some decisions belonged to the killed node's shards

            def outbox() -> tuple[list[int], Counter[str]]:
                with psycopg.connect(pg_url) as conn:
                    seqs = [s for (s,) in conn.execute("SELECT seq FROM events ORDER BY seq").fetchall()]
                    stored = Counter(d for (d,) in conn.execute("SELECT decision_id FROM decisions").fetchall())
                return seqs, stored

            with trio.fail_after(20):
                while True:
                    seqs, stored = await trio.to_thread.run_sync(outbox)
                    relayed = [json.loads(e.field_values[b"data"])["seq"] for e in await client.xrange(f"{p}:events")]
                    if relayed == seqs:
                        break
                    assert relayed == sorted(set(relayed))  # in seq order, each once, at every moment
                    await trio.sleep(0.1)
            found = await results()
            counts = Counter(r["decision_id"] for r in found)
            assert set(counts) == {f"x-{n}" for n in range(DECISIONS)}
            assert max(counts.values()) == 1  # one result each
            assert all(r.get("status") != "error" for r in found), [r for r in found if r.get("status") == "error"][:3]
            assert sorted(stored) == sorted(counts) and max(stored.values()) == 1  # executed once
            for node in survivors:
                assert await stop_node(node) == 0
