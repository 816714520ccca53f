"""A live account's paper twin against the fake exchange, over real loopback HTTP and websockets.

The fake's book is moved *after* the twin filled and *before* the live order reached the fake (the
fake answers each request one second late), so live and paper fills differ and every figure of
``GET /v1/accounts/{id}/twin`` is checked against numbers computed here: the live side from the
fake's own trades, the paper side from the twin's fills and the book it saw.
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from actors.execution import PaperVenue, TwinVenue
from actors.service import Service
from actors.venues.trading import TradingClient
from tests.conftest import db_rows
from tests.fake_exchange import FakeExchange, open_fake_exchange
from tests.live.support import (
    ASKS, BIDS, BOUND, VENUES, decision, hmac_account, live_service, market, wait_until, working_protection,
)

pytestmark = pytest.mark.slow

LATE = 0.5  # seconds the fake holds each request while the test moves its book
MOVED_ASKS = [("60001.0", "0.04"), ("60002.0", "10")]  # what the live entry meets
MOVED_BIDS = [("59998.0", "0.03"), ("59997.0", "10")]  # what the live exit meets
BPS = D(10_000)
FOUR = D("0.0001")
CLOSE = {"decision_id": "c-1", "symbol": "BTCUSDT", "action": "close"}


def twin_snapshot(service: Service) -> Any:
    return service.supervisor.slot("lv-1-twin").snapshot()


async def post_while_the_book_moves(client: httpx.AsyncClient, fake: FakeExchange, service: Service, body: dict[str, Any],
                                    twin_done: Any, bids: Any, asks: Any) -> dict[str, Any]:
    """Post a decision to the live account; once its twin has filled (the live order is still on
    its way to the fake), move the fake's book (not pushed: the twin could not see it anyway)."""
    answer: dict[str, Any] = {}

    async def post() -> None:
        response = await client.post("/v1/accounts/lv-1/decisions", json=body)
        assert response.status_code == 200, response.text
        answer.update(response.json())

    fake.latency = LATE
    async with trio.open_nursery() as nursery:
        nursery.start_soon(post)
        await wait_until(lambda: twin_done(twin_snapshot(service)))
        assert not answer  # the twin filled before the live account had its answer
        fake.set_book("BTCUSDT", bids, asks)
    fake.latency = 0
    return answer


def walk(levels: list[tuple[str, str]], quantity: D) -> list[tuple[D, D]]:
    """The fills of a market order of ``quantity`` on ``levels`` (best first)."""
    fills = []
    for price, size in levels:
        take = min(quantity, D(size))
        fills.append((D(price), take))
        quantity -= take
        if quantity == 0:
            return fills
    raise AssertionError("the book ran out")


def average(fills: list[tuple[D, D]]) -> D:
    return sum((p * q for p, q in fills), D(0)) / sum((q for _, q in fills), D(0))


def slippage(side: str, avg: D, reference: D) -> D:
    return ((avg - reference if side == "BUY" else reference - avg) / reference * BPS).quantize(FOUR)


def kinder(side: str, live: D, paper: D) -> D:
    return ((live - paper if side == "BUY" else paper - live) / live * BPS).quantize(FOUR)


async def paper_fills(client: httpx.AsyncClient, order_id: str) -> list[dict[str, Any]]:
    trades = (await client.get("/v1/accounts/lv-1-twin/trades", params={"limit": 500})).json()["items"]
    return [t for t in reversed(trades) if t["order_id"] == order_id]  # in the order they filled


def received_at(service: Service, decision_id: str) -> float:
    ((created_at,),) = db_rows(service, "SELECT created_at FROM decisions WHERE account_id = 'lv-1' AND decision_id = ?",
                               (decision_id,))
    return created_at  # type: ignore[return-value]


def last_fill_ts(service: Service, account: str, order_id: str) -> float:
    ((ts,),) = db_rows(service, "SELECT MAX(ts) FROM fills WHERE account_id = ? AND order_id = ?", (account, order_id))
    return ts  # type: ignore[return-value]


