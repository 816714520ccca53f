"""Futures margin arithmetic of the fake (linear USDT perpetuals, contract multiplier 1).

Unrealized PnL = amount * (mark - entry). Initial margin = notional / leverage. Maintenance
margin = notional * MMR - cum of the notional's bracket. Isolated liquidation price of a single
position: ``(iw + cum - side*qty*entry) / (qty*MMR - side*qty)``. Available balance = cross wallet
minus the margin of cross positions and of open orders (unrealized PnL is not counted, which is
what isolated margin does and a conservative reading of cross).
"""

from __future__ import annotations

from decimal import Decimal

from ._accounts import ZERO, Account, Order, Position
from actors.tools.venue_market import SymbolSpec


def bracket_for(spec: SymbolSpec, notional: Decimal) -> tuple[Decimal, Decimal]:
    """(maintenance margin ratio, cum) of the bracket holding ``notional``."""
    for cap, _leverage, mmr, cum in spec.brackets:
        if notional <= cap:
            return Decimal(mmr), Decimal(cum)
    _cap, _leverage, mmr, cum = spec.brackets[-1]
    return Decimal(mmr), Decimal(cum)


def max_notional(spec: SymbolSpec, leverage: int) -> int:
    """The largest position notional allowed at ``leverage`` (``maxNotionalValue``)."""
    allowed = [cap for cap, initial, _mmr, _cum in spec.brackets if initial >= leverage]
    return max(allowed) if allowed else 0


def max_leverage(spec: SymbolSpec) -> int:
    return max(initial for _cap, initial, _mmr, _cum in spec.brackets)


def unrealized(position: Position, mark: Decimal) -> Decimal:
    return position.amount * (mark - position.entry_price) if position.amount else ZERO


def maint_margin(spec: SymbolSpec, position: Position, mark: Decimal) -> Decimal:
    notional = abs(position.amount) * mark
    if not notional:
        return ZERO
    mmr, cum = bracket_for(spec, notional)
    return max(ZERO, notional * mmr - cum)


def liquidation_price(
    spec: SymbolSpec, position: Position, mark: Decimal, isolated: bool, cross_wallet: Decimal
) -> Decimal:
    """The mark at which the position is liquidated; 0 when it cannot be (or no position)."""
    if not position.amount:
        return ZERO
    qty, side = abs(position.amount), Decimal(position.side)
    mmr, cum = bracket_for(spec, qty * mark)
    wallet = position.isolated_wallet if isolated else cross_wallet
    denominator = qty * mmr - side * qty
    if not denominator:
        return ZERO
    price = (wallet + cum - side * qty * position.entry_price) / denominator
    return price if price > 0 else ZERO


def position_margin(account: Account, position: Position) -> Decimal:
    """Initial margin held by a position: its isolated wallet, or notional/leverage at entry (cross)."""
    config = account.config(position.symbol)
    if config.margin_type == "ISOLATED":
        return position.isolated_wallet
    return abs(position.amount) * position.entry_price / config.leverage


def order_margin(account: Account, order: Order) -> Decimal:
    """Initial margin reserved by an open order that would open or increase a position."""
    if not order.is_open or order.reduce_only or order.close_position or not order.triggered or order.type != "LIMIT":
        return ZERO
    position = account.positions.get(order.symbol)
    amount = position.amount if position else ZERO
    increases = amount == 0 or (amount > 0) == (order.side == "BUY")
    return order.remaining * order.price / account.config(order.symbol).leverage if increases else ZERO


def open_order_margin(account: Account, symbol: str | None = None) -> Decimal:
    return sum((order_margin(account, o) for o in account.open_orders(symbol)), ZERO)


def available_balance(account: Account) -> Decimal:
    cross_positions = sum(
        (
            position_margin(account, p)
            for p in account.positions.values()
            if account.config(p.symbol).margin_type == "CROSSED"
        ),
        ZERO,
    )
    return account.cross_wallet() - cross_positions - open_order_margin(account)
