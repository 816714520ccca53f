"""Pure parsers of the signed endpoints' payloads into :mod:`actors.venues.trading_types`.

Shapes are those of the official examples (``reference/payloads``): the order endpoint of both
venues, Binance's Algo Order API, ``positionRisk`` (Aster and Binance v2 carry ``leverage`` and
``marginType``; Binance v3 drops them and adds ``breakEvenPrice``, ``notional``...),
``balance``, ``userTrades``, ``income`` (``tranId`` is a string on Aster and a number on
Binance), ``leverage``, ``listenKey`` and the ``{"code": 200, "msg": ...}`` acknowledgements.
Unknown fields are ignored; a payload that does not fit raises
:class:`~actors.venues.parsing.ParseError`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

import msgspec

from actors.venues.parsing import ParseError
from actors.venues.trading_types import (
    LeverageChange,
    VenueBalance,
    VenueIncome,
    VenueOrder,
    VenuePosition,
    VenueTrade,
)

__all__ = [
    "AlgoCancelAck",
    "parse_ack",
    "parse_algo_cancel",
    "parse_algo_order",
    "parse_algo_orders",
    "parse_balances",
    "parse_income",
    "parse_leverage_change",
    "parse_listen_key",
    "parse_order",
    "parse_orders",
    "parse_positions",
    "parse_trades",
]

Raw = bytes | str
_ZERO: Final = Decimal(0)


class _Order(msgspec.Struct, frozen=True):
    orderId: int
    clientOrderId: str
    symbol: str
    side: str
    type: str
    status: str
    origQty: Decimal = _ZERO
    executedQty: Decimal = _ZERO
    avgPrice: Decimal = _ZERO
    price: Decimal = _ZERO
    stopPrice: Decimal = _ZERO
    origType: str = ""
    timeInForce: str = ""
    reduceOnly: bool = False
    closePosition: bool = False
    workingType: str = ""
    priceProtect: bool = False
    positionSide: str = "BOTH"
    cumQuote: Decimal | None = None
    updateTime: int = 0
    time: int = 0


class _AlgoOrder(msgspec.Struct, frozen=True):
    algoId: int
    clientAlgoId: str
    orderType: str
    symbol: str
    side: str
    algoStatus: str
    algoType: str = "CONDITIONAL"
    positionSide: str = "BOTH"
    timeInForce: str = ""
    quantity: Decimal = _ZERO
    triggerPrice: Decimal = _ZERO
    price: Decimal = _ZERO
    workingType: str = ""
    closePosition: bool = False
    priceProtect: bool = False
    reduceOnly: bool = False
    actualOrderId: str | int = ""
    actualPrice: str = ""
    executedQty: Decimal = _ZERO
    avgPrice: str = ""
    createTime: int = 0
    updateTime: int = 0


class AlgoCancelAck(msgspec.Struct, frozen=True):
    """``DELETE /fapi/v1/algoOrder``: ``{"algoId", "clientAlgoId", "code": "200", "msg"}``."""

    algoId: int
    clientAlgoId: str
    code: int | str = 200
    msg: str = ""


class _Position(msgspec.Struct, frozen=True):
    symbol: str
    positionAmt: Decimal
    entryPrice: Decimal
    markPrice: Decimal
    unRealizedProfit: Decimal
    liquidationPrice: Decimal = _ZERO
    isolatedMargin: Decimal = _ZERO
    positionSide: str = "BOTH"
    updateTime: int = 0
    breakEvenPrice: Decimal | None = None
    notional: Decimal | None = None
    leverage: str | int | None = None
    marginType: str | None = None


class _Balance(msgspec.Struct, frozen=True):
    asset: str
    balance: Decimal
    crossWalletBalance: Decimal = _ZERO
    crossUnPnl: Decimal = _ZERO
    availableBalance: Decimal = _ZERO
    maxWithdrawAmount: Decimal = _ZERO
    updateTime: int = 0


class _Trade(msgspec.Struct, frozen=True):
    id: int
    orderId: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commissionAsset: str
    realizedPnl: Decimal
    time: int
    quoteQty: Decimal = _ZERO
    maker: bool = False
    buyer: bool = False
    positionSide: str = "BOTH"


class _Income(msgspec.Struct, frozen=True):
    incomeType: str
    income: Decimal
    asset: str
    time: int
    symbol: str = ""
    info: str = ""
    tranId: int | str = ""
    tradeId: int | str = ""


class _LeverageChange(msgspec.Struct, frozen=True):
    symbol: str
    leverage: int
    maxNotionalValue: str | int | None = None


class _ListenKey(msgspec.Struct, frozen=True):
    listenKey: str


class _Ack(msgspec.Struct, frozen=True):
    code: int | str
    msg: str = ""


_dec_order: Final = msgspec.json.Decoder(_Order)
_dec_orders: Final = msgspec.json.Decoder(list[_Order])
_dec_algo: Final = msgspec.json.Decoder(_AlgoOrder)
_dec_algos: Final = msgspec.json.Decoder(list[_AlgoOrder] | dict[str, Any])
_dec_algo_cancel: Final = msgspec.json.Decoder(AlgoCancelAck)
_dec_positions: Final = msgspec.json.Decoder(list[_Position])
_dec_balances: Final = msgspec.json.Decoder(list[_Balance])
_dec_trades: Final = msgspec.json.Decoder(list[_Trade])
_dec_income: Final = msgspec.json.Decoder(list[_Income])
_dec_leverage: Final = msgspec.json.Decoder(_LeverageChange)
_dec_listen_key: Final = msgspec.json.Decoder(_ListenKey)
_dec_ack: Final = msgspec.json.Decoder(_Ack)


def _decode(decoder: msgspec.json.Decoder[Any], raw: Raw, what: str) -> Any:
    try:
        return decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise ParseError(what, str(exc), raw) from None


def _optional(value: Decimal) -> Decimal | None:
    return value if value else None


def _decimal_or_zero(text: str, what: str) -> Decimal:
    if not text:
        return _ZERO
    try:
        return Decimal(text)
    except ArithmeticError:
        raise ParseError(what, f"not a decimal: {text!r}") from None


def _order(o: _Order) -> VenueOrder:
    return VenueOrder(
        venue_order_id=o.orderId,
        client_order_id=o.clientOrderId,
        symbol=o.symbol,
        side=o.side,
        type=o.type,
        orig_type=o.origType or o.type,
        status=o.status,
        orig_qty=o.origQty,
        executed_qty=o.executedQty,
        avg_price=o.avgPrice,
        price=o.price,
        stop_price=_optional(o.stopPrice),
        time_in_force=o.timeInForce,
        reduce_only=o.reduceOnly,
        close_position=o.closePosition,
        working_type=o.workingType,
        price_protect=o.priceProtect,
        position_side=o.positionSide,
        update_time=o.updateTime or o.time,
        cum_quote=o.cumQuote,
    )


def _algo_order(a: _AlgoOrder) -> VenueOrder:
    actual = str(a.actualOrderId)
    return VenueOrder(
        venue_order_id=a.algoId,
        client_order_id=a.clientAlgoId,
        symbol=a.symbol,
        side=a.side,
        type=a.orderType,
        orig_type=a.orderType,
        status=a.algoStatus,
        orig_qty=a.quantity,
        executed_qty=a.executedQty,
        avg_price=_decimal_or_zero(a.avgPrice or a.actualPrice, "algoOrder"),
        price=a.price,
        stop_price=_optional(a.triggerPrice),
        time_in_force=a.timeInForce,
        reduce_only=a.reduceOnly,
        close_position=a.closePosition,
        working_type=a.workingType,
        price_protect=a.priceProtect,
        position_side=a.positionSide,
        update_time=a.updateTime or a.createTime,
        is_algo=True,
        actual_order_id=int(actual) if actual.isdigit() else None,
    )


def parse_order(raw: Raw) -> VenueOrder:
    """One order: new (ACK or RESULT), query, cancel (``/fapi/v*/order``)."""
    return _order(_decode(_dec_order, raw, "order"))


def parse_orders(raw: Raw) -> list[VenueOrder]:
    """A list of orders (``openOrders``, ``allOrders``)."""
    return [_order(o) for o in _decode(_dec_orders, raw, "orders")]


def parse_algo_order(raw: Raw) -> VenueOrder:
    """One Binance algo order (``POST`` / ``GET /fapi/v1/algoOrder``)."""
    return _algo_order(_decode(_dec_algo, raw, "algoOrder"))


def parse_algo_orders(raw: Raw) -> list[VenueOrder]:
    """Binance ``openAlgoOrders`` (a list; a ``{"orders": [...]}`` wrapper is accepted too)."""
    decoded = _decode(_dec_algos, raw, "openAlgoOrders")
    if isinstance(decoded, dict):
        decoded = msgspec.convert(decoded.get("orders", []), list[_AlgoOrder])
    return [_algo_order(a) for a in decoded]


def parse_algo_cancel(raw: Raw) -> AlgoCancelAck:
    return _decode(_dec_algo_cancel, raw, "algoOrder cancel")


def _margin_type(text: str | None) -> Any:
    if not text:
        return None
    lowered = text.lower()
    return "cross" if lowered in ("cross", "crossed") else "isolated" if lowered == "isolated" else None


def _position(p: _Position) -> VenuePosition:
    leverage = int(p.leverage) if p.leverage not in (None, "") else None
    return VenuePosition(
        symbol=p.symbol,
        position_side=p.positionSide,
        quantity=p.positionAmt,
        entry_price=p.entryPrice,
        mark_price=p.markPrice,
        unrealized_pnl=p.unRealizedProfit,
        liquidation_price=p.liquidationPrice,
        isolated_margin=p.isolatedMargin,
        update_time=p.updateTime,
        break_even_price=p.breakEvenPrice,
        notional=p.notional,
        leverage=leverage,
        margin_type=_margin_type(p.marginType),
    )


def parse_positions(raw: Raw) -> list[VenuePosition]:
    """``positionRisk`` of either venue and version."""
    try:
        return [_position(p) for p in _decode(_dec_positions, raw, "positionRisk")]
    except ValueError as exc:
        if isinstance(exc, ParseError):
            raise
        raise ParseError("positionRisk", f"bad leverage: {exc}", raw) from None


def parse_balances(raw: Raw) -> list[VenueBalance]:
    """``balance`` (Aster v2/v3, Binance v2/v3 share the shape)."""
    return [
        VenueBalance(
            asset=b.asset,
            wallet_balance=b.balance,
            cross_wallet_balance=b.crossWalletBalance,
            cross_unrealized_pnl=b.crossUnPnl,
            available_balance=b.availableBalance,
            max_withdraw_amount=b.maxWithdrawAmount,
            update_time=b.updateTime,
        )
        for b in _decode(_dec_balances, raw, "balance")
    ]


def parse_trades(raw: Raw) -> list[VenueTrade]:
    """``userTrades``."""
    return [
        VenueTrade(
            id=t.id,
            order_id=t.orderId,
            symbol=t.symbol,
            side=t.side,
            position_side=t.positionSide,
            price=t.price,
            qty=t.qty,
            quote_qty=t.quoteQty,
            commission=t.commission,
            commission_asset=t.commissionAsset,
            realized_pnl=t.realizedPnl,
            maker=t.maker,
            buyer=t.buyer,
            time=t.time,
        )
        for t in _decode(_dec_trades, raw, "userTrades")
    ]


def parse_income(raw: Raw) -> list[VenueIncome]:
    """``income`` (ids normalised to strings: Aster sends ``"tranId": "968..."``, Binance a number)."""
    return [
        VenueIncome(
            symbol=i.symbol,
            income_type=i.incomeType,
            income=i.income,
            asset=i.asset,
            info=i.info,
            time=i.time,
            tran_id=str(i.tranId),
            trade_id=str(i.tradeId),
        )
        for i in _decode(_dec_income, raw, "income")
    ]


def parse_leverage_change(raw: Raw) -> LeverageChange:
    """``POST /fapi/v*/leverage``."""
    change: _LeverageChange = _decode(_dec_leverage, raw, "leverage")
    cap = None if change.maxNotionalValue is None else str(change.maxNotionalValue)
    try:
        max_notional = Decimal(cap) if cap else None
    except ArithmeticError:
        raise ParseError("leverage", f"maxNotionalValue is not a decimal: {cap!r}", raw) from None
    if max_notional is not None and not max_notional.is_finite():
        max_notional = None  # "INF": no cap
    return LeverageChange(symbol=change.symbol, leverage=change.leverage, max_notional=max_notional)


def parse_listen_key(raw: Raw) -> str:
    """``POST /fapi/v*/listenKey`` → the key."""
    return _decode(_dec_listen_key, raw, "listenKey").listenKey


def parse_ack(raw: Raw) -> tuple[int, str]:
    """``{"code": 200, "msg": "success"}`` (code as a number or a string) → ``(code, msg)``."""
    ack: _Ack = _decode(_dec_ack, raw, "acknowledgement")
    try:
        return int(ack.code), ack.msg
    except ValueError:
        raise ParseError("acknowledgement", f"code is not a number: {ack.code!r}", raw) from None
