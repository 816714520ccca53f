"""Decisions: submit one, read its stored result.

A decision is answered with its stored result, as the bytes that were committed: ``200``, or
``422`` when it was rejected (the result carries its ``error`` beside its ``rejection``). A decision
slower than the request timeout answers ``202`` with a ``result_url`` bound to the body's
fingerprint (another body under the same id gets ``409`` there).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import msgspec
import trio
from quart import Blueprint, Response, request

from ..domain.decisions import Decision, DecisionIn, InvalidDecision, request_fingerprint, validate_decision
from ..persistence.queries import DECISION_RESULT_SQL, audit_statement
from ..messages import SubmitDecision
from .common import json_response, read_body
from .errors import APIError, from_validation_error

_decision_decoder = msgspec.json.Decoder(DecisionIn)
decision_log = logging.getLogger("actors.decisions")
_AMOUNT_FIELDS = ("quantity", "notional", "take_profit", "stop_loss", "price", "reference_price",
                  "max_slippage_bps")


class _Code(msgspec.Struct):
    code: str = ""


class _Order(msgspec.Struct):
    client_order_id: str | None = None


class _Status(msgspec.Struct):
    """What the front door reads of a stored result (the rest is answered as stored): its status,
    for the answer's HTTP status, and for the metrics and the log line its rejection code and its
    order's client id."""

    status: str
    rejection: _Code | None = None
    order: _Order | None = None


_status_decoder = msgspec.json.Decoder(_Status)


def _check_amount_range(decision: Decision) -> None:
    """Refuse a string amount outside the range of a JSON number (``"1e999"``, ``"1e-999"``).

    The decoder already refuses ``1e999`` written as a number ("Number out of range"); the same
    amount written as a string must not get further (to the risk gate, or into a stored result).
    """
    for name in _AMOUNT_FIELDS:
        value = getattr(decision, name)
        if value is None:
            continue
        as_float = float(value)
        if math.isinf(as_float) or (as_float == 0 and value != 0):
            raise InvalidDecision(f"{name} is out of range (beyond what a JSON number can hold)", name)


def stored_result_body(encoded: bytes, *, rejected_status: int, summary: _Status | None = None) -> tuple[int, bytes]:
    """A stored result as committed, and its status: ``rejected_status`` for a rejection (422
    when it is the answer to the submission, 200 when it is read back), 200 otherwise."""
    status = (summary or _status_decoder.decode(encoded)).status
    if status != "rejected":
        return 200, encoded
    if b'"error":' not in encoded:  # stored before results carried their error
        result = msgspec.json.decode(encoded)
        result["error"] = {"code": result["rejection"]["code"], "message": result["rejection"]["message"],
                           "field": None}
        return rejected_status, msgspec.json.encode(result)
    return rejected_status, encoded


def stored_result_response(encoded: bytes, *, rejected_status: int, summary: _Status | None = None) -> Response:
    status, body = stored_result_body(encoded, rejected_status=rejected_status, summary=summary)
    return json_response(body, status)


def parse_decision(body: bytes) -> SubmitDecision:
    """The message a decision's body becomes, or the 400 that names what is wrong with it."""
    try:
        raw = _decision_decoder.decode(body)
        if isinstance(raw.leverage, float) and not raw.leverage.is_integer():  # 5.0 is 5; 2.5 is no integer
            raise msgspec.ValidationError("Expected `int`, got `float` - at `$.leverage`")
        decision = validate_decision(raw)
        _check_amount_range(decision)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise from_validation_error(exc) from None
    except InvalidDecision as exc:
        raise APIError(400, "INVALID_DECISION", exc.message, field=exc.field) from None
    return SubmitDecision(decision=decision, fingerprint=request_fingerprint(body),
                          request_json=body.decode("utf-8", "replace"))


def pending_body(account_id: str, message: SubmitDecision) -> tuple[str, dict[str, str]]:
    """The ``result_url`` of a decision still running (bound to the body's fingerprint: 409
    there if the id holds another body) and the ``202`` body that names it."""
    decision_id = message.decision.decision_id
    result_url = f"/v1/accounts/{account_id}/decisions/{decision_id}?fingerprint={message.fingerprint}"
    return result_url, {"decision_id": decision_id, "status": "pending", "result_url": result_url}


