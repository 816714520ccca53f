"""Wire shapes of the trading side: REST bodies and user-data events, per flavour.

Every shape follows an official example payload (the reference ``payloads/`` directory): the
Aster and Binance order bodies differ (Binance adds ``priceMatch``, ``selfTradePreventionMode``,
``goodTillDate``; its events add ``pP si ss V pm gtd er`` and ``bep`` in positions), new/cancel
bodies carry ``cumQty`` while query bodies carry ``time``, Aster's income ``tranId`` is a string
and Binance's an int. Numbers are strings as the venues print them (see ``_accounts``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from ._accounts import (
    ZERO,
    Account,
    AlgoOrder,
    Income,
    Order,
    Position,
    Trade,
    avg_text,
    money,
    price_text,
    qty_text,
)
from actors.tools.venue_market import Flavour, SymbolSpec, wire

OrderView = Literal["new", "cancel", "query"]


def plain(value: Decimal) -> str:
    """A decimal without trailing zeros (``"0"`` for zero), 8 decimals at most."""
    text = money(value)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _filled_qty(value: Decimal, spec: SymbolSpec) -> str:
    return "0" if value == 0 else qty_text(value, spec)


def order_body(order: Order, spec: SymbolSpec, flavour: Flavour, view: OrderView) -> dict[str, Any]:
    """``POST /order`` (view ``new``), ``DELETE /order`` (``cancel``: no avgPrice) or
    ``GET /order``, ``openOrders``... (``query``: ``time`` instead of ``cumQty``)."""
    body: dict[str, Any] = {}
    if view == "query":
        body["avgPrice"] = avg_text(order.avg_price, spec)
    body["clientOrderId"] = order.client_id
    if view != "query":
        body["cumQty"] = _filled_qty(order.executed_qty, spec)
    body["cumQuote"] = plain(order.cum_quote)
    body["executedQty"] = _filled_qty(order.executed_qty, spec)
    body["orderId"] = order.order_id
    if view == "new":
        body["avgPrice"] = avg_text(order.avg_price, spec)
    body["origQty"] = "0" if order.close_position else qty_text(order.quantity, spec)
    if view != "new":
        body["origType"] = order.orig_type
    body.update(
        {
            "price": price_text(order.price, spec),
            "reduceOnly": order.reduce_only or order.close_position,
            "side": order.side,
            "positionSide": "BOTH",
            "status": order.status,
            "stopPrice": price_text(order.stop_price, spec),
            "closePosition": order.close_position,
            "symbol": order.symbol,
        }
    )
    if view == "query":
        body["time"] = order.time_ms
    body["timeInForce"] = order.time_in_force
    body["type"] = order.type
    if view == "new":
        body["origType"] = order.orig_type
    body["updateTime"] = order.update_ms
    body["workingType"] = order.working_type
    body["priceProtect"] = order.price_protect
    if flavour == "binance":
        body.update({"priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0})
    return body


def order_event(
    account: Account,
    order: Order,
    spec: SymbolSpec,
    flavour: Flavour,
    *,
    execution: str,
    at_ms: int,
    trade: Trade | None = None,
) -> dict[str, Any]:
    """One ``ORDER_TRADE_UPDATE`` (execution type NEW, TRADE, CANCELED, EXPIRED, CALCULATED)."""
    bids, asks = open_notional(account, order.symbol)
    o: dict[str, Any] = {
        "s": order.symbol,
        "c": order.client_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force,
        "q": "0" if order.close_position else qty_text(order.quantity, spec),
        "p": price_text(order.price, spec),
        "ap": avg_text(order.avg_price, spec) if order.executed_qty else "0",
        "sp": price_text(order.stop_price, spec),
        "x": execution,
        "X": order.status,
        "i": order.order_id,
        "l": qty_text(trade.qty, spec) if trade else "0",
        "z": _filled_qty(order.executed_qty, spec),
        "L": plain(trade.price) if trade else "0",
        "N": "USDT",
        "n": money(trade.commission) if trade else "0",
        "T": trade.time_ms if trade else at_ms,
        "t": trade.trade_id if trade else 0,
        "b": plain(bids),
        "a": plain(asks),
        "m": trade.maker if trade else False,
        "R": order.reduce_only or order.close_position,
        "wt": order.working_type,
        "ot": order.orig_type,
        "ps": "BOTH",
        "cp": order.close_position,
        "AP": "0",
        "cr": "0",
    }
    if flavour == "binance":
        o.update({"pP": order.price_protect, "si": 0, "ss": 0, "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0})
        o["er"] = str(order.expiry_reason)
    o["rp"] = money(trade.realized_pnl) if trade else "0"
    return {"e": "ORDER_TRADE_UPDATE", "E": 0, "T": at_ms, "o": o}


def trade_lite_event(order: Order, spec: SymbolSpec, trade: Trade) -> dict[str, Any]:
    """Binance's ``TRADE_LITE``, sent before the ``ORDER_TRADE_UPDATE`` of each fill."""
    return {
        "e": "TRADE_LITE",
        "E": 0,
        "T": trade.time_ms,
        "s": order.symbol,
        "q": "0" if order.close_position else qty_text(order.quantity, spec),
        "p": price_text(order.price, spec),
        "m": trade.maker,
        "c": order.client_id,
        "S": order.side,
        "L": plain(trade.price),
        "l": qty_text(trade.qty, spec),
        "t": trade.trade_id,
        "i": order.order_id,
    }


