"""Staying true to the venue: what changed behind the service's back (while it ran or while it was
down) is found by reconciliation and adopted, over loopback against the fake exchange."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import trio

from actors.venues.credentials import HmacCredentials
from actors.venues.profiles import get_profile
from actors.venues.trading import TradingClient
from actors.venues.trading_types import OrderRequest
from tests.conftest import db_rows
from tests.fake_exchange import open_fake_exchange
from tests.live.support import (
    BOUND, decision, hmac_account, live_service, market, open_position, wait_until, working_protection,
)

pytestmark = pytest.mark.slow

FAST = ", reconcile_interval_seconds: 0.3"


def lists_external_orders(service: Any, account: str) -> bool:
    """Whether the account's last finished reconciliation pass shows orders it did not send."""
    state = service.supervisor.slot(account).actor.reconciliation
    return state is not None and state.view is not None and bool(state.view.external_orders)


def mismatches(service: Any, kind: str | None = None) -> list[dict[str, Any]]:
    import json

    rows = db_rows(service, "SELECT payload FROM events WHERE type = 'reconciliation.mismatch' ORDER BY seq")
    found = [json.loads(payload) for (payload,) in rows]
    return [m for m in found if kind is None or m["kind"] == kind]


def closed_positions(service: Any, account: str) -> list[dict[str, Any]]:
    rows = db_rows(service, "SELECT id, close_reason, realized_pnl, fees, external, quantity, closed_quantity"
                            " FROM positions WHERE account_id = ? AND status = 'closed'", (account,))
    keys = ("id", "close_reason", "realized_pnl", "fees", "external", "quantity", "closed_quantity")
    return [dict(zip(keys, row)) for row in rows]


@pytest.mark.parametrize("flavour", ["binance", "aster"])
async def test_a_position_opened_outside_the_service_is_adopted_at_start_and_left_unprotected(
        tmp_path: Path, flavour: str) -> None:
    async with open_fake_exchange(flavour=flavour) as fake:
        market(fake)
        accounts = hmac_account(fake, "rc-1", prefix="RC1")
        fake.trade_externally("rc-1", "BTCUSDT", "BUY", "0.03")  # the trader, in the venue's app
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                (position,) = service.supervisor.slot("rc-1").snapshot().positions
                assert position.external and position.quantity == D("0.03") and position.side == "long"
                assert position.entry_price == fake.position("rc-1", "BTCUSDT").entry_price
                assert working_protection(fake, "rc-1") == {}  # not the service's to protect
                (adopted,) = mismatches(service, "position.unknown")
                assert adopted["before"] is None and adopted["after"]["quantity"] == "0.03"
                # the next pass finds nothing more
                inspected = (await client.get("/v1/accounts/rc-1")).json()
                assert inspected["venue_account"]["positions"][0]["quantity"] == "0.03"


@pytest.mark.parametrize("flavour", ["binance", "aster"])
async def test_a_stop_loss_that_fired_while_the_service_was_down_closes_the_position_at_restart(
        tmp_path: Path, flavour: str) -> None:
    async with open_fake_exchange(flavour=flavour) as fake:
        market(fake)
        accounts = hmac_account(fake, "rc-2", prefix="RC2")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                opened = await open_position(client, "rc-2", "o-1", stop_loss="59000", take_profit="62000")
            fake.set_mark("BTCUSDT", "58900")  # the venue fires the stop-loss; nobody is listening
            assert fake.position("rc-2", "BTCUSDT").amount == 0
            async with live_service(tmp_path, fake, accounts) as (service, client):
                snapshot = service.supervisor.slot("rc-2").snapshot()
                assert snapshot.positions == () and snapshot.orders == ()
                (closed,) = closed_positions(service, "rc-2")
                assert closed["id"] == opened["position"]["id"] and closed["close_reason"] == "stop_loss"
                venue_realized = sum((t.realized_pnl for t in fake.trades("rc-2")), D(0))
                assert D(closed["realized_pnl"]) == venue_realized
                venue_fees = sum((t.commission for t in fake.trades("rc-2")), D(0))
                assert D(closed["fees"]) == venue_fees
                await wait_until(lambda: working_protection(fake, "rc-2") == {})  # the take-profit is gone
                assert [m["kind"] for m in mismatches(service)].count("order.settled") >= 1


async def test_a_position_closed_by_hand_on_the_venue_is_closed_with_the_venues_trades(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "rc-3", prefix="RC3")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                await open_position(client, "rc-3", "o-1", stop_loss="59000")
            fake.close_externally("rc-3", "BTCUSDT")
            async with live_service(tmp_path, fake, accounts) as (service, client):
                assert service.supervisor.slot("rc-3").snapshot().positions == ()
                (closed,) = closed_positions(service, "rc-3")
                assert closed["close_reason"] == "external"
                assert D(closed["realized_pnl"]) == sum((t.realized_pnl for t in fake.trades("rc-3")), D(0))
                (gap,) = mismatches(service, "position.closed_away")
                assert gap["before"]["quantity"] == "0.1" and gap["after"] is None
                await wait_until(lambda: working_protection(fake, "rc-3") == {})