@pytest.mark.parametrize("flavour", ["binance", "aster"])
async def test_an_open_with_tpsl_and_its_close_run_on_the_twin_and_the_report_has_both_sides(
        tmp_path: Path, flavour: str) -> None:
    async with open_fake_exchange(flavour=flavour) as fake:
        market(fake)
        accounts = hmac_account(fake, "lv-1", prefix="LTW1", extra=", paper_twin: true")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                taker = service.markets[VENUES[flavour]].instrument("BTCUSDT").fees.taker
                # open: the twin fills on the book the live account saw, the live order on the moved one
                opened = await post_while_the_book_moves(
                    client, fake, service, decision("o-1", stop_loss="59000", take_profit="62000",
                                                    reference_price="60000"),
                    lambda snap: snap.positions, BIDS, MOVED_ASKS)
                assert opened["status"] == "filled"
                twin = twin_snapshot(service)
                (position,) = twin.positions
                assert (position.quantity, position.take_profit, position.stop_loss) == (D("0.1"), D("62000"), D("59000"))
                assert sorted(o.purpose for o in twin.orders) == ["stop_loss", "take_profit"]  # on the paper venue
                assert sorted(t for t, _ in working_protection(fake, "lv-1").values()) == [
                    "STOP_MARKET", "TAKE_PROFIT_MARKET"]  # on the venue, the live account's only
                # close: the same the other way
                closed = await post_while_the_book_moves(client, fake, service, CLOSE,
                                                         lambda snap: not snap.positions, MOVED_BIDS, MOVED_ASKS)
                assert closed["status"] == "filled" and closed["position"]["status"] == "closed"
                await wait_until(lambda: not twin_snapshot(service).orders)  # the twin's TP/SL went with it

                report = (await client.get("/v1/accounts/lv-1/twin")).json()
                assert report["account_id"] == "lv-1" and report["twin_account_id"] == "lv-1-twin"
                assert [i["decision_id"] for i in report["items"]] == ["c-1", "o-1"]  # newest first
                items = {i["decision_id"]: i for i in report["items"]}
                venue_trades = fake.trades("lv-1", "BTCUSDT")
                expected: dict[str, dict[str, Any]] = {}
                for decision_id, order_id, side, seen, reference in (
                        ("o-1", "o-1.entry", "BUY", ASKS, D("60000")), ("c-1", "c-1.exit", "SELL", BIDS, D("60000"))):
                    live = [(t.price, t.qty) for t in venue_trades if t.side == side]
                    live_fees = sum((t.commission for t in venue_trades if t.side == side), D(0))
                    paper = [(D(f["price"]), D(f["quantity"])) for f in await paper_fills(client, order_id)]
                    paper_fees = sum((D(f["fee"]) for f in await paper_fills(client, order_id)), D(0))
                    # the twin walked the book as the live order went out, at the venue's taker fee
                    assert paper == walk(seen, D("0.1"))
                    assert paper_fees == sum((p * q * taker for p, q in paper), D(0))
                    assert live == walk(MOVED_ASKS if side == "BUY" else MOVED_BIDS, D("0.1"))
                    at = received_at(service, decision_id)
                    expected[decision_id] = {
                        "live": average(live), "paper": average(paper), "live_fees": live_fees,
                        "paper_fees": paper_fees, "difference": kinder(side, average(live), average(paper)),
                        "live_time": round(last_fill_ts(service, "lv-1", order_id) - at, 6),
                        "paper_time": round(last_fill_ts(service, "lv-1-twin", order_id) - at, 6)}
                    item = items[decision_id]
                    assert (item["side"], item["symbol"], D(item["reference_price"])) == (side, "BTCUSDT", reference)
                    assert item["reference"] == ("decision" if decision_id == "o-1" else "mark")
                    assert item["received_at"] == at
                    sent = item["market_as_sent"]  # the side each order walked (the other may have moved since)
                    assert (sent["best_ask"] if side == "BUY" else sent["best_bid"], sent["mark"]) == (
                        seen[0][0].rstrip("0").rstrip("."), "60000")
                    e = expected[decision_id]
                    for name, figures, fees, time_to_fill in (("live", e["live"], live_fees, e["live_time"]),
                                                             ("paper", e["paper"], paper_fees, e["paper_time"])):
                        got = item[name]
                        assert (got["status"], got["rejection_code"], D(got["filled_quantity"])) == ("filled", None, D("0.1"))
                        assert D(got["avg_price"]) == figures
                        assert D(got["fees"]) == fees
                        assert D(got["slippage_bps"]) == slippage(side, figures, reference)
                        assert got["time_to_fill_seconds"] == time_to_fill
                    assert D(item["price_difference_bps"]) == e["difference"] > 0  # the moved book was worse
                    assert D(item["fee_difference"]) == live_fees - paper_fees
                    assert item["same_outcome"] is True
                    # the live order waited at the fake; the paper one filled as it went out
                    assert e["live_time"] >= LATE > e["paper_time"] >= 0
                assert expected["o-1"]["live"] == D("60001.6") and expected["o-1"]["paper"] == D("60000.25")
                differences = sorted(e["difference"] for e in expected.values())
                aggregate = report["aggregate"]
                assert (aggregate["decisions"], aggregate["compared"], aggregate["different_outcomes"]) == (2, 2, 0)
                assert D(aggregate["mean_price_difference_bps"]) == (sum(differences, D(0)) / 2).quantize(FOUR)
                assert D(aggregate["median_price_difference_bps"]) == (sum(differences, D(0)) / 2).quantize(FOUR)
                live_total = sum((e["live_fees"] for e in expected.values()), D(0))
                paper_total = sum((e["paper_fees"] for e in expected.values()), D(0))
                assert (D(aggregate["live_fees"]), D(aggregate["paper_fees"])) == (live_total, paper_total)
                assert D(aggregate["fee_difference"]) == live_total - paper_total
                for side in ("live", "paper"):
                    times = [e[f"{side}_time"] for e in expected.values()]
                    assert aggregate[f"mean_time_to_fill_{side}_seconds"] == round(sum(times) / 2, 6)
                # the twin's own book: started at the live account's balance, its fees and PnL its own
                inspected = (await client.get("/v1/accounts/lv-1-twin")).json()
                assert inspected["twin_of"] == "lv-1" and inspected["is_paper"] is True
                assert D(inspected["initial_balance"]) == D("10000")
                assert D(inspected["fees"]) == paper_total
                realized = (expected["c-1"]["paper"] - expected["o-1"]["paper"]) * D("0.1")
                assert D(inspected["balance"]) == D("10000") + realized - paper_total
                assert (await client.get("/v1/accounts/lv-1")).json()["paper_twin"] == "lv-1-twin"


