"""A live account's paper twin, in process and on trio's virtual clock.

The live account runs on :class:`~tests.actors.test_scripted_adapter.ScriptedVenue`, a
write-ahead double that answers later over its "user stream" (10 ms of virtual time per message),
on a scripted market; its twin is the real paper twin (``open_adapter``). Times are exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import trio

from actors.account.context import AccountContext
from actors.clock import ServiceClock
from actors.domain.book import AccountBook
from actors.execution import PaperVenue, TwinVenue, open_adapter
from actors.messages import CommandRefused
from actors.service import Service, run_service
from tests.actors.helpers import body, submit, submit_nowait
from tests.actors.test_paper_fills import START, ScriptedMarket
from tests.actors.test_scripted_adapter import ScriptedVenue
from tests.conftest import db_rows, make_settings

VENUE = "binance-usdm"
TWIN_SETTINGS = f"""
server: {{host: 127.0.0.1, port: 0}}
database: {{path: unused.sqlite3}}
venues:
  {VENUE}: {{symbols: [BTCUSDT]}}
risk: {{max_leverage: 25, cooldown_seconds: 0, max_order_notional: 50000}}
accounts:
  - {{id: lv, mode: live, venue: {VENUE}, balance: "10000", paper_twin: true, paper_twin_balance: "4000"}}
