"""Pure parsers from AsterDEX / Binance USDⓈ-M payloads to the domain's market types.

No I/O and no clock: the caller passes ``received_at`` (epoch seconds from the service clock).
Every payload is decoded by a cached :class:`msgspec.json.Decoder` into a typed Struct, so that
validation and ``Decimal`` conversion happen in C; nothing here goes through ``json.loads``.

Shapes are those of the official examples (``reference/payloads``); both venues share them.
A payload that cannot be decoded raises :class:`ParseError`; a well-formed websocket message that
is not market data we use (``aggTrade``, a diff-depth update...) parses to ``None``.

Websocket market streams are parsed in :mod:`actors.venues.market_frames`, and what both share
(:class:`ParseError`, the decoding helper, the finiteness checks) lives in
:mod:`actors.venues.parse_common`; this module re-exports their public names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Final

import msgspec

from actors.domain.market import (
    FeeRates,
    Instrument,
    LeverageBracket,
    MarkPrice,
    OrderBook,
    SymbolFilters,
)

from actors.domain.margin import default_brackets as margin_brackets

from .market_frames import ControlReply, StreamFrame, parse_frame, parse_stream_message
from .parse_common import ParseError, Raw, _decode, _finite_book, _finite_mark, _Levels, _optional_decimal

if TYPE_CHECKING:
    from actors.venues.profiles import VenueProfile

__all__ = [
    "ControlReply",
    "ExchangeInfo",
    "InstrumentSpec",
    "ParseError",
    "StreamFrame",
    "VenueErrorBody",
    "build_instruments",
    "default_brackets",
    "parse_book_ticker",
    "parse_book_tickers",
    "parse_commission_rate",
    "parse_depth",
    "parse_error_body",
    "parse_exchange_info",
    "parse_frame",
    "parse_leverage_brackets",
    "parse_premium_index",
    "parse_premium_indexes",
    "parse_server_time",
    "parse_stream_message",
]


# ---------------------------------------------------------------------------------------------
# Wire shapes (only the fields we use; unknown fields are ignored by msgspec)
# ---------------------------------------------------------------------------------------------


class _Filter(msgspec.Struct, frozen=True):
    """Any exchangeInfo filter: one permissive shape, so an unknown ``filterType`` never fails."""

    filterType: str
    minPrice: Decimal | None = None
    maxPrice: Decimal | None = None
    tickSize: Decimal | None = None
    minQty: Decimal | None = None
    maxQty: Decimal | None = None
    stepSize: Decimal | None = None
    notional: Decimal | None = None
    minNotional: Decimal | None = None  # spot spelling, accepted for robustness
    multiplierUp: Decimal | None = None
    multiplierDown: Decimal | None = None


class _Symbol(msgspec.Struct, frozen=True):
    symbol: str
    baseAsset: str
    quoteAsset: str
    filters: tuple[_Filter, ...] = ()
    status: str = "TRADING"
    contractType: str = ""
    marginAsset: str = ""
    liquidationFee: Decimal | None = None


class _RateLimit(msgspec.Struct, frozen=True):
    rateLimitType: str
    interval: str
    intervalNum: int
    limit: int


class _ExchangeInfo(msgspec.Struct, frozen=True):
    symbols: tuple[_Symbol, ...]
    rateLimits: tuple[_RateLimit, ...] = ()
    serverTime: int = 0


class _Depth(msgspec.Struct, frozen=True):
    bids: _Levels
    asks: _Levels
    lastUpdateId: int = 0
    E: int = 0
    T: int = 0


class _BookTicker(msgspec.Struct, frozen=True):
    symbol: str
    bidPrice: Decimal
    bidQty: Decimal
    askPrice: Decimal
    askQty: Decimal
    time: int = 0
    lastUpdateId: int = 0


class _PremiumIndex(msgspec.Struct, frozen=True):
    symbol: str
    markPrice: Decimal
    indexPrice: str = ""
    lastFundingRate: str = ""
    nextFundingTime: int = 0
    time: int = 0


class _Bracket(msgspec.Struct, frozen=True):
    bracket: int
    initialLeverage: int
    notionalCap: Decimal
    notionalFloor: Decimal
    maintMarginRatio: Decimal
    cum: Decimal


class _SymbolBrackets(msgspec.Struct, frozen=True):
    symbol: str
    brackets: tuple[_Bracket, ...]


class _CommissionRate(msgspec.Struct, frozen=True):
    makerCommissionRate: Decimal
    takerCommissionRate: Decimal
    symbol: str = ""


class _ServerTime(msgspec.Struct, frozen=True):
    serverTime: int


class VenueErrorBody(msgspec.Struct, frozen=True):
    """The venue's error body ``{"code": -1121, "msg": "Invalid symbol."}``."""

    code: int | str
    msg: str = ""


