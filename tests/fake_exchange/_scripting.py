"""Things that happen to an account behind the client's back: a trader in the venue's app, the venue.

* :func:`trade_externally`: a MARKET order from the venue's web app (client id ``web_...``), walking
  the book like any taker order; :func:`close_externally` closes the whole position that way.
* :func:`liquidate`: the liquidation engine takes over a position. Open orders of the symbol
  expire (Binance ``er`` 5), then an order ``autoclose-<ms><seq>`` of type LIQUIDATION (IOC) is
  announced (``x=NEW``) and filled at the bankruptcy price (``x=CALCULATED``, no commission), so
  the isolated margin is lost; ``ACCOUNT_UPDATE`` (reason ORDER) follows, as for any fill.
* :func:`pay_funding`: ``FUNDING_FEE`` income and an ``ACCOUNT_UPDATE`` with reason FUNDING_FEE
  carrying the balance and, for an isolated position, that position (whose isolated wallet
  absorbs the fee), as Binance documents.
* :func:`set_balance`: a transfer in or out (income TRANSFER, ``ACCOUNT_UPDATE`` DEPOSIT/WITHDRAW).
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Final

from ._accounts import ZERO, Account, Order, Side
from ._engine import Engine

_LIQUIDATION_SEQ: Final = itertools.count(20)


def trade_externally(
    engine: Engine, account: Account, symbol: str, side: Side, quantity: Decimal, *, reduce_only: bool = False
) -> Order:
    """A MARKET order placed in the venue's app (no API filters; fills against the book)."""
    now = engine.server_ms()
    order = Order(
        order_id=engine.next_order_id(),
        client_id=engine.new_client_id("web_"),
        symbol=symbol,
        side=side,
        type="MARKET",
        orig_type="MARKET",
        time_in_force="GTC",
        quantity=quantity,
        reduce_only=reduce_only,
        time_ms=now,
        update_ms=now,
    )
    engine.start(account, order)
    engine.settle(symbol)
    return order


def close_externally(engine: Engine, account: Account, symbol: str) -> Order | None:
    """Close the whole position from the venue's app; None when there is none."""
    amount = account.position(symbol).amount
    if not amount:
        return None
    return trade_externally(engine, account, symbol, "SELL" if amount > 0 else "BUY", abs(amount), reduce_only=True)


def bankruptcy_price(engine: Engine, account: Account, symbol: str) -> Decimal:
    """Where the position's margin is exactly gone (the mark for a cross position)."""
    position = account.position(symbol)
    if account.config(symbol).margin_type != "ISOLATED" or not position.amount:
        return engine.mark(symbol)
    price = position.entry_price - position.side * position.isolated_wallet / abs(position.amount)
    return max(price, ZERO)


def liquidate(engine: Engine, account: Account, symbol: str, price: Decimal | None = None) -> Order | None:
    """The venue liquidates the position of ``symbol`` (at ``price``, default the bankruptcy price)."""
    position = account.position(symbol)
    if not position.amount:
        return None
    for order in account.open_orders(symbol):
        engine.expire(account, order, reason=5)
    fill_price = price if price is not None else bankruptcy_price(engine, account, symbol)
    now = engine.server_ms()
    order = Order(
        order_id=engine.next_order_id(),
        client_id=f"autoclose-{now}{next(_LIQUIDATION_SEQ):06d}",
        symbol=symbol,
        side="SELL" if position.amount > 0 else "BUY",
        type="LIQUIDATION",
        orig_type="LIQUIDATION",
        time_in_force="IOC",
        quantity=abs(position.amount),
        price=fill_price,
        time_ms=now,
        update_ms=now,
        liquidation=True,
    )
    account.orders[order.order_id] = order
    engine.emit_order_event(account, order, "NEW")
    engine.execute_at(account, order, fill_price)
    engine.settle(symbol)
    return order


def pay_funding(engine: Engine, account: Account, symbol: str, rate: Decimal | None = None) -> Decimal:
    """Settle funding of ``symbol`` at ``rate`` (default the scripted rate); returns the amount paid in."""
    position = account.position(symbol)
    if not position.amount:
        return ZERO
    rate = rate if rate is not None else Decimal(engine.market(symbol).funding_rate)
    amount = -position.amount * engine.mark(symbol) * rate
    account.wallet += amount
    isolated = account.config(symbol).margin_type == "ISOLATED"
    if isolated:
        position.isolated_wallet += amount
    position.update_ms = account.update_ms = engine.server_ms()
    engine.add_income(account, symbol, "FUNDING_FEE", amount)
    engine.account_update(account, [symbol] if isolated else [], "FUNDING_FEE")
    return amount


def set_balance(engine: Engine, account: Account, wallet: Decimal) -> None:
    """Transfer so that the wallet balance becomes ``wallet``."""
    change = wallet - account.wallet
    if not change:
        return
    account.wallet = wallet
    account.update_ms = engine.server_ms()
    engine.add_income(account, "", "TRANSFER", change)
    engine.account_update(account, [], "DEPOSIT" if change > 0 else "WITHDRAW", balance_change=change)
