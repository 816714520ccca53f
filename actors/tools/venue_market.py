"""A fake venue's market: symbols, scripted books and marks, and their wire payloads (used by the
feed benchmark's firehose venue and the test suite's fake exchange).

Payload shapes follow the official examples (``reference/payloads``): Aster and Binance share
them, with the small differences of each flavour (Aster lists ``MAX_NUM_ALGO_ORDERS`` and the
``HIDDEN`` time in force and writes ``multiplierDecimal`` as a number; Binance answers
``leverageBracket?symbol=`` with a list and adds ``notionalCoef``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

Flavour = Literal["aster", "binance"]
Level = tuple[str, str]



def wire(value: Decimal | str | int | float) -> str:
    """A decimal as the venues print it: plain notation, never an exponent."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    text = format(d, "f")
    return text


@dataclass(frozen=True)
class SymbolSpec:
    """Static rules of one symbol, rendered into exchangeInfo."""

    symbol: str
    base_asset: str
    quote_asset: str = "USDT"
    tick_size: str = "0.01"
    min_price: str = "0.01"
    max_price: str = "1000000"
    step_size: str = "0.001"
    min_qty: str = "0.001"
    max_qty: str = "1000"
    market_max_qty: str = "120"
    min_notional: str = "5"
    multiplier_up: str = "1.0500"
    multiplier_down: str = "0.9500"
    liquidation_fee: str = "0.012500"
    status: str = "TRADING"
    #: ``pricePrecision`` / ``quantityPrecision`` in exchangeInfo: more decimals than this in an
    #: order's price / quantity is -1111 (precision); fewer but off the tick / step is -4014 / -4023
    price_precision: int = 2
    quantity_precision: int = 3
    #: (notional cap, initial leverage, maintenance margin ratio, cum) per bracket
    brackets: tuple[tuple[int, int, str, str], ...] = (
        (50_000, 125, "0.004", "0"),
        (250_000, 100, "0.005", "50"),
        (3_000_000, 50, "0.01", "1300"),
        (15_000_000, 20, "0.025", "46300"),
    )


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    SymbolSpec("BTCUSDT", "BTC", tick_size="0.10", min_price="261.10", step_size="0.001", min_qty="0.001"),
    SymbolSpec("ETHUSDT", "ETH", tick_size="0.01", min_price="39.86", step_size="0.001", min_qty="0.001"),
    SymbolSpec("SOLUSDT", "SOL", tick_size="0.010", min_price="0.420", step_size="1", min_qty="1", max_qty="1000000"),
)

DEFAULT_PRICES: dict[str, str] = {"BTCUSDT": "60000.0", "ETHUSDT": "3000.00", "SOLUSDT": "150.000"}


@dataclass
class SymbolMarket:
    """Mutable market of one symbol: its book (strings, as on the wire) and its mark."""

    bids: list[Level]
    asks: list[Level]
    mark: str
    index: str
    funding_rate: str = "0.00010000"
    next_funding_ms: int = 0
    update_id: int = 1


def ladder(mid: Decimal, tick: Decimal, levels: int = 20, qty: str = "1.000") -> tuple[list[Level], list[Level]]:
    """A symmetric book of ``levels`` levels around ``mid``, one tick apart."""
    bids = [(wire(mid - tick * (i + 1)), qty) for i in range(levels)]
    asks = [(wire(mid + tick * (i + 1)), qty) for i in range(levels)]
    return bids, asks


def initial_market(spec: SymbolSpec) -> SymbolMarket:
    mid = Decimal(DEFAULT_PRICES.get(spec.symbol, "100"))
    bids, asks = ladder(mid, Decimal(spec.tick_size))
    return SymbolMarket(bids=bids, asks=asks, mark=wire(mid), index=wire(mid))


def to_levels(levels: Iterable[Sequence[Any]]) -> list[Level]:
    return [(wire(price), wire(qty)) for price, qty in levels]


# -- REST payloads ------------------------------------------------------------------------------


def exchange_info(flavour: Flavour, specs: Iterable[SymbolSpec], server_time_ms: int, *,
                  weight_limit: int = 2400) -> dict[str, Any]:
    return {
        "exchangeFilters": [],
        "rateLimits": [
            {"interval": "MINUTE", "intervalNum": 1, "limit": weight_limit, "rateLimitType": "REQUEST_WEIGHT"},
            {"interval": "MINUTE", "intervalNum": 1, "limit": 1200, "rateLimitType": "ORDERS"},
        ],
        "serverTime": server_time_ms,
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": 0 if flavour == "aster" else "0"}],
        "symbols": [_symbol_info(flavour, spec) for spec in specs],
        "timezone": "UTC",
    }


