"""The fake's trading answers and user-data events have the official shapes (``payloads/account/``).

Same keys and same JSON types as the official examples, recursively; values are not compared
(the examples are documentation samples). Fields that the venues print only for some orders are
listed as optional (trailing-stop fields; ``ap``/``aq``/``act``/``rm`` of ``ALGO_UPDATE``), and the
only extra field the fake sends is Binance's ``ma`` in positions of ``ACCOUNT_UPDATE``, seen on
Binance's testnet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from tests.venues.trading_support import TIMEOUT, Venue, open_venue, user_stream

PAYLOADS = Path(__file__).parent / "payloads" / "account"
TRAILING = frozenset({"activatePrice", "priceRate"})
ALGO_LATE = frozenset({"ap", "aq", "act", "rm"})


def reference(name: str) -> Any:
    payload = msgspec.json.decode((PAYLOADS / name).read_bytes())
    return payload["data"] if isinstance(payload, dict) and "stream" in payload else payload


def shape_problems(
    actual: Any,
    expected: Any,
    where: str = "$",
    *,
    optional: frozenset[str] = frozenset(),
    extra: frozenset[str] = frozenset(),
) -> list[str]:
    """Differences of keys and JSON types between ``actual`` and the official ``expected``."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: {type(actual).__name__} instead of an object"]
        problems = [f"{where}.{k}: missing" for k in expected.keys() - actual.keys() - optional]
        problems += [f"{where}.{k}: not in the official shape" for k in actual.keys() - expected.keys() - extra]
        for key in expected.keys() & actual.keys():
            problems += shape_problems(actual[key], expected[key], f"{where}.{key}", optional=optional, extra=extra)
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{where}: {type(actual).__name__} instead of an array"]
        if expected and actual:
            return shape_problems(actual[0], expected[0], f"{where}[0]", optional=optional, extra=extra)
        return []
    if type(actual) is not type(expected):
        return [
            f"{where}: {type(actual).__name__} {actual!r} where the venue sends {type(expected).__name__} {expected!r}"
        ]
    return []


def check(
    actual: Any, name: str, *, optional: frozenset[str] = frozenset(), extra: frozenset[str] = frozenset()
) -> None:
    problems = shape_problems(actual, reference(name), optional=optional, extra=extra)
    assert not problems, f"{name}: " + "; ".join(problems)


@asynccontextmanager
async def scenario(flavour: str) -> AsyncIterator[tuple[Venue, dict[str, Any], list[dict[str, Any]]]]:
    """Fills, a resting order and history; yields REST answers by payload name and the events."""
    answers: dict[str, Any] = {}
    async with open_venue(flavour) as venue, user_stream(venue) as stream:  # type: ignore[arg-type]
        client, fake = venue.client, venue.fake
        fake.set_book("BTCUSDT", bids=[("59999.9", "1")], asks=[("60000.1", "1")])
        answers["order_new"] = await client.ok(
            "POST", "order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"}
        )
        rest = {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.001",
            "price": "59000",
        }
        resting = await client.ok("POST", "order", rest)
        answers["order_query"] = await client.ok("GET", "order", {"symbol": "BTCUSDT", "orderId": resting["orderId"]})
        answers["openOrders"] = await client.ok("GET", "openOrders")
        answers["openOrder_query"] = await client.ok(
            "GET", "openOrder", {"symbol": "BTCUSDT", "orderId": resting["orderId"]}
        )
        answers["allOrders"] = await client.ok("GET", "allOrders", {"symbol": "BTCUSDT"})
        answers["order_cancel"] = await client.ok(
            "DELETE", "order", {"symbol": "BTCUSDT", "orderId": resting["orderId"]}
        )
        answers["leverage_change"] = await client.ok("POST", "leverage", {"symbol": "ETHUSDT", "leverage": 21})
        answers["marginType_change"] = await client.ok(
            "POST", "marginType", {"symbol": "ETHUSDT", "marginType": "CROSSED"}
        )
        answers["positionSide_dual_get"] = await client.ok("GET", "positionSide/dual")
        answers["commissionRate"] = await client.ok("GET", "commissionRate", {"symbol": "BTCUSDT"})
        answers["userTrades"] = await client.ok("GET", "userTrades", {"symbol": "BTCUSDT"})
        fake.pay_funding(venue.account, "BTCUSDT")
        answers["income"] = await client.ok("GET", "income")
        answers["countdownCancelAll"] = await client.ok(
            "POST", "countdownCancelAll", {"symbol": "BTCUSDT", "countdownTime": 100000}
        )
        answers["allOpenOrders_cancel"] = await client.ok("DELETE", "allOpenOrders", {"symbol": "BTCUSDT"})
        answers["listenKey_start"] = {"listenKey": stream.key}
        yield venue, answers, stream.received
        fake.expire_listen_key(venue.account)
        await stream.until("listenKeyExpired")