_dec_exchange_info: Final = msgspec.json.Decoder(_ExchangeInfo)
_dec_depth: Final = msgspec.json.Decoder(_Depth)
_dec_book_ticker: Final = msgspec.json.Decoder(_BookTicker)
_dec_book_tickers: Final = msgspec.json.Decoder(tuple[_BookTicker, ...])
_dec_premium: Final = msgspec.json.Decoder(_PremiumIndex)
_dec_premiums: Final = msgspec.json.Decoder(tuple[_PremiumIndex, ...])
_dec_brackets: Final = msgspec.json.Decoder(tuple[_SymbolBrackets, ...] | _SymbolBrackets)
_dec_commission: Final = msgspec.json.Decoder(_CommissionRate)
_dec_server_time: Final = msgspec.json.Decoder(_ServerTime)
_dec_error: Final = msgspec.json.Decoder(VenueErrorBody)


# ---------------------------------------------------------------------------------------------
# REST
# ---------------------------------------------------------------------------------------------


class InstrumentSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What exchangeInfo says about one symbol: the venue-given part of an :class:`Instrument`."""

    symbol: str
    base_asset: str
    quote_asset: str
    status: str
    filters: SymbolFilters
    contract_type: str = ""
    margin_asset: str = ""
    liquidation_fee_rate: Decimal | None = None


class ExchangeInfo(msgspec.Struct, frozen=True, kw_only=True):
    symbols: dict[str, InstrumentSpec]
    server_time_ms: int = 0
    #: REQUEST_WEIGHT per minute when the venue states it
    request_weight_per_minute: int | None = None


def parse_exchange_info(raw: Raw) -> ExchangeInfo:
    """``GET /fapi/v1/exchangeInfo`` → the filters and status of every symbol."""
    info: _ExchangeInfo = _decode(_dec_exchange_info, raw, "exchangeInfo")
    symbols = {s.symbol: _instrument_spec(s) for s in info.symbols}
    weight = next(
        (
            r.limit
            for r in info.rateLimits
            if r.rateLimitType == "REQUEST_WEIGHT" and r.interval == "MINUTE" and r.intervalNum == 1
        ),
        None,
    )
    return ExchangeInfo(symbols=symbols, server_time_ms=info.serverTime, request_weight_per_minute=weight)


def _instrument_spec(sym: _Symbol) -> InstrumentSpec:
    by_type = {f.filterType: f for f in sym.filters}
    price = by_type.get("PRICE_FILTER")
    lot = by_type.get("LOT_SIZE")
    if price is None or price.tickSize is None:
        raise ParseError(f"exchangeInfo {sym.symbol}", "PRICE_FILTER with tickSize is missing")
    if lot is None or lot.stepSize is None or lot.minQty is None:
        raise ParseError(f"exchangeInfo {sym.symbol}", "LOT_SIZE with stepSize and minQty is missing")
    market = by_type.get("MARKET_LOT_SIZE")
    notional = by_type.get("MIN_NOTIONAL") or by_type.get("NOTIONAL")
    percent = by_type.get("PERCENT_PRICE")
    zero = Decimal(0)
    filters = SymbolFilters(
        tick_size=price.tickSize,
        min_price=price.minPrice or zero,
        max_price=price.maxPrice or zero,
        step_size=lot.stepSize,
        min_qty=lot.minQty,
        max_qty=lot.maxQty or zero,
        market_step_size=market.stepSize if market else None,
        market_min_qty=market.minQty if market else None,
        market_max_qty=market.maxQty if market else None,
        min_notional=(notional.notional or notional.minNotional or zero) if notional else zero,
        percent_up=percent.multiplierUp if percent else None,
        percent_down=percent.multiplierDown if percent else None,
    )
    return InstrumentSpec(
        symbol=sym.symbol,
        base_asset=sym.baseAsset,
        quote_asset=sym.quoteAsset,
        status=sym.status,
        filters=filters,
        contract_type=sym.contractType,
        margin_asset=sym.marginAsset,
        liquidation_fee_rate=sym.liquidationFee,
    )


def parse_depth(raw: Raw, symbol: str, received_at: float) -> OrderBook:
    """``GET /fapi/v1/depth`` (which does not name its symbol) → an L2 :class:`OrderBook`."""
    depth: _Depth = _decode(_dec_depth, raw, f"depth {symbol}")
    book = OrderBook(
        symbol=symbol,
        bids=depth.bids,
        asks=depth.asks,
        venue_ms=depth.E or depth.T,
        received_at=received_at,
        depth=True,
        update_id=depth.lastUpdateId,
    )
    return _finite_book(book, f"depth {symbol}")


def _top_of_book(t: _BookTicker, received_at: float) -> OrderBook:
    book = OrderBook(
        symbol=t.symbol,
        bids=((t.bidPrice, t.bidQty),),
        asks=((t.askPrice, t.askQty),),
        venue_ms=t.time,
        received_at=received_at,
        depth=False,
        update_id=t.lastUpdateId,
    )
    return _finite_book(book, f"bookTicker {t.symbol}")


def parse_book_ticker(raw: Raw, received_at: float) -> OrderBook:
    """``GET /fapi/v1/ticker/bookTicker?symbol=`` → a top-of-book :class:`OrderBook`."""
    return _top_of_book(_decode(_dec_book_ticker, raw, "bookTicker"), received_at)


def parse_book_tickers(raw: Raw, received_at: float) -> dict[str, OrderBook]:
    """``GET /fapi/v1/ticker/bookTicker`` (every symbol) → top-of-book books by symbol."""
    tickers: tuple[_BookTicker, ...] = _decode(_dec_book_tickers, raw, "bookTicker list")
    return {t.symbol: _top_of_book(t, received_at) for t in tickers}


def _mark(p: _PremiumIndex, received_at: float) -> MarkPrice:
    what = f"premiumIndex {p.symbol}"
    mark = MarkPrice(
        symbol=p.symbol,
        mark=p.markPrice,
        index=_optional_decimal(p.indexPrice, what),
        funding_rate=_optional_decimal(p.lastFundingRate, what) or Decimal(0),
        next_funding_ms=p.nextFundingTime,
        venue_ms=p.time,
        received_at=received_at,
    )
    return _finite_mark(mark, what)


def parse_premium_index(raw: Raw, received_at: float) -> MarkPrice:
    """``GET /fapi/v1/premiumIndex?symbol=`` → :class:`MarkPrice`."""
    return _mark(_decode(_dec_premium, raw, "premiumIndex"), received_at)


def parse_premium_indexes(raw: Raw, received_at: float) -> dict[str, MarkPrice]:
    """``GET /fapi/v1/premiumIndex`` (every symbol) → mark prices by symbol."""
    items: tuple[_PremiumIndex, ...] = _decode(_dec_premiums, raw, "premiumIndex list")
    return {p.symbol: _mark(p, received_at) for p in items}


def parse_leverage_brackets(raw: Raw) -> dict[str, tuple[LeverageBracket, ...]]:
    """``GET /fapi/v1/leverageBracket`` in both shapes (a list, or one object for ``?symbol=``)."""
    decoded = _decode(_dec_brackets, raw, "leverageBracket")
    items: tuple[_SymbolBrackets, ...] = decoded if isinstance(decoded, tuple) else (decoded,)
    return {
        item.symbol: tuple(
            LeverageBracket(
                bracket=b.bracket,
                initial_leverage=b.initialLeverage,
                notional_floor=b.notionalFloor,
                notional_cap=b.notionalCap,
                maint_margin_ratio=b.maintMarginRatio,
                cum=b.cum,
            )
            for b in sorted(item.brackets, key=lambda b: b.notionalFloor)
        )
        for item in items
    }


def parse_commission_rate(raw: Raw) -> FeeRates:
    """``GET /fapi/v1/commissionRate`` → :class:`FeeRates`."""
    rate: _CommissionRate = _decode(_dec_commission, raw, "commissionRate")
    return FeeRates(maker=rate.makerCommissionRate, taker=rate.takerCommissionRate)


def parse_server_time(raw: Raw) -> int:
    """``GET /fapi/v1/time`` → the server time in epoch milliseconds."""
    time: _ServerTime = _decode(_dec_server_time, raw, "time")
    return time.serverTime


def parse_error_body(raw: Raw) -> VenueErrorBody | None:
    """The venue's ``{"code", "msg"}`` error body, or None if the body is something else."""
    try:
        return _dec_error.decode(raw)
    except msgspec.DecodeError:
        return None


