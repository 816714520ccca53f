"""The HTTP front door: a small Quart-Trio app. Routes are thin: parse, route a message, answer.

Every error body is ``{"error": {"code", "message", "field"}}``; money is a JSON string; lists are
``{"items": [...], "next_cursor": ...}`` with keyset cursors, newest first.
"""

from __future__ import annotations

import base64
import hmac
import logging
import math
import os
from decimal import Decimal
from typing import Any

import msgspec
import trio
from quart import Response, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..account import ProtectionError
from ..domain.decisions import Decision, DecisionIn, InvalidDecision, request_fingerprint, validate_decision
from ..domain.money import BadAmount, fmt, plain, to_decimal
from ..domain.performance import performance as compute_performance
from ..domain.risk import InvalidLimits, RiskLimits, merge_limits
from ..messages import (
    AccountUnavailable, ActorCrashed, CancelOrder, CloseAll, DecisionConflict, SetProtection,
    SetTradingState, SubmitDecision, UnknownAccount, UpdateRiskLimits,
)
from ..persistence import Statement
from ..records import (
    fill_view_from_row, order_view_from_row, position_from_row, position_view, position_view_from_row,
)
from ..settings import ACCOUNT_ID_PATTERN, AccountSettings
from .errors import APIError, from_validation_error
from .openapi import OPENAPI

log = logging.getLogger("actors.http")

_encoder = msgspec.json.Encoder(decimal_format="string")
_decision_decoder = msgspec.json.Decoder(DecisionIn)


class StateChange(msgspec.Struct, forbid_unknown_fields=True):
    state: str
    reason: str | None = None


class ProtectionIn(msgspec.Struct, forbid_unknown_fields=True):
    take_profit: str | int | float | None = None
    stop_loss: str | int | float | None = None


class AccountIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    mode: str = "paper"
    venue: str = "sim"
    balance: str | int | float = "10000"
    risk: dict[str, Any] = {}


_AMOUNT_FIELDS = ("quantity", "notional", "take_profit", "stop_loss", "price", "reference_price",
                  "max_slippage_bps")


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


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = payload if isinstance(payload, bytes) else _encoder.encode(payload)
    return Response(body, status=status, headers=headers, content_type="application/json")


def _cursor_encode(seq: int) -> str:
    return base64.urlsafe_b64encode(str(seq).encode()).decode().rstrip("=")


