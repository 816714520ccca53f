"""A live account's paper twin at the front door: its divergence report, and its guard.

``GET /v1/accounts/{id}/twin`` (read access) compares, decision by decision, what the live account
and its paper twin did with each decision both executed (``actors.domain.twin`` has the figures and
what they mean), newest first, in keyset pages like the other lists; the aggregate covers every
such decision. An account without a twin answers 404.

The twin cannot be traded directly: the routes that need ``trade`` access (decisions, protection,
order cancels) answer ``409 PAPER_TWIN`` on it. The operator's levers (trading state, risk limits,
close-all, restart) act on it as on any account, and a live account's close-all closes its twin too.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
from quart import Blueprint, Response, request
from quart_trio import QuartTrio

from ..domain.money import fmt
from ..domain.twin import Aggregate, Comparison, Fill, Outcome, SideFigures, TwinRequest, aggregate, compare
from ..messages import AccountUnavailable, CloseAll
from ..settings import AccountSettings, paper_twin_id
from .auth import ACCESS
from .common import cursor_decode, cursor_encode, json_response, page_limit
from .errors import APIError

#: the twin's decisions (each one its live account forwarded), newest first
TWIN_DECISIONS_SQL = "SELECT seq, decision_id, request, status, result FROM decisions WHERE account_id = ? ORDER BY seq DESC"
#: the live account's decisions that its twin executed
LIVE_DECISIONS_SQL = ("SELECT decision_id, status, result FROM decisions WHERE account_id = ? AND decision_id IN "
                      "(SELECT decision_id FROM decisions WHERE account_id = ?)")
#: the fills of both accounts for those decisions (their protective orders' fills are left out by order id)
FILLS_SQL = ("SELECT account_id, order_id, price, quantity, fee, ts FROM fills WHERE account_id IN (?, ?) AND "
             "decision_id IN (SELECT decision_id FROM decisions WHERE account_id = ?) ORDER BY seq")

#: what the twin refuses: every route that trades (``trade`` access)
TRADING_ENDPOINTS = frozenset(endpoint for endpoint, access in ACCESS.items() if access == "trade")


class _Rejection(msgspec.Struct):
    code: str = ""
    details: dict[str, str] = {}


class _Stored(msgspec.Struct):
    """What the report reads of a stored decision result."""

    symbol: str = ""
    action: str = ""
    rejection: _Rejection | None = None


_stored_decoder = msgspec.json.Decoder(_Stored)
_request_decoder = msgspec.json.Decoder(TwinRequest)


def twin_fields(settings: AccountSettings) -> dict[str, str]:
    """What an account's summary and inspection say of a twin: a live account's twin, a twin's live account."""
    if settings.twin_of is not None:
        return {"twin_of": settings.twin_of}
    if settings.mode == "live" and settings.paper_twin:
        return {"paper_twin": paper_twin_id(settings.id)}
    return {}


def close_twin_too(supervisor: Any, settings: AccountSettings, reason: str) -> None:
    """A live account's close-all: its twin closes what it holds too, at once (not awaited; a twin
    that is restarting or failed keeps its positions, the operator can close it on its own)."""
    twin_id = twin_fields(settings).get("paper_twin")
    if twin_id is None or twin_id not in supervisor.slots:
        return
    try:
        supervisor.control(twin_id, CloseAll(reason=f"{reason} of {settings.id}"))
    except AccountUnavailable:
        pass


def install_twin_guard(app: QuartTrio, service: Any) -> None:
    """Refuse, with a clear error, every trading route on a paper twin (after authorization)."""

    @app.before_request
    async def _twins_are_not_traded() -> None:
        if request.endpoint not in TRADING_ENDPOINTS:
            return
        check_not_a_twin(service, (request.view_args or {}).get("account_id"))


def check_not_a_twin(service: Any, account_id: str | None) -> None:
    """The 409 ``PAPER_TWIN`` when ``account_id`` is a live account's paper twin."""
    slot = service.supervisor.slots.get(account_id)
    if slot is None or slot.settings.twin_of is None:
        return
    live = slot.settings.twin_of
    raise APIError(409, "PAPER_TWIN", f"account {slot.account_id!r} is the paper twin of live account {live!r}: "
                   f"it executes the decisions {live!r} accepts and cannot be traded directly; trade {live!r}")