# ---------------------------------------------------------------------------------------------
# Instruments
# ---------------------------------------------------------------------------------------------

# (notional cap, initial leverage, maintenance margin ratio) of a conservative generic ladder, used
# when the venue's brackets are unknown (leverageBracket is a signed endpoint on both venues).
#: (notional floor, initial leverage, maintenance margin ratio): a conservative ladder
_DEFAULT_LADDER: Final = (
    (0, 50, "0.01"),
    (5_000, 25, "0.02"),
    (25_000, 20, "0.025"),
    (100_000, 10, "0.05"),
    (250_000, 5, "0.1"),
    (1_000_000, 4, "0.125"),
    (5_000_000, 2, "0.25"),
    (20_000_000, 1, "0.5"),
)


def default_brackets() -> tuple[LeverageBracket, ...]:
    """A conservative maintenance-margin ladder, built by :func:`margin.default_brackets`
    (``cum`` derived as the venues do, reference section C)."""
    return margin_brackets(_DEFAULT_LADDER, last_cap=Decimal(1_000_000_000))


def build_instruments(
    exchange_info: Raw | ExchangeInfo,
    brackets: Mapping[str, tuple[LeverageBracket, ...]] | None = None,
    fees: Mapping[str, FeeRates] | FeeRates | None = None,
    *,
    profile: VenueProfile,
    symbols: Iterable[str] | None = None,
) -> dict[str, Instrument]:
    """Instruments from exchangeInfo plus the (optional) brackets and fee rates.

    Args:
        exchange_info: the raw exchangeInfo body, or an already parsed :class:`ExchangeInfo`.
        brackets: per-symbol brackets (``parse_leverage_brackets``); a symbol without any gets
            :func:`default_brackets`.
        fees: per-symbol rates, one rate for every symbol, or None for the profile's defaults.
        profile: supplies the default fees and liquidation fee.
        symbols: keep only these symbols (default: every symbol the venue lists).
    """
    info = exchange_info if isinstance(exchange_info, ExchangeInfo) else parse_exchange_info(exchange_info)
    wanted = set(symbols) if symbols is not None else None
    fallback_brackets = default_brackets()
    instruments: dict[str, Instrument] = {}
    for name, spec in info.symbols.items():
        if wanted is not None and name not in wanted:
            continue
        ladder = (brackets or {}).get(name) or fallback_brackets
        if isinstance(fees, FeeRates):
            rates = fees
        else:
            rates = (fees or {}).get(name) or profile.default_fees
        instruments[name] = Instrument(
            symbol=name,
            base_asset=spec.base_asset,
            quote_asset=spec.quote_asset,
            filters=spec.filters,
            fees=rates,
            brackets=ladder,
            max_leverage=max(b.initial_leverage for b in ladder),
            liquidation_fee_rate=spec.liquidation_fee_rate
            if spec.liquidation_fee_rate is not None
            else profile.default_liquidation_fee,
            status=spec.status,
        )
    return instruments
