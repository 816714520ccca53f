"""Closing, close-all, cancelling and moving TP/SL on live accounts, through the venue."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from actors.service import Service
from tests.conftest import db_rows
from tests.fake_exchange import FakeExchange, open_fake_exchange
from tests.live.support import (
    BOUND, decision, hmac_account, live_service, market, open_position, wait_until, working_protection,
)

pytestmark = pytest.mark.slow

ALGO_PATH = {"binance": "/fapi/v1/algoOrder", "aster": "/fapi/v1/order"}


@pytest.mark.parametrize("flavour", ["binance", "aster"])
async def test_a_close_decision_flattens_on_the_venue_and_cancels_both_protective_orders(
        tmp_path: Path, flavour: str) -> None:
    async with open_fake_exchange(flavour=flavour) as fake:
        market(fake)
        accounts = hmac_account(fake, "lc-1", prefix="LC1")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                await open_position(client, "lc-1", "o-1", stop_loss="59000", take_profit="62000")
                assert len(working_protection(fake, "lc-1")) == 2
                response = await client.post("/v1/accounts/lc-1/decisions", json={
                    "decision_id": "c-1", "symbol": "BTCUSDT", "action": "close"})
                assert response.status_code == 200, response.text
                result = response.json()
                assert result["status"] == "filled"
                assert result["order"]["reduce_only"] is True
                assert result["position"]["status"] == "closed"
                assert fake.position("lc-1", "BTCUSDT").amount == 0
                await wait_until(lambda: working_protection(fake, "lc-1") == {})
                close_request = fake.order_requests(result["order"]["client_order_id"])[0]
                assert close_request.query.get("reduceOnly") == "true"
                snapshot = service.supervisor.slot("lc-1").snapshot()
                assert snapshot.positions == () and snapshot.orders == ()
                # the venue's realized PnL and fees are the book's
                venue_fees = sum((t.commission for t in fake.trades("lc-1")), D(0))
                assert snapshot.fees == venue_fees


@pytest.mark.parametrize("flavour", ["binance", "aster"])
async def test_the_stop_loss_firing_on_the_venue_closes_the_position_and_cancels_the_take_profit(
        tmp_path: Path, flavour: str) -> None:
    async with open_fake_exchange(flavour=flavour) as fake:
        market(fake)
        accounts = hmac_account(fake, "lc-2", prefix="LC2")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                opened = await open_position(client, "lc-2", "o-1", stop_loss="59000", take_profit="62000")
                position_id = opened["position"]["id"]
                fake.set_mark("BTCUSDT", "58900")  # the venue triggers the stop-loss on its mark
                slot = service.supervisor.slot("lc-2")
                await wait_until(lambda: slot.snapshot().positions == () and slot.snapshot().orders == ())
                assert fake.position("lc-2", "BTCUSDT").amount == 0
                await wait_until(lambda: working_protection(fake, "lc-2") == {})  # OCO: the TP is gone
                positions = (await client.get("/v1/accounts/lc-2/positions", params={"status": "closed"})).json()
                closed = [p for p in positions["items"] if p["id"] == position_id]
                assert closed and closed[0]["close_reason"] == "stop_loss"
                venue_fill = [t for t in fake.trades("lc-2") if t.side == "SELL"][-1]  # the stop's fill
                assert D(closed[0]["exit_price"]) == venue_fill.price
                trade_closed = [json.loads(p) for (p,) in db_rows(
                    service, "SELECT payload FROM events WHERE type = 'trade.closed'")]
                assert [t["reason"] for t in trade_closed] == ["stop_loss"]


@pytest.mark.parametrize("flavour", ["binance", "aster"])
async def test_close_all_cancels_resting_orders_and_flattens_on_the_venue(tmp_path: Path, flavour: str) -> None:
    async with open_fake_exchange(flavour=flavour) as fake:
        market(fake)
        accounts = hmac_account(fake, "lc-3", prefix="LC3")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                await open_position(client, "lc-3", "o-1", stop_loss="59000", take_profit="62000")
                resting = await client.post("/v1/accounts/lc-3/decisions", json=decision(
                    "l-1", order_type="limit", price="59500", quantity="0.01"))
                assert resting.status_code == 200 and resting.json()["status"] == "resting", resting.text
                limit_id = resting.json()["order"]["client_order_id"]
                assert [o.client_id for o in fake.open_orders("lc-3") if o.type == "LIMIT"] == [limit_id]
                response = await client.post("/v1/accounts/lc-3/close-all", json={"reason": "operator"})
                assert response.status_code == 200, response.text
                body = response.json()
                assert len(body["cancelled_orders"]) == 3 and body["failed"] == []
                assert [p["symbol"] for p in body["closed_positions"]] == ["BTCUSDT"]
                assert fake.position("lc-3", "BTCUSDT").amount == 0
                assert fake.open_orders("lc-3") == [] and working_protection(fake, "lc-3") == {}
                snapshot = service.supervisor.slot("lc-3").snapshot()
                assert snapshot.positions == () and snapshot.orders == ()


async def close_all_while_fills_are_out(service: Service, client: httpx.AsyncClient, fake: FakeExchange,
                                        account: str, body: dict[str, Any], order_id: str
                                        ) -> tuple[httpx.Response, httpx.Response]:
    """Send ``body`` to ``account`` while the user stream is down and ``userTrades`` fails: the
    venue fills its order, the decision holds FILLED with no fill listed and waits for them. The
    stream comes back (without the trade, sent while it was away), which makes that answer
    durable; then a close-all interrupts the decision. Returns (the decision's answer, close-all's)."""
    actor = service.supervisor.slot(account).actor
    assert actor is not None
    await wait_until(lambda: actor.adapter.stream_connected)  # type: ignore[attr-defined]
    fake.refuse_websockets(10**6)
    fake.drop_user_streams()
    await wait_until(lambda: not actor.adapter.stream_connected)  # type: ignore[attr-defined]
    fake.fail_next(10**6, status=500, path="/fapi/v1/userTrades")
    answered: list[httpx.Response] = []

    async def send() -> None:
        answered.append(await client.post(f"/v1/accounts/{account}/decisions", json=body))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        await wait_until(lambda: [e.order.status for e in actor._tracked.values()] == ["FILLED"])
        fake.clear_faults()  # the stream reconnects; userTrades answers again
        await wait_until(lambda: db_rows(service, "SELECT status FROM orders WHERE id = ?", (order_id,))
                         == [("FILLED",)])
        assert actor._tracked, "the decision still waits for its fills"
        closed_all = await client.post(f"/v1/accounts/{account}/close-all", json={"reason": "operator"})
        assert closed_all.status_code == 200, closed_all.text
    return answered[0], closed_all


async def test_a_close_that_a_close_all_interrupts_before_its_fills_arrive_is_settled_when_they_do(
        tmp_path: Path) -> None:
    """The close's decision is answered ``pending``; the reconciliation that the stream's return
    calls for finds the fill, and the stored result becomes ``filled`` with it: a decision left
    pending forever would hide a closed position from the engine."""
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "lc-9", prefix="LC9")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                await open_position(client, "lc-9", "o-1", stop_loss="59000", take_profit="62000")
                answer, _ = await close_all_while_fills_are_out(service, client, fake, "lc-9", {
                    "decision_id": "c-1", "symbol": "BTCUSDT", "action": "close"}, "c-1.exit")
                assert answer.status_code == 200, answer.text
                assert answer.json()["status"] == "pending"
                stored: dict[str, Any] = {}
                while stored.get("status", "pending") == "pending":  # the reconciliation settles it
                    await trio.sleep(0.05)
                    stored = (await client.get("/v1/accounts/lc-9/decisions/c-1")).json()
                assert stored["status"] == "filled", stored
                venue_fills = [t for t in fake.trades("lc-9") if t.side == "SELL"]
                assert sorted(D(f["quantity"]) for f in stored["fills"]) == sorted(t.qty for t in venue_fills)
                assert stored["position"]["status"] == "closed"
                assert fake.position("lc-9", "BTCUSDT").amount == 0
                assert service.supervisor.slot("lc-9").snapshot().positions == ()


async def test_close_all_flattens_what_an_entry_filled_on_the_venue_before_its_fills_arrived(
        tmp_path: Path) -> None:
    """An increase the venue filled, its fills not yet in: the book has the position at its old
    size. Close-all asks the venue about that order first, so it flattens the whole position the
    venue holds, not the part the book knew (the rest would be left without its stop-loss, which
    close-all cancels)."""
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "lc-10", prefix="LC10")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                await open_position(client, "lc-10", "o-1", stop_loss="59000", take_profit="62000")
                answer, closed_all = await close_all_while_fills_are_out(
                    service, client, fake, "lc-10", decision("o-2", stop_loss="59000", take_profit="62000"),
                    "o-2.entry")
                body = closed_all.json()
                assert fake.position("lc-10", "BTCUSDT").amount == 0, body
                assert [D(p["quantity"]) for p in body["closed_positions"]] == [D("0.2")], body
                assert body["failed"] == []
                await wait_until(lambda: working_protection(fake, "lc-10") == {})  # nothing left armed
                assert answer.status_code == 200, answer.text
                stored = (await client.get("/v1/accounts/lc-10/decisions/o-2")).json()
                assert stored["status"] == "filled" and sum(D(f["quantity"]) for f in stored["fills"]) == D("0.1")
                assert service.supervisor.slot("lc-10").snapshot().positions == ()


async def test_cancelling_a_resting_limit_order_cancels_it_on_the_venue(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "lc-4", prefix="LC4")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                resting = (await client.post("/v1/accounts/lc-4/decisions", json=decision(
                    "l-1", order_type="limit", price="59500", quantity="0.01"))).json()
                order_id = resting["order"]["id"]
                response = await client.delete(f"/v1/accounts/lc-4/orders/{order_id}")
                assert response.status_code == 200, response.text
                assert response.json()["status"] == "CANCELED"
                (venue_order,) = fake.orders("lc-4", client_id=resting["order"]["client_order_id"])
                assert venue_order.status == "CANCELED"
                assert service.supervisor.slot("lc-4").snapshot().orders == ()


@pytest.mark.parametrize("flavour", ["binance", "aster"])
async def test_moving_the_stop_loss_replaces_it_on_the_venue(tmp_path: Path, flavour: str) -> None:
    async with open_fake_exchange(flavour=flavour) as fake:
        market(fake)
        accounts = hmac_account(fake, "lc-5", prefix="LC5")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                opened = await open_position(client, "lc-5", "o-1", stop_loss="59000", take_profit="62000")
                before = working_protection(fake, "lc-5")
                response = await client.put("/v1/accounts/lc-5/positions/BTCUSDT/protection",
                                            json={"stop_loss": "59500"})
                assert response.status_code == 200, response.text
                assert response.json()["stop_loss"] == "59500"
                after = working_protection(fake, "lc-5")
                assert len(after) == 2
                assert sorted(trigger for _, trigger in after.values()) == ["59500", "62000"]
                old_sl = next(o["client_order_id"] for o in opened["protective_orders"] if o["purpose"] == "stop_loss")
                assert old_sl in before and old_sl not in after  # a new client id: the old one is cancelled
                orders = service.supervisor.slot("lc-5").snapshot().orders
                assert {o.client_order_id for o in orders} == set(after)


async def test_a_cancel_the_venue_does_not_confirm_keeps_the_old_stop_in_force(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "lc-6", prefix="LC6")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                await open_position(client, "lc-6", "o-1", stop_loss="59000")
                before = working_protection(fake, "lc-6")
                fake.fault_next("unavailable", path="/fapi/v1/algoOrder", method="DELETE")
                response = await client.put("/v1/accounts/lc-6/positions/BTCUSDT/protection",
                                            json={"stop_loss": "59500"})
                assert response.status_code == 502, response.text
                error = response.json()["error"]
                assert error["code"] == "VENUE_REFUSED" and "stays in force" in error["message"]
                assert working_protection(fake, "lc-6") == before  # one stop, the old one
                (position,) = service.supervisor.slot("lc-6").snapshot().positions
                assert position.stop_loss == D("59000")
                assert {o.client_order_id for o in service.supervisor.slot("lc-6").snapshot().orders} == set(before)