def twin_blueprint(service: Any) -> Blueprint:
    bp = Blueprint("twin", __name__)
    supervisor = service.supervisor
    reader = service.reader

    @bp.get("/v1/accounts/<account_id>/twin")
    async def twin_report(account_id: str) -> Response:
        slot = supervisor.slot(account_id)
        limit = page_limit()
        before = cursor_decode(request.args.get("cursor"))
        settings = slot.settings
        if settings.twin_of is not None:
            raise APIError(404, "NO_PAPER_TWIN", f"account {account_id!r} is itself the paper twin of "
                           f"{settings.twin_of!r}; the report is at /v1/accounts/{settings.twin_of}/twin")
        twin_id = twin_fields(settings).get("paper_twin")
        if twin_id is None:
            raise APIError(404, "NO_PAPER_TWIN", f"account {account_id!r} has no paper twin (a live account gets one "
                           "with paper_twin: true in the settings)")
        twin_rows = await reader.fetchall(TWIN_DECISIONS_SQL, (twin_id,))
        live_rows = {r["decision_id"]: r for r in await reader.fetchall(LIVE_DECISIONS_SQL, (account_id, twin_id))}
        fills: dict[tuple[str, str], list[Fill]] = {}
        for r in await reader.fetchall(FILLS_SQL, (account_id, twin_id, twin_id)):
            fills.setdefault((r["account_id"], r["order_id"]), []).append(Fill(
                price=Decimal(r["price"]), quantity=Decimal(r["quantity"]), fee=Decimal(r["fee"]), ts=r["ts"]))
        compared: list[tuple[int, Comparison, TwinRequest, _Stored]] = []
        for row in twin_rows:
            decision_id = row["decision_id"]
            live_row = live_rows.get(decision_id)
            if live_row is None:  # not the live account's (cannot happen: the twin takes no other)
                continue
            twin_request = _request_decoder.decode(row["request"])
            stored = _stored_decoder.decode(row["result"])
            order_id = twin_request.order_id
            comparison = compare(decision_id, twin_request,
                                 _outcome(live_row["status"], _stored_decoder.decode(live_row["result"]),
                                          fills.get((account_id, order_id), [])),
                                 _outcome(row["status"], stored, fills.get((twin_id, order_id), [])))
            compared.append((row["seq"], comparison, twin_request, stored))
        page = [c for c in compared if before is None or c[0] < before]
        more = len(page) > limit
        page = page[:limit]
        return json_response({
            "account_id": account_id, "twin_account_id": twin_id,
            "aggregate": _aggregate_view(aggregate(c for _, c, _, _ in compared)),
            "items": [_decision_view(account_id, twin_id, c, r, s) for _, c, r, s in page],
            "next_cursor": cursor_encode(page[-1][0]) if more and page else None,
        })

    return bp


def _outcome(status: str, stored: _Stored, fills: list[Fill]) -> Outcome:
    rejection = stored.rejection
    return Outcome(status=status, rejection_code=rejection.code if rejection is not None else None,
                   venue_code=rejection.details.get("venue_code") if rejection is not None else None, fills=fills)


def _side_view(account_id: str, side: SideFigures) -> dict[str, Any]:
    return {"account_id": account_id, "status": side.status, "rejection_code": side.rejection_code,
            "venue_code": side.venue_code, "filled_quantity": fmt(side.filled_quantity),
            "avg_price": fmt(side.avg_price), "fees": fmt(side.fees), "slippage_bps": fmt(side.slippage_bps),
            "time_to_fill_seconds": side.time_to_fill_seconds}


def _decision_view(account_id: str, twin_id: str, c: Comparison, twin_request: TwinRequest,
                   stored: _Stored) -> dict[str, Any]:
    return {
        "decision_id": c.decision_id, "symbol": stored.symbol, "action": stored.action, "side": c.side,
        "received_at": c.received_at, "reference_price": fmt(c.reference_price), "reference": c.reference,
        "market_as_sent": {"best_bid": fmt(twin_request.best_bid), "best_ask": fmt(twin_request.best_ask),
                           "mark": fmt(twin_request.mark)},
        "live": _side_view(account_id, c.live), "paper": _side_view(twin_id, c.paper),
        "price_difference_bps": fmt(c.price_difference_bps), "fee_difference": fmt(c.fee_difference),
        "same_outcome": c.same_outcome,
    }


def _aggregate_view(a: Aggregate) -> dict[str, Any]:
    return {
        "decisions": a.decisions, "compared": a.compared,
        "mean_price_difference_bps": fmt(a.mean_price_difference_bps),
        "median_price_difference_bps": fmt(a.median_price_difference_bps),
        "live_fees": fmt(a.live_fees), "paper_fees": fmt(a.paper_fees), "fee_difference": fmt(a.fee_difference),
        "mean_time_to_fill_live_seconds": a.mean_time_to_fill_live_seconds,
        "mean_time_to_fill_paper_seconds": a.mean_time_to_fill_paper_seconds,
        "different_outcomes": a.different_outcomes,
    }
