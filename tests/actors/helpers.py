"""In-process helpers for actor tests: the service without its HTTP door, on trio's virtual clock.

Commits run inline (on the trio thread): a task waiting on a worker thread counts as blocked, so
autojump would let virtual time run on during a commit. Inline, virtual times are exact.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import msgspec
import trio

from actors.clock import ServiceClock
from actors.domain.decisions import DecisionIn, request_fingerprint, validate_decision
from actors.messages import SubmitDecision
from actors.service import Service, run_service
from tests.conftest import TEST_SETTINGS, make_settings


@asynccontextmanager
async def open_service(tmp_path: Path, text: str = TEST_SETTINGS, *, paper_latency: float = 0.0,
                       clock: ServiceClock | None = None) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path, text)
    async with trio.open_nursery() as nursery:
        service: Service = await nursery.start(
            lambda task_status: run_service(settings, clock=clock or ServiceClock(1_767_225_600.0),
                                            paper_latency=paper_latency, serve_http=False, inline_persistence=True,
                                            task_status=task_status))
        try:
            yield service
        finally:
            service.request_stop()
            await service.stopped.wait()


def body(decision_id: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"decision_id": decision_id, "symbol": "BTCUSDT", "action": "open", "side": "long",
                            "notional": "500", "leverage": 5}
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def submit_nowait(service: Service, account_id: str, data: dict[str, Any]) -> Any:
    raw = msgspec.json.encode(data)
    decision = validate_decision(msgspec.json.decode(raw, type=DecisionIn))
    return service.supervisor.submit(account_id, SubmitDecision(
        decision=decision, fingerprint=request_fingerprint(raw), request_json=raw.decode()))


async def submit(service: Service, account_id: str, data: dict[str, Any]) -> dict[str, Any]:
    reply = submit_nowait(service, account_id, data)
    return msgspec.json.decode(await reply.wait())


async def wait_until(predicate: Any, step: float = 0.01) -> None:
    while not predicate():
        await trio.sleep(step)
