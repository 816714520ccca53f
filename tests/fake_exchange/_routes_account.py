"""Account endpoints: positions, balance, account, leverage, margin type, trades, income, listen keys.

Shapes per the official examples: Aster's ``positionRisk`` (``/fapi/v2`` and ``/fapi/v3``) lists
every symbol with leverage and margin type; Binance's ``/fapi/v3/positionRisk`` lists only symbols
with a position or open orders and drops leverage / marginType / maxNotionalValue for
breakEvenPrice, notional, initialMargin, maintMargin, isolatedWallet, adl...
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from . import _margin as margin
from actors.tools import venue_market as market
from . import _payloads as payloads
from ._accounts import ZERO, Account, Position, avg_text, money, qty_text
from ._calls import Call
from ._errors import VenueError, invalid, missing

PositionView = Literal["aster", "binance_v2", "binance_v3"]


def _position_figures(call: Call, position: Position) -> dict[str, Decimal]:
    engine, account = call.engine, call.account
    spec, mark = engine.spec(position.symbol), engine.mark(position.symbol)
    isolated = account.config(position.symbol).margin_type == "ISOLATED"
    upnl = margin.unrealized(position, mark)
    return {
        "mark": mark,
        "upnl": upnl,
        "notional": position.amount * mark,
        "initial": abs(position.amount) * mark / account.config(position.symbol).leverage,
        "maint": margin.maint_margin(spec, position, mark),
        "liquidation": margin.liquidation_price(spec, position, mark, isolated, account.cross_wallet()),
        "isolated_margin": position.isolated_wallet + upnl if isolated and position.amount else ZERO,
        "open_order_margin": margin.open_order_margin(account, position.symbol),
    }


def position_body(call: Call, position: Position, view: PositionView) -> dict[str, Any]:
    account, spec = call.account, call.venue.spec(position.symbol)
    config = account.config(position.symbol)
    f = _position_figures(call, position)
    amount = qty_text(position.amount, spec) if position.amount else qty_text(ZERO, spec)
    liquidation = money(f["liquidation"]) if f["liquidation"] else "0"
    if view == "binance_v3":
        bids, asks = payloads.open_notional(account, position.symbol)
        return {
            "symbol": position.symbol,
            "positionSide": "BOTH",
            "positionAmt": amount,
            "entryPrice": avg_text(position.entry_price, spec),
            "breakEvenPrice": avg_text(position.entry_price, spec),
            "markPrice": money(f["mark"]),
            "unRealizedProfit": money(f["upnl"]),
            "liquidationPrice": liquidation,
            "isolatedMargin": money(f["isolated_margin"]),
            "notional": money(f["notional"]),
            "marginAsset": "USDT",
            "isolatedWallet": money(position.isolated_wallet),
            "initialMargin": money(f["initial"] + f["open_order_margin"]),
            "maintMargin": money(f["maint"]),
            "positionInitialMargin": money(f["initial"]),
            "openOrderInitialMargin": money(f["open_order_margin"]),
            "adl": 0,
            "bidNotional": payloads.plain(bids),
            "askNotional": payloads.plain(asks),
            "updateTime": position.update_ms,
        }
    body: dict[str, Any] = {"entryPrice": avg_text(position.entry_price, spec)}
    if view == "binance_v2":
        body["breakEvenPrice"] = avg_text(position.entry_price, spec)
    body.update(
        {
            "marginType": "isolated" if config.margin_type == "ISOLATED" else "cross",
            "isAutoAddMargin": "false",
            "isolatedMargin": money(f["isolated_margin"]),
            "leverage": str(config.leverage),
            "liquidationPrice": liquidation,
            "markPrice": money(f["mark"]),
            "maxNotionalValue": str(margin.max_notional(spec, config.leverage)),
            "positionAmt": amount,
        }
    )
    if view == "binance_v2":
        body.update({"notional": money(f["notional"]), "isolatedWallet": money(position.isolated_wallet)})
    body.update(
        {
            "symbol": position.symbol,
            "unRealizedProfit": money(f["upnl"]),
            "positionSide": "BOTH",
            "updateTime": position.update_ms,
        }
    )
    return body


def _active_symbols(account: Account) -> list[str]:
    return sorted({s for s, p in account.positions.items() if p.amount} | {o.symbol for o in account.open_orders()})


def position_risk(view: PositionView):  # type: ignore[no-untyped-def]
    def handler(call: Call) -> Any:
        symbol = call.symbol(required=False)
        if view == "binance_v3":
            symbols = [s for s in _active_symbols(call.account) if symbol in (None, s)]
        else:
            symbols = [symbol] if symbol else list(call.engine.state.specs)
        return [position_body(call, call.account.position(s), view) for s in symbols]

    return handler


def _totals(call: Call) -> dict[str, Decimal]:
    account = call.account
    figures = [_position_figures(call, p) for p in account.positions.values() if p.amount]
    cross_upnl = sum(
        (
            margin.unrealized(p, call.engine.mark(s))
            for s, p in account.positions.items()
            if account.config(s).margin_type == "CROSSED"
        ),
        ZERO,
    )
    upnl = sum((f["upnl"] for f in figures), ZERO)
    position_im = sum((f["initial"] for f in figures), ZERO)
    order_im = margin.open_order_margin(account)
    available = margin.available_balance(account)
    return {
        "wallet": account.wallet,
        "cross_wallet": account.cross_wallet(),
        "upnl": upnl,
        "cross_upnl": cross_upnl,
        "margin_balance": account.wallet + upnl,
        "initial": position_im + order_im,
        "position_initial": position_im,
        "order_initial": order_im,
        "maint": sum((f["maint"] for f in figures), ZERO),
        "available": available,
    }


def balance(call: Call) -> Any:
    t = _totals(call)
    return [
        {
            "accountAlias": "SgsR" + str(call.account.account_id),
            "asset": "USDT",
            "balance": money(t["wallet"]),
            "crossWalletBalance": money(t["cross_wallet"]),
            "crossUnPnl": money(t["cross_upnl"]),
            "availableBalance": money(t["available"]),
            "maxWithdrawAmount": money(max(ZERO, t["available"])),
            "marginAvailable": True,
            "updateTime": call.account.update_ms,
        }
    ]


def account_info(call: Call) -> Any:
    """Aster ``/fapi/v4/account`` / ``/fapi/v3/accountWithJoinMargin``; Binance ``/fapi/v3/account``."""
    account, t = call.account, _totals(call)
    totals = {
        "totalInitialMargin": money(t["initial"]),
        "totalMaintMargin": money(t["maint"]),
        "totalWalletBalance": money(t["wallet"]),
        "totalUnrealizedProfit": money(t["upnl"]),
        "totalMarginBalance": money(t["margin_balance"]),
        "totalPositionInitialMargin": money(t["position_initial"]),
        "totalOpenOrderInitialMargin": money(t["order_initial"]),
        "totalCrossWalletBalance": money(t["cross_wallet"]),
        "totalCrossUnPnl": money(t["cross_upnl"]),
        "availableBalance": money(t["available"]),
        "maxWithdrawAmount": money(max(ZERO, t["available"])),
    }
    asset: dict[str, Any] = {
        "asset": "USDT",
        "walletBalance": money(t["wallet"]),
        "unrealizedProfit": money(t["upnl"]),
        "marginBalance": money(t["margin_balance"]),
        "maintMargin": money(t["maint"]),
        "initialMargin": money(t["initial"]),
        "positionInitialMargin": money(t["position_initial"]),
        "openOrderInitialMargin": money(t["order_initial"]),
        "crossWalletBalance": money(t["cross_wallet"]),
        "crossUnPnl": money(t["cross_upnl"]),
        "availableBalance": money(t["available"]),
        "maxWithdrawAmount": money(max(ZERO, t["available"])),
    }
    if call.flavour == "binance":
        asset["updateTime"] = account.update_ms
        positions = [_binance_account_position(call, account.position(s)) for s in _active_symbols(account)]
        return {**totals, "assets": [asset], "positions": positions}
    asset.update({"marginAvailable": True, "updateTime": account.update_ms})
    positions = [_aster_account_position(call, account.position(s)) for s in call.engine.state.specs]
    head = {"feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True, "updateTime": 0}
    return {**head, **totals, "assets": [asset], "positions": positions}


def _aster_account_position(call: Call, position: Position) -> dict[str, Any]:
    f, spec = _position_figures(call, position), call.venue.spec(position.symbol)
    config = call.account.config(position.symbol)
    return {
        "symbol": position.symbol,
        "initialMargin": money(f["initial"] + f["open_order_margin"]),
        "maintMargin": money(f["maint"]),
        "unrealizedProfit": money(f["upnl"]),
        "positionInitialMargin": money(f["initial"]),
        "openOrderInitialMargin": money(f["open_order_margin"]),
        "leverage": str(config.leverage),
        "isolated": config.margin_type == "ISOLATED",
        "entryPrice": avg_text(position.entry_price, spec),
        "maxNotional": str(margin.max_notional(spec, config.leverage)),
        "positionSide": "BOTH",
        "positionAmt": qty_text(position.amount, spec),
        "updateTime": position.update_ms,
    }


def _binance_account_position(call: Call, position: Position) -> dict[str, Any]:
    f, spec = _position_figures(call, position), call.venue.spec(position.symbol)
    return {
        "symbol": position.symbol,
        "positionSide": "BOTH",
        "positionAmt": qty_text(position.amount, spec),
        "unrealizedProfit": money(f["upnl"]),
        "isolatedMargin": money(f["isolated_margin"]),
        "notional": money(f["notional"]),
        "isolatedWallet": money(position.isolated_wallet),
        "initialMargin": money(f["initial"]),
        "maintMargin": money(f["maint"]),
        "updateTime": position.update_ms,
    }


def change_leverage(call: Call) -> Any:
    symbol = call.symbol()
    assert symbol is not None
    leverage = call.integer("leverage")
    if leverage is None:
        raise missing("leverage")
    spec, config = call.venue.spec(symbol), call.account.config(symbol)
    if not 1 <= leverage <= margin.max_leverage(spec):
        raise VenueError(-4028, f"Leverage {leverage} is not valid")
    position = call.account.position(symbol)
    if position.amount and config.margin_type == "ISOLATED" and leverage < config.leverage:
        raise VenueError(-4161)
    if abs(position.amount) * call.engine.mark(symbol) > margin.max_notional(spec, leverage):
        raise VenueError(-2027)
    config.leverage = leverage
    call.engine.emit(call.account, payloads.leverage_event(symbol, leverage, call.engine.server_ms()))
    return {"leverage": leverage, "maxNotionalValue": str(margin.max_notional(spec, leverage)), "symbol": symbol}


def change_margin_type(call: Call) -> Any:
    symbol = call.symbol()
    assert symbol is not None
    wanted = call.params.get("marginType", "")
    if not wanted:
        raise missing("marginType")
    if wanted not in ("ISOLATED", "CROSSED"):
        raise invalid("marginType")
    config = call.account.config(symbol)
    if config.margin_type == wanted:
        raise VenueError(-4046)
    if call.account.open_orders(symbol):
        raise VenueError(-4047)
    if call.account.position(symbol).amount:
        raise VenueError(-4048)
    config.margin_type = wanted  # type: ignore[assignment]
    return {"code": 200, "msg": "success"}


def position_mode(call: Call) -> Any:
    return {"dualSidePosition": False}


def change_position_mode(call: Call) -> Any:
    """The fake is one-way only: asking for one-way is -4059, asking for hedge mode is unsupported."""
    wanted = call.params.get("dualSidePosition", "")
    if wanted.lower() not in ("true", "false"):
        raise missing("dualSidePosition") if not wanted else invalid("dualSidePosition")
    if wanted.lower() == "false":
        raise VenueError(-4059, "No need to change position side.")
    raise VenueError(-1020, "This operation is not supported.")


def symbol_config(call: Call) -> Any:
    """Binance's ``GET /fapi/v1/symbolConfig`` (leverage and margin type, gone from positionRisk v3)."""
    symbol = call.symbol(required=False)
    result = []
    for name in [symbol] if symbol else list(call.engine.state.specs):
        config = call.account.config(name)
        result.append(
            {
                "symbol": name,
                "marginType": config.margin_type,
                "isAutoAddMargin": False,
                "leverage": config.leverage,
                "maxNotionalValue": str(margin.max_notional(call.venue.spec(name), config.leverage)),
            }
        )
    return result


