"""Typed events of a venue's user-data stream, and their pure parser.

Shapes are those of the official examples (``reference/payloads``, Binance and Aster share
them; Binance adds fields such as ``bep``, ``er``, ``V``). Events delivered:

* :class:`OrderTradeUpdate` (``ORDER_TRADE_UPDATE``): an order changed or filled;
* :class:`AccountUpdate` (``ACCOUNT_UPDATE``): balances and positions changed, with the reason;
* :class:`AlgoUpdate` (``ALGO_UPDATE``, Binance): a conditional order of the Algo Service changed;
* :class:`ConditionalOrderTriggerReject` (Binance): a triggered conditional order was refused;
* :class:`ListenKeyExpired`: the stream's key expired; no more events until a new key is used;
* :class:`MarginCall`.

Other events (``TRADE_LITE``, ``ACCOUNT_CONFIG_UPDATE``, anything new) parse to ``None``. A
combined-stream wrapper ``{"stream": ..., "data": {...}}`` is unwrapped. The stream task adds the
connection notices :class:`StreamConnected` and :class:`StreamDisconnected`.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

import msgspec

from actors.venues.parsing import ParseError

__all__ = [
    "AccountUpdate",
    "AlgoUpdate",
    "BalanceChange",
    "ConditionalOrderTriggerReject",
    "ListenKeyExpired",
    "MarginCall",
    "MarginCallPosition",
    "OrderTradeUpdate",
    "PositionChange",
    "StreamConnected",
    "StreamDisconnected",
    "UserEvent",
    "UserStreamMessage",
    "parse_user_event",
]

Raw = bytes | str
_ZERO: Final = Decimal(0)


class OrderTradeUpdate(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """An order changed (``execution_type`` NEW / CANCELED / CALCULATED / EXPIRED / TRADE /
    AMENDMENT); on TRADE, ``last_filled_*``, ``commission`` and ``trade_id`` describe the fill."""

    event_time: int
    transaction_time: int
    symbol: str
    client_order_id: str
    order_id: int
    side: str
    order_type: str
    orig_type: str
    time_in_force: str
    orig_qty: Decimal
    price: Decimal
    avg_price: Decimal
    stop_price: Decimal | None
    execution_type: str
    status: str
    last_filled_qty: Decimal
    cum_filled_qty: Decimal
    last_filled_price: Decimal
    commission: Decimal
    commission_asset: str | None
    trade_time: int
    trade_id: int
    maker: bool
    reduce_only: bool
    close_position: bool
    working_type: str
    position_side: str
    realized_pnl: Decimal
    expiry_reason: str | None = None


class BalanceChange(msgspec.Struct, frozen=True, kw_only=True):
    asset: str
    wallet_balance: Decimal
    cross_wallet_balance: Decimal
    balance_change: Decimal


class PositionChange(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    position_side: str
    quantity: Decimal
    entry_price: Decimal
    accumulated_realized: Decimal
    unrealized_pnl: Decimal
    margin_type: str
    isolated_wallet: Decimal
    break_even_price: Decimal | None = None


class AccountUpdate(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Balances and positions after a change; ``reason`` is ORDER, FUNDING_FEE, DEPOSIT, ..."""

    event_time: int
    transaction_time: int
    reason: str
    balances: tuple[BalanceChange, ...]
    positions: tuple[PositionChange, ...]