class DecisionDesk:
    """What every front door of decisions shares (HTTP and the decision stream): the audit of a
    malformed decision, and the metrics and log line of an answered one."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.venue_of = {a.id: a.venue for a in service.settings.accounts}

    def observe(self, account_id: str, decision_id: str, summary: _Status, seconds: float) -> None:
        """The decision's metrics and its log line (account, decision, order, venue, latency)."""
        code = summary.rejection.code if summary.rejection is not None else ""
        self.service.metrics.observe_decision(account_id, summary.status, code, seconds)
        if decision_log.isEnabledFor(logging.INFO):
            slot = self.service.supervisor.slots.get(account_id)
            venue = slot.settings.venue if slot is not None else self.venue_of.get(account_id)
            client_order_id = summary.order.client_order_id if summary.order is not None else None
            decision_log.info("decision %s on %s: %s%s in %.1f ms", decision_id, account_id, summary.status,
                              f" ({code})" if code else "", seconds * 1000, extra={
                                  "account_id": account_id, "decision_id": decision_id, "venue": venue,
                                  "client_order_id": client_order_id, "latency_ms": round(seconds * 1000, 3),
                                  "result": summary.status, "code": code or None})

    async def audit_malformed(self, account_id: str, body: bytes, error: APIError) -> None:
        decision_id = decision_id_of(body)
        checks = msgspec.json.encode([{"name": "request", "passed": False,
                                       "detail": {"field": error.field or "", "message": error.message}}])
        service = self.service
        await service.persistence.commit([audit_statement(account_id, decision_id, service.clock.now(), False,
                                                          error.code, error.message, checks)])


def decision_id_of(body: bytes) -> str | None:
    """The ``decision_id`` of a body, when it has one that is a string (best effort)."""
    try:
        decision_id = msgspec.json.decode(body).get("decision_id")
    except (msgspec.DecodeError, AttributeError):
        return None
    return decision_id if isinstance(decision_id, str) else None


def decisions_blueprint(service: Any) -> Blueprint:
    bp = Blueprint("decisions", __name__)
    supervisor = service.supervisor
    timeout = service.settings.server.request_timeout_seconds
    desk = DecisionDesk(service)

    @bp.post("/v1/accounts/<account_id>/decisions")
    async def submit_decision(account_id: str) -> Response:
        supervisor.slot(account_id)  # 404 before the body is judged
        body = await read_body()
        try:
            message = parse_decision(body)
        except APIError as error:
            await desk.audit_malformed(account_id, body, error)
            raise
        reply = supervisor.submit(account_id, message)
        started = trio.current_time()
        with trio.move_on_after(timeout):
            encoded = await reply.wait()
            summary = _status_decoder.decode(encoded)
            desk.observe(account_id, message.decision.decision_id, summary, trio.current_time() - started)
            return stored_result_response(encoded, rejected_status=422, summary=summary)
        result_url, pending = pending_body(account_id, message)
        return json_response(pending, 202, {"Location": result_url})

    @bp.get("/v1/accounts/<account_id>/decisions/<decision_id>")
    async def get_decision(account_id: str, decision_id: str) -> Response:
        supervisor.slot(account_id)
        wanted = request.args.get("fingerprint")
        rows = await service.reader.fetchall(DECISION_RESULT_SQL, (account_id, decision_id))
        if not rows:
            pending = supervisor.is_pending(account_id, decision_id)
            if pending is not None and (wanted is None or wanted == pending):
                return json_response({"decision_id": decision_id, "status": "pending"}, 202)
            raise APIError(404, "UNKNOWN_DECISION", f"no decision {decision_id!r} on account {account_id}")
        if wanted is not None and wanted != rows[0]["fingerprint"]:
            raise APIError(409, "IDEMPOTENCY_CONFLICT",
                           f"decision_id {decision_id!r} was stored with a different body", field="decision_id")
        return stored_result_response(rows[0]["result"].encode(), rejected_status=200)

    return bp