async def test_the_twin_survives_a_restart_with_its_position_protection_fills_and_report(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "lv-1", prefix="LTW2", extra=", paper_twin: true, paper_twin_balance: \"2500\"")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                response = await client.post("/v1/accounts/lv-1/decisions", json=decision(
                    "o-1", stop_loss="59000", take_profit="62000"))
                assert response.status_code == 200, response.text
                await wait_until(lambda: len(twin_snapshot(service).orders) == 2)
                before = twin_snapshot(service)
                report_before = (await client.get("/v1/accounts/lv-1/twin")).json()
                trades_before = (await client.get("/v1/accounts/lv-1-twin/trades")).json()
            async with live_service(tmp_path, fake, accounts) as (service, client):
                await wait_until(lambda: service.supervisor.slot("lv-1-twin").status == "running")
                after = twin_snapshot(service)
                assert after.initial_balance == D("2500") and after.balance == before.balance
                assert after.positions == before.positions
                assert sorted((o.purpose, o.trigger_price, o.status) for o in after.orders) == sorted(
                    (o.purpose, o.trigger_price, o.status) for o in before.orders)
                assert (await client.get("/v1/accounts/lv-1-twin/trades")).json() == trades_before
                assert (await client.get("/v1/accounts/lv-1/twin")).json() == report_before
                # and it keeps following its live account
                response = await client.post("/v1/accounts/lv-1/decisions", json=CLOSE)
                assert response.status_code == 200, response.text
                await wait_until(lambda: not twin_snapshot(service).positions and not twin_snapshot(service).orders)
                report = (await client.get("/v1/accounts/lv-1/twin")).json()
                assert [i["decision_id"] for i in report["items"]] == ["c-1", "o-1"]
                assert report["items"][1] == report_before["items"][0]
                assert report["items"][0]["paper"]["status"] == "filled"
                page = (await client.get("/v1/accounts/lv-1/twin", params={"limit": 1})).json()
                assert [i["decision_id"] for i in page["items"]] == ["c-1"] and page["next_cursor"]
                rest = (await client.get("/v1/accounts/lv-1/twin", params={"limit": 1, "cursor": page["next_cursor"]}))
                assert [i["decision_id"] for i in rest.json()["items"]] == ["o-1"] and rest.json()["next_cursor"] is None
                assert rest.json()["aggregate"] == page["aggregate"] == report["aggregate"]