class AlgoUpdate(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A Binance Algo Service order changed: NEW, TRIGGERING, TRIGGERED (``actual_order_id`` is
    the order it placed), FINISHED, CANCELED, REJECTED (``reject_reason``), EXPIRED."""

    event_time: int
    transaction_time: int
    symbol: str
    client_algo_id: str
    algo_id: int
    algo_type: str
    order_type: str
    side: str
    position_side: str
    time_in_force: str
    quantity: Decimal
    status: str
    trigger_price: Decimal | None
    price: Decimal
    working_type: str
    close_position: bool
    price_protect: bool
    reduce_only: bool
    actual_order_id: int | None
    avg_price: Decimal
    executed_qty: Decimal
    trigger_time: int
    reject_reason: str = ""


class ConditionalOrderTriggerReject(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A triggered conditional order was rejected (Binance)."""

    event_time: int
    transaction_time: int
    symbol: str
    order_id: int
    reason: str


class ListenKeyExpired(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """The stream's listen key expired: nothing more arrives until a new key is connected."""

    event_time: int


class MarginCallPosition(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    position_side: str
    quantity: Decimal
    margin_type: str
    isolated_wallet: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    maintenance_margin: Decimal


class MarginCall(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    event_time: int
    cross_wallet_balance: Decimal | None
    positions: tuple[MarginCallPosition, ...]


class StreamConnected(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """The stream is (again) connected. After a ``reconnect``, events may have been missed:
    reconcile orders and positions over REST."""

    reconnect: bool


class StreamDisconnected(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """The stream connection was lost (it is being re-established)."""

    reason: str


UserEvent = OrderTradeUpdate | AccountUpdate | AlgoUpdate | ConditionalOrderTriggerReject | ListenKeyExpired | MarginCall
UserStreamMessage = UserEvent | StreamConnected | StreamDisconnected


# ------------------------------------------------------------------------------ wire shapes


class _WsOrder(msgspec.Struct, frozen=True):
    s: str
    c: str
    S: str
    o: str
    X: str
    x: str
    i: int
    q: Decimal = _ZERO
    p: Decimal = _ZERO
    ap: Decimal = _ZERO
    sp: Decimal = _ZERO
    f: str = ""
    l: Decimal = _ZERO  # noqa: E741 (the venue's name)
    z: Decimal = _ZERO
    L: Decimal = _ZERO
    N: str | None = None
    n: Decimal = _ZERO
    T: int = 0
    t: int = 0
    m: bool = False
    R: bool = False
    wt: str = ""
    ot: str = ""
    ps: str = "BOTH"
    cp: bool = False
    rp: Decimal = _ZERO
    er: str | int | None = None


class _WsOrderTradeUpdate(msgspec.Struct, frozen=True):
    E: int
    o: _WsOrder
    T: int = 0


class _WsBalance(msgspec.Struct, frozen=True):
    a: str
    wb: Decimal
    cw: Decimal = _ZERO
    bc: Decimal = _ZERO


class _WsPosition(msgspec.Struct, frozen=True):
    s: str
    pa: Decimal
    ep: Decimal = _ZERO
    cr: Decimal = _ZERO
    up: Decimal = _ZERO
    mt: str = ""
    iw: Decimal = _ZERO
    ps: str = "BOTH"
    bep: Decimal | None = None


class _WsAccount(msgspec.Struct, frozen=True):
    m: str = ""
    B: tuple[_WsBalance, ...] = ()
    P: tuple[_WsPosition, ...] = ()


class _WsAccountUpdate(msgspec.Struct, frozen=True):
    E: int
    a: _WsAccount
    T: int = 0


class _WsAlgo(msgspec.Struct, frozen=True):
    caid: str
    aid: int
    o: str
    s: str
    S: str
    X: str
    at: str = "CONDITIONAL"
    ps: str = "BOTH"
    f: str = ""
    q: Decimal = _ZERO
    ai: str | int = ""
    ap: Decimal = _ZERO
    aq: Decimal = _ZERO
    tp: Decimal = _ZERO
    p: Decimal = _ZERO
    wt: str = ""
    cp: bool = False
    pP: bool = False
    R: bool = False
    tt: int = 0
    rm: str = ""


class _WsAlgoUpdate(msgspec.Struct, frozen=True):
    E: int
    o: _WsAlgo
    T: int = 0


class _WsReject(msgspec.Struct, frozen=True):
    s: str
    i: int
    r: str = ""


class _WsTriggerReject(msgspec.Struct, frozen=True):
    E: int
    or_: _WsReject = msgspec.field(name="or")
    T: int = 0


class _WsListenKeyExpired(msgspec.Struct, frozen=True):
    E: int | str


class _WsMarginPosition(msgspec.Struct, frozen=True):
    s: str
    pa: Decimal
    ps: str = "BOTH"
    mt: str = ""
    iw: Decimal = _ZERO
    mp: Decimal = _ZERO
    up: Decimal = _ZERO
    mm: Decimal = _ZERO


class _WsMarginCall(msgspec.Struct, frozen=True):
    E: int
    p: tuple[_WsMarginPosition, ...] = ()
    cw: Decimal | None = None


_NO_DATA: Final = msgspec.Raw()


class _Peek(msgspec.Struct, frozen=True):
    e: str | None = None
    data: msgspec.Raw = _NO_DATA


# ----------------------------------------------------------------------------- conversion


def _order_update(w: _WsOrderTradeUpdate) -> OrderTradeUpdate:
    o = w.o
    return OrderTradeUpdate(
        event_time=w.E,
        transaction_time=w.T or o.T,
        symbol=o.s,
        client_order_id=o.c,
        order_id=o.i,
        side=o.S,
        order_type=o.o,
        orig_type=o.ot or o.o,
        time_in_force=o.f,
        orig_qty=o.q,
        price=o.p,
        avg_price=o.ap,
        stop_price=o.sp or None,
        execution_type=o.x,
        status=o.X,
        last_filled_qty=o.l,
        cum_filled_qty=o.z,
        last_filled_price=o.L,
        commission=o.n,
        commission_asset=o.N or None,
        trade_time=o.T,
        trade_id=o.t,
        maker=o.m,
        reduce_only=o.R,
        close_position=o.cp,
        working_type=o.wt,
        position_side=o.ps,
        realized_pnl=o.rp,
        expiry_reason=None if o.er is None else str(o.er),
    )


def _account_update(w: _WsAccountUpdate) -> AccountUpdate:
    return AccountUpdate(
        event_time=w.E,
        transaction_time=w.T,
        reason=w.a.m,
        balances=tuple(
            BalanceChange(asset=b.a, wallet_balance=b.wb, cross_wallet_balance=b.cw, balance_change=b.bc) for b in w.a.B
        ),
        positions=tuple(
            PositionChange(
                symbol=p.s,
                position_side=p.ps,
                quantity=p.pa,
                entry_price=p.ep,
                accumulated_realized=p.cr,
                unrealized_pnl=p.up,
                margin_type=p.mt,
                isolated_wallet=p.iw,
                break_even_price=p.bep,
            )
            for p in w.a.P
        ),
    )


def _algo_update(w: _WsAlgoUpdate) -> AlgoUpdate:
    o = w.o
    actual = str(o.ai)
    return AlgoUpdate(
        event_time=w.E,
        transaction_time=w.T,
        symbol=o.s,
        client_algo_id=o.caid,
        algo_id=o.aid,
        algo_type=o.at,
        order_type=o.o,
        side=o.S,
        position_side=o.ps,
        time_in_force=o.f,
        quantity=o.q,
        status=o.X,
        trigger_price=o.tp or None,
        price=o.p,
        working_type=o.wt,
        close_position=o.cp,
        price_protect=o.pP,
        reduce_only=o.R,
        actual_order_id=int(actual) if actual.isdigit() else None,
        avg_price=o.ap,
        executed_qty=o.aq,
        trigger_time=o.tt,
        reject_reason=o.rm,
    )


def _trigger_reject(w: _WsTriggerReject) -> ConditionalOrderTriggerReject:
    return ConditionalOrderTriggerReject(
        event_time=w.E, transaction_time=w.T, symbol=w.or_.s, order_id=w.or_.i, reason=w.or_.r
    )


def _listen_key_expired(w: _WsListenKeyExpired) -> ListenKeyExpired:
    try:
        return ListenKeyExpired(event_time=int(w.E))
    except ValueError:
        raise ParseError("user event listenKeyExpired", f"E is not a number: {w.E!r}") from None


def _margin_call(w: _WsMarginCall) -> MarginCall:
    return MarginCall(
        event_time=w.E,
        cross_wallet_balance=w.cw,
        positions=tuple(
            MarginCallPosition(
                symbol=p.s,
                position_side=p.ps,
                quantity=p.pa,
                margin_type=p.mt,
                isolated_wallet=p.iw,
                mark_price=p.mp,
                unrealized_pnl=p.up,
                maintenance_margin=p.mm,
            )
            for p in w.p
        ),
    )


_PARSERS: Final[dict[str, tuple[msgspec.json.Decoder[Any], Callable[[Any], UserEvent]]]] = {
    "ORDER_TRADE_UPDATE": (msgspec.json.Decoder(_WsOrderTradeUpdate), _order_update),
    "ACCOUNT_UPDATE": (msgspec.json.Decoder(_WsAccountUpdate), _account_update),
    "ALGO_UPDATE": (msgspec.json.Decoder(_WsAlgoUpdate), _algo_update),
    "CONDITIONAL_ORDER_TRIGGER_REJECT": (msgspec.json.Decoder(_WsTriggerReject), _trigger_reject),
    "listenKeyExpired": (msgspec.json.Decoder(_WsListenKeyExpired), _listen_key_expired),
    "MARGIN_CALL": (msgspec.json.Decoder(_WsMarginCall), _margin_call),
}
_dec_peek: Final = msgspec.json.Decoder(_Peek)


def parse_user_event(raw: Raw | msgspec.Raw) -> UserEvent | None:
    """One user-stream message → its event, or None for an event type we do not use.

    Raises:
        ParseError: not JSON, or a known event with an unexpected shape.
    """
    try:
        peek = _dec_peek.decode(raw)
        if peek.e is None and peek.data:
            raw = peek.data
            peek = _dec_peek.decode(raw)
    except msgspec.DecodeError as exc:
        raise ParseError("user event", str(exc), raw) from None
    if peek.e is None:
        return None
    parser = _PARSERS.get(peek.e)
    if parser is None:
        return None
    decoder, convert = parser
    try:
        wire = decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise ParseError(f"user event {peek.e}", str(exc), raw) from None
    return convert(wire)
