"""Venue-neutral order requests and the typed results of the signed endpoints. Pure.

:class:`OrderRequest` is what the live adapter asks for; :func:`order_params` turns it into the
parameters of the endpoint that takes it on a venue: the order endpoint, or Binance's Algo Order
API for STOP_MARKET / TAKE_PROFIT_MARKET (``-4120 STOP_ORDER_SWITCH_ALGO`` since 2025-12-09).
The results (:class:`VenueOrder`, :class:`VenueTrade`, :class:`VenuePosition`,
:class:`VenueBalance`, :class:`VenueIncome`, :class:`LeverageChange`) are frozen Structs with
Decimal money, built by :mod:`actors.venues.trading_parsing` from the venues' real payloads.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final, Literal

import msgspec

__all__ = [
    "CONDITIONAL_TYPES",
    "FINAL_ALGO_STATUSES",
    "FINAL_ORDER_STATUSES",
    "LeverageChange",
    "OrderRequest",
    "OrderSide",
    "OrderType",
    "VenueBalance",
    "VenueIncome",
    "VenueOrder",
    "VenuePosition",
    "VenueTrade",
    "decimal_text",
    "order_params",
]

OrderSide = Literal["BUY", "SELL"]
OrderType = Literal["MARKET", "LIMIT", "STOP_MARKET", "TAKE_PROFIT_MARKET"]
TimeInForce = Literal["GTC", "IOC", "FOK", "GTX"]
WorkingType = Literal["MARK_PRICE", "CONTRACT_PRICE"]
PositionSide = Literal["BOTH", "LONG", "SHORT"]

#: order types that wait for a trigger (any venue's spelling; STOP/TAKE_PROFIT are limit variants)
CONDITIONAL_TYPES: Final = frozenset(
    {"STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT", "TRAILING_STOP_MARKET"}
)
#: statuses after which an order never changes again
FINAL_ORDER_STATUSES: Final = frozenset({"FILLED", "CANCELED", "EXPIRED", "REJECTED", "EXPIRED_IN_MATCH"})
#: Binance Algo Service statuses after which an algo order never changes again (TRIGGERED is not
#: final: the order it placed still works; FINISHED means that order is done)
FINAL_ALGO_STATUSES: Final = frozenset({"CANCELED", "FINISHED", "REJECTED", "EXPIRED"})

_CLIENT_ORDER_ID: Final = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}\Z")


def decimal_text(value: Decimal) -> str:
    """Plain decimal notation (never ``1E+1``), as the venues expect."""
    return format(value, "f")


class OrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One order, in the venues' shared vocabulary (validated on construction).

    ``client_order_id`` is mandatory: it is how an ambiguous outcome is resolved (query it).
    ``close_position`` (conditional types only) closes the whole position and excludes
    ``quantity`` and ``reduce_only``. ``position_side`` is for hedge mode only.
    """

    symbol: str
    side: OrderSide
    type: OrderType
    client_order_id: str
    quantity: Decimal | None = None
    price: Decimal | None = None
    time_in_force: TimeInForce | None = None
    reduce_only: bool = False
    close_position: bool = False
    stop_price: Decimal | None = None
    working_type: WorkingType | None = None
    price_protect: bool = False
    position_side: PositionSide | None = None

    def __post_init__(self) -> None:
        problems = _request_problems(self)
        if problems:
            raise ValueError(f"invalid order {self.client_order_id!r}: " + "; ".join(problems))

    @property
    def is_conditional(self) -> bool:
        return self.type in CONDITIONAL_TYPES

    @property
    def reduces(self) -> bool:
        """Whether the order can only reduce a position (a close, a protective stop)."""
        return self.reduce_only or self.close_position


def _request_problems(r: OrderRequest) -> list[str]:
    problems: list[str] = []
    if not r.symbol or not r.symbol.isalnum() or r.symbol.upper() != r.symbol:
        problems.append(f"symbol must be upper-case alphanumeric, got {r.symbol!r}")
    if not _CLIENT_ORDER_ID.match(r.client_order_id):
        problems.append("client_order_id must match ^[.A-Z:/a-z0-9_-]{1,36}$")
    for name in ("quantity", "price", "stop_price"):
        value: Decimal | None = getattr(r, name)
        if value is not None and not (value.is_finite() and value > 0):
            problems.append(f"{name} must be a positive finite number, got {value}")
    conditional = r.is_conditional
    if r.close_position:
        if not conditional:
            problems.append("close_position is for STOP_MARKET / TAKE_PROFIT_MARKET only")
        if r.quantity is not None or r.reduce_only:
            problems.append("close_position excludes quantity and reduce_only")
    elif r.quantity is None:
        problems.append(f"{r.type} needs a quantity")
    if r.type == "LIMIT":
        if r.price is None:
            problems.append("LIMIT needs a price")
    else:
        if r.price is not None:
            problems.append(f"{r.type} takes no price")
        if r.time_in_force is not None and not conditional:
            problems.append(f"{r.type} takes no time_in_force")
    if conditional and r.stop_price is None:
        problems.append(f"{r.type} needs a stop_price")
    if not conditional and (r.stop_price is not None or r.working_type is not None or r.price_protect):
        problems.append("stop_price, working_type and price_protect are for conditional orders only")
    return problems


