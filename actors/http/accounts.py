"""Accounts: list, create, inspect, restart; positions, protection, orders, trades, audit,
performance; risk limits, trading states and kill switches.

Routes read an account through its committed snapshot (never the live actor's state) and change
it only by sending its actor a message.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from quart import Blueprint, Response, request

from ..account import AccountSnapshot
from ..domain.book import marks_of
from ..domain.money import BadAmount, fmt, plain, to_decimal
from ..domain.performance import performance as compute_performance
from ..domain.positions import unrealized_total
from ..domain.risk import InvalidLimits, merge_limits, render_details, stricter_state
from ..domain.views import order_view, position_view
from ..messages import (
    AccountUnavailable, ActorCrashed, CancelOrder, CloseAll, SetProtection, SetTradingState, UpdateRiskLimits,
)
from ..persistence.queries import (
    CLOSED_POSITIONS_SQL, fill_view_from_row, order_view_from_row, position_from_row,
)
from ..settings import ACCOUNT_ID_PATTERN, AccountSettings
from .auth import current_principal
from .common import cursor_decode, decode, json_response, keyset_page, page_limit, read_body, wait_reply
from .errors import APIError
from .shapes import NonNegativeAmount, PositiveAmount, RiskOverrides
from .twin import close_twin_too, twin_fields


class StateChange(msgspec.Struct, forbid_unknown_fields=True):
    """A trading state to set (``reason`` is shown with it)."""

    state: Literal["active", "reducing", "halted"]
    reason: str | None = None


class ProtectionIn(msgspec.Struct, forbid_unknown_fields=True):
    """A take-profit, a stop-loss or both (at least one not null)."""

    take_profit: PositiveAmount | None = None
    stop_loss: PositiveAmount | None = None


class AccountIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A paper account to create (live accounts are configured in the settings file)."""

    id: Annotated[str, msgspec.Meta(pattern=ACCOUNT_ID_PATTERN.pattern.replace("\\Z", "$"))]
    mode: Literal["paper"] = "paper"
    venue: str = "sim"  # one of the running venues (the document lists them)
    balance: NonNegativeAmount = "10000"
    risk: RiskOverrides = msgspec.field(default_factory=RiskOverrides)


TRADING_STATES = ("active", "reducing", "halted")


def decode_limits(body: bytes) -> dict[str, Any]:
    """A ``PUT .../risk`` body: malformed JSON or not an object is 400; a limit of the wrong type,
    out of its range or unknown is ``422 INVALID_LIMIT`` naming it (the limits' own contract)."""
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError:
        decode(body, dict)  # raises the 400 naming the fault
        raise
    if not isinstance(raw, dict):
        raise APIError(400, "INVALID_FIELD", "the body must be an object of limit names to values")
    return decode(body, RiskOverrides, limits_status=422).as_dict()


def check_state(state: str) -> None:
    if state not in TRADING_STATES:
        raise APIError(400, "INVALID_FIELD", f"state must be active, reducing or halted, got {state!r}", field="state")


_audit_decoder = msgspec.json.Decoder(float_hook=Decimal)


def rendered_checks(stored: str | None) -> list[dict[str, Any]]:
    """An audit row's checks as shown: their numbers (stored as numbers) rendered as text."""
    if not stored:
        return []
    return [{"name": c["name"], "passed": c["passed"], "detail": render_details(c["detail"])}
            for c in _audit_decoder.decode(stored)]