async def test_the_live_gate_keeps_its_rejections_from_the_twin_and_a_venue_refusal_is_a_different_outcome(
        tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "lv-1", prefix="LTW3", extra=", paper_twin: true, risk: {max_order_notional: 10000}")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                too_large = await client.post("/v1/accounts/lv-1/decisions", json=decision("g-1", quantity="0.5"))
                assert too_large.status_code == 422 and too_large.json()["rejection"]["code"] == "ORDER_TOO_LARGE"
                nothing = await client.post("/v1/accounts/lv-1/decisions", json=CLOSE)
                assert nothing.status_code == 422 and nothing.json()["rejection"]["code"] == "NO_POSITION"
                for decision_id in ("g-1", "c-1"):
                    assert (await client.get(f"/v1/accounts/lv-1-twin/decisions/{decision_id}")).status_code == 404
                assert db_rows(service, "SELECT COUNT(*) FROM orders WHERE account_id = 'lv-1-twin'") == [(0,)]
                empty = (await client.get("/v1/accounts/lv-1/twin")).json()
                assert empty["items"] == [] and empty["aggregate"]["decisions"] == 0
                assert empty["aggregate"]["mean_price_difference_bps"] is None

                fake.fault_next(-2019, path="/fapi/v1/order")  # the venue refuses (margin insufficient)
                refused = await client.post("/v1/accounts/lv-1/decisions", json=decision("v-1"))
                assert refused.status_code == 422 and refused.json()["rejection"]["code"] == "VENUE_REJECTED"
                await wait_until(lambda: twin_snapshot(service).positions)  # the paper venue filled it
                report = (await client.get("/v1/accounts/lv-1/twin")).json()
                (item,) = report["items"]
                assert (item["live"]["status"], item["live"]["rejection_code"], item["live"]["venue_code"]) == (
                    "rejected", "VENUE_REJECTED", "-2019")
                assert item["live"]["avg_price"] is None and item["live"]["time_to_fill_seconds"] is None
                assert (item["paper"]["status"], D(item["paper"]["avg_price"])) == ("filled", D("60000.25"))
                assert item["price_difference_bps"] is None and item["same_outcome"] is False
                assert D(item["fee_difference"]) == -D(item["paper"]["fees"])
                aggregate = report["aggregate"]
                assert (aggregate["decisions"], aggregate["compared"], aggregate["different_outcomes"]) == (1, 0, 1)
                assert aggregate["median_price_difference_bps"] is None
                assert aggregate["mean_time_to_fill_live_seconds"] is None
                assert aggregate["mean_time_to_fill_paper_seconds"] == item["paper"]["time_to_fill_seconds"]
                # the books differ now (the twin holds what the venue refused); the live account's
                # close-all closes its twin too
                response = await client.post("/v1/accounts/lv-1/close-all")
                assert response.status_code == 200, response.text
                await wait_until(lambda: not twin_snapshot(service).positions)
                (reason,) = db_rows(service, "SELECT purpose FROM orders WHERE account_id = 'lv-1-twin' "
                                             "AND purpose = 'close_all'")
                assert reason == ("close_all",)


