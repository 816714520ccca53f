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


def stored_result_response(encoded: bytes, *, rejected_status: int, summary: _Status | None = None) -> Response:
    """A stored result as committed: ``rejected_status`` for a rejection (422 when it is the
    answer to the submission, 200 when it is read back), 200 otherwise."""
    status = (summary or _status_decoder.decode(encoded)).status
    if status != "rejected":
        return json_response(encoded)
    if b'"error":' not in encoded:  # stored before results carried their error
        result = msgspec.json.decode(encoded)
        result["error"] = {"code": result["rejection"]["code"], "message": result["rejection"]["message"],
                           "field": None}
        return json_response(result, rejected_status)
    return json_response(encoded, rejected_status)


def decisions_blueprint(service: Any) -> Blueprint:
    """The decision routes (submit, read a stored result).

    Just over the house rule on purpose: the Quart routes are closures over the service (its
    supervisor and request timeout) registered on one blueprint; the work they share is in the
    module-level helpers above.
    """
    bp = Blueprint("decisions", __name__)
    supervisor = service.supervisor
    timeout = service.settings.server.request_timeout_seconds

    @bp.post("/v1/accounts/<account_id>/decisions")
    async def submit_decision(account_id: str) -> Response:
        supervisor.slot(account_id)  # 404 before the body is judged
        body = await read_body()
        try:
            raw = _decision_decoder.decode(body)
            if isinstance(raw.leverage, float) and not raw.leverage.is_integer():  # 5.0 is 5; 2.5 is no integer
                raise msgspec.ValidationError("Expected `int`, got `float` - at `$.leverage`")
            decision = validate_decision(raw)
            _check_amount_range(decision)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            error = from_validation_error(exc)
            await audit_malformed(account_id, body, error)
            raise error from None
        except InvalidDecision as exc:
            error = APIError(400, "INVALID_DECISION", exc.message, field=exc.field)
            await audit_malformed(account_id, body, error)
            raise error from None
        message = SubmitDecision(decision=decision, fingerprint=request_fingerprint(body),
                                 request_json=body.decode("utf-8", "replace"))
        reply = supervisor.submit(account_id, message)
        # the fingerprint makes the URL answer for this body only (409 if the id holds another)
        result_url = (f"/v1/accounts/{account_id}/decisions/{decision.decision_id}"
                      f"?fingerprint={message.fingerprint}")
        started = trio.current_time()
        with trio.move_on_after(timeout):
            encoded = await reply.wait()
            summary = _status_decoder.decode(encoded)
            observe_decision(account_id, decision.decision_id, summary, trio.current_time() - started)
            return stored_result_response(encoded, rejected_status=422, summary=summary)
        return json_response({"decision_id": decision.decision_id, "status": "pending", "result_url": result_url},
                             202, {"Location": result_url})

    venue_of = {a.id: a.venue for a in service.settings.accounts}

    def observe_decision(account_id: str, decision_id: str, summary: _Status, seconds: float) -> None:
        """The decision's metrics and its log line (account, decision, order, venue, latency)."""
        code = summary.rejection.code if summary.rejection is not None else ""
        service.metrics.observe_decision(account_id, summary.status, code, seconds)
        if decision_log.isEnabledFor(logging.INFO):
            slot = supervisor.slots.get(account_id)
            venue = slot.settings.venue if slot is not None else venue_of.get(account_id)
            client_order_id = summary.order.client_order_id if summary.order is not None else None
            decision_log.info("decision %s on %s: %s%s in %.1f ms", decision_id, account_id, summary.status,
                              f" ({code})" if code else "", seconds * 1000, extra={
                                  "account_id": account_id, "decision_id": decision_id, "venue": venue,
                                  "client_order_id": client_order_id, "latency_ms": round(seconds * 1000, 3),
                                  "result": summary.status, "code": code or None})

    async def audit_malformed(account_id: str, body: bytes, error: APIError) -> None:
        decision_id = None
        try:
            decision_id = msgspec.json.decode(body).get("decision_id")
            if not isinstance(decision_id, str):
                decision_id = None
        except (msgspec.DecodeError, AttributeError):
            pass
        checks = msgspec.json.encode([{"name": "request", "passed": False,
                                       "detail": {"field": error.field or "", "message": error.message}}])
        await service.persistence.commit([audit_statement(account_id, decision_id, service.clock.now(), False,
                                                          error.code, error.message, checks)])

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