async def test_aster_shapes() -> None:
    with trio.fail_after(TIMEOUT):
        async with scenario("aster") as (venue, answers, events):
            client = venue.client
            answers["positionRisk_oneway"] = await client.ok("GET", "/fapi/v2/positionRisk")
            answers["balance"] = await client.ok("GET", "/fapi/v2/balance")
            answers["account"] = await client.ok("GET", "/fapi/v4/account")
        assert set(answers) == set(ASTER_REST)
        for name, answer in answers.items():
            check(answer, f"aster_{name}.json", optional=TRAILING)
        by_type = {e["e"]: e for e in events}
        check(by_type["ORDER_TRADE_UPDATE"], "aster_ws_ORDER_TRADE_UPDATE.json")
        check(by_type["ACCOUNT_UPDATE"], "aster_ws_ACCOUNT_UPDATE.json")
        check(by_type["ACCOUNT_CONFIG_UPDATE"], "aster_ws_ACCOUNT_CONFIG_UPDATE_leverage.json")
        check(by_type["listenKeyExpired"], "aster_ws_listenKeyExpired.json")


async def test_aster_v3_answers_like_v1() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster", api="v3") as venue:
            client = venue.client
            await client.ok("POST", "order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"})
            risk = await client.ok("GET", "positionRisk")
            balance = await client.ok("GET", "balance")
            account = await client.ok("GET", "accountWithJoinMargin")
    check(risk, "aster_positionRisk_oneway.json")
    check(balance, "aster_balance.json")
    check(account, "aster_account.json")