def order_params(request: OrderRequest, *, algo: bool) -> list[tuple[str, str]]:
    """The request parameters of ``request``, in a stable order, without auth parameters.

    ``algo``: send a conditional order to Binance's Algo Order API (``algoType=CONDITIONAL``,
    ``triggerPrice``, ``clientAlgoId``) rather than to the order endpoint (``stopPrice``,
    ``newClientOrderId``). Entries (MARKET / LIMIT) ask for ``newOrderRespType=RESULT``, so a
    MARKET order answers with its fills.
    """
    r = request
    if algo and not r.is_conditional:
        raise ValueError(f"{r.type} is not a conditional order; it goes to the order endpoint")
    params: list[tuple[str, str]] = []
    if algo:
        params.append(("algoType", "CONDITIONAL"))
    params += [("symbol", r.symbol), ("side", r.side), ("type", r.type)]
    if r.position_side is not None:
        params.append(("positionSide", r.position_side))
    if r.type == "LIMIT":
        params.append(("timeInForce", r.time_in_force or "GTC"))
    elif r.time_in_force is not None:
        params.append(("timeInForce", r.time_in_force))
    if r.quantity is not None:
        params.append(("quantity", decimal_text(r.quantity)))
    if r.price is not None:
        params.append(("price", decimal_text(r.price)))
    if r.stop_price is not None:
        params.append(("triggerPrice" if algo else "stopPrice", decimal_text(r.stop_price)))
    if r.working_type is not None:
        params.append(("workingType", r.working_type))
    if r.price_protect:
        # the order endpoint documents "TRUE"/"FALSE", the Algo Order API "true"/"false"
        params.append(("priceProtect", "true" if algo else "TRUE"))
    if r.reduce_only:
        params.append(("reduceOnly", "true"))
    if r.close_position:
        params.append(("closePosition", "true"))
    params.append(("clientAlgoId" if algo else "newClientOrderId", r.client_order_id))
    if not r.is_conditional:
        params.append(("newOrderRespType", "RESULT"))
    return params


# ---------------------------------------------------------------------------------- results


class VenueOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An order as the venue reports it (order endpoint, or Binance's Algo Service).

    ``status`` is the venue's: NEW / PARTIALLY_FILLED / FILLED / CANCELED / EXPIRED /
    EXPIRED_IN_MATCH..., or for ``is_algo`` orders the Algo Service's NEW / TRIGGERING /
    TRIGGERED / FINISHED / CANCELED / REJECTED / EXPIRED. ``type`` is the current type (a
    triggered STOP_MARKET on the order endpoint may read MARKET), ``orig_type`` the one placed.
    ``stop_price`` is ``stopPrice`` or ``triggerPrice`` (None when the venue reports 0).
    ``actual_order_id`` is the order a triggered algo order placed.
    """

    venue_order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    orig_type: str
    status: str
    orig_qty: Decimal
    executed_qty: Decimal
    avg_price: Decimal
    price: Decimal
    stop_price: Decimal | None
    time_in_force: str
    reduce_only: bool
    close_position: bool
    working_type: str
    price_protect: bool
    position_side: str
    update_time: int
    cum_quote: Decimal | None = None
    is_algo: bool = False
    actual_order_id: int | None = None

    @property
    def is_conditional(self) -> bool:
        return self.is_algo or self.orig_type in CONDITIONAL_TYPES

    @property
    def is_final(self) -> bool:
        """Whether the order can no longer change (filled, cancelled, expired, finished...)."""
        return self.status in (FINAL_ALGO_STATUSES if self.is_algo else FINAL_ORDER_STATUSES)


class VenueTrade(msgspec.Struct, frozen=True, kw_only=True):
    """One fill of the account (``userTrades``). ``commission`` is what was paid, as reported."""

    id: int
    order_id: int
    symbol: str
    side: str
    position_side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    realized_pnl: Decimal
    maker: bool
    buyer: bool
    time: int


class VenuePosition(msgspec.Struct, frozen=True, kw_only=True):
    """One position (``positionRisk``). ``quantity`` is signed (negative: short).

    Binance's v3 drops ``leverage`` and ``margin_type`` (None there); Aster and v2 carry them.
    ``margin_type`` is normalised to ``isolated`` / ``cross``.
    """

    symbol: str
    position_side: str
    quantity: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    liquidation_price: Decimal
    isolated_margin: Decimal
    update_time: int
    break_even_price: Decimal | None = None
    notional: Decimal | None = None
    leverage: int | None = None
    margin_type: Literal["isolated", "cross"] | None = None


class VenueBalance(msgspec.Struct, frozen=True, kw_only=True):
    """One asset of the futures wallet (``balance``)."""

    asset: str
    wallet_balance: Decimal
    cross_wallet_balance: Decimal
    cross_unrealized_pnl: Decimal
    available_balance: Decimal
    max_withdraw_amount: Decimal
    update_time: int


class VenueIncome(msgspec.Struct, frozen=True, kw_only=True):
    """One income record (``income``): realized PnL, fees, funding, transfers..."""

    symbol: str
    income_type: str
    income: Decimal
    asset: str
    info: str
    time: int
    tran_id: str
    trade_id: str


class LeverageChange(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a leverage change."""

    symbol: str
    leverage: int
    max_notional: Decimal | None