def _cursor_decode(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = int(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "INVALID_CURSOR", "cursor is not one this API returned", field="cursor") from None
    if value < 0:
        raise APIError(400, "INVALID_CURSOR", "cursor is not one this API returned", field="cursor")
    return value


def _limit(default: int = 50, maximum: int = 500) -> int:
    raw = request.args.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise APIError(400, "INVALID_FIELD", f"limit must be an integer, got {raw!r}", field="limit") from None
    if not 1 <= value <= maximum:
        raise APIError(400, "INVALID_FIELD", f"limit must be between 1 and {maximum}", field="limit")
    return value


def _decode(body: bytes, type_: type) -> Any:
    try:
        return msgspec.json.decode(body, type=type_)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise from_validation_error(exc) from None


def create_app(service: Any) -> QuartTrio:
    """Build the app around a running service (supervisor, reader, markets, bus, settings)."""
    app = QuartTrio("execd")
    app.config["MAX_CONTENT_LENGTH"] = service.settings.server.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    token = os.environ.get("EXECD_API_TOKEN")
    supervisor = service.supervisor
    reader = service.reader
    timeout = service.settings.server.request_timeout_seconds

    # ---------------------------------------------------------------- plumbing

    @app.errorhandler(APIError)
    async def _api_error(error: APIError) -> Response:
        return json_response(error.payload(), error.status, error.headers)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "BODY_TOO_LARGE"}.get(error.code or 500, "HTTP_ERROR")
        message = error.description or error.name
        if error.code == 413:
            message = f"the body is larger than {service.settings.server.max_body_bytes} bytes"
        headers = None
        if isinstance(error, MethodNotAllowed) and error.valid_methods:  # RFC 9110 §15.5.6: a 405 names them
            headers = {"Allow": ", ".join(sorted(error.valid_methods))}
        return json_response({"error": {"code": code, "message": message, "field": None}}, error.code or 500,
                             headers)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_response({"error": {"code": "INTERNAL", "message": "internal error; see the service log",
                                        "field": None}}, 500)

    @app.before_request
    async def _authenticate() -> None:
        if token is None or not request.path.startswith("/v1/"):
            return
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise APIError(401, "UNAUTHENTICATED", "missing bearer token (Authorization: Bearer ...)")
        if not hmac.compare_digest(header.removeprefix("Bearer ").encode(), token.encode()):
            raise APIError(403, "FORBIDDEN", "invalid token")

    def slot_of(account_id: str) -> Any:
        try:
            return supervisor.slot(account_id)
        except UnknownAccount:
            raise APIError(404, "UNKNOWN_ACCOUNT", f"no account {account_id!r}") from None

    def unavailable(exc: AccountUnavailable) -> APIError:
        retry = str(max(1, int(round(exc.retry_after))))
        return APIError(503, "ACCOUNT_UNAVAILABLE", str(exc), headers={"Retry-After": retry})

    async def wait_decision(reply: Any) -> Any:
        """An account's answer, with its refusals turned into 503s."""
        try:
            return await reply.wait()
        except AccountUnavailable as exc:
            raise unavailable(exc) from None
        except ActorCrashed as exc:
            raise APIError(503, "ACCOUNT_RESTARTING", f"{exc}; retry with the same id",
                           headers={"Retry-After": "1"}) from None

    async def wait_reply(reply: Any) -> Any:
        """The same, bounded by the request timeout (decisions have their own 202 path)."""
        try:
            with trio.fail_after(timeout):
                return await wait_decision(reply)
        except trio.TooSlowError:
            raise APIError(503, "ACCOUNT_BUSY", f"the account did not answer within {timeout} s; retry",
                           headers={"Retry-After": "1"}) from None

    async def read_body() -> bytes:
        return await request.get_data(cache=False)

    # ---------------------------------------------------------------- decisions

    @app.post("/v1/accounts/<account_id>/decisions")
    async def submit_decision(account_id: str) -> Response:
        slot = slot_of(account_id)
        body = await read_body()
        try:
            raw = _decision_decoder.decode(body)
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
        del slot
        message = SubmitDecision(decision=decision, fingerprint=request_fingerprint(body),
                                 request_json=body.decode("utf-8", "replace"))
        try:
            reply = supervisor.submit(account_id, message)
        except AccountUnavailable as exc:
            raise unavailable(exc) from None
        except DecisionConflict as exc:
            raise APIError(409, "IDEMPOTENCY_CONFLICT", str(exc), field="decision_id") from None
        # the fingerprint makes the URL answer for this body only (409 if the id holds another)
        result_url = (f"/v1/accounts/{account_id}/decisions/{decision.decision_id}"
                      f"?fingerprint={message.fingerprint}")
        with trio.move_on_after(timeout):
            try:
                encoded = await wait_decision(reply)
            except DecisionConflict as exc:
                raise APIError(409, "IDEMPOTENCY_CONFLICT", str(exc), field="decision_id") from None
            return decision_response(encoded)
        return json_response({"decision_id": decision.decision_id, "status": "pending", "result_url": result_url},
                             202, {"Location": result_url})

    def decision_response(encoded: bytes) -> Response:
        result = msgspec.json.decode(encoded)
        if result["status"] == "rejected":
            rejection = result["rejection"]
            result["error"] = {"code": rejection["code"], "message": rejection["message"], "field": None}
            return json_response(result, 422)
        return json_response(encoded, 200)

    async def audit_malformed(account_id: str, body: bytes, error: APIError) -> None:
        decision_id = None
        try:
            decision_id = msgspec.json.decode(body).get("decision_id")
            if not isinstance(decision_id, str):
                decision_id = None
        except (msgspec.DecodeError, AttributeError):
            pass
        checks = msgspec.json.encode([{"name": "request", "passed": False,
                                       "detail": {"field": error.field or "", "message": error.message}}]).decode()
        await service.persistence.commit([Statement(
            "INSERT INTO audit (account_id, decision_id, ts, accepted, code, message, checks) VALUES (?, ?, ?, 0, ?, ?, ?)",
            (account_id, decision_id, service.clock.now(), error.code, error.message, checks),
        )])

    @app.get("/v1/accounts/<account_id>/decisions/<decision_id>")
    async def get_decision(account_id: str, decision_id: str) -> Response:
        slot_of(account_id)
        wanted = request.args.get("fingerprint")
        rows = await reader.fetchall(
            "SELECT result, fingerprint FROM decisions WHERE account_id = ? AND decision_id = ?",
            (account_id, decision_id))
        if not rows:
            pending = supervisor.is_pending(account_id, decision_id)
            if pending is not None and (wanted is None or wanted == pending):
                return json_response({"decision_id": decision_id, "status": "pending"}, 202)
            raise APIError(404, "UNKNOWN_DECISION", f"no decision {decision_id!r} on account {account_id}")
        if wanted is not None and wanted != rows[0]["fingerprint"]:
            raise APIError(409, "IDEMPOTENCY_CONFLICT",
                           f"decision_id {decision_id!r} was stored with a different body", field="decision_id")
        result = msgspec.json.decode(rows[0]["result"])
        if result["status"] == "rejected":
            result["error"] = {"code": result["rejection"]["code"], "message": result["rejection"]["message"],
                               "field": None}
        return json_response(result)

    # ---------------------------------------------------------------- accounts

    @app.get("/v1/accounts")
    async def list_accounts() -> Response:
        items = [account_summary(slot) for slot in supervisor.slots.values()]
        return json_response({"items": items, "next_cursor": None})

    @app.post("/v1/accounts")
    async def create_account() -> Response:
        data = _decode(await read_body(), AccountIn)
        if not ACCOUNT_ID_PATTERN.match(data.id):
            raise APIError(400, "INVALID_FIELD", "id must be 1-64 letters, digits, _ or -", field="id")
        if data.id in supervisor.slots:
            raise APIError(409, "ACCOUNT_EXISTS", f"account {data.id!r} already exists", field="id")
        if data.mode != "paper":
            raise APIError(400, "INVALID_FIELD", "only paper accounts can be created in this build", field="mode")
        if data.venue not in service.markets:
            raise APIError(400, "INVALID_FIELD", f"venue {data.venue!r} is not running "
                           f"(running: {', '.join(service.markets)})", field="venue")
        try:
            balance = to_decimal(data.balance, what="balance")
        except BadAmount as exc:
            raise APIError(400, "INVALID_FIELD", str(exc), field="balance") from None
        if balance < 0:
            raise APIError(400, "INVALID_FIELD", "balance must not be negative", field="balance")
        try:
            limits = merge_limits(service.settings.risk_defaults, data.risk)
        except InvalidLimits as exc:
            raise APIError(400, "INVALID_LIMIT", exc.message, field=f"risk.{exc.field}") from None
        settings = AccountSettings(id=data.id, mode="paper", venue=data.venue, balance=balance, risk=data.risk)
        slot = await supervisor.start_account(settings, limits)
        return json_response(account_summary(slot), 201, {"Location": f"/v1/accounts/{data.id}"})

    def account_summary(slot: Any) -> dict[str, Any]:
        actor = slot.actor
        state = actor.state if actor is not None else None
        return {
            "id": slot.account_id, "mode": slot.settings.mode, "venue": slot.settings.venue,
            "is_paper": slot.settings.mode == "paper", "actor_state": slot.status,
            "trading_state": state.trading_state if state else None,
            "balance": fmt(state.balance) if state else None,
            "open_positions": len(state.positions) if state else None,
        }

    @app.get("/v1/accounts/<account_id>")
    async def inspect_account(account_id: str) -> Response:
        slot = slot_of(account_id)
        return json_response(inspection(slot))

    def inspection(slot: Any) -> dict[str, Any]:
        actor = slot.actor
        body: dict[str, Any] = {"id": slot.account_id, "mode": slot.settings.mode, "venue": slot.settings.venue,
                                "is_paper": slot.settings.mode == "paper", "actor": slot.inspect()}
        if actor is None:
            return body
        state = actor.state
        market = service.markets[slot.settings.venue]
        now = service.clock.now()
        positions = []
        unrealized = Decimal(0)
        total_notional = Decimal(0)
        for position in state.positions.values():
            quote = market.quote(position.symbol)
            mark = quote.mark_price if quote is not None else None
            if mark is not None:
                unrealized += position.unrealized_pnl(mark)
                total_notional += position.quantity * mark
            positions.append(position_view(position, mark))
        cooldown_left = max(0.0, (state.cooldown_until or 0) - now)
        limits = msgspec.to_builtins(state.limits)
        minute_orders = sum(1 for t in state.recent_order_times if t > now - 60)
        equity = state.balance + unrealized
        body.update({
            "trading_state": state.trading_state,
            "effective_trading_state": actor.effective_state(),
            "state_reason": state.state_reason,
            "global_trading_state": supervisor.global_state,
            "cooldown_seconds_left": round(cooldown_left, 3),
            "initial_balance": fmt(state.initial_balance),
            "balance": fmt(state.balance),
            "available_balance": fmt(state.balance - state.margin),
            "margin": fmt(state.margin),
            "equity": fmt(equity),
            "realized_pnl": fmt(state.realized_pnl),
            "unrealized_pnl": fmt(unrealized),
            "fees": fmt(state.fees),
            "funding": fmt(state.funding),
            "net_pnl": fmt(equity - state.initial_balance),
            "positions": positions,
            "open_orders": [o.view() for o in state.orders.values()],
            "risk_limits": limits,
            "global_risk_limits": msgspec.to_builtins(supervisor.global_limits),
            "market_data": market.health(),
            "risk_usage": {
                "open_positions": len(state.positions),
                "total_notional": fmt(total_notional),
                "orders_last_minute": minute_orders,
                "day_start_equity": fmt(state.day_start_equity),
                "daily_pnl": fmt(equity - state.day_start_equity),
                "peak_equity": fmt(max(state.peak_equity, equity)),
                "drawdown": fmt(max(Decimal(0), max(state.peak_equity, equity) - equity)),
            },
        })
        return body

    @app.post("/v1/accounts/<account_id>/restart")
    async def restart_account(account_id: str) -> Response:
        slot_of(account_id)
        try:
            slot = supervisor.restart(account_id)
        except ValueError as exc:
            raise APIError(409, "NOT_FAILED", str(exc)) from None
        return json_response({"id": account_id, "actor": slot.inspect()})

    # ---------------------------------------------------------------- positions, orders, trades

    @app.get("/v1/accounts/<account_id>/positions")
    async def list_positions(account_id: str) -> Response:
        slot = slot_of(account_id)
        status = request.args.get("status", "open")
        if status not in ("open", "closed", "all"):
            raise APIError(400, "INVALID_FIELD", "status must be open, closed or all", field="status")
        if status == "open" and slot.actor is not None:
            market = service.markets[slot.settings.venue]
            items = []
            for position in slot.actor.state.positions.values():
                quote = market.quote(position.symbol)
                items.append(position_view(position, quote.mark_price if quote else None))
            return json_response({"items": items, "next_cursor": None})
        return await keyset(account_id, "positions", position_view_from_row,
                            "status = 'closed'" if status == "closed" else None)

    @app.put("/v1/accounts/<account_id>/positions/<symbol>/protection")
    async def set_protection(account_id: str, symbol: str) -> Response:
        slot_of(account_id)
        data = _decode(await read_body(), ProtectionIn)
        values: dict[str, Decimal | None] = {}
        for name in ("take_profit", "stop_loss"):
            raw = getattr(data, name)
            if raw is None:
                values[name] = None
                continue
            try:
                value = to_decimal(raw, what=name)
            except BadAmount as exc:
                raise APIError(400, "INVALID_FIELD", str(exc), field=name) from None
            if value <= 0:
                raise APIError(400, "INVALID_FIELD", f"{name} must be greater than zero", field=name)
            values[name] = value
        if values["take_profit"] is None and values["stop_loss"] is None:
            raise APIError(400, "MISSING_FIELD", "give take_profit, stop_loss or both", field="take_profit")
        try:
            reply = supervisor.submit(account_id, SetProtection(symbol=symbol.upper(), **values))
            result = await wait_reply(reply)
        except AccountUnavailable as exc:
            raise unavailable(exc) from None
        except ProtectionError as exc:
            raise APIError(422, exc.code, exc.message) from None
        return json_response(result)

    @app.delete("/v1/accounts/<account_id>/orders/<order_id>")
    async def cancel_order(account_id: str, order_id: str) -> Response:
        slot_of(account_id)
        try:
            result = await wait_reply(supervisor.submit(account_id, CancelOrder(order_id=order_id)))
        except AccountUnavailable as exc:
            raise unavailable(exc) from None
        except ProtectionError as exc:
            raise APIError(404, exc.code, exc.message) from None
        return json_response(result)

    @app.get("/v1/accounts/<account_id>/orders")
    async def list_orders(account_id: str) -> Response:
        slot_of(account_id)
        return await keyset(account_id, "orders", order_view_from_row)

    @app.get("/v1/accounts/<account_id>/trades")
    async def list_trades(account_id: str) -> Response:
        slot_of(account_id)
        return await keyset(account_id, "fills", fill_view_from_row)

    @app.get("/v1/accounts/<account_id>/audit")
    async def list_audit(account_id: str) -> Response:
        slot_of(account_id)

        def view(row: dict[str, Any]) -> dict[str, Any]:
            return {"seq": row["seq"], "decision_id": row["decision_id"], "ts": row["ts"],
                    "accepted": bool(row["accepted"]), "code": row["code"], "message": row["message"],
                    "checks": msgspec.json.decode(row["checks"]) if row["checks"] else []}

        return await keyset(account_id, "audit", view)

    async def keyset(account_id: str, table: str, view: Any, where: str | None = None) -> Response:
        limit = _limit()
        before = _cursor_decode(request.args.get("cursor"))
        sql = f"SELECT * FROM {table} WHERE account_id = ?"
        params: list[Any] = [account_id]
        if where:
            sql += f" AND {where}"
        if before is not None:
            sql += " AND seq < ?"
            params.append(before)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit + 1)
        rows = await reader.fetchall(sql, params)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _cursor_encode(rows[-1]["seq"]) if more and rows else None
        return json_response({"items": [view(r) for r in rows], "next_cursor": next_cursor})

    @app.get("/v1/accounts/<account_id>/performance")
    async def performance(account_id: str) -> Response:
        slot = slot_of(account_id)
        rows = await reader.fetchall(
            "SELECT * FROM positions WHERE account_id = ? AND status = 'closed' ORDER BY closed_at, seq", (account_id,))
        closed = [position_from_row(r) for r in rows]
        initial = slot.settings.balance
        equity = initial
        curve = [(0.0, equity)]
        for position in closed:
            equity += position.net_pnl
            curve.append((position.closed_at or 0.0, equity))
        result = compute_performance(closed, curve)
        return json_response(plain(result) | {"account_id": account_id})

    # ---------------------------------------------------------------- risk and kill switches

    @app.put("/v1/accounts/<account_id>/risk")
    async def put_risk(account_id: str) -> Response:
        slot = slot_of(account_id)
        body = await read_body()
        try:
            overrides = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise from_validation_error(exc) from None
        if not isinstance(overrides, dict):
            raise APIError(400, "INVALID_FIELD", "the body must be an object of limit names to values")
        current = slot.actor.state.limits if slot.actor is not None else slot.limits
        try:
            limits: RiskLimits = merge_limits(current, overrides)
        except InvalidLimits as exc:
            raise APIError(422, "INVALID_LIMIT", exc.message, field=exc.field) from None
        try:
            result = await wait_reply(supervisor.control(account_id, UpdateRiskLimits(limits=limits)))
        except AccountUnavailable as exc:
            raise unavailable(exc) from None
        slot.limits = limits
        return json_response({"account_id": account_id, "risk_limits": result})

    @app.put("/v1/accounts/<account_id>/trading-state")
    async def put_account_state(account_id: str) -> Response:
        slot_of(account_id)
        change = _decode(await read_body(), StateChange)
        check_state(change.state)
        try:
            result = await wait_reply(supervisor.control(account_id, SetTradingState(
                state=change.state, reason=change.reason)))  # type: ignore[arg-type]
        except AccountUnavailable as exc:
            raise unavailable(exc) from None
        return json_response(result)

    @app.put("/v1/trading-state")
    async def put_global_state() -> Response:
        change = _decode(await read_body(), StateChange)
        check_state(change.state)
        return json_response(await supervisor.set_global_state(change.state, change.reason))

    def check_state(state: str) -> None:
        if state not in ("active", "reducing", "halted"):
            raise APIError(400, "INVALID_FIELD", f"state must be active, reducing or halted, got {state!r}",
                           field="state")

    @app.post("/v1/accounts/<account_id>/close-all")
    async def close_all(account_id: str) -> Response:
        slot_of(account_id)
        try:
            result = await wait_reply(supervisor.control(account_id, CloseAll(reason="close_all")))
        except AccountUnavailable as exc:
            raise unavailable(exc) from None
        return json_response(result)

    @app.post("/v1/close-all")
    async def close_all_accounts() -> Response:
        results: list[Any] = []
        errors: list[dict[str, str]] = []
        replies = []
        for account_id in list(supervisor.slots):
            try:
                replies.append((account_id, supervisor.control(account_id, CloseAll(reason="global_close_all"))))
            except AccountUnavailable as exc:
                errors.append({"account_id": account_id, "error": str(exc)})
        for account_id, reply in replies:
            try:
                results.append(await wait_reply(reply))
            except APIError as exc:
                errors.append({"account_id": account_id, "error": exc.message})
        return json_response({"items": results, "errors": errors})

    # ---------------------------------------------------------------- events

    @app.websocket("/v1/events")
    async def events_socket() -> None:
        after_raw = websocket.args.get("after", "0")
        try:
            after = int(after_raw)
        except ValueError:
            await websocket.close(1008, "after must be an integer sequence number")
            return
        bus = service.bus
        live = bus.subscribe()
        try:
            while True:
                backlog = await bus.history(after, 1000)
                for row in backlog:
                    row["is_paper"] = bool(row["is_paper"])
                    row["payload"] = msgspec.json.decode(row["payload"])
                    await websocket.send(_encoder.encode(row).decode())
                    after = row["seq"]
                if len(backlog) < 1000:
                    break
            async for event in live:
                if event.seq <= after:
                    continue
                await websocket.send(_encoder.encode(event).decode())
                after = event.seq
        finally:
            bus.unsubscribe(live)

    # ---------------------------------------------------------------- operations

    @app.get("/health")
    async def health() -> Response:
        return json_response({
            "status": "ok" if not supervisor.draining else "draining",
            "feeds": [market.health() for market in service.markets.values()],
            "accounts": {state: sum(1 for s in supervisor.slots.values() if s.status == state)
                         for state in ("starting", "running", "restarting", "failed", "stopped")},
            "global_trading_state": supervisor.global_state,
        })

    @app.get("/ready")
    async def ready() -> Response:
        problems = service.readiness_problems()
        if problems:
            return json_response({"ready": False, "problems": problems}, 503)
        return json_response({"ready": True})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics_text(), content_type="text/plain; version=0.0.4")

    @app.get("/openapi.json")
    async def openapi() -> Response:
        return json_response(OPENAPI)

    from .faults import faults_enabled, mount_faults

    if faults_enabled():
        mount_faults(app, service, json_response)
    return app