def accounts_blueprint(service: Any) -> Blueprint:
    """The account routes (list, create, inspect, restart, positions, protection, orders, trades,
    audit, risk, trading state, close-all...).

    Longer than the house rule on purpose: each Quart route is a closure over the service (its
    supervisor, reader and request timeout) and over the small helpers defined first here
    (``summary``...), registered on one blueprint; split into several factories, every one
    would re-derive the same closure state and the routes of one resource would be scattered.
    """
    bp = Blueprint("accounts", __name__)
    supervisor = service.supervisor
    reader = service.reader
    timeout = service.settings.server.request_timeout_seconds

    def summary(slot: Any) -> dict[str, Any]:
        snap = slot.snapshot()
        return {
            "id": slot.account_id, "mode": slot.settings.mode, "venue": slot.settings.venue,
            "is_paper": slot.settings.mode == "paper", "actor_state": slot.status,
            "trading_state": snap.trading_state if snap else None,
            "balance": fmt(snap.balance) if snap else None,
            "open_positions": len(snap.positions) if snap else None,
            **twin_fields(slot.settings),
        }

    @bp.get("/v1/accounts")
    async def list_accounts() -> Response:
        sees = current_principal().sees
        return json_response({"items": [summary(slot) for slot in supervisor.slots.values() if sees(slot.account_id)],
                              "next_cursor": None})

    @bp.post("/v1/accounts")
    async def create_account() -> Response:
        body = await read_body()
        data = decode(body, AccountIn, limits_status=400)
        if not ACCOUNT_ID_PATTERN.match(data.id):  # the Struct's "$" lets a final newline through
            raise APIError(400, "INVALID_FIELD", "id must be 1-64 letters, digits, _ or -", field="id")
        if data.id in supervisor.slots:
            raise APIError(409, "ACCOUNT_EXISTS", f"account {data.id!r} already exists", field="id")
        if data.mode != "paper":
            raise APIError(400, "INVALID_FIELD", "only paper accounts can be created over the API; live accounts "
                           "are configured in the settings file with their credentials", field="mode")
        if data.venue not in service.markets:
            raise APIError(400, "INVALID_FIELD", f"venue {data.venue!r} is not running "
                           f"(running: {', '.join(service.markets)})", field="venue")
        try:
            balance = to_decimal(data.balance, what="balance")
        except BadAmount as exc:
            raise APIError(400, "INVALID_FIELD", str(exc), field="balance") from None
        if balance < 0:
            raise APIError(400, "INVALID_FIELD", "balance must not be negative", field="balance")
        risk = data.risk.as_dict()
        try:
            limits = merge_limits(service.settings.risk_defaults, risk)
        except InvalidLimits as exc:  # well formed, but not a set of limits an account can run with
            raise APIError(422, "INVALID_LIMIT", exc.message, field=f"risk.{exc.field}") from None
        settings = AccountSettings(id=data.id, mode="paper", venue=data.venue, balance=balance, risk=risk)
        slot = await supervisor.start_account(settings, limits)
        return json_response(summary(slot), 201, {"Location": f"/v1/accounts/{data.id}"})

    @bp.get("/v1/accounts/<account_id>")
    async def inspect_account(account_id: str) -> Response:
        slot = supervisor.slot(account_id)
        body: dict[str, Any] = {"id": slot.account_id, "mode": slot.settings.mode, "venue": slot.settings.venue,
                                "is_paper": slot.settings.mode == "paper", "actor": slot.inspect(),
                                **twin_fields(slot.settings)}
        snap = slot.snapshot()
        if snap is not None:
            body.update(inspection(snap, service.markets[slot.settings.venue]))
        if slot.actor is not None and not slot.actor.adapter.is_paper:
            body["venue_connection"] = slot.actor.adapter.connection()
            reconciliation = slot.actor.reconciliation
            if reconciliation is not None and reconciliation.view is not None:
                view = reconciliation.view
                streamed = getattr(slot.actor.adapter, "stream_wallet", None)
                if streamed is not None and streamed[1] > view.reconciled_at:  # the stream's is newer
                    view = msgspec.structs.replace(view, wallet_balance=fmt(streamed[0]))
                body["venue_account"] = view
        return json_response(body)

    def inspection(snap: AccountSnapshot, market: Any) -> dict[str, Any]:
        now = service.clock.now()
        mark_of = marks_of(market)
        positions = [position_view(p, mark_of(p.symbol)) for p in snap.positions]
        unrealized = unrealized_total(snap.positions, mark_of)
        total_notional = sum((p.quantity * m for p in snap.positions if (m := mark_of(p.symbol)) is not None),
                             Decimal(0))
        equity = snap.balance + unrealized
        peak = max(snap.peak_equity, equity)
        return {
            "trading_state": snap.trading_state,
            "effective_trading_state": stricter_state(snap.trading_state, supervisor.global_state),
            "state_reason": snap.state_reason,
            "global_trading_state": supervisor.global_state,
            "cooldown_seconds_left": round(max(0.0, (snap.cooldown_until or 0) - now), 3),
            "initial_balance": fmt(snap.initial_balance),
            "balance": fmt(snap.balance),
            "available_balance": fmt(snap.balance - snap.margin),
            "margin": fmt(snap.margin),
            "equity": fmt(equity),
            "realized_pnl": fmt(snap.realized_pnl),
            "unrealized_pnl": fmt(unrealized),
            "fees": fmt(snap.fees),
            "funding": fmt(snap.funding),
            "net_pnl": fmt(equity - snap.initial_balance),
            "positions": positions,
            "open_orders": [order_view(o) for o in snap.orders],
            "risk_limits": msgspec.to_builtins(snap.limits),
            "global_risk_limits": msgspec.to_builtins(supervisor.global_limits),
            "market_data": market.health(),
            "risk_usage": {
                "open_positions": len(snap.positions),
                "total_notional": fmt(total_notional),
                "orders_last_minute": sum(1 for t in snap.recent_order_times if t > now - 60),
                "day_start_equity": fmt(snap.day_start_equity),
                "daily_pnl": fmt(equity - snap.day_start_equity),
                "peak_equity": fmt(peak),
                "drawdown": fmt(max(Decimal(0), peak - equity)),
            },
        }

    @bp.post("/v1/accounts/<account_id>/restart")
    async def restart_account(account_id: str) -> Response:
        supervisor.slot(account_id)
        try:
            slot = supervisor.restart(account_id)
        except ValueError as exc:
            raise APIError(409, "NOT_FAILED", str(exc)) from None
        return json_response({"id": account_id, "actor": slot.inspect()})

    # ---------------------------------------------------------------- positions, orders, trades

    @bp.get("/v1/accounts/<account_id>/positions")
    async def list_positions(account_id: str) -> Response:
        slot = supervisor.slot(account_id)
        status = request.args.get("status", "open")
        if status not in ("open", "closed", "all"):
            raise APIError(400, "INVALID_FIELD", "status must be open, closed or all", field="status")
        page_limit()  # the page's parameters are checked whatever the status
        cursor_decode(request.args.get("cursor"))
        snap = slot.snapshot()
        if status == "open" and snap is not None:
            mark_of = marks_of(service.markets[slot.settings.venue])
            return json_response({"items": [position_view(p, mark_of(p.symbol)) for p in snap.positions],
                                  "next_cursor": None})
        return await keyset_page(reader, account_id, "positions", lambda row: position_view(position_from_row(row)),
                                 "status = 'closed'" if status == "closed" else None)

    @bp.put("/v1/accounts/<account_id>/positions/<symbol>/protection")
    async def set_protection(account_id: str, symbol: str) -> Response:
        supervisor.slot(account_id)
        data = decode(await read_body(), ProtectionIn)
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
        reply = supervisor.submit(account_id, SetProtection(symbol=symbol.upper(), **values))
        return json_response(await wait_reply(reply, timeout))

    @bp.delete("/v1/accounts/<account_id>/orders/<order_id>")
    async def cancel_order(account_id: str, order_id: str) -> Response:
        supervisor.slot(account_id)
        return json_response(await wait_reply(supervisor.submit(account_id, CancelOrder(order_id=order_id)), timeout))

    @bp.get("/v1/accounts/<account_id>/orders")
    async def list_orders(account_id: str) -> Response:
        supervisor.slot(account_id)
        return await keyset_page(reader, account_id, "orders", order_view_from_row)

    @bp.get("/v1/accounts/<account_id>/trades")
    async def list_trades(account_id: str) -> Response:
        supervisor.slot(account_id)
        return await keyset_page(reader, account_id, "fills", fill_view_from_row)

    @bp.get("/v1/accounts/<account_id>/audit")
    async def list_audit(account_id: str) -> Response:
        supervisor.slot(account_id)

        def view(row: dict[str, Any]) -> dict[str, Any]:
            return {"seq": row["seq"], "decision_id": row["decision_id"], "ts": row["ts"],
                    "accepted": bool(row["accepted"]), "code": row["code"], "message": row["message"],
                    "checks": rendered_checks(row["checks"])}

        return await keyset_page(reader, account_id, "audit", view)

    @bp.get("/v1/accounts/<account_id>/performance")
    async def performance(account_id: str) -> Response:
        slot = supervisor.slot(account_id)
        closed = [position_from_row(r) for r in await reader.fetchall(CLOSED_POSITIONS_SQL, (account_id,))]
        equity = slot.settings.balance
        curve = [(0.0, equity)]
        for position in closed:
            equity += position.net_pnl
            curve.append((position.closed_at or 0.0, equity))
        return json_response(plain(compute_performance(closed, curve)) | {"account_id": account_id})

    # ---------------------------------------------------------------- risk and kill switches

    @bp.put("/v1/accounts/<account_id>/risk")
    async def put_risk(account_id: str) -> Response:
        supervisor.slot(account_id)
        overrides = decode_limits(await read_body())
        result = await wait_reply(supervisor.control(account_id, UpdateRiskLimits(overrides=overrides)), timeout)
        return json_response({"account_id": account_id, "risk_limits": result})

    @bp.put("/v1/accounts/<account_id>/trading-state")
    async def put_account_state(account_id: str) -> Response:
        supervisor.slot(account_id)
        change = decode(await read_body(), StateChange)
        check_state(change.state)
        reply = supervisor.control(account_id, SetTradingState(state=change.state, reason=change.reason))  # type: ignore[arg-type]
        return json_response(await wait_reply(reply, timeout))

    @bp.put("/v1/trading-state")
    async def put_global_state() -> Response:
        change = decode(await read_body(), StateChange)
        check_state(change.state)
        return json_response(await supervisor.set_global_state(change.state, change.reason))

    @bp.post("/v1/accounts/<account_id>/close-all")
    async def close_all(account_id: str) -> Response:
        slot = supervisor.slot(account_id)
        reply = supervisor.control(account_id, CloseAll(reason="close_all"))
        close_twin_too(supervisor, slot.settings, "close_all")
        return json_response(await wait_reply(reply, timeout))

    @bp.post("/v1/close-all")
    async def close_all_accounts() -> Response:
        results: list[Any] = []
        errors: list[dict[str, str]] = []
        replies = []
        for account_id in list(supervisor.slots):
            try:
                replies.append((account_id, supervisor.control(account_id, CloseAll(reason="global_close_all"))))
            except AccountUnavailable as exc:  # reported per account; the others still close
                errors.append({"account_id": account_id, "error": str(exc)})
        for account_id, reply in replies:
            try:
                results.append(await wait_reply(reply, timeout))
            except APIError as exc:
                errors.append({"account_id": account_id, "error": exc.message})
            except (AccountUnavailable, ActorCrashed) as exc:
                errors.append({"account_id": account_id, "error": str(exc)})
        return json_response({"items": results, "errors": errors})

    return bp