def _symbol_info(flavour: Flavour, s: SymbolSpec) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [
        {"filterType": "PRICE_FILTER", "maxPrice": s.max_price, "minPrice": s.min_price, "tickSize": s.tick_size},
        {"filterType": "LOT_SIZE", "maxQty": s.max_qty, "minQty": s.min_qty, "stepSize": s.step_size},
        {"filterType": "MARKET_LOT_SIZE", "maxQty": s.market_max_qty, "minQty": s.min_qty, "stepSize": s.step_size},
        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
    ]
    if flavour == "aster":
        filters.append({"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 100})
    filters += [
        {"filterType": "MIN_NOTIONAL", "notional": s.min_notional},
        {
            "filterType": "PERCENT_PRICE",
            "multiplierUp": s.multiplier_up,
            "multiplierDown": s.multiplier_down,
            "multiplierDecimal": 4 if flavour == "aster" else "4",
        },
    ]
    tifs = ["GTC", "IOC", "FOK", "GTX"] + (["HIDDEN"] if flavour == "aster" else [])
    return {
        "symbol": s.symbol,
        "pair": s.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": 1598252400000,
        "status": s.status,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": s.base_asset,
        "quoteAsset": s.quote_asset,
        "marginAsset": s.quote_asset,
        "pricePrecision": s.price_precision,
        "quantityPrecision": s.quantity_precision,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "settlePlan": 0,
        "triggerProtect": "0.0500",
        "filters": filters,
        "OrderType": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
        "timeInForce": tifs,
        "liquidationFee": s.liquidation_fee,
        "marketTakeBound": "0.05",
    }


def depth(m: SymbolMarket, limit: int, now_ms: int) -> dict[str, Any]:
    return {
        "lastUpdateId": m.update_id,
        "E": now_ms,
        "T": now_ms - 1,
        "bids": [list(level) for level in m.bids[:limit]],
        "asks": [list(level) for level in m.asks[:limit]],
    }


def book_ticker(symbol: str, m: SymbolMarket, now_ms: int) -> dict[str, Any]:
    bid = m.bids[0] if m.bids else ("0", "0")
    ask = m.asks[0] if m.asks else ("0", "0")
    return {
        "symbol": symbol,
        "bidPrice": bid[0],
        "bidQty": bid[1],
        "askPrice": ask[0],
        "askQty": ask[1],
        "time": now_ms,
    }


def premium_index(symbol: str, m: SymbolMarket, now_ms: int) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "markPrice": m.mark,
        "indexPrice": m.index,
        "estimatedSettlePrice": m.index,
        "lastFundingRate": m.funding_rate,
        "nextFundingTime": m.next_funding_ms,
        "interestRate": "0.00010000",
        "time": now_ms,
    }


def leverage_brackets(flavour: Flavour, specs: Iterable[SymbolSpec], *, single: bool) -> Any:
    items = []
    for spec in specs:
        brackets = []
        floor = 0
        for number, (cap, leverage, mmr, cum) in enumerate(spec.brackets, start=1):
            brackets.append(
                {
                    "bracket": number,
                    "initialLeverage": leverage,
                    "notionalCap": cap,
                    "notionalFloor": floor,
                    "maintMarginRatio": float(mmr),
                    "cum": float(cum),
                }
            )
            floor = cap
        item: dict[str, Any] = {"symbol": spec.symbol, "brackets": brackets}
        if flavour == "binance":
            item["notionalCoef"] = 1.0
        items.append(item)
    # Aster answers ?symbol= with one object, Binance with a list of one
    return items[0] if single and flavour == "aster" else items


# -- websocket events ---------------------------------------------------------------------------


def ws_book_ticker(symbol: str, m: SymbolMarket, event_ms: int) -> dict[str, Any]:
    bid = m.bids[0] if m.bids else ("0", "0")
    ask = m.asks[0] if m.asks else ("0", "0")
    return {
        "e": "bookTicker",
        "u": m.update_id,
        "E": event_ms,
        "T": event_ms - 1,
        "s": symbol,
        "b": bid[0],
        "B": bid[1],
        "a": ask[0],
        "A": ask[1],
    }


def ws_mark_price(symbol: str, m: SymbolMarket, event_ms: int) -> dict[str, Any]:
    return {
        "e": "markPriceUpdate",
        "E": event_ms,
        "s": symbol,
        "p": m.mark,
        "i": m.index,
        "P": m.index,
        "r": m.funding_rate,
        "T": m.next_funding_ms,
    }


def ws_partial_depth(symbol: str, m: SymbolMarket, levels: int, event_ms: int) -> dict[str, Any]:
    return {
        "e": "depthUpdate",
        "E": event_ms,
        "T": event_ms - 1,
        "s": symbol,
        "U": m.update_id,
        "u": m.update_id,
        "pu": m.update_id - 1,
        "b": [list(level) for level in m.bids[:levels]],
        "a": [list(level) for level in m.asks[:levels]],
    }


def event_for_stream(stream: str, symbols: dict[str, SymbolMarket], event_ms: int) -> dict[str, Any] | None:
    """The event a market stream carries now, or None if it is not a stream the fake serves."""
    name, _, kind = stream.partition("@")
    symbol = name.upper()
    market = symbols.get(symbol)
    if market is None:
        return None
    if kind == "bookTicker":
        return ws_book_ticker(symbol, market, event_ms)
    if kind.startswith("markPrice"):
        return ws_mark_price(symbol, market, event_ms)
    if kind.startswith("depth"):
        digits = kind[5:].partition("@")[0]
        if digits.isdigit():
            return ws_partial_depth(symbol, market, int(digits), event_ms)
    return None


@dataclass
class MarketState:
    """Every symbol's spec and market."""

    specs: dict[str, SymbolSpec] = field(default_factory=dict)
    markets: dict[str, SymbolMarket] = field(default_factory=dict)

    @classmethod
    def from_specs(cls, specs: Iterable[SymbolSpec]) -> MarketState:
        state = cls()
        for spec in specs:
            state.specs[spec.symbol] = spec
            state.markets[spec.symbol] = initial_market(spec)
        return state