def user_trades(call: Call) -> Any:
    symbol = call.symbol()
    order_id, from_id = call.integer("orderId"), call.integer("fromId")
    limit = call.limit(500, 1000)
    if from_id is not None and ("startTime" in call.params or "endTime" in call.params):
        raise VenueError(-1128)
    trades = [t for t in call.account.trades if t.symbol == symbol and (order_id is None or t.order_id == order_id)]
    if from_id is not None:
        trades = [t for t in trades if t.trade_id >= from_id][:limit]
    else:
        start, end = call.window()
        trades = [t for t in trades if start <= t.time_ms <= end][-limit:]
    return [payloads.trade_body(t, call.venue.spec(t.symbol)) for t in trades]


def income(call: Call) -> Any:
    symbol = call.symbol(required=False)
    kind = call.params.get("incomeType")
    limit = call.limit(100, 1000)
    start, end = call.window(max_span_ms=200 * 24 * 3600 * 1000)
    entries = [
        e
        for e in call.account.income
        if (symbol is None or e.symbol == symbol)
        and (kind is None or e.income_type == kind)
        and start <= e.time_ms <= end
    ]
    return [payloads.income_body(e, call.flavour) for e in entries[:limit]]


def commission_rate(call: Call) -> Any:
    symbol = call.symbol()
    assert symbol is not None
    return payloads.commission_body(call.account, symbol, call.flavour)


def leverage_bracket(call: Call) -> Any:
    symbol = call.symbol(required=False)
    specs = [call.venue.spec(symbol)] if symbol else list(call.engine.state.specs.values())
    return market.leverage_brackets(call.flavour, specs, single=symbol is not None)


def start_listen_key(call: Call) -> Any:
    return {"listenKey": call.venue.streams.start(call.account)}


def keepalive_listen_key(call: Call) -> Any:
    call.venue.streams.keepalive(call.account, call.params.get("listenKey"))
    return {}


def close_listen_key(call: Call) -> Any:
    call.venue.streams.close(call.account, call.params.get("listenKey"))
    return {}
