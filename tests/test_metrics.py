"""``/metrics``: the Prometheus text format, parsed with prometheus-client's own parser, after a
session of decisions; and the cost the metrics add to a decision's hot path."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from actors.metrics import CONTENT_TYPE, ServiceMetrics
from actors.service import Service
from tests.conftest import decision

pytestmark = pytest.mark.slow


def samples(text: str) -> dict[str, list[Any]]:
    """Every sample, by its name (a counter family ``x`` has samples ``x_total``)."""
    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def value(found: dict[str, list[Any]], name: str, **labels: str) -> float:
    assert name in found, f"no {name} in {sorted(found)}"
    return sum(s.value for s in found[name] if all(s.labels.get(k) == v for k, v in labels.items()))


async def test_metrics_after_a_session_parse_and_count_what_happened(service: Service,
                                                                     client: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        assert (await client.post("/v1/accounts/paper-1/decisions", json=decision("m-1"))).status_code == 200
        rejected = await client.post("/v1/accounts/paper-1/decisions", json=decision("m-2", symbol="NOPEUSDT"))
        assert rejected.status_code == 422
        closed = await client.post("/v1/accounts/paper-1/decisions", json={
            "decision_id": "m-3", "symbol": "BTCUSDT", "action": "close"})
        assert closed.status_code == 200
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    found = samples(response.text)
    assert value(found, "execd_decisions_total", account="paper-1", result="filled") == 2
    assert value(found, "execd_decisions_total", account="paper-1", result="rejected", code="UNKNOWN_SYMBOL") == 1
    assert value(found, "execd_decision_latency_seconds_count") == 3
    assert value(found, "execd_decision_latency_seconds_bucket", le="+Inf") == 3
    assert value(found, "execd_orders_total", venue="sim", type="MARKET", status="placed") == 2
    assert value(found, "execd_orders_total", venue="sim", type="MARKET", status="filled") == 2
    assert value(found, "execd_feed_state", venue="sim", state="connected") == 1
    assert value(found, "execd_feed_message_age_seconds", venue="sim") < 5
    assert value(found, "execd_actor_state", account="paper-1", state="running") == 1
    assert value(found, "execd_actor_restarts_total", account="paper-2") == 0
    assert "execd_actor_inbox_depth" in found
    assert value(found, "execd_persistence_round_batches_count") >= 3
    assert value(found, "execd_persistence_round_seconds_sum") > 0
    assert value(found, "execd_events_published_total") > 0
    assert value(found, "execd_event_subscribers") == 0
    assert value(found, "execd_global_trading_state", state="active") == 1


def test_the_hot_path_cost_of_the_metrics_is_about_a_microsecond() -> None:
    """What a decision pays: one dict increment and one bisect (measured, generously bounded)."""

    class _Nothing:
        persistence = supervisor = bus = None
        markets: dict[str, Any] = {}

    metrics = ServiceMetrics(_Nothing())  # type: ignore[arg-type]
    rounds = 20_000
    started = time.perf_counter()
    for n in range(rounds):
        metrics.observe_decision("paper-1", "filled", "", 0.002 + (n % 7) / 1000)
    per_decision = (time.perf_counter() - started) / rounds
    assert per_decision < 20e-6, f"{per_decision * 1e6:.2f} µs per decision"
    assert sum(metrics.latency_counts) == rounds
