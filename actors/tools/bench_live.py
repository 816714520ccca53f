"""Live-trading benchmark: decision-to-fill latency and venue requests per decision.

``measure_live(decisions)`` starts the fake exchange (``python -m tests.fake_exchange``, Binance
dialect: signed REST, Algo Order API, user-data stream) in its own process, as a real venue is,
and runs the service in this one with one live account on it. Decisions are submitted in-process
(supervisor → account → adapter → venue, the HTTP front door left out: its cost is the ``http``
section's) one at a time, and timed from submission to the answer ``filled``:

* ``open``: a market open, then a market close (alternating);
* ``open_with_protection``: a market open with a stop-loss and a take-profit (answered once both
  are confirmed on the venue), then a market close (which also cancels them).

The database is a real SQLite file (durable commits, as in service). The floor is the venue itself: one signed ``POST /fapi/v1/order`` (a market order with
``newOrderRespType=RESULT``) from the same trading client, in the same process, back to back.
The ratio says how many venue round trips' worth of time a decision takes; the request counts
say how many it made (the trading client's own counters, by endpoint).

The fake exchange lives with the tests: this section needs the source checkout.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import asynccontextmanager
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import trio

from ..clock import ServiceClock
from ..domain.decisions import DecisionIn, request_fingerprint, validate_decision
from ..messages import SubmitDecision
from ..service import Service, run_service
from ..settings import parse_settings
from ..venues.credentials import HmacCredentials
from ..venues.limits import LocalRateLimited
from ..venues.profiles import get_profile
from ..venues.trading import TradingClient
from ..venues.trading_types import OrderRequest

__all__ = ["measure_live"]

CHECKOUT = Path(__file__).resolve().parents[2]
_ACCOUNT = "bench-live"


async def _read_line(process: trio.Process) -> bytes:
    assert process.stdout is not None
    buffer = bytearray()
    while not buffer.endswith(b"\n"):
        chunk = await process.stdout.receive_some(1)
        if not chunk:
            raise RuntimeError("the fake exchange process ended before it listened")
        buffer += chunk
    return bytes(buffer)


@asynccontextmanager
async def _fake_exchange(nursery: trio.Nursery) -> AsyncIterator[dict[str, Any]]:
    command = [sys.executable, "-m", "tests.fake_exchange", "--flavour", "binance", "--account", "venue",
               "--account", "floor", "--wallet", "100000000"]
    process: trio.Process = await nursery.start(lambda task_status: trio.run_process(
        command, stdout=-1, cwd=CHECKOUT, check=False, task_status=task_status))
    try:
        with trio.fail_after(30):  # bounds its start only, not the run
            venue = msgspec.json.decode(await _read_line(process))
        yield venue
    finally:
        process.terminate()


#: the pause after each order (untimed): 5 orders/s stays inside Binance's order-count limits
#: (300 per 10 s, 1,200 per minute, of which the service keeps a share for closes), so that the
#: figures are latencies, not waits for rate budget
ORDER_SPACING = 0.2


def _request(n: int, *, reduce: bool) -> OrderRequest:
    return OrderRequest(symbol="BTCUSDT", side="SELL" if reduce else "BUY", type="MARKET",
                        client_order_id=f"floor-{n}", quantity=Decimal("0.002"), reduce_only=reduce)


async def _floor(venue: dict[str, Any], rounds: int) -> list[float]:
    keys = venue["accounts"]["floor"]
    client = TradingClient(get_profile("binance-usdm", venue["rest_url"], venue["ws_url"]),
                           HmacCredentials(keys["api_key"], keys["api_secret"]), account_id="floor", clock=time.time)
    try:
        await client.sync_time()
        times = []
        for n in range(rounds):
            while True:
                started = time.perf_counter()
                try:
                    await client.place_order(_request(n, reduce=n % 2 == 1))
                except LocalRateLimited as exc:  # the client's own budget (nothing sent): wait, untimed
                    await trio.sleep(exc.retry_after)
                    continue
                times.append(time.perf_counter() - started)
                break
            await trio.sleep(ORDER_SPACING)
        return times
    finally:
        await client.aclose()


def _message(decision_id: str, body: dict[str, Any]) -> SubmitDecision:
    raw = msgspec.json.encode({"decision_id": decision_id, **body})
    return SubmitDecision(decision=validate_decision(msgspec.json.decode(raw, type=DecisionIn)),
                          fingerprint=request_fingerprint(raw), request_json=raw.decode())


async def _decisions(service: Service, rounds: int, *, protected: bool, tag: str) -> dict[str, Any]:
    slot = service.supervisor.slot(_ACCOUNT)
    assert slot.actor is not None
    stats = slot.actor.adapter.client.stats  # type: ignore[attr-defined]
    before = Counter(stats.requests)
    opens: list[float] = []
    closes: list[float] = []
    levels = {"stop_loss": "50000", "take_profit": "70000"} if protected else {}
    rate_waits = 0
    for n in range(rounds):
        for action, times in (("open", opens), ("close", closes)):
            body = ({"symbol": "BTCUSDT", "action": "open", "side": "long", "quantity": "0.002", "leverage": 2,
                     **levels} if action == "open" else {"symbol": "BTCUSDT", "action": "close"})
            for attempt in range(30):
                started = time.perf_counter()
                reply = service.supervisor.submit(_ACCOUNT, _message(f"{tag}-{n}-{action}-{attempt}", body))
                answer = msgspec.json.decode(await reply.wait())
                elapsed = time.perf_counter() - started
                if (answer.get("rejection") or {}).get("code") != "RATE_LIMITED":
                    break
                rate_waits += 1  # refused before sending (the service's share of the venue's budget)
                await trio.sleep(1.0)
            times.append(elapsed)
            await trio.sleep(ORDER_SPACING * (3 if protected and action == "open" else 1))  # untimed
            if answer["status"] != "filled":
                raise RuntimeError(f"{action} {n} answered {answer['status']}: {answer.get('rejection')}")
    made = Counter(stats.requests)
    made.subtract(before)
    per_decision = {f"{endpoint} {outcome}": round(count / (2 * rounds), 2)
                    for (endpoint, outcome), count in sorted(made.items()) if count}
    return {"open": _summary(opens), "close": _summary(closes),
            "requests_per_decision": round(sum(made.values()) / (2 * rounds), 2), "by_endpoint": per_decision,
            "refused_for_rate_budget_and_retried": rate_waits}


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2)}


async def measure_live(rounds: int) -> dict[str, Any]:
    if not (CHECKOUT / "tests" / "fake_exchange").is_dir():
        return {"skipped": "the fake exchange lives in the source checkout's tests/; run from a checkout"}
    async with trio.open_nursery() as nursery:
        async with _fake_exchange(nursery) as venue:
            floor = _summary(await _floor(venue, rounds))
            keys = venue["accounts"]["venue"]
            os.environ["BENCH_LIVE_KEY"], os.environ["BENCH_LIVE_SECRET"] = keys["api_key"], keys["api_secret"]
            database = Path(tempfile.mkdtemp(prefix="execd-bench-live-")) / "live.sqlite3"
            settings = parse_settings(f"""