async def test_binance_shapes() -> None:
    with trio.fail_after(TIMEOUT):
        async with scenario("binance") as (venue, answers, _events):
            client, fake = venue.client, venue.fake
            answers["positionRisk_v2_oneway"] = await client.ok("GET", "/fapi/v2/positionRisk")
            answers["positionRisk_v3_oneway"] = await client.ok("GET", "/fapi/v3/positionRisk")
            answers["balance_v2"] = await client.ok("GET", "/fapi/v2/balance")
            answers["balance_v3"] = await client.ok("GET", "/fapi/v3/balance")
            answers["account_v3"] = await client.ok("GET", "/fapi/v3/account")
            stop = {
                "algoType": "CONDITIONAL",
                "symbol": "BTCUSDT",
                "side": "SELL",
                "type": "STOP_MARKET",
                "triggerPrice": "59000",
                "closePosition": "true",
                "workingType": "MARK_PRICE",
            }
            answers["algoOrder_new"] = await client.ok("POST", "algoOrder", stop)
            answers["openAlgoOrders"] = await client.ok("GET", "openAlgoOrders")
            answers["algoOrder_query"] = await client.ok(
                "GET", "algoOrder", {"algoId": answers["algoOrder_new"]["algoId"]}
            )
            answers["algoOrder_cancel"] = await client.ok(
                "DELETE", "algoOrder", {"algoId": answers["algoOrder_new"]["algoId"]}
            )
            await client.ok("POST", "algoOrder", {**stop, "clientAlgoId": "sl"})
            fake.set_mark("BTCUSDT", "58000")
            await fake.wait_until(
                lambda: any(e.get("o", {}).get("X") == "FINISHED" for e in fake.user_events(venue.account))
            )
            await client.ok(
                "POST", "order", {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.01"}
            )
            ro = {
                "algoType": "CONDITIONAL",
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "STOP_MARKET",
                "triggerPrice": "59000",
                "quantity": "0.01",
                "reduceOnly": "true",
                "workingType": "MARK_PRICE",
            }
            await client.ok("POST", "algoOrder", ro)
            fake.close_externally(venue.account, "BTCUSDT")
            fake.set_mark("BTCUSDT", "59500")
        for name in BINANCE_REST:  # Binance's docs have no example for the others
            check(answers[name], f"binance_{name}.json", optional=TRAILING)
        by_type: dict[str, list[dict[str, Any]]] = {}
        for event in fake.user_events(venue.account):
            by_type.setdefault(event["e"], []).append(event)
        for event in by_type["ORDER_TRADE_UPDATE"]:
            check(event, "binance_ws_ORDER_TRADE_UPDATE.json")
        for event in by_type["ACCOUNT_UPDATE"]:
            check(event, "binance_ws_ACCOUNT_UPDATE.json", extra=frozenset({"ma"}))
        for event in by_type["ALGO_UPDATE"]:
            check(event, "binance_ws_ALGO_UPDATE.json", optional=ALGO_LATE)
        (triggered,) = [e for e in by_type["ALGO_UPDATE"] if e["o"]["X"] == "TRIGGERED"]
        check(triggered, "binance_ws_ALGO_UPDATE_triggered_recorded.json")
        check(by_type["TRADE_LITE"][0], "binance_ws_TRADE_LITE.json")
        check(by_type["CONDITIONAL_ORDER_TRIGGER_REJECT"][0], "binance_ws_CONDITIONAL_ORDER_TRIGGER_REJECT.json")
        check(by_type["ACCOUNT_CONFIG_UPDATE"][0], "binance_ws_ACCOUNT_CONFIG_UPDATE_leverage.json")
        check(by_type["listenKeyExpired"][0], "binance_ws_listenKeyExpired.json")


#: official examples of things the fake does not do, and why (the client still parses them)
NOT_SENT_BY_THE_FAKE = {
    "aster_positionRisk_hedge.json": "hedge mode: the service trades one-way, the fake refuses dual positions",
    "binance_positionRisk_v2_hedge.json": "hedge mode",
    "binance_positionRisk_v3_hedge.json": "hedge mode",
    "aster_ws_MARGIN_CALL.json": "margin calls are not modelled (isolated positions are liquidated instead)",
    "binance_ws_MARGIN_CALL.json": "margin calls are not modelled",
    "aster_ws_ACCOUNT_CONFIG_UPDATE_account.json": "multi-assets mode changes are not modelled",
    "binance_ws_ACCOUNT_CONFIG_UPDATE_account.json": "multi-assets mode changes are not modelled",
}


def test_every_trading_payload_is_checked() -> None:
    """Each official example in ``payloads/account/`` is compared by one of the tests above, or
    named in :data:`NOT_SENT_BY_THE_FAKE` with the reason."""
    source = Path(__file__).read_text().split("NOT_SENT_BY_THE_FAKE = {")[0]
    names = {p.name for p in PAYLOADS.glob("*.json")}
    generated = {f"aster_{n}.json" for n in ASTER_REST} | {f"binance_{n}.json" for n in BINANCE_REST}
    literal = {n for n in names if n in source}
    assert names - generated - literal == set(NOT_SENT_BY_THE_FAKE)


COMMON_REST = (
    "order_new", "order_query", "openOrders", "openOrder_query", "allOrders", "order_cancel", "leverage_change",
    "marginType_change", "positionSide_dual_get", "commissionRate", "userTrades", "income", "countdownCancelAll",
    "allOpenOrders_cancel", "listenKey_start",
)  # fmt: skip
ASTER_REST = (*COMMON_REST, "positionRisk_oneway", "balance", "account")
BINANCE_REST = (
    "order_new", "order_query", "openOrders", "order_cancel", "leverage_change", "marginType_change",
    "commissionRate", "userTrades", "income", "allOpenOrders_cancel", "listenKey_start", "positionRisk_v2_oneway",
    "positionRisk_v3_oneway", "balance_v2", "balance_v3", "account_v3", "algoOrder_new", "openAlgoOrders",
    "algoOrder_query", "algoOrder_cancel",
)  # fmt: skip


@pytest.mark.parametrize("name", sorted(p.name for p in PAYLOADS.glob("*.json")))
def test_payload_files_are_strict_json(name: str) -> None:
    assert reference(name) is not None