def open_notional(account: Account, symbol: str) -> tuple[Decimal, Decimal]:
    """Notional of the open resting (limit) orders: bids, asks (``b`` / ``a`` of order events)."""
    bids = asks = ZERO
    for o in account.open_orders(symbol):
        if o.type == "LIMIT" and o.triggered:
            if o.side == "BUY":
                bids += o.remaining * o.price
            else:
                asks += o.remaining * o.price
    return bids, asks


def position_event_entry(
    account: Account, position: Position, spec: SymbolSpec, flavour: Flavour, unrealized: Decimal
) -> dict[str, Any]:
    isolated = account.config(position.symbol).margin_type == "ISOLATED"
    entry: dict[str, Any] = {
        "s": position.symbol,
        "pa": plain(position.amount),
        "ep": avg_text(position.entry_price, spec),
    }
    if flavour == "binance":
        entry["bep"] = avg_text(position.entry_price, spec)
    entry.update(
        {
            "cr": money(position.realized),
            "up": money(unrealized),
            "mt": "isolated" if isolated else "cross",
            "iw": money(position.isolated_wallet),
            "ps": "BOTH",
        }
    )
    if flavour == "binance":
        entry["ma"] = "USDT"
    return entry


def account_update_event(
    account: Account,
    reason: str,
    positions: list[dict[str, Any]],
    *,
    at_ms: int,
    balance_change: Decimal = ZERO,
) -> dict[str, Any]:
    balance = {
        "a": "USDT",
        "wb": money(account.wallet),
        "cw": money(account.cross_wallet()),
        "bc": money(balance_change),
    }
    return {"e": "ACCOUNT_UPDATE", "E": 0, "T": at_ms, "a": {"m": reason, "B": [balance], "P": positions}}


def leverage_event(symbol: str, leverage: int, at_ms: int) -> dict[str, Any]:
    return {"e": "ACCOUNT_CONFIG_UPDATE", "E": 0, "T": at_ms, "ac": {"s": symbol, "l": leverage}}


def listen_key_expired_event(flavour: Flavour, key: str, at_ms: int) -> dict[str, Any]:
    # Binance's example prints E as a string and names the key; Aster's has neither quirk
    if flavour == "binance":
        return {"e": "listenKeyExpired", "E": "", "listenKey": key}
    return {"e": "listenKeyExpired", "E": 0}


def algo_body(algo: AlgoOrder, spec: SymbolSpec, view: OrderView, actual: Order | None) -> dict[str, Any]:
    """``POST /algoOrder`` (view ``new``) or ``GET /algoOrder`` / ``openAlgoOrders`` (``query``)."""
    body: dict[str, Any] = {
        "algoId": algo.algo_id,
        "clientAlgoId": algo.client_algo_id,
        "algoType": "CONDITIONAL",
        "orderType": algo.order_type,
        "symbol": algo.symbol,
        "side": algo.side,
        "positionSide": "BOTH",
        "timeInForce": algo.time_in_force,
        "quantity": "0" if algo.close_position else qty_text(algo.quantity, spec),
        "algoStatus": algo.status,
    }
    if view == "query":
        body["actualOrderId"] = str(algo.actual_order_id) if algo.actual_order_id else ""
        body["actualPrice"] = avg_text(actual.avg_price if actual else ZERO, spec)
    body.update(
        {
            "triggerPrice": price_text(algo.trigger_price, spec) if algo.trigger_price else "0",
            "price": price_text(algo.price, spec),
            "icebergQuantity": None,
        }
    )
    if view == "query":
        body.update(
            {
                "tpTriggerPrice": "0.000",
                "tpPrice": "0.000",
                "slTriggerPrice": "0.000",
                "slPrice": "0.000",
                "tpOrderType": "",
            }
        )
    body.update(
        {
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": algo.working_type,
            "priceMatch": "NONE",
            "closePosition": algo.close_position,
            "priceProtect": algo.price_protect,
            "reduceOnly": algo.reduce_only or algo.close_position,
        }
    )
    if view == "new":
        body.update({"activatePrice": "", "callbackRate": ""})
    body.update(
        {"createTime": algo.create_ms, "updateTime": algo.update_ms, "triggerTime": algo.trigger_ms, "goodTillDate": 0}
    )
    return body