async def test_a_stop_loss_the_venue_cancelled_is_placed_again_by_the_periodic_pass(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "rc-4", prefix="RC4")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts, venue_extra=FAST) as (service, client):
                await open_position(client, "rc-4", "o-1", stop_loss="59000")
                (algo,) = fake.algo_orders("rc-4")
                fake.cancel_as_venue("rc-4", algo_id=algo.algo_id)
                await wait_until(lambda: len(working_protection(fake, "rc-4")) == 1
                                 and algo.client_algo_id not in working_protection(fake, "rc-4"))
                (placed,) = working_protection(fake, "rc-4").values()
                assert placed == ("STOP_MARKET", "59000")
                assert mismatches(service, "protection.missing")


async def test_an_order_placed_outside_the_service_is_listed_and_left_alone(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "rc-5", prefix="RC5")
        account = fake.account("rc-5")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts, venue_extra=FAST) as (service, client):
                app = TradingClient(get_profile("binance-usdm", fake.rest_url, fake.ws_url),
                                    HmacCredentials(account.api_key, account.api_secret), account_id="app",
                                    clock=service.clock.now)
                try:
                    await app.place_order(OrderRequest(symbol="BTCUSDT", side="BUY", type="LIMIT",
                                                       client_order_id="web_manual1", quantity=D("0.01"),
                                                       price=D("59000"), time_in_force="GTC"))
                finally:
                    await app.aclose()
                await wait_until(lambda: bool(mismatches(service, "order.external")))
                # the pass commits the mismatch on its way and shows what it found once it is over
                await wait_until(lambda: lists_external_orders(service, "rc-5"))
                inspected = (await client.get("/v1/accounts/rc-5")).json()
                assert [o["client_order_id"] for o in inspected["venue_account"]["external_orders"]] == ["web_manual1"]
                assert [o.client_id for o in fake.open_orders("rc-5")] == ["web_manual1"]  # left alone
                assert len(mismatches(service, "order.external")) == 1  # raised once, not every pass


async def test_decisions_wait_behind_the_start_gate_until_the_venue_can_be_asked(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "rc-6", prefix="RC6")
        fake.fault_next("unavailable", n=1000, path="/fapi/v3/positionRisk", method="GET")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts, settled=False) as (service, client):
                slot = service.supervisor.slot("rc-6")
                await wait_until(lambda: slot.gate is not None and "cannot ask" in slot.gate)
                assert slot.status == "starting"
                refused = await client.post("/v1/accounts/rc-6/decisions", json=decision("g-1"))
                assert refused.status_code == 503 and "retry-after" in refused.headers, refused.text
                assert "reconciling" in refused.json()["error"]["message"]
                # the gate closes first (at once, to refuse decisions); the alert's commit follows it
                await wait_until(lambda: "reconciliation.failed" in [
                    t for (t,) in db_rows(service, "SELECT type FROM events")])
                fake.clear_faults()
                await wait_until(lambda: slot.status == "running" and slot.gate is None)
                await open_position(client, "rc-6", "g-2")


@pytest.mark.parametrize("how", ["drop", "expire"])
async def test_after_the_stream_reconnects_what_was_missed_is_reconciled(tmp_path: Path, how: str) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "rc-7", prefix="RC7")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                adapter = service.supervisor.slot("rc-7").actor.adapter  # type: ignore[union-attr]
                await wait_until(lambda: adapter.stream_connected)
                fake.refuse_websockets(3)  # the stream stays down for a few attempts
                if how == "drop":
                    fake.drop_user_streams()
                else:
                    fake.expire_listen_key("rc-7")
                await wait_until(lambda: not adapter.stream_connected)
                fake.trade_externally("rc-7", "BTCUSDT", "SELL", "0.02")  # missed: nobody is listening
                slot = service.supervisor.slot("rc-7")
                await wait_until(lambda: bool(slot.snapshot().positions))
                (position,) = slot.snapshot().positions
                assert position.side == "short" and position.quantity == D("0.02") and position.external
                assert adapter.stream_connected


async def test_a_liquidation_on_the_venue_closes_the_position(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "rc-8", prefix="RC8")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                opened = await open_position(client, "rc-8", "o-1", stop_loss="50000", leverage=20)
                fake.liquidate("rc-8", "BTCUSDT")
                slot = service.supervisor.slot("rc-8")
                await wait_until(lambda: slot.snapshot().positions == ())
                (closed,) = closed_positions(service, "rc-8")
                assert closed["id"] == opened["position"]["id"] and closed["close_reason"] == "liquidation"
                await wait_until(lambda: working_protection(fake, "rc-8") == {})


async def test_inspection_shows_the_venues_balance_and_income(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "rc-9", prefix="RC9")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts, venue_extra=FAST) as (service, client):
                await open_position(client, "rc-9", "o-1")
                fake.pay_funding("rc-9", "BTCUSDT", "0.0001")
                slot = service.supervisor.slot("rc-9")
                passes = slot.actor.reconciliation.passes  # type: ignore[union-attr]
                await wait_until(lambda: slot.actor.reconciliation.passes >= passes + 6)  # type: ignore[union-attr]
                venue = (await client.get("/v1/accounts/rc-9")).json()["venue_account"]
                account = fake.account("rc-9")
                assert D(venue["wallet_balance"]) == account.wallet
                fees = sum((t.commission for t in fake.trades("rc-9")), D(0))
                assert D(venue["fees"]) == fees
                funding = sum((i.income for i in fake.income("rc-9", "FUNDING_FEE")), D(0))
                assert funding != 0 and D(venue["funding"]) == funding
                assert venue["agreed_at"] is not None and venue["positions"][0]["quantity"] == "0.1"
                assert venue["last_pass_requests"]  # what a pass costs, by endpoint
