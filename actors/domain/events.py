"""Event payloads (DESIGN.md §9): one Struct per event type, one shape per type.

Each payload names its event type in ``TYPE``. Money is a JSON string (rendered by ``fmt``).
Events are written to the outbox in the same transaction as the state they describe, encoded
once there, and sent as stored to every subscriber.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec


class Payload(msgspec.Struct, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = ""


class AccountCreated(Payload):
    TYPE: ClassVar[str] = "account.created"
    venue: str
    mode: str
    balance: str | None


class DecisionAccepted(Payload):
    TYPE: ClassVar[str] = "decision.accepted"
    decision_id: str


class DecisionRejected(Payload):
    TYPE: ClassVar[str] = "decision.rejected"
    decision_id: str
    code: str
    message: str


class OrderPlaced(Payload):
    TYPE: ClassVar[str] = "order.placed"
    order_id: str
    client_order_id: str
    symbol: str
    side: str
    order_type: str
    purpose: str
    quantity: str | None
    price: str | None
    trigger_price: str | None


class OrderFilled(Payload):
    """One execution of an order (all the fills one venue answer or one trigger brought)."""

    TYPE: ClassVar[str] = "order.filled"
    order_id: str
    filled_quantity: str | None
    avg_price: str | None
    fee: str | None
    status: str
    trigger_price: str | None


class OrderCanceled(Payload):
    TYPE: ClassVar[str] = "order.canceled"
    order_id: str
    reason: str


class OrderFailed(Payload):
    TYPE: ClassVar[str] = "order.failed"
    order_id: str
    code: str | None
    message: str | None


class TradeOpened(Payload):
    TYPE: ClassVar[str] = "trade.opened"
    position_id: str
    symbol: str
    side: str
    quantity: str | None
    entry_price: str | None
    leverage: int


class TradeClosed(Payload):
    TYPE: ClassVar[str] = "trade.closed"
    position_id: str
    symbol: str
    reason: str | None
    exit_price: str | None
    realized_pnl: str | None
    fees: str | None
    funding: str | None
    net_pnl: str | None


class PositionUpdated(Payload):
    """The position after a change: the same fields as the API's position view."""

    TYPE: ClassVar[str] = "position.updated"
    id: str
    symbol: str
    side: str
    status: str
    quantity: str | None
    entry_price: str | None
    leverage: int
    margin: str | None
    mark_price: str | None
    notional: str | None
    unrealized_pnl: str | None
    realized_pnl: str | None
    fees: str | None
    funding: str | None
    net_pnl: str | None
    take_profit: str | None
    stop_loss: str | None
    liquidation_price: str | None
    exit_price: str | None
    close_reason: str | None
    opened_at: float
    closed_at: float | None
    opened_by: str
    external: bool = False


class ProtectionPlaced(Payload):
    TYPE: ClassVar[str] = "protection.placed"
    position_id: str
    order_id: str
    order_type: str
    trigger_price: str | None


class ProtectionPartial(Payload):
    """A take-profit or stop-loss fired but the book could not close all of the position: the
    trigger stays armed for the rest."""

    TYPE: ClassVar[str] = "protection.partial"
    order_id: str
    filled_quantity: str | None
    remaining: str | None


class ProtectionFailed(Payload):
    TYPE: ClassVar[str] = "protection.failed"
    position_id: str
    symbol: str
    reason: str
    action: str  # what the account did about it (e.g. "closed reduce-only at market")


class FundingPaid(Payload):
    TYPE: ClassVar[str] = "funding.paid"
    position_id: str
    symbol: str
    rate: str | None
    mark: str | None
    amount: str | None
    funding_time: int


class PositionLiquidated(Payload):
    TYPE: ClassVar[str] = "position.liquidated"
    position_id: str
    mark: str | None
    bankruptcy_price: str | None
    fee: str | None


class CloseAllDone(Payload):
    TYPE: ClassVar[str] = "account.close_all"
    reason: str
    cancelled: list[str]
    closed: list[dict[str, Any]]


class StateChanged(Payload):
    TYPE: ClassVar[str] = "account.state_changed"
    # JSON names: "from" is a Python keyword
    previous: str = msgspec.field(name="from")
    to: str
    reason: str | None
    source: str


class GlobalStateChanged(Payload):
    TYPE: ClassVar[str] = "account.state_changed"
    previous: str = msgspec.field(name="from")
    to: str
    reason: str | None
    scope: str = "global"


class RiskChanged(Payload):
    TYPE: ClassVar[str] = "account.risk_changed"
    limits: dict[str, Any]


class ActorRestarted(Payload):
    TYPE: ClassVar[str] = "actor.restarted"
    error: str | None
    restarts: int


class ActorFailed(Payload):
    TYPE: ClassVar[str] = "actor.failed"
    error: str | None
    restarts: int


class ReconciliationMismatch(Payload):
    TYPE: ClassVar[str] = "reconciliation.mismatch"
    kind: str
    symbol: str | None
    detail: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class ReconciliationFailed(Payload):
    """A live account could not reconcile with its venue: it takes no decision until it can."""

    TYPE: ClassVar[str] = "reconciliation.failed"
    reason: str
    error: str
    attempts: int
