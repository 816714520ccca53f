"""The decision a client submits (DESIGN.md §8), validated into a normalized value.

Validation here is about shape and sense (field types, positive finite amounts, exactly one of
quantity/notional on ``open``...). Whether the decision may trade is the risk gate's business.
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from typing import Any, Literal

import msgspec

from .market import Side
from .money import BadAmount, to_decimal

HARD_MAX_LEVERAGE = 25
DECISION_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

Action = Literal["open", "close"]
OrderType = Literal["market", "limit"]

Amount = str | int | float  # accepted on the wire; converted to Decimal


class DecisionIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The wire shape of a decision. Amounts may be JSON numbers or strings."""

    decision_id: str
    symbol: str
    action: Action
    side: Side | None = None
    quantity: Amount | None = None
    notional: Amount | None = None
    leverage: int | float | None = None  # an integer; 5.0 is 5, as JSON Schema counts it
    take_profit: Amount | None = None
    stop_loss: Amount | None = None
    order_type: OrderType = "market"
    price: Amount | None = None
    reference_price: Amount | None = None
    max_slippage_bps: Amount | None = None
    meta: dict[str, Any] = {}


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    decision_id: str
    symbol: str
    action: Action
    side: Side | None = None
    quantity: Decimal | None = None
    notional: Decimal | None = None
    leverage: int | None = None
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    order_type: OrderType = "market"
    price: Decimal | None = None
    reference_price: Decimal | None = None
    max_slippage_bps: Decimal | None = None
    meta: dict[str, Any] = {}


class InvalidDecision(ValueError):
    """A malformed decision; ``field`` is the JSON path of the offending field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _positive(value: Amount | None, field: str, *, allow_zero: bool = False) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = to_decimal(value, what=field)
    except BadAmount as exc:
        raise InvalidDecision(str(exc), field) from None
    if amount < 0 or (amount == 0 and not allow_zero):
        raise InvalidDecision(f"{field} must be greater than zero, got {value}", field)
    return amount


def validate_decision(raw: DecisionIn) -> Decision:
    """Turn the wire shape into a :class:`Decision`, or raise :class:`InvalidDecision`."""
    if not DECISION_ID_PATTERN.fullmatch(raw.decision_id):
        raise InvalidDecision(
            "decision_id must be 1 to 64 characters: letters, digits and . _ : - "
            "(starting with a letter or digit)",
            "decision_id",
        )
    symbol = raw.symbol.strip().upper()
    if not re.fullmatch(r"[A-Z0-9]{2,30}", symbol):
        raise InvalidDecision(f"symbol {raw.symbol!r} is not a symbol name", "symbol")
    quantity = _positive(raw.quantity, "quantity")
    notional = _positive(raw.notional, "notional")
    if raw.action == "open":
        if raw.side is None:
            raise InvalidDecision("an open decision needs a side (long or short)", "side")
        if (quantity is None) == (notional is None):
            raise InvalidDecision("an open decision takes exactly one of quantity or notional", "quantity")
    else:
        if raw.side is not None:
            raise InvalidDecision("a close decision takes no side: it closes the open position", "side")
        if notional is not None:
            raise InvalidDecision("a close decision takes an optional quantity, not a notional", "notional")
        if raw.take_profit is not None or raw.stop_loss is not None:
            raise InvalidDecision("a close decision takes no take_profit or stop_loss", "take_profit")
    leverage = raw.leverage
    if isinstance(leverage, float):
        if not leverage.is_integer():
            raise InvalidDecision(f"leverage must be an integer, got {leverage}", "leverage")
        leverage = int(leverage)
    if leverage is not None and not (1 <= leverage <= HARD_MAX_LEVERAGE):
        raise InvalidDecision(f"leverage must be between 1 and {HARD_MAX_LEVERAGE}, got {raw.leverage}", "leverage")
    price = _positive(raw.price, "price")
    if raw.order_type == "limit" and price is None:
        raise InvalidDecision("a limit order needs a price", "price")
    if raw.order_type == "market" and price is not None:
        raise InvalidDecision("a market order takes no price (use reference_price for the deviation check)", "price")
    slippage = _positive(raw.max_slippage_bps, "max_slippage_bps")
    return Decision(
        decision_id=raw.decision_id,
        symbol=symbol,
        action=raw.action,
        side=raw.side,
        quantity=quantity,
        notional=notional,
        leverage=leverage,
        take_profit=_positive(raw.take_profit, "take_profit"),
        stop_loss=_positive(raw.stop_loss, "stop_loss"),
        order_type=raw.order_type,
        price=price,
        reference_price=_positive(raw.reference_price, "reference_price"),
        max_slippage_bps=slippage,
        meta=raw.meta,
    )


def request_fingerprint(body: bytes) -> str:
    """The idempotency fingerprint of a decision: the hash of its canonical JSON."""
    canonical = msgspec.json.encode(msgspec.json.decode(body), order="sorted")
    return hashlib.sha256(canonical).hexdigest()
