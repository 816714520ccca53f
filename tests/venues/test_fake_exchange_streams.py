"""User-data streams, triggers and Binance algo orders of the fake exchange, over real sockets.

Each test waits for the events it needs (bounded by ``trio.fail_after``); the passing of time
(listenKey expiry) is scripted with the venue's clock offset.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from tests.venues.trading_support import TIMEOUT, open_venue, user_stream

LONG = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"}


def stop(kind: str, side: str, price: str, *, working: str = "MARK_PRICE", **extra: Any) -> dict[str, Any]:
    """An Aster classic conditional order closing the position."""
    return {
        "symbol": "BTCUSDT",
        "side": side,
        "type": kind,
        "stopPrice": price,
        "closePosition": "true",
        "workingType": working,
        **extra,
    }


def algo(kind: str, side: str, price: str, **extra: Any) -> dict[str, Any]:
    """A Binance conditional algo order (closePosition unless a quantity is given)."""
    base = {
        "algoType": "CONDITIONAL",
        "symbol": "BTCUSDT",
        "side": side,
        "type": kind,
        "triggerPrice": price,
        "workingType": "MARK_PRICE",
    }
    if "quantity" not in extra:
        base["closePosition"] = "true"
    return {**base, **extra}


def increasing(events: list[dict[str, Any]]) -> bool:
    stamps = [int(e["E"]) for e in events]
    return all(a < b for a, b in itertools.pairwise(stamps))


@pytest.mark.parametrize("flavour", ["aster", "binance"])
async def test_a_market_order_streams_new_trade_and_account_update(flavour: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue(flavour) as venue, user_stream(venue) as stream:  # type: ignore[arg-type]
            placed = await venue.client.ok("POST", "order", {**LONG, "newClientOrderId": "entry-1"})
            events: list[dict[str, Any]] = []
            while not events or events[-1]["e"] != "ACCOUNT_UPDATE":
                events.append(await stream.next())
    kinds = [e["e"] for e in events]
    expected = ["ORDER_TRADE_UPDATE", "ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"]
    if flavour == "binance":
        expected.insert(1, "TRADE_LITE")  # sent before each fill's ORDER_TRADE_UPDATE
    assert kinds == expected and increasing(events)
    new, trade = (e["o"] for e in events if e["e"] == "ORDER_TRADE_UPDATE")
    assert (new["x"], new["X"], new["c"], new["i"]) == ("NEW", "NEW", "entry-1", placed["orderId"])
    assert (trade["x"], trade["X"], trade["l"], trade["z"], trade["L"]) == (
        "TRADE",
        "FILLED",
        "0.010",
        "0.010",
        "60000.1",
    )
    assert Decimal(trade["n"]) == Decimal("0.01") * Decimal("60000.1") * Decimal("0.0004") and trade["m"] is False
    update = events[-1]["a"]
    assert update["m"] == "ORDER" and update["B"][0]["a"] == "USDT"
    assert (update["P"][0]["s"], update["P"][0]["pa"], update["P"][0]["mt"]) == ("BTCUSDT", "0.01", "isolated")
    assert venue.fake.user_events(venue.account) == events


async def test_several_connections_on_one_key_get_every_event() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            key = await venue.client.listen_key()
            async with user_stream(venue, key) as first, user_stream(venue, key) as second:
                await venue.client.ok("POST", "order", LONG)
                a = await first.until("ACCOUNT_UPDATE")
                b = await second.until("ACCOUNT_UPDATE")
    assert a == b and first.received == second.received


async def test_listen_key_keepalive_expiry_and_renewal() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue:
            fake, client = venue.fake, venue.client
            key = await client.listen_key()
            assert await client.listen_key() == key  # an active key is returned again (and extended)
            headers = {"X-MBX-APIKEY": client.api_key}
            assert (await venue.http.put("/fapi/v1/listenKey", headers=headers)).json() == {}
            async with user_stream(venue, key) as stream:
                fake.clock_offset_ms = 61 * 60 * 1000  # an hour passes on the venue's clock
                expired = await stream.until("listenKeyExpired")
                keepalive = await venue.http.put("/fapi/v1/listenKey", headers=headers)
                (session,) = fake.user_sessions.values()
                sent_before = session.events_sent
                renewed = await client.listen_key()
                client.skew_ms = fake.clock_offset_ms  # a client in step with the venue's clock
                async with user_stream(venue, renewed) as fresh:
                    await client.ok("POST", "order", LONG)
                    await fresh.until("ACCOUNT_UPDATE")
                assert session.events_sent == sent_before  # the expired key's socket gets nothing more
    assert expired == {"e": "listenKeyExpired", "E": expired["E"], "listenKey": key} and isinstance(expired["E"], str)
    assert (keepalive.status_code, keepalive.json()) == (400, {"code": -1125, "msg": "This listenKey does not exist."})
    assert renewed != key


async def test_expired_or_closed_keys_refuse_websockets() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            fake = venue.fake
            key = await venue.client.listen_key()
            async with user_stream(venue, key) as stream:
                fake.expire_listen_key(venue.account)
                assert await stream.next() == {"e": "listenKeyExpired", "E": stream.received[0]["E"]}
            with pytest.raises(ConnectionRejected) as rejected:
                async with open_websocket_url(f"{fake.ws_url}/ws/{key}"):
                    pass
            key = await venue.client.listen_key()
            async with user_stream(venue, key) as stream:
                closed = await venue.http.delete("/fapi/v1/listenKey", headers={"X-MBX-APIKEY": venue.client.api_key})
                with pytest.raises(ConnectionClosed):
                    await stream.next()
    assert rejected.value.status_code == 400
    assert closed.json() == {}


async def test_dropped_user_streams() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue, user_stream(venue) as stream:
            assert venue.fake.drop_user_streams() == 1
            with pytest.raises(ConnectionClosed) as closed:
                await stream.next()
            await venue.fake.wait_until(lambda: not venue.fake.user_sessions)
    assert closed.value.reason is not None and closed.value.reason.code == 1006


# -- Aster classic conditional orders --------------------------------------------------------------


async def test_stop_loss_triggers_on_the_mark_and_the_take_profit_expires() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue, user_stream(venue) as stream:
            fake, client = venue.fake, venue.client
            await client.ok("POST", "order", LONG)
            sl = await client.ok("POST", "order", stop("STOP_MARKET", "SELL", "59000", newClientOrderId="sl-1"))
            tp = await client.ok("POST", "order", stop("TAKE_PROFIT_MARKET", "SELL", "62000", newClientOrderId="tp-1"))
            second_sl = await client.call("POST", "order", stop("STOP_MARKET", "SELL", "58000"))
            assert (sl["origQty"], sl["closePosition"], sl["reduceOnly"], sl["timeInForce"]) == ("0", True, True, "GTC")
            fake.set_mark("BTCUSDT", "58900")
            triggered = await stream.until("ORDER_TRADE_UPDATE", c="sl-1", x="NEW", o="MARKET")
            filled = await stream.until("ORDER_TRADE_UPDATE", c="sl-1", x="TRADE")
            expired = await stream.until("ORDER_TRADE_UPDATE", c="tp-1")
            sl_after = await client.ok("GET", "order", {"symbol": "BTCUSDT", "origClientOrderId": "sl-1"})
            tp_after = await client.ok("GET", "order", {"symbol": "BTCUSDT", "orderId": tp["orderId"]})
    assert second_sl.json()["code"] == -4130
    assert (triggered["o"]["ot"], triggered["o"]["sp"], triggered["o"]["cp"]) == ("STOP_MARKET", "59000.00", True)
    assert (filled["o"]["X"], filled["o"]["z"], filled["o"]["L"]) == ("FILLED", "0.010", "59999.9")
    assert (expired["o"]["x"], expired["o"]["X"]) == ("EXPIRED", "EXPIRED")
    assert (sl_after["status"], sl_after["type"], sl_after["origType"]) == ("FILLED", "MARKET", "STOP_MARKET")
    assert tp_after["status"] == "EXPIRED"
    assert venue.fake.position(venue.account, "BTCUSDT").amount == 0


async def test_contract_price_triggers_and_price_protection() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            fake, client, account = venue.fake, venue.client, venue.account
            await client.ok("POST", "order", LONG)
            await client.ok(
                "POST", "order", stop("STOP_MARKET", "SELL", "58000", working="CONTRACT_PRICE", priceProtect="true")
            )
            fake.set_book("BTCUSDT", bids=[("55999", "1")], asks=[("56001", "1")])  # 6.7% under the mark: protected
            protected = fake.position(account, "BTCUSDT").amount
            fake.set_mark("BTCUSDT", "56100")  # mark and contract price agree again: it fires
    assert protected == Decimal("0.01")
    assert fake.position(account, "BTCUSDT").amount == 0
    (sl,) = [o for o in fake.orders(account) if o.orig_type == "STOP_MARKET"]
    assert sl.status == "FILLED" and sl.avg_price == Decimal(55999)


# -- Binance algo orders -----------------------------------------------------------------------------


async def test_algo_stop_lifecycle_new_triggering_triggered_finished() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue, user_stream(venue) as stream:
            fake, client = venue.fake, venue.client
            await client.ok("POST", "order", LONG)
            placed = await client.ok("POST", "algoOrder", algo("STOP_MARKET", "SELL", "59000.05", clientAlgoId="sl-1"))
            await client.ok("POST", "algoOrder", algo("TAKE_PROFIT_MARKET", "SELL", "62000", clientAlgoId="tp-1"))
            duplicate = await client.call("POST", "algoOrder", algo("STOP_MARKET", "SELL", "58000"))
            immediate = await client.call("POST", "algoOrder", algo("STOP_MARKET", "SELL", "61000"))
            new_event = await stream.until("ALGO_UPDATE", caid="sl-1")
            open_algos = await client.ok("GET", "openAlgoOrders", {"symbol": "BTCUSDT"})
            fake.set_mark("BTCUSDT", "58900")
            sequence = [await stream.until("ALGO_UPDATE", caid="sl-1", X="TRIGGERING")]
            while sequence[-1].get("o", {}).get("X") != "FINISHED" or sequence[-1]["e"] != "ALGO_UPDATE":
                sequence.append(await stream.next())
            queried = await client.ok("GET", "algoOrder", {"clientAlgoId": "sl-1"})
            child = await client.ok("GET", "order", {"symbol": "BTCUSDT", "origClientOrderId": "sl-1"})
            tp = await client.ok("GET", "algoOrder", {"clientAlgoId": "tp-1"})
    assert (placed["algoStatus"], placed["timeInForce"], placed["quantity"], placed["triggerPrice"]) == (
        "NEW",
        "GTE_GTC",
        "0",
        "59000.05",
    )
    assert duplicate.json()["code"] == -4130 and immediate.json()["code"] == -2021
    assert new_event["o"]["X"] == "NEW" and "ap" not in new_event["o"]
    assert [a["clientAlgoId"] for a in open_algos] == ["sl-1", "tp-1"]
    summary = [(e["e"], e["o"].get("X") if "o" in e else None) for e in sequence if e["e"] != "TRADE_LITE"]
    assert summary[0] == ("ALGO_UPDATE", "TRIGGERING")
    assert summary[1:3] == [("ORDER_TRADE_UPDATE", "NEW"), ("ORDER_TRADE_UPDATE", "FILLED")]
    assert ("ACCOUNT_UPDATE", None) in summary and summary[-2:] == [
        ("ALGO_UPDATE", "TRIGGERED"),
        ("ALGO_UPDATE", "FINISHED"),
    ]
    child_new = sequence[1]["o"]
    assert (child_new["c"], child_new["o"], child_new["ot"], child_new["i"]) == (
        "sl-1",
        "MARKET",
        "STOP_MARKET",
        child["orderId"],
    )
    triggered, finished = sequence[-2]["o"], sequence[-1]["o"]
    assert (triggered["ai"], triggered["act"], triggered["ap"], triggered["aq"]) == (
        str(child["orderId"]),
        "MARKET",
        "0",
        "0",
    )
    assert (finished["ap"], finished["aq"]) == ("59999.90000", "0.010")
    assert (queried["algoStatus"], queried["actualOrderId"], queried["actualPrice"]) == (
        "FINISHED",
        str(child["orderId"]),
        "59999.90000",
    )
    assert child["status"] == "FILLED" and tp["algoStatus"] == "EXPIRED"  # GTE_GTC: its position is gone


async def test_algo_reduce_only_trigger_rejected_without_a_position() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue, user_stream(venue) as stream:
            fake, client = venue.fake, venue.client
            await client.ok("POST", "order", {**LONG, "side": "SELL"})
            await client.ok(
                "POST",
                "algoOrder",
                algo("STOP_MARKET", "BUY", "61000", quantity="0.01", reduceOnly="true", clientAlgoId="ro"),
            )
            fake.close_externally(venue.account, "BTCUSDT")
            fake.set_mark("BTCUSDT", "61500")
            reject = await stream.until("CONDITIONAL_ORDER_TRIGGER_REJECT")
            rejected = await stream.until("ALGO_UPDATE", caid="ro", X="REJECTED")
    (algo_order,) = fake.algo_orders(venue.account, client_algo_id="ro")
    assert reject["or"] == {"s": "BTCUSDT", "i": algo_order.algo_id, "r": "ReduceOnly Order is rejected."}
    assert rejected["o"]["rm"] == "Reduce Only reject"


async def test_algo_query_cancel_and_cancel_all() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue:
            client = venue.client
            await client.ok("POST", "order", LONG)
            a = await client.ok("POST", "algoOrder", algo("STOP_MARKET", "SELL", "59000"))
            await client.ok("POST", "algoOrder", algo("TAKE_PROFIT_MARKET", "SELL", "63000"))
            canceled = await client.ok("DELETE", "algoOrder", {"algoId": a["algoId"]})
            twice = await client.call("DELETE", "algoOrder", {"algoId": a["algoId"]})
            unknown = await client.call("GET", "algoOrder", {"clientAlgoId": "nope"})
            all_canceled = await client.ok("DELETE", "algoOpenOrders", {"symbol": "BTCUSDT"})
            left = await client.ok("GET", "openAlgoOrders")
            history = await client.ok("GET", "allAlgoOrders", {"symbol": "BTCUSDT"})
    assert canceled == {"algoId": a["algoId"], "clientAlgoId": a["clientAlgoId"], "code": "200", "msg": "success"}
    assert twice.json()["code"] == -2011 and unknown.json()["code"] == -2013
    assert all_canceled == {"code": 200, "msg": "The operation of cancel all open order is done."}
    assert left == [] and [h["algoStatus"] for h in history] == ["CANCELED", "CANCELED"]


# -- the venue behind the client's back ----------------------------------------------------------


async def test_liquidation_events() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue, user_stream(venue) as stream:
            fake, client, account = venue.fake, venue.client, venue.account
            await client.ok("POST", "order", LONG)
            resting = await client.ok(
                "POST",
                "order",
                {
                    "symbol": "BTCUSDT",
                    "side": "BUY",
                    "type": "LIMIT",
                    "timeInForce": "GTC",
                    "quantity": "0.001",
                    "price": "59000",
                },
            )
            margin = fake.position(account, "BTCUSDT").isolated_wallet
            wallet_before = account.wallet
            order = fake.liquidate(account, "BTCUSDT")
            assert order is not None
            expired = await stream.until("ORDER_TRADE_UPDATE", i=resting["orderId"], x="EXPIRED")
            announced = await stream.until("ORDER_TRADE_UPDATE", c=order.client_id, x="NEW")
            calculated = await stream.until("ORDER_TRADE_UPDATE", c=order.client_id)
            update = await stream.until("ACCOUNT_UPDATE")
    assert (expired["o"]["X"], expired["o"]["er"]) == ("EXPIRED", "5")
    assert order.client_id.startswith("autoclose-") and announced["o"]["o"] == "LIQUIDATION"
    assert (calculated["o"]["x"], calculated["o"]["X"], calculated["o"]["f"]) == ("CALCULATED", "FILLED", "IOC")
    assert Decimal(calculated["o"]["n"]) == 0  # no commission on a liquidation fill
    assert Decimal(calculated["o"]["rp"]) == -margin.quantize(Decimal("0.00000001"))
    assert account.wallet == wallet_before - margin and update["a"]["P"][0]["pa"] == "0"


async def test_funding_transfer_external_trade_and_venue_cancel() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue, user_stream(venue) as stream:
            fake, account = venue.fake, venue.account
            external = fake.trade_externally(account, "BTCUSDT", "BUY", "0.01")
            announced = await stream.until("ORDER_TRADE_UPDATE", x="NEW")
            paid = fake.pay_funding(account, "BTCUSDT", "0.0001")
            funding = await stream.until("ACCOUNT_UPDATE")
            while funding["a"]["m"] != "FUNDING_FEE":
                funding = await stream.until("ACCOUNT_UPDATE")
            fake.set_balance(account, "20000")
            deposit = await stream.until("ACCOUNT_UPDATE")
            resting = await venue.client.ok(
                "POST",
                "order",
                {
                    "symbol": "BTCUSDT",
                    "side": "SELL",
                    "type": "LIMIT",
                    "timeInForce": "GTC",
                    "quantity": "0.01",
                    "price": "61000",
                },
            )
            fake.cancel_as_venue(account, order_id=resting["orderId"])
            canceled = await stream.until("ORDER_TRADE_UPDATE", i=resting["orderId"], x="CANCELED")
    assert announced["o"]["c"] == external.client_id and external.client_id.startswith("web_")
    assert paid == -Decimal("0.01") * 60000 * Decimal("0.0001")
    assert [p["s"] for p in funding["a"]["P"]] == ["BTCUSDT"] and funding["a"]["B"][0]["a"] == "USDT"
    assert fake.income(account, "FUNDING_FEE")[0].income == paid
    assert deposit["a"]["m"] == "DEPOSIT" and deposit["a"]["B"][0]["wb"] == "20000.00000000" and deposit["a"]["P"] == []
    assert canceled["o"]["X"] == "CANCELED"
