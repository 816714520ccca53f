"""The broker on one node (PostgreSQL store, real Redis): decisions in over a stream, acknowledged
after their commit and executed once; results and the outbox out, in ``seq`` order, resumed after a
restart without a gap or a repeat."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import coredis
import httpx
import psycopg
import pytest
import trio

from actors.service import Service, run_service
from actors.settings import parse_settings
from tests.cluster.conftest import broker_yaml

SETTINGS = """
server: {host: 127.0.0.1, port: 0, request_timeout_seconds: 5, shutdown_grace_seconds: 5}
database: {url: "%(db)s"}
venues:
  sim: {seed: 11, symbols: [BTCUSDT, ETHUSDT, SOLUSDT], tick_interval_seconds: 0.05}
risk: {max_leverage: 25, cooldown_seconds: 0}
accounts:
  - {id: paper-1, mode: paper, venue: sim, balance: "10000"}
%(broker)s
"""


async def test_coredis_runs_under_trio(redis_url: str, redis_prefix: str) -> None:
    """The probe: consumer groups, blocking reads, acks and claims, on trio's own loop."""
    stream = f"{redis_prefix}:probe"
    client: coredis.Redis[bytes] = coredis.Redis.from_url(redis_url)
    with trio.fail_after(10):
        async with client:
            await client.xgroup_create(stream, "g", identifier="0", mkstream=True)
            assert (await client.xreadgroup("g", "c1", streams={stream: ">"}, count=1, block=50)) is None
            entry_id = await client.xadd(stream, {"data": b"{}"})
            read = await client.xreadgroup("g", "c1", streams={stream: ">"}, count=10, block=1000)
            assert [e.identifier for e in read[stream.encode()]] == [entry_id]
            _, claimed, *_ = await client.xautoclaim(stream, "g", "c2", 0, "0-0")
            assert [e.identifier for e in claimed] == [entry_id]
            assert await client.xack(stream, "g", [entry_id]) == 1


def decision(decision_id: str, **fields: Any) -> dict[str, Any]:
    body = {"decision_id": decision_id, "symbol": "BTCUSDT", "action": "open", "side": "long", "notional": "200",
            "leverage": 2}
    return {**body, **fields}


async def stream_data(client: coredis.Redis[bytes], stream: str) -> list[dict[str, Any]]:
    return [json.loads(e.field_values[b"data"]) for e in await client.xrange(stream)]


async def wait_for(predicate: Any, what: str, timeout: float = 20) -> Any:
    """Poll a condition that no event announces (a stream filling, a row landing), bounded."""
    with trio.fail_after(timeout):
        while True:
            value = await predicate()
            if value:
                return value
            await trio.sleep(0.05)
    raise AssertionError(what)


@pytest.fixture
async def streams(redis_url: str, redis_prefix: str) -> AsyncIterator[coredis.Redis[bytes]]:
    client: coredis.Redis[bytes] = coredis.Redis.from_url(redis_url)
    async with client:
        yield client


async def test_stream_decisions_execute_once_and_the_outbox_is_relayed_in_order(
        tmp_path: Path, pg_url: str, redis_url: str, redis_prefix: str, streams: coredis.Redis[bytes]) -> None:
    settings = parse_settings(SETTINGS % {"db": pg_url, "broker": broker_yaml(redis_url, redis_prefix)},
                              source="test", env={})
    p = redis_prefix
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            service: Service = await nursery.start(run_service, settings)
            async with httpx.AsyncClient(base_url=service.url) as http:
                answer = await http.post("/v1/accounts/paper-1/decisions", json=decision("http-1"))
                assert answer.status_code == 200, answer.text
            for entry in ({"account_id": "paper-1", "decision": decision("s-1")},
                          {"account_id": "paper-1", "decision": decision("s-1")},  # delivered twice
                          {"account_id": "paper-1", "decision": {"decision_id": "s-2", "symbol": "BTCUSDT", "action": "close"}},
                          {"account_id": "nobody", "decision": decision("s-3")},
                          {"account_id": "paper-1", "decision": {"decision_id": "s-4", "symbol": "BTCUSDT"}}):
                await streams.xadd(f"{p}:decisions", {"data": json.dumps(entry)})
            await streams.xadd(f"{p}:decisions", {"data": b"not json"})

            async def results() -> list[dict[str, Any]]:
                found = await stream_data(streams, f"{p}:results")
                return found if len(found) >= 6 else []

            found = await wait_for(results, "six results")
            by_id = {r["decision_id"]: r for r in found if r.get("status") != "error"}
            errors = {r["decision_id"]: r["error"]["code"] for r in found if r.get("status") == "error"}
            assert sorted(by_id) == ["http-1", "s-1", "s-2"]  # one result each, the duplicate executed once
            assert by_id["s-1"]["status"] == "filled" and by_id["s-2"]["status"] == "filled"
            assert errors == {"s-3": "UNKNOWN_ACCOUNT", "s-4": "INVALID_DECISION", None: "INVALID_DECISION"}

            async def all_acked() -> bool:
                pending = await streams.xpending(f"{p}:decisions", "execd")
                return pending.pending == 0

            await wait_for(all_acked, "every intake entry acknowledged")
            events = await wait_for(lambda: relayed_all(streams, p, pg_url), "every event relayed")
            service.request_stop()
            await service.stopped.wait()
            # a restart resumes after the last relayed seq: no gap, no repeat
            service = await nursery.start(run_service, settings)
            async with httpx.AsyncClient(base_url=service.url) as http:
                answer = await http.post("/v1/accounts/paper-1/decisions", json=decision("http-2"))
                assert answer.status_code == 200, answer.text
            after = await wait_for(lambda: relayed_all(streams, p, pg_url, more_than=len(events)), "new events relayed")
            assert after[:len(events)] == events
            service.request_stop()
            await service.stopped.wait()
    with psycopg.connect(pg_url) as conn:
        stored = conn.execute("SELECT decision_id FROM decisions ORDER BY decision_id").fetchall()
    assert [d for (d,) in stored] == ["http-1", "http-2", "s-1", "s-2"]


async def relayed_all(client: coredis.Redis[bytes], prefix: str, pg_url: str, more_than: int = 0) -> list[int]:
    """The relayed seqs once they are exactly the outbox's (in order, each once), else []."""
    relayed = [e["seq"] for e in await stream_data(client, f"{prefix}:events")]

    def outbox() -> list[int]:
        with psycopg.connect(pg_url) as conn:
            return [seq for (seq,) in conn.execute("SELECT seq FROM events ORDER BY seq").fetchall()]

    expected = await trio.to_thread.run_sync(outbox)
    return relayed if relayed == expected and len(relayed) > more_than else []
