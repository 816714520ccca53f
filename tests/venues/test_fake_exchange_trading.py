"""The fake exchange's trading side over real loopback sockets: order checks, matching, positions.

Every test signs its requests with the small client of ``trading_support`` and is bounded by
``trio.fail_after``; nothing waits for time to pass.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import trio

from tests.fake_exchange import DEFAULT_SYMBOLS, SymbolSpec
from tests.venues.trading_support import TIMEOUT, Venue, open_venue

DOGE = SymbolSpec(
    "DOGEUSDT",
    "DOGE",
    tick_size="0.00001",
    min_price="0.00001",
    step_size="1",
    min_qty="10",
    max_qty="1000000",
    market_max_qty="50000",
    price_precision=5,
    quantity_precision=0,
)
SYMBOLS = (*DEFAULT_SYMBOLS, DOGE)


def limit(
    side: str = "BUY", qty: str = "0.001", price: str = "59000", symbol: str = "BTCUSDT", **extra: Any
) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "side": side,
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": qty,
        "price": price,
        **extra,
    }


def market_order(side: str, qty: str, symbol: str = "BTCUSDT", **extra: Any) -> dict[str, Any]:
    return {"symbol": symbol, "side": side, "type": "MARKET", "quantity": qty, **extra}


async def refused(venue: Venue, params: dict[str, Any], path: str = "order") -> tuple[int, int, str]:
    response = await venue.client.call("POST", path, params)
    body = response.json()
    assert set(body) == {"code", "msg"}, body
    return response.status_code, body["code"], body["msg"]


# -- order checks ----------------------------------------------------------------------------------

CHECKS: list[tuple[str, dict[str, Any], int, str]] = [
    ("unknown symbol", limit(symbol="NOPEUSDT"), -1121, "Invalid symbol."),
    ("bad side", limit(side="HOLD"), -1117, "Invalid side."),
    ("bad type", {**limit(), "type": "ICEBERG"}, -1116, "Invalid orderType."),
    (
        "limit without price",
        {**limit(), "price": ""},
        -1102,
        "Mandatory parameter 'price' was not sent, was empty/null, or malformed.",
    ),
    (
        "market without quantity",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"},
        -1102,
        "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
    ),
    ("bad time in force", limit(timeInForce="GTD"), -1115, "Invalid timeInForce."),
    ("hedge mode", limit(positionSide="LONG"), -4061, "Order's position side does not match user's setting."),
    ("client id pattern", limit(newClientOrderId="has space"), -4015, "Client order id is not valid."),
    ("client id too long", limit(newClientOrderId="x" * 37), -4015, "Client order id is not valid."),
    ("off tick", limit(price="59000.05"), -4014, "Price not increased by tick size."),
    ("price precision", limit(price="59000.123"), -1111, "Precision is over the maximum defined for this asset."),
    ("off step", limit(symbol="SOLUSDT", qty="1.5", price="150"), -4023, "Qty not increased by step size."),
    ("quantity precision", limit(qty="0.0001"), -1111, "Precision is over the maximum defined for this asset."),
    ("below min qty", limit(symbol="DOGEUSDT", qty="5", price="0.1"), -4004, "Quantity less than min quantity."),
    ("above max qty", limit(qty="1001"), -4005, "Quantity greater than max quantity."),
    ("above market max qty", market_order("BUY", "121"), -4005, "Quantity greater than max quantity."),
    ("zero qty", limit(qty="0"), -4003, "Quantity less than zero."),
    ("above mark cap", limit(price="63000.1"), -4016, "Price is higher than mark price multiplier cap."),
    (
        "below mark floor",
        limit(side="SELL", price="56999.9"),
        -4024,
        "Price is lower than mark price multiplier floor.",
    ),
    (
        "min notional",
        limit(symbol="DOGEUSDT", qty="10", price="0.1"),
        -4164,
        "Order's notional must be no smaller than 5 (unless you choose reduce only)",
    ),
    ("reduce only increases", market_order("SELL", "0.001", reduceOnly="true"), -2022, "ReduceOnly Order is rejected."),
    ("margin", limit(qty="5", price="59000"), -2019, "Margin is insufficient."),
    (
        "quantity with closePosition",
        {**limit(), "type": "STOP_MARKET", "stopPrice": "70000", "closePosition": "true"},
        -4137,
        "Quantity must be zero with closePosition equals true",
    ),
    (
        "immediate trigger",
        {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "stopPrice": "61000", "closePosition": "true"},
        -2021,
        "Order would immediately trigger.",
    ),
    ("bad response type", limit(newOrderRespType="FULL"), -1136, "Invalid newOrderRespType."),
]


@pytest.mark.parametrize(("case", "params", "code", "msg"), CHECKS, ids=[c[0] for c in CHECKS])
async def test_new_order_checks(case: str, params: dict[str, Any], code: int, msg: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster", wallet="1000", symbols=SYMBOLS) as venue:
            venue.fake.set_mark("DOGEUSDT", "0.1")
            venue.fake.set_book("DOGEUSDT", bids=[("0.09999", "1000")], asks=[("0.10001", "1000")])
            status, got_code, got_msg = await refused(venue, params)
            assert venue.fake.orders(venue.account) == []
    assert (status, got_code, got_msg) == (400, code, msg)


async def test_conditional_types_need_the_algo_api_on_binance() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue:
            stop = {
                "symbol": "BTCUSDT",
                "side": "SELL",
                "type": "STOP_MARKET",
                "stopPrice": "50000",
                "closePosition": "true",
            }
            result = await refused(venue, stop)
    assert result == (
        400,
        -4120,
        "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.",
    )


async def test_client_id_unique_among_open_orders_only() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            client = venue.client
            first = await client.ok("POST", "order", limit(newClientOrderId="entry-1"))
            duplicate = await refused(venue, limit(newClientOrderId="entry-1"))
            await client.ok("DELETE", "order", {"symbol": "BTCUSDT", "origClientOrderId": "entry-1"})
            again = await client.ok("POST", "order", limit(newClientOrderId="entry-1"))
            queried = await client.ok("GET", "order", {"symbol": "BTCUSDT", "origClientOrderId": "entry-1"})
            assert len(venue.fake.order_requests("entry-1")) == 3
    assert duplicate == (400, -4116, "ClientOrderId is duplicated.")
    assert first["orderId"] != again["orderId"] and queried["orderId"] == again["orderId"]  # the open one wins


async def test_time_in_force_rules_differ_by_venue() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as aster:
            post_only = await aster.client.ok(
                "POST", "order", limit(price="60000.1", timeInForce="GTX", newOrderRespType="RESULT")
            )
            fok = await aster.client.ok(
                "POST", "order", limit(qty="3", price="60000.2", timeInForce="FOK", newOrderRespType="RESULT")
            )
        async with open_venue("binance") as binance:
            gtx = await refused(binance, limit(price="60000.1", timeInForce="GTX"))
            fok_refused = await refused(binance, limit(qty="3", price="60000.2", timeInForce="FOK"))
    assert (post_only["status"], post_only["executedQty"]) == ("EXPIRED", "0")
    assert (fok["status"], fok["executedQty"]) == ("EXPIRED", "0")
    assert gtx[1:] == (-5022, "Due to the order could not be executed as maker, the Post Only order will be rejected.")
    assert fok_refused[1] == -5021


# -- matching ----------------------------------------------------------------------------------------


async def test_market_order_walks_the_book_one_trade_per_level() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            fake, client = venue.fake, venue.client
            fake.set_book(
                "BTCUSDT", bids=[("59999.9", "1")], asks=[("60000.1", "0.5"), ("60000.2", "0.5"), ("60000.5", "1")]
            )
            result = await client.ok(
                "POST", "order", market_order("BUY", "1.2", newOrderRespType="RESULT", newClientOrderId="walk")
            )
            trades = await client.ok("GET", "userTrades", {"symbol": "BTCUSDT", "orderId": result["orderId"]})
            book = (await venue.http.get("/fapi/v1/depth", params={"symbol": "BTCUSDT", "limit": 5})).json()
    quote = (
        Decimal("0.5") * Decimal("60000.1") + Decimal("0.5") * Decimal("60000.2") + Decimal("0.2") * Decimal("60000.5")
    )
    assert (result["status"], result["executedQty"], result["cumQuote"]) == ("FILLED", "1.200", "72000.25")
    assert result["avgPrice"] == "60000.20833" and result["type"] == "MARKET"
    assert [(t["price"], t["qty"], t["maker"]) for t in trades] == [
        ("60000.1", "0.500", False),
        ("60000.2", "0.500", False),
        ("60000.5", "0.200", False),
    ]
    assert sum(Decimal(t["commission"]) for t in trades) == quote * Decimal("0.0004")
    assert book["asks"] == [["60000.5", "0.8"]]  # the liquidity taken is gone


async def test_what_the_book_cannot_fill_expires_and_ack_is_the_default() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue:
            fake, client = venue.fake, venue.client
            fake.set_book("BTCUSDT", bids=[("59999.9", "1")], asks=[("60000.1", "0.3")])
            ack = await client.ok("POST", "order", market_order("BUY", "0.5"))
            final = await client.ok("GET", "order", {"symbol": "BTCUSDT", "orderId": ack["orderId"]})
    assert (ack["status"], ack["executedQty"], ack["avgPrice"]) == ("NEW", "0", "0.00000")
    assert (final["status"], final["executedQty"], final["avgPrice"]) == ("EXPIRED", "0.300", "60000.10000")
    assert fake.orders(venue.account)[0].expiry_reason == 9


async def test_limit_order_rests_and_fills_as_maker_when_the_book_crosses_it() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            fake, client, account = venue.fake, venue.client, venue.account
            placed = await client.ok(
                "POST", "order", limit(side="SELL", qty="0.002", price="60010", newClientOrderId="ask")
            )
            assert placed["status"] == "NEW"
            fake.set_book("BTCUSDT", bids=[("60010.5", "0.001")], asks=[("60011", "1")])
            partial = await client.ok("GET", "openOrder", {"symbol": "BTCUSDT", "origClientOrderId": "ask"})
            fake.set_book("BTCUSDT", bids=[("60012", "5")], asks=[("60013", "1")])
            done = await client.call("GET", "openOrder", {"symbol": "BTCUSDT", "origClientOrderId": "ask"})
            order = await client.ok("GET", "order", {"symbol": "BTCUSDT", "origClientOrderId": "ask"})
    assert (partial["status"], partial["executedQty"]) == ("PARTIALLY_FILLED", "0.001")
    assert done.json() == {"code": -2013, "msg": "Order does not exist."}
    assert (order["status"], order["avgPrice"]) == ("FILLED", "60010.00000")
    assert all(t.maker and t.price == Decimal(60010) for t in fake.trades(account))
    assert fake.position(account, "BTCUSDT").amount == Decimal("-0.002")
    assert account.wallet == Decimal(10000) - Decimal("0.002") * 60010 * Decimal("0.0002")


async def test_ioc_remainder_expires() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            result = await venue.client.ok(
                "POST", "order", limit(qty="1.5", price="60000.1", timeInForce="IOC", newOrderRespType="RESULT")
            )
    assert (result["status"], result["executedQty"]) == ("EXPIRED", "1.000")


async def test_cancel_and_cancel_all() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            client = venue.client
            a = await client.ok("POST", "order", limit(price="59000"))
            await client.ok("POST", "order", limit(price="59100"))
            canceled = await client.ok("DELETE", "order", {"symbol": "BTCUSDT", "orderId": a["orderId"]})
            twice = await client.call("DELETE", "order", {"symbol": "BTCUSDT", "orderId": a["orderId"]})
            unknown = await client.call("GET", "order", {"symbol": "BTCUSDT", "orderId": 1})
            neither = await client.call("GET", "order", {"symbol": "BTCUSDT"})
            open_before = await client.ok("GET", "openOrders", {"symbol": "BTCUSDT"})
            cancel_all = await client.ok("DELETE", "allOpenOrders", {"symbol": "BTCUSDT"})
            open_after = await client.ok("GET", "openOrders")
    assert canceled["status"] == "CANCELED" and "cumQty" in canceled
    assert twice.json() == {"code": -2011, "msg": "Unknown order sent."}
    assert unknown.json() == {"code": -2013, "msg": "Order does not exist."}
    assert neither.json()["code"] == -1102
    assert [o["price"] for o in open_before] == ["59100.00"]
    assert cancel_all == {"code": "200", "msg": "The operation of cancel all open order is done."}
    assert open_after == []


# -- positions and the wallet --------------------------------------------------------------------


@pytest.mark.parametrize("api", ["v1", "v3"])
async def test_position_entry_pnl_margin_and_fees(api: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster", api=api) as venue:  # type: ignore[arg-type]
            fake, client, account = venue.fake, venue.client, venue.account
            await client.ok("POST", "order", market_order("BUY", "0.01"))
            fake.set_mark("BTCUSDT", "61000")
            fake.set_book("BTCUSDT", bids=[("60999.9", "1")], asks=[("61000.1", "1")])
            risk_path = "/fapi/v2/positionRisk" if api == "v1" else "positionRisk"
            (opened,) = await client.ok("GET", risk_path, {"symbol": "BTCUSDT"})
            await client.ok("POST", "order", market_order("SELL", "0.004", reduceOnly="true"))
            (reduced,) = await client.ok("GET", risk_path, {"symbol": "BTCUSDT"})
            income = await client.ok("GET", "income", {"symbol": "BTCUSDT"})
            balance_path = "/fapi/v2/balance" if api == "v1" else "balance"
            (balance,) = await client.ok("GET", balance_path)
    entry, exit_price = Decimal("60000.1"), Decimal("60999.9")
    margin = Decimal("0.01") * entry / 20
    assert (opened["positionAmt"], opened["entryPrice"], opened["leverage"], opened["marginType"]) == (
        "0.010",
        "60000.10000",
        "20",
        "isolated",
    )
    assert Decimal(opened["unRealizedProfit"]) == Decimal("0.01") * (61000 - entry)
    assert Decimal(opened["isolatedMargin"]) == margin + Decimal("0.01") * (61000 - entry)
    assert 0 < Decimal(opened["liquidationPrice"]) < entry
    realized = Decimal("0.004") * (exit_price - entry)
    fees = (Decimal("0.01") * entry + Decimal("0.004") * exit_price) * Decimal("0.0004")
    assert reduced["positionAmt"] == "0.006"
    assert account.position("BTCUSDT").isolated_wallet == margin * Decimal("0.6")
    assert account.wallet == 10000 + realized - fees
    assert Decimal(balance["balance"]) == (10000 + realized - fees).quantize(
        Decimal("0.00000001"), rounding="ROUND_DOWN"
    )
    assert [e["incomeType"] for e in income] == ["COMMISSION", "REALIZED_PNL", "COMMISSION"]
    assert Decimal(income[1]["income"]) == realized and income[1]["tradeId"] != ""
    assert isinstance(income[0]["tranId"], str)  # Aster prints tranId as a string


async def test_flip_through_zero_opens_the_other_side_at_the_fill_price() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue:
            fake, client, account = venue.fake, venue.client, venue.account
            await client.ok("POST", "order", market_order("BUY", "0.5"))
            await client.ok("POST", "order", market_order("SELL", "0.8"))
            position = fake.position(account, "BTCUSDT")
            (risk,) = await client.ok("GET", "/fapi/v3/positionRisk")
    assert position.amount == Decimal("-0.3") and position.entry_price == Decimal("59999.9")
    assert position.isolated_wallet == Decimal("0.3") * Decimal("59999.9") / 20
    assert risk["positionAmt"] == "-0.300" and risk["symbol"] == "BTCUSDT"


async def test_leverage_and_margin_type() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            client = venue.client
            ten = await client.ok("POST", "leverage", {"symbol": "BTCUSDT", "leverage": 10})
            too_high = await client.call("POST", "leverage", {"symbol": "BTCUSDT", "leverage": 200})
            same_type = await client.call("POST", "marginType", {"symbol": "BTCUSDT", "marginType": "ISOLATED"})
            crossed = await client.ok("POST", "marginType", {"symbol": "ETHUSDT", "marginType": "CROSSED"})
            await client.ok("POST", "order", market_order("BUY", "0.01"))
            with_position = await client.call("POST", "marginType", {"symbol": "BTCUSDT", "marginType": "CROSSED"})
            lower = await client.call("POST", "leverage", {"symbol": "BTCUSDT", "leverage": 5})
            await client.ok("POST", "order", limit(symbol="SOLUSDT", qty="1", price="149"))
            with_orders = await client.call("POST", "marginType", {"symbol": "SOLUSDT", "marginType": "CROSSED"})
            dual = await client.ok("GET", "positionSide/dual")
            commission = await client.ok("GET", "commissionRate", {"symbol": "BTCUSDT"})
    assert ten == {"leverage": 10, "maxNotionalValue": "15000000", "symbol": "BTCUSDT"}
    assert too_high.json() == {"code": -4028, "msg": "Leverage 200 is not valid"}
    assert same_type.json() == {"code": -4046, "msg": "No need to change margin type."}
    assert crossed == {"code": 200, "msg": "success"}
    assert with_position.json()["code"] == -4048
    assert lower.json()["code"] == -4161
    assert with_orders.json()["code"] == -4047
    assert dual == {"dualSidePosition": False}
    assert commission == {"symbol": "BTCUSDT", "makerCommissionRate": "0.0002", "takerCommissionRate": "0.0004"}
    assert venue.account.position("BTCUSDT").isolated_wallet == Decimal("0.01") * Decimal("60000.1") / 10


async def test_trade_and_income_history_filters() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue:
            client = venue.client
            for _ in range(3):
                await client.ok("POST", "order", market_order("BUY", "0.001"))
            all_trades = await client.ok("GET", "userTrades", {"symbol": "BTCUSDT"})
            from_second = await client.ok("GET", "userTrades", {"symbol": "BTCUSDT", "fromId": all_trades[1]["id"]})
            last_one = await client.ok("GET", "userTrades", {"symbol": "BTCUSDT", "limit": 1})
            bad_combo = await client.call("GET", "userTrades", {"symbol": "BTCUSDT", "fromId": 1, "startTime": 1})
            commissions = await client.ok("GET", "income", {"incomeType": "COMMISSION", "limit": 2})
            future = await client.ok("GET", "income", {"startTime": venue.fake.server_ms() + 60_000})
    assert [t["id"] for t in from_second] == [t["id"] for t in all_trades[1:]]
    assert last_one == all_trades[-1:]
    assert bad_combo.json()["code"] == -1128
    assert len(commissions) == 2 and all(isinstance(c["tranId"], int) for c in commissions)
    assert future == []


async def test_countdown_cancel_all_fires_on_the_venue_clock() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            fake, client = venue.fake, venue.client
            await client.ok("POST", "order", limit())
            armed = await client.ok("POST", "countdownCancelAll", {"symbol": "BTCUSDT", "countdownTime": 120_000})
            fake.clock_offset_ms = 121_000
            await fake.wait_until(lambda: not fake.open_orders(venue.account))
    assert armed == {"symbol": "BTCUSDT", "countdownTime": "120000"}
    assert fake.orders(venue.account)[0].status == "CANCELED"


async def test_one_way_mode_only_and_binance_symbol_config() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue:
            client = venue.client
            one_way = await client.call("POST", "positionSide/dual", {"dualSidePosition": "false"})
            hedge = await client.call("POST", "positionSide/dual", {"dualSidePosition": "true"})
            await client.ok("POST", "leverage", {"symbol": "ETHUSDT", "leverage": 21})
            config = await client.ok("GET", "symbolConfig", {"symbol": "ETHUSDT"})
    assert one_way.json() == {"code": -4059, "msg": "No need to change position side."}
    assert hedge.json()["code"] == -1020  # the fake does not model hedge mode
    assert config == [
        {
            "symbol": "ETHUSDT",
            "marginType": "ISOLATED",
            "isAutoAddMargin": False,
            "leverage": 21,
            "maxNotionalValue": "3000000",
        }
    ]
