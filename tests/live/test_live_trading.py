"""Live trading against the fake exchange (Binance USDⓈ-M and AsterDEX dialects), over loopback."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest
import trio

from tests.fake_exchange import open_fake_exchange
from tests.live.support import BOUND, decision, hmac_account, live_service, market, wait_until

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("flavour", ["binance", "aster"])
async def test_an_open_fills_on_the_venue_and_gets_its_stop_loss_then_take_profit(tmp_path: Path, flavour: str) -> None:
    async with open_fake_exchange(flavour=flavour) as fake:
        market(fake)
        accounts = hmac_account(fake, "lv-1", prefix="LV1")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                response = await client.post("/v1/accounts/lv-1/decisions", json=decision(
                    "o-1", stop_loss="59000", take_profit="62000"))
                assert response.status_code == 200, response.text
                result = response.json()
                assert result["status"] == "filled" and result["is_paper"] is False
                fills = result["fills"]
                assert [(f["price"], f["quantity"]) for f in fills] == [("60000", "0.05"), ("60000.5", "0.05")]
                venue_trades = fake.trades("lv-1", "BTCUSDT")
                assert sorted(D(f["fee"]) for f in fills) == sorted(t.commission for t in venue_trades)
                assert D(result["position"]["quantity"]) == D("0.1")
                protective = {o["purpose"]: o for o in result["protective_orders"]}
                assert set(protective) == {"stop_loss", "take_profit"}
                assert all(o["status"] == "NEW" for o in protective.values())
                entry_id = result["order"]["client_order_id"]
                assert len(fake.order_requests(entry_id)) == 1  # exactly one entry reached the venue
                if flavour == "binance":  # TP/SL through the Algo Order API
                    algos = {a.client_algo_id: a for a in fake.algo_orders("lv-1")}
                    assert set(algos) == {o["client_order_id"] for o in protective.values()}
                else:  # Aster: STOP_MARKET / TAKE_PROFIT_MARKET on the order endpoint
                    stops = {o.client_id: o for o in fake.open_orders("lv-1", "BTCUSDT")}
                    assert set(stops) == {o["client_order_id"] for o in protective.values()}
                    assert {o.orig_type for o in stops.values()} == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
                position = fake.position("lv-1", "BTCUSDT")
                assert position.amount == D("0.1")


ORDER_PATH = {"binance": "/fapi/v1/order", "aster": "/fapi/v1/order"}
ALGO_PATH = {"binance": "/fapi/v1/algoOrder", "aster": "/fapi/v1/order"}


async def stored(client: object, account: str, decision_id: str) -> dict[str, object]:
    response = await client.get(f"/v1/accounts/{account}/decisions/{decision_id}")  # type: ignore[attr-defined]
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(("kind", "placed", "final"), [
    ("timeout", True, "filled"),  # accepted and executed, the answer never came
    ("503", False, "rejected"),  # Binance's 503 "Unknown error": this time the order was not placed
])
async def test_an_ambiguous_entry_answers_pending_then_settles_by_asking_the_venue_and_is_never_resent(
        tmp_path: Path, kind: str, placed: bool, final: str) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "lv-a", prefix="LVA")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                fake.fault_next(kind, path="/fapi/v1/order", placed=placed)
                body = decision("amb-1", stop_loss="59000")
                first = await client.post("/v1/accounts/lv-a/decisions", json=body)
                assert first.status_code == 200, first.text
                assert first.json()["status"] == "pending"  # not guessed
                entry_id = first.json()["order"]["client_order_id"]
                await wait_until(lambda: service.supervisor.slot("lv-a").snapshot().orders == () or
                                 all(o.status != "PENDING_NEW" for o in service.supervisor.slot("lv-a").snapshot().orders))
                while (await stored(client, "lv-a", "amb-1"))["status"] == "pending":
                    await trio.sleep(0.05)
                settled = await stored(client, "lv-a", "amb-1")
                assert settled["status"] == final
                again = await client.post("/v1/accounts/lv-a/decisions", json=body)  # the client retries
                assert again.json()["status"] == final
                assert len(fake.order_requests(entry_id)) == 1  # never sent twice
                if final == "filled":
                    assert fake.position("lv-a", "BTCUSDT").amount == D("0.1")
                    await wait_until(lambda: len(fake.algo_orders("lv-a")) == 1)  # its stop-loss went on
                    assert settled["position"]["quantity"] == "0.1"
                else:
                    assert settled["rejection"]["details"]["venue_code"] == "-2013"
                    assert fake.position("lv-a", "BTCUSDT").amount == 0 and fake.algo_orders("lv-a") == []


@pytest.mark.parametrize(("code", "venue_code"), [(-2019, "-2019"), (-4164, "-4164"), (-1111, "-1111")])
async def test_a_venue_refusal_is_a_rejection_with_the_venues_code(tmp_path: Path, code: int, venue_code: str) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "lv-r", prefix="LVR")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                fake.fault_next(code, path="/fapi/v1/order")
                response = await client.post("/v1/accounts/lv-r/decisions", json=decision("rej-1"))
                assert response.status_code == 422, response.text
                body = response.json()
                assert body["status"] == "rejected" and body["rejection"]["code"] == "VENUE_REJECTED"
                assert body["rejection"]["details"]["venue_code"] == venue_code
                assert body["error"]["code"] == "VENUE_REJECTED"
                assert fake.position("lv-r", "BTCUSDT").amount == 0


async def test_a_stop_loss_the_market_is_already_through_closes_the_position_at_once(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "lv-t", prefix="LVT")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                fake.fault_next(-2021, path="/fapi/v1/algoOrder")
                response = await client.post("/v1/accounts/lv-t/decisions", json=decision(
                    "imm-1", stop_loss="59000", take_profit="62000"))
                assert response.status_code == 200, response.text
                result = response.json()
                assert result["status"] == "filled"
                assert result["position"]["status"] == "closed" and result["position"]["close_reason"] == "stop_loss", response.text
                assert fake.position("lv-t", "BTCUSDT").amount == 0
                assert fake.open_algo_orders("lv-t") == [] if hasattr(fake, "open_algo_orders") else True
                snapshot = service.supervisor.slot("lv-t").snapshot()
                assert snapshot.positions == () and snapshot.trading_state == "active"


async def test_protection_not_confirmed_within_the_deadline_flattens_and_sets_reducing(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "lv-p", prefix="LVP", extra=", protection_deadline_seconds: 2")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                fake.fault_next("unavailable", n=100, path="/fapi/v1/algoOrder")  # the algo service is down
                response = await client.post("/v1/accounts/lv-p/decisions", json=decision("pf-1", stop_loss="59000"))
                assert response.status_code == 200, response.text
                result = response.json()
                assert result["position"]["status"] == "closed"
                assert result["position"]["close_reason"] == "protection_failed"
                assert fake.position("lv-p", "BTCUSDT").amount == 0
                inspected = (await client.get("/v1/accounts/lv-p")).json()
                assert inspected["trading_state"] == "reducing"
                assert inspected["state_reason"].startswith("PROTECTION_FAILED: ")
                events = [e for (e,) in db_types(service)]
                assert "protection.failed" in events


def db_types(service: object) -> list[tuple[str]]:
    from tests.conftest import db_rows

    return db_rows(service, "SELECT type FROM events ORDER BY seq")  # type: ignore[arg-type]


async def test_fills_come_from_the_user_stream_and_from_user_trades_only_while_it_is_down(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "lv-s", prefix="LVS")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                adapter = service.supervisor.slot("lv-s").actor.adapter  # type: ignore[union-attr]
                await wait_until(lambda: adapter.stream_connected)
                first = (await client.post("/v1/accounts/lv-s/decisions", json=decision("st-1"))).json()
                assert first["status"] == "filled" and len(first["fills"]) == 2
                assert fake.calls("/fapi/v1/userTrades") == []  # one request for the entry: the order
                assert len(fake.order_requests(first["order"]["client_order_id"])) == 1

                fake.refuse_websockets(1000)  # the stream goes down and stays down
                fake.drop_user_streams()
                await wait_until(lambda: not adapter.stream_connected)
                second = (await client.post("/v1/accounts/lv-s/decisions", json=decision("st-2"))).json()
                assert second["status"] == "filled" and D(second["position"]["quantity"]) == D("0.2")
                assert len(fake.calls("/fapi/v1/userTrades")) == 1
                venue_fees = sum((t.commission for t in fake.trades("lv-s")), D(0))
                assert D(second["position"]["fees"]) == venue_fees