"""
ANSWER_DELAY = 0.01  # the double's first answer message comes this long after the order


@asynccontextmanager
async def twin_service(tmp_path: Path, *, paper_latency: float = 0.0
                       ) -> AsyncIterator[tuple[Service, ScriptedMarket, list[ScriptedVenue]]]:
    """The service with the live account ``lv`` on the write-ahead double and its twin ``lv-twin``."""
    market = ScriptedMarket()
    doubles: list[ScriptedVenue] = []

    async def adapters(ctx: AccountContext, book: AccountBook, nursery: trio.Nursery) -> Any:
        if ctx.settings.mode != "live":
            return await open_adapter(ctx, book, nursery)  # the twin: exactly what the service gives it
        inner = PaperVenue(book.account_id, ctx.market, book.positions, book.funded_until)
        await inner.restore(list(book.orders.values()))
        double = ScriptedVenue(inner, ctx, nursery)
        doubles.append(double)
        return double

    settings = make_settings(tmp_path, TWIN_SETTINGS)
    async with trio.open_nursery() as nursery:
        service: Service = await nursery.start(lambda task_status: run_service(
            settings, clock=ServiceClock(START), serve_http=False, inline_persistence=True, paper_latency=paper_latency,
            sources={VENUE: market.source()}, adapter_factory=adapters, task_status=task_status))
        try:
            yield service, market, doubles
        finally:
            service.request_stop()
            await service.stopped.wait()


def twin_decisions(service: Service) -> list[tuple[Any, ...]]:
    return db_rows(service, "SELECT decision_id, status, created_at FROM decisions WHERE account_id = 'lv-twin'")


def fills(service: Service, account: str) -> list[tuple[str, D, D, float]]:
    return [(o, D(p), D(q), ts) for o, p, q, ts in db_rows(
        service, "SELECT order_id, price, quantity, ts FROM fills WHERE account_id = ? ORDER BY seq", (account,))]


async def test_the_twin_executes_when_the_live_order_goes_out_not_when_the_venue_answers(
        tmp_path: Path, autojump_clock: Any) -> None:
    async with twin_service(tmp_path) as (service, market, _):
        twin = service.supervisor.slot("lv-twin")
        assert isinstance(twin.actor.adapter, TwinVenue) and twin.settings.twin_of == "lv"
        assert twin.snapshot().initial_balance == D("4000")  # paper_twin_balance
        market.book("BTCUSDT", bids=[("67999.9", "5")], asks=[("68000.0", "0.2"), ("68000.5", "5")], mark="68000")
        started = service.clock.now()
        live = await submit(service, "lv", body("t-1", quantity="0.3", notional=None, stop_loss="67000",
                                                take_profit="70000"))
        assert live["status"] == "filled" and live["is_paper"] is False
        # the twin took it the moment the live order went out, on the same book; the live fills
        # came with the venue's answer, one message later
        ((decision_id, status, twin_started),) = twin_decisions(service)
        assert (decision_id, status) == ("t-1", "filled")
        assert twin_started == started
        assert [(p, q, ts - started) for _, p, q, ts in fills(service, "lv-twin")] == [
            (D("68000"), D("0.2"), 0.0), (D("68000.5"), D("0.1"), 0.0)]
        live_fills = fills(service, "lv")
        assert sorted((p, q) for _, p, q, _ in live_fills) == [(D("68000"), D("0.2")), (D("68000.5"), D("0.1"))]
        assert min(ts for *_, ts in live_fills) - started == pytest.approx(ANSWER_DELAY)
        # the twin protects its own position at the same levels
        position = service.supervisor.slot("lv-twin").snapshot().positions[0]
        assert (position.quantity, position.take_profit, position.stop_loss) == (D("0.3"), D("70000"), D("67000"))
        assert sorted(o.purpose for o in service.supervisor.slot("lv-twin").snapshot().orders) == [
            "stop_loss", "take_profit"]
        # a close is the twin's own position's close
        await submit(service, "lv", {"decision_id": "t-2", "symbol": "BTCUSDT", "action": "close"})
        assert service.supervisor.slot("lv-twin").snapshot().positions == ()
        assert [d for d, *_ in twin_decisions(service)] == ["t-1", "t-2"]


async def test_the_twin_fills_on_the_market_as_the_live_order_went_out_even_when_it_runs_later(
        tmp_path: Path, autojump_clock: Any) -> None:
    # paper latency holds the twin's order on its way 50 ms: the book moves meanwhile
    async with twin_service(tmp_path, paper_latency=0.05) as (service, market, _):
        market.book("BTCUSDT", bids=[("67999.9", "5")], asks=[("68000.0", "0.2"), ("68000.5", "5")], mark="68000")
        live = await submit(service, "lv", body("m-1", quantity="0.3", notional=None))
        assert live["status"] == "filled"
        assert twin_decisions(service) == []  # still on its way
        market.book("BTCUSDT", bids=[("68099.9", "5")], asks=[("68100.0", "5")], mark="68100")
        with trio.fail_after(1):
            while not twin_decisions(service):
                await trio.sleep(0.005)
        assert [(p, q) for _, p, q, _ in fills(service, "lv-twin")] == [(D("68000"), D("0.2")), (D("68000.5"), D("0.1"))]
        # an open names the live order's size, whatever a notional would make of the twin's quote
        await submit(service, "lv", body("m-2", notional="6810"))
        with trio.fail_after(1):
            while len(twin_decisions(service)) < 2:
                await trio.sleep(0.005)
        twin_orders = db_rows(service, "SELECT quantity FROM orders WHERE account_id = 'lv-twin' AND id = 'm-2.entry'")
        live_orders = db_rows(service, "SELECT quantity FROM orders WHERE account_id = 'lv' AND id = 'm-2.entry'")
        assert twin_orders == live_orders == [("0.1",)]


async def test_a_decision_the_live_gate_refuses_never_reaches_the_twin_and_clients_cannot_trade_it(
        tmp_path: Path, autojump_clock: Any) -> None:
    async with twin_service(tmp_path) as (service, market, doubles):
        market.book("BTCUSDT", bids=[("67999.9", "5")], asks=[("68000.0", "5")], mark="68000")
        too_large = await submit(service, "lv", body("g-1", quantity="1", notional=None))  # 68,000 > 50,000
        assert too_large["status"] == "rejected" and too_large["rejection"]["code"] == "ORDER_TOO_LARGE"
        nothing = await submit(service, "lv", {"decision_id": "g-2", "symbol": "BTCUSDT", "action": "close"})
        assert nothing["rejection"]["code"] == "NO_POSITION"
        await trio.testing.wait_all_tasks_blocked()
        assert twin_decisions(service) == []
        assert db_rows(service, "SELECT COUNT(*) FROM orders WHERE account_id = 'lv-twin'") == [(0,)]
        # a decision from anyone but its live account (the front door, the stream intake) is refused
        reply = submit_nowait(service, "lv-twin", body("c-1"))
        with pytest.raises(CommandRefused) as refused:
            await reply.wait()
        assert refused.value.code == "PAPER_TWIN" and refused.value.status == 409
        assert "paper twin of live account 'lv'" in refused.value.message
        assert twin_decisions(service) == []
        (double,) = doubles
        assert double.account_id == "lv"  # the twin never got a venue double: its venue is paper
