"""Records: what an account writes (orders, fills, positions, decisions) and how they look on the wire.

One module maps domain values to database rows and to API views, so the HTTP API, the stored
decision results and the replay output all show the same shapes. Money is a JSON string.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import msgspec

from .domain.money import fmt
from .domain.positions import Position
from .persistence import Statement, dec, insert, text, upsert

DecisionStatus = Literal["filled", "partially_filled", "resting", "rejected", "pending"]


class OrderRecord(msgspec.Struct, kw_only=True):
    id: str
    account_id: str
    decision_id: str | None
    position_id: str | None
    symbol: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT | STOP_MARKET | TAKE_PROFIT_MARKET | LIQUIDATION
    purpose: str  # entry | exit | take_profit | stop_loss | liquidation | close_all
    reduce_only: bool
    quantity: Decimal | None
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    status: str = "NEW"  # NEW | FILLED | PARTIALLY_FILLED | EXPIRED | CANCELED | REJECTED
    filled_quantity: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    fee: Decimal = Decimal(0)
    leverage: int | None = None  # entry orders: the leverage the position is opened at
    take_profit: Decimal | None = None  # resting entries: protection to attach once filled
    stop_loss: Decimal | None = None
    reject_code: str | None = None
    reject_message: str | None = None
    created_at: float
    updated_at: float

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id, "account_id": self.account_id, "decision_id": self.decision_id,
            "position_id": self.position_id, "symbol": self.symbol, "side": self.side,
            "type": self.type, "purpose": self.purpose, "reduce_only": int(self.reduce_only),
            "quantity": text(self.quantity), "price": text(self.price),
            "trigger_price": text(self.trigger_price), "status": self.status,
            "filled_quantity": text(self.filled_quantity), "avg_price": text(self.avg_price),
            "fee": text(self.fee), "leverage": self.leverage, "take_profit": text(self.take_profit),
            "stop_loss": text(self.stop_loss), "reject_code": self.reject_code,
            "reject_message": self.reject_message, "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def statement(self) -> Statement:
        return upsert("orders", self.row(), key=("account_id", "id"))

    @property
    def remaining(self) -> Decimal:
        return (self.quantity or Decimal(0)) - self.filled_quantity

    @property
    def is_resting(self) -> bool:
        return self.type == "LIMIT" and self.status in ("NEW", "PARTIALLY_FILLED")

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id, "symbol": self.symbol, "side": self.side, "type": self.type,
            "purpose": self.purpose, "reduce_only": self.reduce_only,
            "quantity": fmt(self.quantity), "price": fmt(self.price),
            "trigger_price": fmt(self.trigger_price), "status": self.status,
            "filled_quantity": fmt(self.filled_quantity), "avg_price": fmt(self.avg_price),
            "fee": fmt(self.fee), "position_id": self.position_id, "decision_id": self.decision_id,
            "leverage": self.leverage, "take_profit": fmt(self.take_profit), "stop_loss": fmt(self.stop_loss),
            "reject_code": self.reject_code, "reject_message": self.reject_message,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> OrderRecord:
        return cls(
            id=row["id"], account_id=row["account_id"], decision_id=row["decision_id"],
            position_id=row["position_id"], symbol=row["symbol"], side=row["side"],
            type=row["type"], purpose=row["purpose"], reduce_only=bool(row["reduce_only"]),
            quantity=dec(row["quantity"]), price=dec(row["price"]),
            trigger_price=dec(row["trigger_price"]), status=row["status"],
            filled_quantity=dec(row["filled_quantity"]) or Decimal(0), avg_price=dec(row["avg_price"]),
            fee=dec(row["fee"]) or Decimal(0), leverage=row["leverage"], take_profit=dec(row["take_profit"]),
            stop_loss=dec(row["stop_loss"]), reject_code=row["reject_code"],
            reject_message=row["reject_message"], created_at=row["created_at"], updated_at=row["updated_at"],
        )


class FillRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    account_id: str
    order_id: str
    decision_id: str | None
    position_id: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    liquidity: str
    realized_pnl: Decimal
    trigger_price: Decimal | None
    top_of_book_only: bool
    ts: float

    def statement(self) -> Statement:
        return insert("fills", {
            "id": self.id, "account_id": self.account_id, "order_id": self.order_id,
            "decision_id": self.decision_id, "position_id": self.position_id, "symbol": self.symbol,
            "side": self.side, "quantity": text(self.quantity), "price": text(self.price),
            "fee": text(self.fee), "liquidity": self.liquidity, "realized_pnl": text(self.realized_pnl),
            "trigger_price": text(self.trigger_price), "top_of_book_only": int(self.top_of_book_only),
            "ts": self.ts,
        })

    def view(self) -> dict[str, Any]:
        return fill_view_from_row({
            "id": self.id, "order_id": self.order_id, "decision_id": self.decision_id,
            "position_id": self.position_id, "symbol": self.symbol, "side": self.side,
            "quantity": text(self.quantity), "price": text(self.price), "fee": text(self.fee),
            "liquidity": self.liquidity, "realized_pnl": text(self.realized_pnl),
            "trigger_price": text(self.trigger_price), "top_of_book_only": int(self.top_of_book_only),
            "ts": self.ts,
        })


def _f(value: str | None) -> str | None:
    return None if value is None else fmt(Decimal(value))


def fill_view_from_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "order_id": row["order_id"], "decision_id": row["decision_id"],
        "position_id": row["position_id"], "symbol": row["symbol"], "side": row["side"],
        "quantity": _f(row["quantity"]), "price": _f(row["price"]), "fee": _f(row["fee"]),
        "fee_asset": "USDT", "liquidity": row["liquidity"], "realized_pnl": _f(row["realized_pnl"]),
        "trigger_price": _f(row["trigger_price"]), "top_of_book_only": bool(row["top_of_book_only"]),
        "ts": row["ts"],
    }


def order_view_from_row(row: dict[str, Any]) -> dict[str, Any]:
    return OrderRecord.from_row(row).view()


POSITION_DECIMALS = (
    "quantity", "entry_price", "cost", "margin", "realized_pnl", "fees", "funding", "closed_quantity",
    "exit_notional", "max_quantity", "take_profit", "stop_loss", "liquidation_price",
)


def position_statement(position: Position) -> Statement:
    row = msgspec.structs.asdict(position)
    for name in POSITION_DECIMALS:
        row[name] = text(row[name])
    return upsert("positions", row)


def position_from_row(row: dict[str, Any]) -> Position:
    values = {name: row[name] for name in Position.__struct_fields__}
    for name in POSITION_DECIMALS:
        values[name] = dec(values[name])
    for name in ("quantity", "entry_price", "cost", "margin", "realized_pnl", "fees", "funding",
                 "closed_quantity", "exit_notional", "max_quantity"):
        if values[name] is None:
            values[name] = Decimal(0)
    return Position(**values)


def position_view(position: Position, mark: Decimal | None = None) -> dict[str, Any]:
    unrealized = position.unrealized_pnl(mark) if (mark is not None and position.is_open) else None
    return {
        "id": position.id, "symbol": position.symbol, "side": position.side,
        "status": position.status, "quantity": fmt(position.quantity),
        "entry_price": fmt(position.entry_price), "leverage": position.leverage,
        "margin": fmt(position.margin), "mark_price": fmt(mark) if position.is_open else None,
        "notional": fmt(position.quantity * mark) if (mark is not None and position.is_open) else None,
        "unrealized_pnl": fmt(unrealized), "realized_pnl": fmt(position.realized_pnl),
        "fees": fmt(position.fees), "funding": fmt(position.funding),
        "net_pnl": fmt(position.net_pnl), "take_profit": fmt(position.take_profit),
        "stop_loss": fmt(position.stop_loss), "liquidation_price": fmt(position.liquidation_price),
        "exit_price": fmt(position.exit_price), "close_reason": position.close_reason,
        "opened_at": position.opened_at, "closed_at": position.closed_at,
        "opened_by": position.opened_by,
    }


def position_view_from_row(row: dict[str, Any]) -> dict[str, Any]:
    return position_view(position_from_row(row))