def algo_event(algo: AlgoOrder, spec: SymbolSpec, actual: Order | None, at_ms: int) -> dict[str, Any]:
    """``ALGO_UPDATE``: ``ap``/``aq``/``act`` only once the order reached the matching engine."""
    o: dict[str, Any] = {
        "caid": algo.client_algo_id,
        "aid": algo.algo_id,
        "at": "CONDITIONAL",
        "o": algo.order_type,
        "s": algo.symbol,
        "S": algo.side,
        "ps": "BOTH",
        "f": algo.time_in_force,
        "q": "0" if algo.close_position else qty_text(algo.quantity, spec),
        "X": algo.status,
        "ai": str(algo.actual_order_id) if algo.actual_order_id else "",
    }
    if actual is not None:
        o.update(
            {
                "ap": avg_text(actual.avg_price, spec) if actual.executed_qty else "0",
                "aq": qty_text(actual.executed_qty, spec) if actual.executed_qty else "0",
                "act": actual.type,
            }
        )
    o.update(
        {
            "tp": price_text(algo.trigger_price, spec),
            "p": price_text(algo.price, spec),
            "V": "EXPIRE_MAKER",
            "wt": algo.working_type,
            "pm": "NONE",
            "cp": algo.close_position,
            "pP": algo.price_protect,
            "R": algo.reduce_only or algo.close_position,
            "tt": algo.trigger_ms,
            "gtd": 0,
        }
    )
    if algo.reject_reason:
        o["rm"] = algo.reject_reason
    return {"e": "ALGO_UPDATE", "T": at_ms, "E": 0, "o": o}


def trigger_reject_event(algo: AlgoOrder, reason: str, at_ms: int) -> dict[str, Any]:
    return {
        "e": "CONDITIONAL_ORDER_TRIGGER_REJECT",
        "E": 0,
        "T": at_ms,
        "or": {"s": algo.symbol, "i": algo.algo_id, "r": reason},
    }


def trade_body(trade: Trade, spec: SymbolSpec) -> dict[str, Any]:
    """One ``userTrades`` item (commission positive: what was paid)."""
    return {
        "buyer": trade.side == "BUY",
        "commission": money(trade.commission),
        "commissionAsset": "USDT",
        "id": trade.trade_id,
        "maker": trade.maker,
        "orderId": trade.order_id,
        "price": plain(trade.price),
        "qty": qty_text(trade.qty, spec),
        "quoteQty": plain(trade.quote_qty),
        "realizedPnl": money(trade.realized_pnl),
        "side": trade.side,
        "positionSide": "BOTH",
        "symbol": trade.symbol,
        "time": trade.time_ms,
    }


def income_body(entry: Income, flavour: Flavour) -> dict[str, Any]:
    return {
        "symbol": entry.symbol,
        "incomeType": entry.income_type,
        "income": money(entry.income),
        "asset": "USDT",
        "info": entry.info or entry.income_type,
        "time": entry.time_ms,
        "tranId": str(entry.tran_id) if flavour == "aster" else entry.tran_id,
        "tradeId": "" if entry.trade_id is None else str(entry.trade_id),
    }


def commission_body(account: Account, symbol: str, flavour: Flavour) -> dict[str, Any]:
    body = {
        "symbol": symbol,
        "makerCommissionRate": wire(account.maker_rate),
        "takerCommissionRate": wire(account.taker_rate),
    }
    if flavour == "binance":
        body["rpiCommissionRate"] = "0.00005"
    return body
