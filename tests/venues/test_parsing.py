"""The parsers against the official payload examples (copied into ``payloads/``) and bad input."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.domain.market import FeeRates, LeverageBracket, MarkPrice, OrderBook
from actors.venues import parsing as p
from actors.venues.profiles import get_profile
from actors.venues.stream import stream_names

PAYLOADS = Path(__file__).parent / "payloads"
NOW = 1_700_000_000.5


def envelope(stream: str, data: bytes) -> bytes:
    return b'{"stream":"' + stream.encode() + b'","data":' + data + b"}"


# -- one checker per payload file: each parses the file and checks what it must contain ----------


def check_exchange_info(raw: bytes) -> None:
    info = p.parse_exchange_info(raw)
    assert info.request_weight_per_minute == 2400
    (spec,) = info.symbols.values()
    f = spec.filters
    assert (f.tick_size, f.min_price, f.max_price) == (Decimal("0.0001"), Decimal("0.0001"), Decimal("300"))
    assert (f.step_size, f.min_qty, f.max_qty) == (Decimal(1), Decimal(1), Decimal(10_000_000))
    assert (f.market_step_size, f.market_min_qty, f.market_max_qty) == (Decimal(1), Decimal(1), Decimal(590119))
    assert (f.percent_up, f.percent_down) == (Decimal("1.15"), Decimal("0.85"))
    assert f.min_notional in (Decimal(1), Decimal(5))  # Aster's example says 1, Binance's 5.0
    assert spec.status == "TRADING" and spec.contract_type == "PERPETUAL"
    assert spec.liquidation_fee_rate == Decimal("0.01")


def check_depth(raw: bytes) -> None:
    book = p.parse_depth(raw, "BTCUSDT", NOW)
    assert book.depth and book.symbol == "BTCUSDT"
    assert book.bids == ((Decimal("4.00000000"), Decimal("431.00000000")),)
    assert book.asks == ((Decimal("4.00000200"), Decimal("12.00000000")),)
    assert (book.venue_ms, book.update_id, book.received_at) == (1589436922972, 1027024, NOW)


def check_book_ticker(raw: bytes) -> None:
    book = p.parse_book_ticker(raw, NOW)
    assert not book.depth
    assert (book.best_bid, book.best_ask, book.venue_ms) == (Decimal("4"), Decimal("4.000002"), 1589437530011)


def check_book_tickers(raw: bytes) -> None:
    books = p.parse_book_tickers(raw, NOW)
    assert books["BTCUSDT"].best_ask == Decimal("4.00000200")


def check_premium_index(raw: bytes) -> None:
    mark = p.parse_premium_index(raw, NOW)
    assert (mark.mark, mark.index) == (Decimal("11793.63104562"), Decimal("11781.80495970"))
    assert (mark.funding_rate, mark.next_funding_ms, mark.venue_ms) == (Decimal("0.00038246"), 1597392000000, 1597370495002)


def check_premium_indexes(raw: bytes) -> None:
    marks = p.parse_premium_indexes(raw, NOW)
    assert marks["BTCUSDT"].mark == Decimal("11793.63104562")


def check_brackets(raw: bytes) -> None:
    brackets = p.parse_leverage_brackets(raw)
    assert brackets == {
        "ETHUSDT": (
            LeverageBracket(
                bracket=1,
                initial_leverage=75,
                notional_floor=Decimal(0),
                notional_cap=Decimal(10_000),
                maint_margin_ratio=Decimal("0.0065"),
                cum=Decimal(0),
            ),
        )
    }


def check_commission(raw: bytes) -> None:
    assert p.parse_commission_rate(raw) == FeeRates(maker=Decimal("0.0002"), taker=Decimal("0.0004"))


def check_error(raw: bytes) -> None:
    body = p.parse_error_body(raw)
    assert body is not None and (body.code, body.msg) == (-1121, "Invalid symbol.")


def check_subscribe_response(raw: bytes) -> None:
    reply = p.parse_frame(raw, NOW)
    assert isinstance(reply, p.ControlReply) and reply.ok and reply.id == 1 and reply.result is None
    assert p.parse_stream_message(raw, NOW) is None


def check_ws_book_ticker(raw: bytes) -> None:
    for frame in (envelope("bnbusdt@bookTicker", raw), raw):  # combined stream, and raw /ws/ event
        book = p.parse_stream_message(frame, NOW)
        assert isinstance(book, OrderBook) and not book.depth
        assert book.bids == ((Decimal("25.35190000"), Decimal("31.21000000")),)
        assert book.asks == ((Decimal("25.36520000"), Decimal("40.66000000")),)
        assert (book.symbol, book.venue_ms, book.update_id, book.received_at) == ("BNBUSDT", 1568014460893, 400900217, NOW)


def check_ws_mark(raw: bytes) -> None:
    for frame in (envelope("btcusdt@markPrice@1s", raw), envelope("btcusdt@markPrice", raw), raw):
        mark = p.parse_stream_message(frame, NOW)
        assert isinstance(mark, MarkPrice)
        assert (mark.symbol, mark.mark, mark.index) == ("BTCUSDT", Decimal("11794.15"), Decimal("11784.62659091"))
        assert (mark.funding_rate, mark.next_funding_ms, mark.venue_ms) == (Decimal("0.00038167"), 1562306400000, 1562305380000)


def check_ws_mark_array(raw: bytes) -> None:
    # !markPrice@arr: every element is a markPriceUpdate
    for item in msgspec.json.decode(raw, type=list[msgspec.Raw]):
        assert isinstance(p.parse_stream_message(bytes(item), NOW), MarkPrice)
    assert p.parse_stream_message(envelope("!markPrice@arr@1s", raw), NOW) is None  # not a stream we use


def check_ws_partial_depth(raw: bytes) -> None:
    book = p.parse_stream_message(envelope("btcusdt@depth5@100ms", raw), NOW)
    assert isinstance(book, OrderBook) and book.depth and len(book.bids) == len(book.asks) == 5
    assert book.bids[0] == (Decimal("7403.89"), Decimal("0.002"))
    assert book.asks[-1] == (Decimal("7407.20"), Decimal("0.175"))
    assert (book.venue_ms, book.update_id) == (1571889248277, 390497878)
    assert isinstance(p.parse_stream_message(envelope("btcusdt@depth20", raw), NOW), OrderBook)


def check_ws_diff_depth(raw: bytes) -> None:
    # a diff update is not a book: it must never be published as one
    assert p.parse_stream_message(envelope("btcusdt@depth@100ms", raw), NOW) is None
    assert p.parse_stream_message(raw, NOW) is None


def check_ignored_event(raw: bytes) -> None:
    # well-formed market data we do not use: None, neither a book nor an error
    assert p.parse_stream_message(raw, NOW) is None
    if "stream" not in msgspec.json.decode(raw):  # a raw event: wrap it as the combined stream would
        assert p.parse_stream_message(envelope("btcusdt@aggTrade", raw), NOW) is None


CHECKS: dict[str, Callable[[bytes], None]] = {
    "aster_exchangeInfo.json": check_exchange_info,
    "binance_exchangeInfo.json": check_exchange_info,
    "aster_depth.json": check_depth,
    "binance_depth.json": check_depth,
    "aster_bookTicker_single.json": check_book_ticker,
    "binance_bookTicker_single.json": check_book_ticker,
    "aster_bookTicker_all.json": check_book_tickers,
    "aster_premiumIndex_single.json": check_premium_index,
    "binance_premiumIndex_single.json": check_premium_index,
    "aster_premiumIndex_all.json": check_premium_indexes,
    "binance_premiumIndex_all.json": check_premium_indexes,
    "aster_leverageBracket_all.json": check_brackets,
    "aster_leverageBracket_symbol.json": check_brackets,
    "binance_leverageBracket.json": check_brackets,
    "aster_commissionRate.json": check_commission,
    "binance_commissionRate.json": check_commission,
    "aster_error_payload.json": check_error,
    "aster_ws_subscribe_response.json": check_subscribe_response,
    "aster_ws_bookTicker.json": check_ws_book_ticker,
    "binance_ws_bookTicker.json": check_ws_book_ticker,
    "aster_ws_markPriceUpdate.json": check_ws_mark,
    "binance_ws_markPriceUpdate.json": check_ws_mark,
    "aster_ws_markPriceUpdate_arr.json": check_ws_mark_array,
    "aster_ws_depthUpdate_partial.json": check_ws_partial_depth,
    "binance_ws_depthUpdate_partial.json": check_ws_partial_depth,
    "aster_ws_depthUpdate_diff.json": check_ws_diff_depth,
    "binance_ws_depthUpdate_diff.json": check_ws_diff_depth,
    "aster_ws_aggTrade.json": check_ignored_event,
    "binance_ws_aggTrade.json": check_ignored_event,
    "aster_ws_tradepro.json": check_ignored_event,
}


def test_every_payload_file_has_a_check() -> None:
    assert sorted(path.name for path in PAYLOADS.glob("*.json")) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_official_payload_parses(name: str) -> None:
    CHECKS[name]((PAYLOADS / name).read_bytes())


# -- instruments -----------------------------------------------------------------------------------


def test_build_instruments_uses_profile_defaults_without_brackets_or_fees() -> None:
    raw = (PAYLOADS / "aster_exchangeInfo.json").read_bytes()
    profile = get_profile("asterdex")
    (instrument,) = p.build_instruments(raw, profile=profile).values()
    assert instrument.fees == FeeRates(maker=Decimal("0.0001"), taker=Decimal("0.00035"))
    assert instrument.brackets == p.default_brackets()
    assert instrument.max_leverage == p.default_brackets()[0].initial_leverage
    assert instrument.liquidation_fee_rate == Decimal("0.01")  # from exchangeInfo
    assert (instrument.base_asset, instrument.quote_asset) == ("BLZ", "USDT")  # the example's own oddity


def test_build_instruments_with_given_brackets_and_fees() -> None:
    raw = (PAYLOADS / "binance_exchangeInfo.json").read_bytes()
    brackets = {"BLZUSDT": p.parse_leverage_brackets((PAYLOADS / "binance_leverageBracket.json").read_bytes())["ETHUSDT"]}
    fees = {"BLZUSDT": p.parse_commission_rate((PAYLOADS / "binance_commissionRate.json").read_bytes())}
    instrument = p.build_instruments(raw, brackets, fees, profile=get_profile("binance-usdm"))["BLZUSDT"]
    assert instrument.max_leverage == 75
    assert instrument.bracket_for(Decimal(500)).maint_margin_ratio == Decimal("0.0065")
    assert instrument.fees.taker == Decimal("0.0004")
    assert instrument.filters.min_notional == Decimal("5.0")


def test_build_instruments_without_liquidation_fee_uses_the_profile() -> None:
    info = msgspec.json.decode((PAYLOADS / "aster_exchangeInfo.json").read_bytes())
    del info["symbols"][0]["liquidationFee"]
    profile = get_profile("binance-usdm")
    (instrument,) = p.build_instruments(msgspec.json.encode(info), profile=profile, symbols=["DOGEUSDT"]).values()
    assert instrument.liquidation_fee_rate == profile.default_liquidation_fee


def test_default_brackets_are_continuous() -> None:
    brackets = p.default_brackets()
    for lower, upper in zip(brackets, brackets[1:]):
        assert lower.notional_cap == upper.notional_floor
        # maintenance margin is continuous at each boundary: that is what cum is for
        at = upper.notional_floor
        assert at * lower.maint_margin_ratio - lower.cum == at * upper.maint_margin_ratio - upper.cum


def test_unknown_filter_types_are_ignored() -> None:
    info = msgspec.json.decode((PAYLOADS / "binance_exchangeInfo.json").read_bytes())
    info["symbols"][0]["filters"].append({"filterType": "SOMETHING_NEW", "weird": [1, 2]})
    assert "BLZUSDT" in p.parse_exchange_info(msgspec.json.encode(info)).symbols


def test_exchange_info_without_price_filter_is_a_parse_error() -> None:
    info = msgspec.json.decode((PAYLOADS / "binance_exchangeInfo.json").read_bytes())
    info["symbols"][0]["filters"] = [f for f in info["symbols"][0]["filters"] if f["filterType"] != "PRICE_FILTER"]
    with pytest.raises(p.ParseError, match="PRICE_FILTER"):
        p.parse_exchange_info(msgspec.json.encode(info))


# -- malformed input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        b"not json",
        b'{"stream": "btcusdt@bookTicker", "data": {"s": "BTCUSDT"',
        b'{"stream": "btcusdt@bookTicker", "data": {"e": "bookTicker", "s": "BTCUSDT", "b": "x", "B": "1", "a": "2", "A": "1"}}',
        b'{"stream": "btcusdt@bookTicker", "data": {"e": "bookTicker", "s": "BTCUSDT"}}',
        b'{"stream": "btcusdt@depth5", "data": {"s": "BTCUSDT", "b": [["1", "2", "3"]], "a": []}}',
        b'{"stream": "btcusdt@markPrice@1s", "data": {"s": "BTCUSDT", "p": "1", "r": "abc"}}',
        b'{"stream": "btcusdt@markPrice@1s"}',
        b'{"stream": 42, "data": {}}',
        b"[1, 2, 3]",
        b'{"stream": "btcusdt@bookTicker", "data": {"s": "BTCUSDT", "b": "NaN", "B": "1", "a": "2", "A": "1"}}',
        b'{"stream": "btcusdt@depth5", "data": {"s": "BTCUSDT", "b": [["1", "Infinity"]], "a": []}}',
        b'{"stream": "btcusdt@markPrice@1s", "data": {"s": "BTCUSDT", "p": "-inf"}}',
        b'{"stream": "btcusdt@markPrice@1s", "data": {"s": "BTCUSDT", "p": "1", "r": "nan"}}',
        b'{"e": "bookTicker", "s": "BTCUSDT", "b": "sNaN", "B": "1", "a": "2", "A": "1"}',
    ],
)
def test_malformed_frames_raise_parse_error(frame: bytes) -> None:
    with pytest.raises(p.ParseError):
        p.parse_stream_message(frame, NOW)


def test_rest_payloads_refuse_non_finite_numbers() -> None:
    with pytest.raises(p.ParseError, match="non-finite"):
        p.parse_depth(b'{"bids": [["NaN", "1"]], "asks": []}', "BTCUSDT", NOW)
    with pytest.raises(p.ParseError, match="non-finite"):
        p.parse_premium_index(b'{"symbol": "BTCUSDT", "markPrice": "Infinity"}', NOW)


def test_parse_error_names_the_payload_and_field() -> None:
    with pytest.raises(p.ParseError) as caught:
        p.parse_depth(b'{"bids": [["1", "x"]], "asks": []}', "BTCUSDT", NOW)
    assert "depth BTCUSDT" in str(caught.value) and "$.bids[0][1]" in str(caught.value)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b'{"code": 2, "msg": "Invalid request", "id": 7}', 2),
        (b'{"error": {"code": 1, "msg": "Invalid value type"}, "id": 7}', 1),
    ],
)
def test_control_errors_in_both_shapes(frame: bytes, code: int) -> None:
    reply = p.parse_frame(frame, NOW)
    assert isinstance(reply, p.ControlReply) and not reply.ok and reply.error_code == code and reply.id == 7


def test_delivery_contract_mark_without_funding_rate() -> None:
    frame = b'{"stream":"btcusdt_250328@markPrice","data":{"e":"markPriceUpdate","E":1,"s":"BTCUSDT_250328","p":"1.5","i":"","P":"","r":"","T":0}}'
    mark = p.parse_stream_message(frame, NOW)
    assert isinstance(mark, MarkPrice) and mark.funding_rate == 0 and mark.index is None


_numeric_text = st.sampled_from(["1", "0.5", "-3", "1e3", "", "abc", "NaN"])
_json_values: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    _numeric_text,
    st.lists(st.lists(_numeric_text, max_size=3), max_size=3),
)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_anything_but_parse_error(raw: bytes) -> None:
    try:
        p.parse_stream_message(raw, NOW)
    except p.ParseError:
        pass


@given(
    st.sampled_from(["btcusdt@bookTicker", "btcusdt@markPrice@1s", "btcusdt@depth20@100ms", "x@aggTrade"]),
    st.dictionaries(st.sampled_from(list("eEsbBaApiruT")), _json_values, max_size=8),
)
def test_arbitrary_event_shapes_parse_or_raise_parse_error(stream: str, data: dict[str, Any]) -> None:
    frame = msgspec.json.encode({"stream": stream, "data": data})
    try:
        result = p.parse_stream_message(frame, NOW)
    except p.ParseError:
        return
    assert result is None or isinstance(result, (OrderBook, MarkPrice))
    if isinstance(result, OrderBook):
        assert all(v.is_finite() for level in result.bids + result.asks for v in level)
    if isinstance(result, MarkPrice):
        assert result.mark.is_finite() and result.funding_rate.is_finite()


@given(
    st.lists(
        st.tuples(st.decimals(min_value=0, max_value=10**9, places=8), st.decimals(min_value=0, max_value=10**6, places=4)),
        max_size=20,
    )
)
def test_depth_levels_round_trip_exactly(levels: list[tuple[Decimal, Decimal]]) -> None:
    wire = [[format(price, "f"), format(qty, "f")] for price, qty in levels]
    data = {"e": "depthUpdate", "E": 5, "s": "BTCUSDT", "b": wire, "a": wire}
    book = p.parse_stream_message(msgspec.json.encode({"stream": "btcusdt@depth20@100ms", "data": data}), NOW)
    assert isinstance(book, OrderBook)
    assert book.bids == tuple((price, qty) for price, qty in levels)


def test_stream_names() -> None:
    assert stream_names("ETHUSDT", depth_levels=10, depth_speed="250ms") == (
        "ethusdt@bookTicker",
        "ethusdt@markPrice@1s",
        "ethusdt@depth10",
    )
