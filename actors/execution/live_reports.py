"""The live adapter's pure translations (no I/O): an order intent into the venue's request, and
what the venue answers or streams (orders, trades, funding, refusals) into the execution reports
and order states the account applies.

Split out of :mod:`actors.execution.live` (the adapter and its I/O), which uses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Final

import msgspec

from ..domain.execution import ExecutionReport, FundingReport, OrderIntent, Report, TradeFill, VenueOrderState
from ..domain.filters import NOT_SENT_CODE, RATE_BUDGET_CODE, VenueReject
from ..venues.limits import LocalRateLimited
from ..venues.rest import RateLimited, VenueBanned, VenueError, VenueIOError
from ..venues.trading_types import OrderRequest, VenueOrder, VenueTrade
from ..venues.user_events import AccountUpdate

_TOO_MANY_REQUESTS: Final = -1003  # a 429 without a body


def _request(intent: OrderIntent) -> OrderRequest:
    conditional = intent.type in ("STOP_MARKET", "TAKE_PROFIT_MARKET")
    return OrderRequest(
        symbol=intent.symbol, side=intent.side, type=intent.type, client_order_id=intent.client_order_id,
        quantity=None if intent.close_position else intent.quantity, price=intent.price,
        time_in_force="GTC" if intent.type == "LIMIT" else None,
        reduce_only=intent.reduce_only and not intent.close_position, close_position=intent.close_position,
        stop_price=intent.trigger_price if conditional else None,
        working_type=intent.working_type if conditional else None, price_protect=conditional,
    )


def _report(intent: OrderIntent, exec_type: str, status: str, *, reject: VenueReject | None = None) -> ExecutionReport:
    return ExecutionReport(client_order_id=intent.client_order_id, symbol=intent.symbol, exec_type=exec_type,  # type: ignore[arg-type]
                           status=status, side=intent.side, order_type=intent.type, reject=reject)


def _refused(intent: OrderIntent, exc: VenueIOError) -> ExecutionReport:
    if isinstance(exc, (LocalRateLimited, VenueBanned)):  # refused here: nothing was sent
        return _report(intent, "REJECTED", "REJECTED", reject=VenueReject(RATE_BUDGET_CODE, str(exc)))
    if isinstance(exc, RateLimited):
        return _report(intent, "REJECTED", "REJECTED", reject=VenueReject(exc.code or _TOO_MANY_REQUESTS, exc.msg))
    if isinstance(exc, VenueError):
        return _report(intent, "REJECTED", "REJECTED", reject=VenueReject(exc.code, exc.msg))
    return _report(intent, "REJECTED", "REJECTED", reject=VenueReject(NOT_SENT_CODE, f"not sent: {exc}"))


def _invalid(intent: OrderIntent, exc: ValueError) -> VenueReject:
    """The venue's refusal of an order that fails its parameter rules (checked before sending)."""
    if intent.quantity is not None and intent.quantity <= 0:
        return VenueReject(-4003, "Quantity less than or equal to zero.")
    return VenueReject(-1102, f"invalid order (not sent): {exc}")


def _with_reason(report: ExecutionReport, reason: str) -> ExecutionReport:
    return msgspec.structs.replace(report, reason=reason)


def _order_status(order: VenueOrder) -> str:
    if order.is_algo:
        return {"CANCELED": "CANCELED", "EXPIRED": "EXPIRED", "REJECTED": "REJECTED"}.get(order.status, "NEW")
    return _status_of(order.status)


def _status_of(status: str) -> str:
    return "EXPIRED" if status in ("EXPIRED_IN_MATCH", "NEW_INSURANCE", "NEW_ADL") else status


def _trade_reports(client_order_id: str, order: VenueOrder, trades: Sequence[VenueTrade], *,
                   final: bool = False) -> list[Report]:
    """``final``: the last trade ends the order (a fired closePosition trigger has no size)."""
    reports: list[Report] = []
    cumulative = Decimal(0)
    ordered = sorted(trades, key=lambda t: t.id)
    for index, trade in enumerate(ordered):
        cumulative += trade.qty
        done = cumulative >= order.orig_qty > 0 or (final and index == len(ordered) - 1)
        reports.append(ExecutionReport(
            client_order_id=client_order_id, symbol=order.symbol, exec_type="TRADE",
            status="FILLED" if done else "PARTIALLY_FILLED",
            venue_order_id=str(order.venue_order_id), side=order.side,  # type: ignore[arg-type]
            order_type=order.orig_type, cumulative_quantity=cumulative,
            fill=TradeFill(fill_id=f"{order.symbol}:{trade.id}", price=trade.price, quantity=trade.qty,
                           fee=abs(trade.commission), fee_asset=trade.commission_asset,
                           liquidity="maker" if trade.maker else "taker"),
            venue_time_ms=trade.time))
    return reports


def _funding(event: AccountUpdate) -> list[Report]:
    """Funding the venue settled: the balance change of the settlement, on the one position it
    names (an update naming several is left to reconciliation, which reads the income records)."""
    if len(event.positions) != 1:
        return []
    change = sum((b.balance_change for b in event.balances), Decimal(0))
    return [FundingReport(symbol=event.positions[0].symbol, funding_time=event.transaction_time, rate=None,
                          mark=None, amount=change, venue_time_ms=event.event_time)]


def _state(order: VenueOrder) -> VenueOrderState:
    return VenueOrderState(
        client_order_id=order.client_order_id, symbol=order.symbol, status=_order_status(order),
        venue_order_id=str(order.venue_order_id), side=order.side,  # type: ignore[arg-type]
        order_type=order.orig_type, quantity=order.orig_qty or None, filled_quantity=order.executed_qty,
        average_price=order.avg_price or None, price=order.price or None, trigger_price=order.stop_price,
        reduce_only=order.reduce_only, close_position=order.close_position, conditional=order.is_conditional,
        update_time_ms=order.update_time,
    )
