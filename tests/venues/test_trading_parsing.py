"""Signed-endpoint parsers against the official payloads, and order requests → venue parameters."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from actors.venues import trading_parsing as tp
from actors.venues.parsing import ParseError
from actors.venues.trading_types import OrderRequest, VenueOrder, order_params

PAYLOADS = Path(__file__).parent / "payloads" / "account"


def load(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def check_order(raw: bytes) -> None:
    order = tp.parse_order(raw)
    assert order.venue_order_id > 0 and order.symbol == "BTCUSDT" and not order.is_algo
    assert order.orig_type == "TRAILING_STOP_MARKET" and order.is_conditional
    assert order.stop_price == Decimal("9300") and order.update_time > 0


def check_orders(raw: bytes) -> None:
    orders = tp.parse_orders(raw)
    assert len(orders) == 1
    assert orders[0].client_order_id == "abc" and orders[0].orig_qty == Decimal("0.40")


def check_algo_order(raw: bytes) -> None:
    order = tp.parse_algo_order(raw)
    assert order.is_algo and order.is_conditional and order.venue_order_id == 2146760
    assert order.client_order_id == "6B2I9XVcJpCjqPAJ4YoFX7" and order.type == "TAKE_PROFIT"
    assert order.stop_price == Decimal("750.000") and order.orig_qty == Decimal("0.01")
    assert order.actual_order_id is None


def check_algo_orders(raw: bytes) -> None:
    (order,) = tp.parse_algo_orders(raw)
    assert order.is_algo and order.status == "NEW" and not order.is_final


def check_algo_cancel(raw: bytes) -> None:
    ack = tp.parse_algo_cancel(raw)
    assert (ack.algoId, ack.clientAlgoId, str(ack.code)) == (2146760, "6B2I9XVcJpCjqPAJ4YoFX7", "200")


def check_positions(raw: bytes) -> None:
    positions = tp.parse_positions(raw)
    assert positions and all(p.symbol for p in positions)


def check_balances(raw: bytes) -> None:
    (balance,) = tp.parse_balances(raw)
    assert balance.asset == "USDT" and balance.wallet_balance == Decimal("122607.35137903")
    assert balance.available_balance == Decimal("23.72469206") and balance.update_time == 1617939110373


def check_trades(raw: bytes) -> None:
    (trade,) = tp.parse_trades(raw)
    assert (trade.id, trade.order_id, trade.side, trade.maker) == (698759, 25851813, "SELL", False)
    assert trade.price == Decimal("7819.01") and trade.qty == Decimal("0.002")
    assert trade.commission == Decimal("-0.07819010") and trade.commission_asset == "USDT"
    assert trade.realized_pnl == Decimal("-0.91539999") and trade.time == 1569514978020


def check_income(raw: bytes) -> None:
    transfer, commission = tp.parse_income(raw)
    assert (transfer.income_type, transfer.tran_id, transfer.trade_id) == ("TRANSFER", "9689322392", "")
    assert commission.income == Decimal("-0.01000000") and commission.trade_id == "2059192"


def check_listen_key(raw: bytes) -> None:
    assert tp.parse_listen_key(raw).startswith("pqia91ma19a5s61cv6a81va65sdf19v8")


def check_leverage(raw: bytes) -> None:
    change = tp.parse_leverage_change(raw)
    assert (change.symbol, change.leverage, change.max_notional) == ("BTCUSDT", 21, Decimal("1000000"))


def check_ack(raw: bytes) -> None:
    assert tp.parse_ack(raw)[0] == 200


CHECKS: dict[str, Callable[[bytes], None]] = {
    "aster_order_new.json": check_order,
    "aster_order_query.json": check_order,
    "aster_order_cancel.json": check_order,
    "aster_openOrder_query.json": check_order,
    "binance_order_new.json": check_order,
    "binance_order_query.json": check_order,
    "binance_order_cancel.json": check_order,
    "aster_openOrders.json": check_orders,
    "aster_allOrders.json": check_orders,
    "binance_openOrders.json": check_orders,
    "binance_algoOrder_new.json": check_algo_order,
    "binance_algoOrder_query.json": check_algo_order,
    "binance_openAlgoOrders.json": check_algo_orders,
    "binance_algoOrder_cancel.json": check_algo_cancel,
    "aster_positionRisk_oneway.json": check_positions,
    "aster_positionRisk_hedge.json": check_positions,
    "binance_positionRisk_v2_oneway.json": check_positions,
    "binance_positionRisk_v2_hedge.json": check_positions,
    "binance_positionRisk_v3_oneway.json": check_positions,
    "binance_positionRisk_v3_hedge.json": check_positions,
    "aster_balance.json": check_balances,
    "binance_balance_v2.json": check_balances,
    "binance_balance_v3.json": check_balances,
    "aster_userTrades.json": check_trades,
    "binance_userTrades.json": check_trades,
    "aster_income.json": check_income,
    "binance_income.json": check_income,
    "aster_listenKey_start.json": check_listen_key,
    "binance_listenKey_start.json": check_listen_key,
    "aster_leverage_change.json": check_leverage,
    "binance_leverage_change.json": check_leverage,
    "aster_marginType_change.json": check_ack,
    "binance_marginType_change.json": check_ack,
    "aster_allOpenOrders_cancel.json": check_ack,
    "binance_allOpenOrders_cancel.json": check_ack,
}


#: official examples of endpoints the trading client does not call, and why
NOT_CALLED = {
    "aster_account.json": "balances and positions come from balance and positionRisk",
    "binance_account_v3.json": "balances and positions come from balance and positionRisk",
    "aster_commissionRate.json": "fees are read from each fill's commission",
    "binance_commissionRate.json": "fees are read from each fill's commission",
    "aster_countdownCancelAll.json": "no dead-man switch is armed",
    "aster_positionSide_dual_get.json": "the position mode is not read: the service trades in one-way mode",
}


def test_every_rest_payload_file_has_a_check() -> None:
    rest_files = sorted(p.name for p in PAYLOADS.glob("*.json") if "_ws_" not in p.name)
    assert rest_files == sorted([*CHECKS, *NOT_CALLED])


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_official_payload_parses(name: str) -> None:
    CHECKS[name](load(name))


def test_order_fields_exactly() -> None:
    order = tp.parse_order(load("binance_order_query.json"))
    assert order == VenueOrder(
        venue_order_id=1917641,
        client_order_id="abc",
        symbol="BTCUSDT",
        side="BUY",
        type="TRAILING_STOP_MARKET",
        orig_type="TRAILING_STOP_MARKET",
        status="NEW",
        orig_qty=Decimal("0.40"),
        executed_qty=Decimal("0"),
        avg_price=Decimal("0.00000"),
        price=Decimal("0"),
        stop_price=Decimal("9300"),
        time_in_force="GTC",
        reduce_only=False,
        close_position=False,
        working_type="CONTRACT_PRICE",
        price_protect=False,
        position_side="SHORT",
        update_time=1579276756075,
        cum_quote=Decimal("0"),
    )
    assert not order.is_final


def test_positions_of_each_version() -> None:
    (aster,) = tp.parse_positions(load("aster_positionRisk_oneway.json"))
    assert (aster.leverage, aster.margin_type, aster.break_even_price, aster.notional) == (10, "isolated", None, None)
    assert aster.mark_price == Decimal("6679.50671178") and aster.quantity == 0
    long, short = tp.parse_positions(load("aster_positionRisk_hedge.json"))
    assert (long.position_side, long.quantity, short.quantity) == ("LONG", Decimal("20.000"), Decimal("-10.000"))
    (v2,) = tp.parse_positions(load("binance_positionRisk_v2_oneway.json"))
    assert (v2.leverage, v2.margin_type, v2.notional) == (10, "isolated", Decimal("0"))
    # v3 drops leverage and marginType
    (v3,) = tp.parse_positions(load("binance_positionRisk_v3_oneway.json"))
    assert (v3.leverage, v3.margin_type) == (None, None)
    assert (v3.break_even_price, v3.notional, v3.unrealized_pnl) == (
        Decimal("0.385077"), Decimal("12.31427700"), Decimal("0.76427700")
    )
    _, v3_short = tp.parse_positions(load("binance_positionRisk_v3_hedge.json"))
    assert v3_short.quantity == Decimal("-1.000") and v3_short.liquidation_price == Decimal("2260.56757210")


def test_algo_order_statuses_and_triggered_order_id() -> None:
    raw = load("binance_algoOrder_query.json").replace(b'"actualOrderId": ""', b'"actualOrderId": "88937381063"')
    order = tp.parse_algo_order(raw)
    assert order.status == "CANCELED" and order.is_final and order.actual_order_id == 88937381063


def test_malformed_payloads_raise_parse_error() -> None:
    for parse, raw in (
        (tp.parse_order, b'{"orderId": "x"}'),
        (tp.parse_orders, b"{}"),
        (tp.parse_positions, b'[{"symbol": "BTCUSDT"}]'),
        (tp.parse_positions, b'[{"symbol":"B","positionAmt":"1","entryPrice":"1","markPrice":"1","unRealizedProfit":"0","leverage":"x"}]'),
        (tp.parse_listen_key, b"not json"),
        (tp.parse_ack, b'{"code": "abc"}'),
    ):
        with pytest.raises(ParseError):
            parse(raw)


# -------------------------------------------------------------------------- order requests


def request(**fields: object) -> OrderRequest:
    base: dict[str, object] = {"symbol": "BTCUSDT", "side": "BUY", "client_order_id": "e-1"}
    return OrderRequest(**{**base, **fields})  # type: ignore[arg-type]


def test_entry_params() -> None:
    market = request(type="MARKET", quantity=Decimal("0.010"))
    assert order_params(market, algo=False) == [
        ("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.010"),
        ("newClientOrderId", "e-1"), ("newOrderRespType", "RESULT"),
    ]
    limit = request(type="LIMIT", quantity=Decimal("1E+1"), price=Decimal("9000.5"), reduce_only=True)
    assert order_params(limit, algo=False) == [
        ("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"), ("quantity", "10"),
        ("price", "9000.5"), ("reduceOnly", "true"), ("newClientOrderId", "e-1"), ("newOrderRespType", "RESULT"),
    ]


def test_conditional_params_per_route() -> None:
    stop = request(side="SELL", type="STOP_MARKET", stop_price=Decimal("25000"), close_position=True,
                   working_type="MARK_PRICE", price_protect=True, client_order_id="sl-1")
    assert order_params(stop, algo=False) == [
        ("symbol", "BTCUSDT"), ("side", "SELL"), ("type", "STOP_MARKET"), ("stopPrice", "25000"),
        ("workingType", "MARK_PRICE"), ("priceProtect", "TRUE"), ("closePosition", "true"),
        ("newClientOrderId", "sl-1"),
    ]
    assert order_params(stop, algo=True) == [
        ("algoType", "CONDITIONAL"), ("symbol", "BTCUSDT"), ("side", "SELL"), ("type", "STOP_MARKET"),
        ("triggerPrice", "25000"), ("workingType", "MARK_PRICE"), ("priceProtect", "true"),
        ("closePosition", "true"), ("clientAlgoId", "sl-1"),
    ]
    with pytest.raises(ValueError, match="order endpoint"):
        order_params(request(type="MARKET", quantity=Decimal(1)), algo=True)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"type": "MARKET"}, "needs a quantity"),
        ({"type": "LIMIT", "quantity": Decimal(1)}, "LIMIT needs a price"),
        ({"type": "MARKET", "quantity": Decimal(1), "price": Decimal(1)}, "takes no price"),
        ({"type": "STOP_MARKET", "quantity": Decimal(1)}, "needs a stop_price"),
        ({"type": "MARKET", "quantity": Decimal(1), "close_position": True}, "close_position is for"),
        ({"type": "STOP_MARKET", "stop_price": Decimal(1), "close_position": True, "quantity": Decimal(1)}, "excludes"),
        ({"type": "MARKET", "quantity": Decimal(0)}, "positive"),
        ({"type": "MARKET", "quantity": Decimal("NaN")}, "positive"),
        ({"type": "MARKET", "quantity": Decimal(1), "client_order_id": "has space"}, "client_order_id"),
        ({"type": "MARKET", "quantity": Decimal(1), "client_order_id": "x" * 37}, "client_order_id"),
        ({"type": "MARKET", "quantity": Decimal(1), "stop_price": Decimal(1)}, "conditional orders only"),
        ({"type": "MARKET", "quantity": Decimal(1), "symbol": "btcusdt"}, "symbol"),
    ],
)
def test_invalid_requests_are_refused(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        request(**fields)
