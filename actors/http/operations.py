"""Operations: ``/health``, ``/ready``, ``/metrics``, ``/openapi.json`` and the event stream
(``GET /v1/events``, a websocket resumable with ``?after=<seq>``)."""

from __future__ import annotations

from typing import Any

import msgspec
from quart import Blueprint, Response, websocket

from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..persistence import CommittedEvent
from .auth import accept_websocket, current_principal
from .common import json_response
from .errors import APIError
from .schema import openapi_document

_encoder = msgspec.json.Encoder(decimal_format="string")


def operations_blueprint(service: Any) -> Blueprint:
    bp = Blueprint("operations", __name__)
    supervisor = service.supervisor

    @bp.websocket("/v1/events")
    async def events_socket() -> None:
        after_raw = websocket.args.get("after", "0")
        try:
            after = int(after_raw)
        except ValueError:
            after = -1
        if after < 0:
            raise APIError(400, "INVALID_FIELD", "after must be a sequence number (an integer >= 0)", field="after")
        tail_raw = websocket.args.get("tail")
        if tail_raw is not None:  # start with the last N events (the dashboard's tail)
            if not (tail_raw.isascii() and tail_raw.isdigit() and int(tail_raw) <= 1000):
                raise APIError(400, "INVALID_FIELD", "tail must be an integer from 0 to 1000", field="tail")
            last = await service.reader.fetchall("SELECT MAX(seq) AS seq FROM events", ())
            after = max(after, (last[0]["seq"] or 0) - int(tail_raw))
        sees = current_principal().sees  # a trader's (or scoped viewer's) accounts only
        await accept_websocket()
        bus = service.bus
        live = bus.subscribe()
        try:
            while True:  # the backlog from the outbox first, then the live events after it
                backlog = await bus.history(after, 1000)
                for row in backlog:
                    after = row["seq"]
                    if not sees(row["account_id"]):
                        continue
                    event = CommittedEvent(seq=row["seq"], type=row["type"], account_id=row["account_id"],
                                           is_paper=bool(row["is_paper"]), ts=row["ts"],
                                           payload_json=msgspec.Raw(row["payload"].encode()))
                    await websocket.send(_encoder.encode(event).decode())
                if len(backlog) < 1000:
                    break
            async for event in live:
                if event.seq <= after:
                    continue
                after = event.seq
                if sees(event.account_id):
                    await websocket.send(_encoder.encode(event).decode())
        finally:
            bus.unsubscribe(live)

    @bp.get("/v1/events")
    async def events_without_upgrade() -> Response:
        """The event stream is a websocket: a plain GET is told so (RFC 9110 §15.5.22)."""
        raise APIError(426, "UPGRADE_REQUIRED", "GET /v1/events is a websocket: send Upgrade: websocket",
                       headers={"Upgrade": "websocket", "Connection": "Upgrade"})

    @bp.get("/health")
    async def health() -> Response:
        return json_response({
            "status": "ok" if not supervisor.draining else "draining",
            "feeds": [market.health() for market in service.markets.values()],
            "accounts": {state: sum(1 for s in supervisor.slots.values() if s.status == state)
                         for state in ("starting", "running", "restarting", "failed", "stopped")},
            "global_trading_state": supervisor.global_state,
        })

    @bp.get("/ready")
    async def ready() -> Response:
        problems = service.readiness_problems()
        if problems:
            return json_response({"ready": False, "problems": problems}, 503)
        return json_response({"ready": True})

    @bp.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics_text(), content_type=METRICS_CONTENT_TYPE)

    document = _encoder.encode(openapi_document(list(service.markets), auth=bool(service.settings.auth.tokens)))

    @bp.get("/openapi.json")
    async def openapi() -> Response:
        return json_response(document)

    return bp
