"""Parameter checks of a new order, in the order and with the codes the venues use.

:func:`parse_order` turns the parameters of ``POST /order`` (or Binance's ``POST /algoOrder``)
into an :class:`OrderRequest`, or raises :class:`VenueError`: unknown symbol -1121, bad side
-1117 / type -1116 / timeInForce -1115, a missing mandatory parameter -1102, hedge-mode
``positionSide`` -4061, ``newClientOrderId`` outside ``^[\\.A-Z\\:/a-z0-9_-]{1,36}$`` -4015,
quantity with closePosition -4137, reduceOnly with closePosition -1106, too many decimals -1111,
off-tick price -4014, off-step quantity -4023, quantity below min / above max -4004 / -4005,
price below min / above max -4013 / -4002. Checks that need the market or the account (PERCENT_PRICE,
MIN_NOTIONAL, margin, reduce-only direction, immediate trigger, duplicate client id) are the
engine's (``_engine.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final, Literal

from ._accounts import ZERO, Side
from ._errors import VenueError, invalid, missing, not_required
from actors.tools.venue_market import Flavour, SymbolSpec

Endpoint = Literal["order", "algo"]

_CLIENT_ID: Final = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
ORDER_TYPES: Final = (
    "LIMIT",
    "MARKET",
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
)
_LIMIT_LIKE: Final = frozenset({"LIMIT", "STOP", "TAKE_PROFIT"})
_WITH_STOP: Final = frozenset({"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"})


@dataclass(frozen=True)
class OrderRequest:
    """A new order whose parameters passed the static checks."""

    symbol: str
    side: Side
    type: str
    time_in_force: str
    quantity: Decimal
    price: Decimal
    stop_price: Decimal
    reduce_only: bool
    close_position: bool
    working_type: str
    price_protect: bool
    client_id: str | None
    response_type: str = "ACK"


def valid_client_id(text: str) -> bool:
    return bool(_CLIENT_ID.match(text))


def parse_flag(params: dict[str, str], name: str) -> bool:
    """``"true"`` / ``"false"`` (any case), as the venues accept them."""
    text = params.get(name, "false").lower()
    if text not in ("true", "false"):
        raise invalid(name)
    return text == "true"


def parse_decimal(params: dict[str, str], name: str) -> Decimal | None:
    text = params.get(name)
    if text is None or text == "":
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise missing(name) from None
    if not value.is_finite():
        raise missing(name)
    return value


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def check_price(price: Decimal, spec: SymbolSpec) -> None:
    """PRICE_FILTER: precision, tick, bounds."""
    if price <= 0:
        raise VenueError(-4013, "Price less than min price.")
    if _decimals(price) > spec.price_precision:
        raise VenueError(-1111)
    if price % Decimal(spec.tick_size):
        raise VenueError(-4014)
    if price < Decimal(spec.min_price):
        raise VenueError(-4013)
    if price > Decimal(spec.max_price):
        raise VenueError(-4002)


def check_quantity(quantity: Decimal, spec: SymbolSpec, *, market: bool) -> None:
    """LOT_SIZE (MARKET_LOT_SIZE for market orders): sign, precision, step, bounds."""
    if quantity <= 0:
        raise VenueError(-4003)
    if _decimals(quantity) > spec.quantity_precision:
        raise VenueError(-1111)
    if quantity % Decimal(spec.step_size):
        raise VenueError(-4023)
    if quantity < Decimal(spec.min_qty):
        raise VenueError(-4004)
    if quantity > Decimal(spec.market_max_qty if market else spec.max_qty):
        raise VenueError(-4005)


def _identity(
    params: dict[str, str], specs: dict[str, SymbolSpec], flavour: Flavour, endpoint: Endpoint
) -> tuple[SymbolSpec, str, str]:
    """Symbol, side and type, and whether this endpoint takes that type: (spec, side, type)."""
    symbol = params.get("symbol", "")
    if not symbol:
        raise missing("symbol")
    spec = specs.get(symbol)
    if spec is None:
        raise VenueError(-1121)
    side = params.get("side", "")
    if not side:
        raise missing("side")
    if side not in ("BUY", "SELL"):
        raise VenueError(-1117)
    order_type = params.get("type", "")
    if not order_type:
        raise missing("type")
    if order_type not in ORDER_TYPES:
        raise VenueError(-1116)
    if endpoint == "algo":
        if params.get("algoType", "") != "CONDITIONAL":
            raise invalid("algoType") if params.get("algoType") else missing("algoType")
        if order_type not in _WITH_STOP:
            raise VenueError(-1116)  # the fake does not model trailing stops
    elif flavour == "binance" and (order_type in _WITH_STOP or order_type == "TRAILING_STOP_MARKET"):
        raise VenueError(-4120)  # Binance moved conditional types to the Algo Order API on 2025-12-09
    elif order_type == "TRAILING_STOP_MARKET":
        raise VenueError(-1116)  # the fake does not model trailing stops
    if params.get("positionSide", "BOTH") != "BOTH":
        raise VenueError(-4061)
    return spec, side, order_type


def _mandatory(params: dict[str, str], order_type: str, stop_name: str, flavour: Flavour) -> None:
    """Parameters each type requires or refuses (closePosition, quantity, price, stop, timeInForce)."""
    close_position = parse_flag(params, "closePosition")
    if close_position:
        if order_type not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            raise invalid("closePosition")
        if parse_decimal(params, "quantity") is not None:
            raise VenueError(-4137)
        if parse_flag(params, "reduceOnly"):
            raise not_required("reduceOnly")
    elif parse_decimal(params, "quantity") is None:
        raise missing("quantity")
    if order_type in _LIMIT_LIKE:
        if parse_decimal(params, "price") is None:
            raise missing("price")
        if order_type == "LIMIT" and "timeInForce" not in params:
            raise missing("timeInForce")
    if order_type in _WITH_STOP and parse_decimal(params, stop_name) is None:
        raise missing(stop_name)
    allowed = ("GTC", "IOC", "FOK", "GTX") + (("HIDDEN",) if flavour == "aster" else ())
    if params.get("timeInForce", "GTC") not in allowed:
        raise VenueError(-1115)


def _options(params: dict[str, str], endpoint: Endpoint) -> tuple[str | None, str, str]:
    """Client id (pattern -4015), working type (-4031), response type (-1136)."""
    client_id = params.get("clientAlgoId" if endpoint == "algo" else "newClientOrderId")
    if client_id is not None and not valid_client_id(client_id):
        raise VenueError(-4015)
    working_type = params.get("workingType", "CONTRACT_PRICE")
    if working_type not in ("MARK_PRICE", "CONTRACT_PRICE"):
        raise VenueError(-4031, f"Invalid parameter working type: {working_type}")
    response_type = params.get("newOrderRespType", "ACK")
    if response_type not in ("ACK", "RESULT"):
        raise VenueError(-1136)
    return client_id, working_type, response_type


def parse_order(
    params: dict[str, str], specs: dict[str, SymbolSpec], flavour: Flavour, endpoint: Endpoint
) -> OrderRequest:
    """Static checks of a new (or new algo) order; raises :class:`VenueError` on the first failure."""
    spec, side, order_type = _identity(params, specs, flavour, endpoint)
    stop_name = "triggerPrice" if endpoint == "algo" else "stopPrice"
    _mandatory(params, order_type, stop_name, flavour)
    client_id, working_type, response_type = _options(params, endpoint)
    quantity = parse_decimal(params, "quantity")
    price = parse_decimal(params, "price") if order_type in _LIMIT_LIKE else None
    stop_price = parse_decimal(params, stop_name) if order_type in _WITH_STOP else None
    if quantity is not None:
        check_quantity(quantity, spec, market=order_type.endswith("MARKET"))
    if price is not None:
        check_price(price, spec)
    if stop_price is not None:
        if stop_price <= 0:
            raise VenueError(-4006, "Stop price less than zero.")
        if endpoint == "order":
            check_price(stop_price, spec)  # Binance's algo service does not hold triggerPrice to the tick
    close_position = parse_flag(params, "closePosition")
    time_in_force = params.get("timeInForce", "" if order_type == "MARKET" else "GTC") or "GTC"
    return OrderRequest(
        symbol=spec.symbol,
        side=side,  # type: ignore[arg-type]
        type=order_type,
        # closePosition orders are "good till the position exists": Binance shows GTE_GTC
        time_in_force="GTE_GTC" if close_position and flavour == "binance" else time_in_force,
        quantity=quantity or ZERO,
        price=price or ZERO,
        stop_price=stop_price or ZERO,
        reduce_only=parse_flag(params, "reduceOnly"),
        close_position=close_position,
        working_type=working_type,
        price_protect=parse_flag(params, "priceProtect"),
        client_id=client_id,
        response_type=response_type,
    )