database: {{path: "{database}"}}
venues:
  binance-usdm: {{rest_url: "{venue['rest_url']}", ws_url: "{venue['ws_url']}", symbols: [BTCUSDT]}}
risk: {{cooldown_seconds: 0}}
accounts:
  - {{id: {_ACCOUNT}, mode: live, venue: binance-usdm,
      credentials: {{api_key_env: BENCH_LIVE_KEY, api_secret_env: BENCH_LIVE_SECRET}}}}
""", source="bench-live", env={})
            service: Service = await nursery.start(lambda task_status: run_service(
                settings, clock=ServiceClock(), serve_http=False, task_status=task_status))
            try:
                with trio.fail_after(60):
                    while service.supervisor.slot(_ACCOUNT).actor is None or \
                            service.markets["binance-usdm"].quote("BTCUSDT") is None:
                        await trio.sleep(0.05)
                plain = await _decisions(service, rounds, protected=False, tag="plain")
                protected = await _decisions(service, rounds, protected=True, tag="protected")
            finally:
                service.request_stop()
                with trio.fail_after(30):
                    await service.stopped.wait()
                shutil.rmtree(database.parent, ignore_errors=True)
        nursery.cancel_scope.cancel()
    return {
        "rounds": rounds,
        "floor_signed_market_order": floor,
        "open": plain,
        "open_with_protection": protected,
        "ratio_open_p50": round(plain["open"]["p50_ms"] / floor["p50_ms"], 2),
        "ratio_protected_open_p50": round(protected["open"]["p50_ms"] / floor["p50_ms"], 2),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(trio.run(measure_live, int(sys.argv[1]) if len(sys.argv) > 1 else 100), indent=2))
