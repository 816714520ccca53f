"""What the API, the stored decision results and the replay output show: one Struct per shape.

Money is a JSON string (``fmt``: plain notation, no trailing zeros). A decision's result is built
once, encoded once when it is committed, stored as those bytes, and answered as those bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import msgspec

from .events import PositionUpdated
from .money import fmt
from .orders import FillRecord, OrderRecord
from .positions import Position


class OrderView(msgspec.Struct, kw_only=True):
    id: str
    symbol: str
    side: str
    type: str
    purpose: str
    reduce_only: bool
    quantity: str | None
    price: str | None
    trigger_price: str | None
    status: str
    filled_quantity: str | None
    avg_price: str | None
    fee: str | None
    position_id: str | None
    decision_id: str | None
    leverage: int | None
    take_profit: str | None
    stop_loss: str | None
    reject_code: str | None
    reject_message: str | None
    client_order_id: str | None
    venue_order_id: str | None
    created_at: float
    updated_at: float


class FillView(msgspec.Struct, kw_only=True):
    id: str
    order_id: str
    decision_id: str | None
    position_id: str
    symbol: str
    side: str
    quantity: str | None
    price: str | None
    fee: str | None
    fee_asset: str
    liquidity: str
    realized_pnl: str | None
    trigger_price: str | None
    top_of_book_only: bool
    ts: float


PositionView = PositionUpdated  # the position event carries exactly the API's view


class RejectionView(msgspec.Struct, kw_only=True):
    code: str
    message: str
    details: dict[str, str]


class ErrorView(msgspec.Struct, kw_only=True):
    code: str
    message: str
    field: str | None = None


class DecisionResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The stored (and answered) result of a decision. A rejected result carries ``error`` beside
    its ``rejection`` (DESIGN.md §8), so that the 422 body and the stored result are the same bytes."""

    decision_id: str
    account_id: str
    status: str  # filled | partially_filled | resting | rejected | pending
    is_paper: bool
    symbol: str
    action: str
    rejection: RejectionView | None
    order: OrderView | None
    fills: list[FillView]
    position: PositionView | None
    protective_orders: list[OrderView]
    balance: str | None
    created_at: float
    error: ErrorView | None = None


def order_view(order: OrderRecord) -> OrderView:
    return OrderView(
        id=order.id, symbol=order.symbol, side=order.side, type=order.type, purpose=order.purpose,
        reduce_only=order.reduce_only, quantity=fmt(order.quantity), price=fmt(order.price),
        trigger_price=fmt(order.trigger_price), status=order.status,
        filled_quantity=fmt(order.filled_quantity), avg_price=fmt(order.avg_price), fee=fmt(order.fee),
        position_id=order.position_id, decision_id=order.decision_id, leverage=order.leverage,
        take_profit=fmt(order.take_profit), stop_loss=fmt(order.stop_loss), reject_code=order.reject_code,
        reject_message=order.reject_message, client_order_id=order.client_order_id or None,
        venue_order_id=order.venue_order_id, created_at=order.created_at, updated_at=order.updated_at,
    )


def fill_view(fill: FillRecord) -> FillView:
    return FillView(
        id=fill.id, order_id=fill.order_id, decision_id=fill.decision_id, position_id=fill.position_id,
        symbol=fill.symbol, side=fill.side, quantity=fmt(fill.quantity), price=fmt(fill.price),
        fee=fmt(fill.fee), fee_asset=fill.fee_asset, liquidity=fill.liquidity,
        realized_pnl=fmt(fill.realized_pnl), trigger_price=fmt(fill.trigger_price),
        top_of_book_only=fill.top_of_book_only, ts=fill.ts,
    )


def position_view(position: Position, mark: Decimal | None = None) -> PositionView:
    live = position.is_open
    unrealized = position.unrealized_pnl(mark) if (mark is not None and live) else None
    return PositionUpdated(
        id=position.id, symbol=position.symbol, side=position.side, status=position.status,
        quantity=fmt(position.quantity), entry_price=fmt(position.entry_price), leverage=position.leverage,
        margin=fmt(position.margin), mark_price=fmt(mark) if live else None,
        notional=fmt(position.quantity * mark) if (mark is not None and live) else None,
        unrealized_pnl=fmt(unrealized), realized_pnl=fmt(position.realized_pnl), fees=fmt(position.fees),
        funding=fmt(position.funding), net_pnl=fmt(position.net_pnl), take_profit=fmt(position.take_profit),
        stop_loss=fmt(position.stop_loss), liquidation_price=fmt(position.liquidation_price),
        exit_price=fmt(position.exit_price), close_reason=position.close_reason, opened_at=position.opened_at,
        closed_at=position.closed_at, opened_by=position.opened_by, external=position.external,
    )


def order_views(orders: Iterable[OrderRecord]) -> list[OrderView]:
    return [order_view(o) for o in orders]


def as_builtins(view: Any) -> Any:
    """A view as plain JSON-ready builtins (for callers that merge it into other mappings)."""
    return msgspec.to_builtins(view)