async def test_the_twin_makes_no_venue_request_and_cannot_be_traded_directly(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "lv-1", prefix="LTW4", extra=", paper_twin: true")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                adapter = service.supervisor.slot("lv-1-twin").actor.adapter  # type: ignore[union-attr]
                assert isinstance(adapter, TwinVenue) and isinstance(adapter, PaperVenue)
                assert adapter.connection() is None
                assert not any(isinstance(value, TradingClient) for value in vars(adapter).values())
                response = await client.post("/v1/accounts/lv-1/decisions", json=decision(
                    "o-1", stop_loss="59000", take_profit="62000"))
                assert response.status_code == 200, response.text
                await wait_until(lambda: len(twin_snapshot(service).orders) == 2)
                twin_decisions = db_rows(service, "SELECT decision_id FROM decisions WHERE account_id = 'lv-1-twin'")
                stop = next(o for o in twin_snapshot(service).orders if o.purpose == "stop_loss")

                refusals = [
                    await client.post("/v1/accounts/lv-1-twin/decisions", json=decision("x-1")),
                    await client.put("/v1/accounts/lv-1-twin/positions/BTCUSDT/protection", json={"stop_loss": "58000"}),
                    await client.delete(f"/v1/accounts/lv-1-twin/orders/{stop.id}"),
                ]
                for refusal in refusals:
                    assert refusal.status_code == 409, refusal.text
                    error = refusal.json()["error"]
                    assert error["code"] == "PAPER_TWIN" and "paper twin of live account 'lv-1'" in error["message"]
                itself = await client.get("/v1/accounts/lv-1-twin/twin")
                assert itself.status_code == 404 and itself.json()["error"]["code"] == "NO_PAPER_TWIN"
                assert db_rows(service, "SELECT decision_id FROM decisions WHERE account_id = 'lv-1-twin'") == twin_decisions
                assert len(twin_snapshot(service).orders) == 2

                response = await client.post("/v1/accounts/lv-1/decisions", json=CLOSE)
                assert response.status_code == 200, response.text
                await wait_until(lambda: not twin_snapshot(service).orders)
                # what reached the venue: the live account's requests, none more
                signed = [r for r in fake.requests if {"signature", "signer"} & r.query.keys()]
                assert signed and {r.account for r in signed} == {"lv-1"}
                assert {r.account for r in fake.requests} <= {"lv-1", None}  # None: public market data
                assert all(r.account == "lv-1" for r in fake.write_calls())
                assert set(fake.accounts) == {"lv-1"}
                live_orders = db_rows(service, "SELECT purpose FROM orders WHERE account_id = 'lv-1' ORDER BY seq")
                placed = [r for r in fake.write_calls() if r.method == "POST" and r.path == "/fapi/v1/order"]
                placed_algo = [r for r in fake.write_calls() if r.method == "POST" and r.path == "/fapi/v1/algoOrder"]
                assert sorted(p for (p,) in live_orders) == ["entry", "exit", "stop_loss", "take_profit"]
                assert (len(placed), len(placed_algo)) == (2, 2)  # entry and exit; stop-loss and take-profit
                assert {r.query["newClientOrderId"] for r in placed} == {
                    o["client_order_id"] for o in (await client.get("/v1/accounts/lv-1/orders")).json()["items"]
                    if o["purpose"] in ("entry", "exit")}
                twin_orders = db_rows(service, "SELECT client_order_id FROM orders WHERE account_id = 'lv-1-twin'")
                sent = {r.query.get("newClientOrderId") or r.query.get("clientAlgoId") for r in fake.write_calls()}
                assert len(twin_orders) == 4 and not sent & {c for (c,) in twin_orders}
