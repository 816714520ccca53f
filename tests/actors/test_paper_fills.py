"""Paper fills a trader can trust, on a scripted market: book walking, liquidity consumption,
slippage caps, limit orders (maker, never more than the crossing size), TP/SL gaps, OCO,
liquidation at the bankruptcy price, funding. Virtual clock; the market is driven by the test."""

from __future__ import annotations

from contextlib import asynccontextmanager
from decimal import Decimal as D
from pathlib import Path
from typing import Any, AsyncIterator

import trio
import trio.testing

from actors.clock import ServiceClock
from actors.domain.market import MarkPrice, OrderBook
from actors.messages import CancelOrder
from actors.service import Service, run_service
from actors.venues.sim import sim_instrument
from tests.actors.helpers import body, submit
from tests.conftest import TEST_SETTINGS, make_settings

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
TAKER, MAKER = D("0.00035"), D("0.0001")


class ScriptedMarket:
    """A market-data source the test drives: it publishes exactly the books and marks it is given."""

    def __init__(self) -> None:
        self.handle: Any = None
        self.update_id = 0

    def source(self) -> Any:
        async def run(handle: Any, symbol_commands: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            self.handle = handle
            handle.set_instruments({s: sim_instrument(s) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")})
            self.book("BTCUSDT", bids=[("67999.9", "1")], asks=[("68000.0", "1")], mark="68000")
            self.book("ETHUSDT", bids=[("3499.99", "10")], asks=[("3500.00", "10")], mark="3500")
            task_status.started()
            async for _ in symbol_commands:
                pass

        return run

    def book(self, symbol: str, *, bids: list[tuple[str, str]], asks: list[tuple[str, str]],
             mark: str | None = None, depth: bool = True, funding_rate: str = "0.0001") -> None:
        self.update_id += 1
        now = self.handle._clock.now()
        self.handle.publish_book(OrderBook(
            symbol=symbol, bids=tuple((D(p), D(q)) for p, q in bids), asks=tuple((D(p), D(q)) for p, q in asks),
            venue_ms=int(now * 1000), received_at=now, depth=depth, update_id=self.update_id))
        if mark is not None:
            self.mark(symbol, mark, funding_rate)

    def mark(self, symbol: str, mark: str, funding_rate: str = "0.0001") -> None:
        now = self.handle._clock.now()
        self.handle.publish_mark(MarkPrice(symbol=symbol, mark=D(mark), funding_rate=D(funding_rate),
                                           next_funding_ms=0, venue_ms=int(now * 1000), received_at=now))


@asynccontextmanager
async def scripted_service(tmp_path: Path, text: str = TEST_SETTINGS, *, anchor: float = START,
                           adapter_factory: Any = None) -> AsyncIterator[tuple[Service, ScriptedMarket]]:
    """The in-process service (inline commits) on a scripted market, its clock at ``anchor``."""
    market = ScriptedMarket()
    settings = make_settings(tmp_path, text)
    async with trio.open_nursery() as nursery:
        service: Service = await nursery.start(lambda task_status: run_service(
            settings, clock=ServiceClock(anchor), serve_http=False, inline_persistence=True,
            sources={"sim": market.source()}, adapter_factory=adapter_factory, task_status=task_status))
        try:
            yield service, market
        finally:
            service.request_stop()
            await service.stopped.wait()


def state(service: Service, account: str = "paper-1") -> Any:
    return service.supervisor.slot(account).actor.state


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def test_market_order_walks_the_book_and_consumed_liquidity_stays_taken(tmp_path: Path, autojump_clock: Any) -> None:
    async with scripted_service(tmp_path) as (service, market):
        market.book("BTCUSDT", bids=[("67999.9", "5")], asks=[("68000.0", "0.3"), ("68000.5", "0.2"), ("68001.0", "5")],
                    mark="68000")
        first = await submit(service, "paper-1", body("w-1", quantity="0.4", notional=None))
        assert [(f["price"], f["quantity"]) for f in first["fills"]] == [("68000", "0.3"), ("68000.5", "0.1")]
        assert D(first["order"]["avg_price"]) == (D("68000") * D("0.3") + D("68000.5") * D("0.1")) / D("0.4")
        assert all(D(f["fee"]) == D(f["price"]) * D(f["quantity"]) * TAKER for f in first["fills"])
        # same book snapshot: the 0.4 already taken is not available again
        second = await submit(service, "paper-1", body("w-2", quantity="0.2", notional=None))
        assert [(f["price"], f["quantity"]) for f in second["fills"]] == [("68000.5", "0.1"), ("68001", "0.1")]
        # a new book from the venue: liquidity is back
        market.book("BTCUSDT", bids=[("67999.9", "5")], asks=[("68000.0", "0.3"), ("68000.5", "0.2")], mark="68000")
        third = await submit(service, "paper-1", body("w-3", quantity="0.1", notional=None))
        assert [(f["price"], f["quantity"]) for f in third["fills"]] == [("68000", "0.1")]


async def test_slippage_cap_gives_a_partial_fill_and_top_of_book_is_marked(tmp_path: Path, autojump_clock: Any) -> None:
    async with scripted_service(tmp_path) as (service, market):
        market.book("BTCUSDT", bids=[("67999.9", "5")], asks=[("68000.0", "0.1"), ("68100.0", "5")], mark="68000")
        result = await submit(service, "paper-1", body("s-1", quantity="0.5", notional=None, max_slippage_bps="10"))
        assert result["status"] == "partially_filled"
        assert result["order"]["filled_quantity"] == "0.1" and result["order"]["status"] == "EXPIRED"
        assert D(result["position"]["quantity"]) == D("0.1")
        # a symbol with only a top of book (no depth ever received): the fill says so
        market.book("SOLUSDT", bids=[("149.99", "100")], asks=[("150.00", "100")], mark="150", depth=False)
        top = await submit(service, "paper-1", body("s-2", symbol="SOLUSDT", quantity="1", notional=None))
        assert top["fills"][0]["top_of_book_only"] is True
        # after a depth snapshot, a top-of-book update refreshes the best levels over that depth
        market.book("ETHUSDT", bids=[("3499.99", "10")], asks=[("3500.00", "1"), ("3500.05", "10")], mark="3500")
        market.book("ETHUSDT", bids=[("3500.00", "2")], asks=[("3500.01", "0.5")], mark="3500", depth=False)
        eth = await submit(service, "paper-1", body("s-3", symbol="ETHUSDT", quantity="2", notional=None))
        assert [(f["price"], f["quantity"], f["top_of_book_only"]) for f in eth["fills"]] == [
            ("3500.01", "0.5", False), ("3500.05", "1.5", False)]


async def test_min_notional_and_step_size_like_the_venue(tmp_path: Path, autojump_clock: Any) -> None:
    async with scripted_service(tmp_path) as (service, market):
        tiny = await submit(service, "paper-1", body("n-1", symbol="ETHUSDT", quantity="0.001", notional=None))
        assert tiny["status"] == "rejected"  # 0.001 ETH = 3.5 USDT, under the 5 USDT minimum
        assert tiny["rejection"]["code"] == "VENUE_REJECTED"
        assert tiny["rejection"]["details"]["venue_code"] == "-4164"
        nothing = await submit(service, "paper-1", body("n-3", notional="4"))  # rounds to 0 BTC
        assert nothing["rejection"]["details"]["venue_code"] == "-4003"
        rounded = await submit(service, "paper-1", body("n-2", quantity="0.0019", notional=None))
        assert rounded["order"]["quantity"] == "0.001"  # rounded down to the step size
        assert state(service).positions["BTCUSDT"].quantity == D("0.001")


async def test_limit_order_rests_and_fills_only_the_crossing_size_at_the_maker_fee(tmp_path: Path, autojump_clock: Any) -> None:
    async with scripted_service(tmp_path) as (service, market):
        resting = await submit(service, "paper-1", body("l-1", quantity="0.5", notional=None, order_type="limit",
                                                          price="67900", stop_loss="66000"))
        assert resting["status"] == "resting"
        order_id = resting["order"]["id"]
        assert state(service).orders[order_id].status == "NEW"
        # the ask comes down through 67900 with only 0.2 at or below it
        market.book("BTCUSDT", bids=[("67850", "1")], asks=[("67890", "0.15"), ("67900", "0.05"), ("67910", "3")],
                    mark="67895")
        await settle()
        order = state(service).orders[order_id]
        assert order.status == "PARTIALLY_FILLED" and order.filled_quantity == D("0.2")
        position = state(service).positions["BTCUSDT"]
        assert position.quantity == D("0.2")
        assert position.stop_loss == D("66000")  # protection attached at the first fill
        fills = await service.reader.fetchall("SELECT price, quantity, fee, liquidity FROM fills ORDER BY seq")
        assert [(r["price"], r["quantity"], r["liquidity"]) for r in fills] == [
            ("67890", "0.15", "maker"), ("67900", "0.05", "maker")]
        assert all(D(r["fee"]) == D(r["price"]) * D(r["quantity"]) * MAKER for r in fills)
        # a later book crosses again: the rest fills
        market.book("BTCUSDT", bids=[("67850", "1")], asks=[("67899", "1")], mark="67895")
        await settle()
        assert order_id not in state(service).orders
        assert state(service).positions["BTCUSDT"].quantity == D("0.5")


async def test_a_resting_limit_order_can_be_cancelled(tmp_path: Path, autojump_clock: Any) -> None:
    async with scripted_service(tmp_path) as (service, market):
        resting = await submit(service, "paper-1", body("lc-1", quantity="0.5", notional=None, order_type="limit",
                                                          price="67000"))
        cancelled = await service.supervisor.submit("paper-1", CancelOrder(order_id=resting["order"]["id"])).wait()
        assert cancelled["status"] == "CANCELED"
        market.book("BTCUSDT", bids=[("66000", "1")], asks=[("66001", "5")], mark="66000")
        await settle()
        assert state(service).positions == {}  # nothing filled after the cancel


async def test_stop_loss_gap_fills_worse_than_the_trigger_and_cancels_the_take_profit(tmp_path: Path, autojump_clock: Any) -> None:
    async with scripted_service(tmp_path) as (service, market):
        market.book("BTCUSDT", bids=[("67999.9", "5")], asks=[("68000.0", "5")], mark="68000")
        await submit(service, "paper-1", body("g-1", quantity="0.1", notional=None, stop_loss="67000",
                                               take_profit="70000"))
        # the market gaps from 68000 to 66000: the stop triggers on the mark, fills on the book there
        market.book("BTCUSDT", bids=[("66000", "0.05"), ("65990", "1")], asks=[("66010", "1")], mark="66005")
        await settle()
        assert state(service).positions == {}
        fills = await service.reader.fetchall(
            "SELECT price, quantity, trigger_price FROM fills WHERE order_id LIKE '%stop_loss' ORDER BY seq")
        assert [(r["price"], r["quantity"], r["trigger_price"]) for r in fills] == [
            ("66000", "0.05", "67000"), ("65990", "0.05", "67000")]
        orders = await service.reader.fetchall("SELECT purpose, status FROM orders WHERE purpose IN ('take_profit', 'stop_loss')")
        assert {r["purpose"]: r["status"] for r in orders} == {"stop_loss": "FILLED", "take_profit": "CANCELED"}
        closed = await service.reader.fetchall("SELECT close_reason, realized_pnl FROM positions")
        assert closed[0]["close_reason"] == "stop_loss"
        assert D(closed[0]["realized_pnl"]) == D("0.05") * (D("66000") - D("68000")) + D("0.05") * (D("65990") - D("68000"))


async def test_liquidation_at_the_bankruptcy_price_with_the_liquidation_fee(tmp_path: Path, autojump_clock: Any) -> None:
    async with scripted_service(tmp_path) as (service, market):
        opened = await submit(service, "paper-1", body("q-1", quantity="0.1", notional=None, leverage=20))
        position = state(service).positions["BTCUSDT"]
        liquidation = position.liquidation_price
        assert liquidation is not None and D(opened["position"]["liquidation_price"]) == liquidation
        balance_before = state(service).balance
        market.book("BTCUSDT", bids=[(str(liquidation - 50), "5")], asks=[(str(liquidation - 49), "5")],
                    mark=str(liquidation - 10))
        await settle()
        assert state(service).positions == {}
        rows = await service.reader.fetchall("SELECT price, fee, realized_pnl FROM fills WHERE order_id LIKE '%liquidation'")
        bankruptcy = D("68000") - position.margin / D("0.1")
        assert D(rows[0]["price"]) == bankruptcy
        assert D(rows[0]["fee"]) == D("0.1") * bankruptcy * D("0.015")
        assert D(rows[0]["realized_pnl"]) == -position.margin  # the isolated margin is lost
        assert state(service).balance == balance_before - position.margin - D(rows[0]["fee"])
        events = await service.reader.fetchall("SELECT type FROM events WHERE type = 'position.liquidated'")
        assert len(events) == 1


async def test_funding_is_paid_at_the_funding_time_on_the_notional_at_the_mark(tmp_path: Path, autojump_clock: Any) -> None:
    async with scripted_service(tmp_path) as (service, market):
        await trio.sleep(7 * 3600 + 59 * 60)  # 07:59 UTC
        market.book("BTCUSDT", bids=[("67999.9", "5")], asks=[("68000.0", "5")], mark="68000", funding_rate="0.0002")
        market.book("ETHUSDT", bids=[("3499.99", "10")], asks=[("3500.00", "10")], mark="3500", funding_rate="0.0002")
        assert (await submit(service, "paper-1", body("fu-1", quantity="0.5", notional=None)))["status"] == "filled"
        assert (await submit(service, "paper-1", body("fu-2", symbol="ETHUSDT", side="short", quantity="2",
                                                      notional=None)))["status"] == "filled"
        market.mark("BTCUSDT", "68100", "0.0002")
        market.book("ETHUSDT", bids=[("3499.99", "10")], asks=[("3500.00", "10")], mark="3510", funding_rate="0.0002")
        await trio.sleep(120)  # through 08:00 UTC
        for _ in range(3):  # keep the quotes fresh; funding is paid once per funding time
            market.mark("BTCUSDT", "68100", "0.0002")
            await trio.sleep(1)
        payments = await service.reader.fetchall("SELECT symbol, amount, funding_time FROM funding_payments ORDER BY symbol")
        eight = int((START + 8 * 3600) * 1000)
        assert [(r["symbol"], D(r["amount"]), r["funding_time"]) for r in payments] == [
            ("BTCUSDT", -D("0.5") * D("68100") * D("0.0002"), eight),  # longs pay a positive rate
            ("ETHUSDT", D("2") * D("3510") * D("0.0002"), eight),  # shorts receive it
        ]
        assert state(service).funding == sum(D(r["amount"]) for r in payments)
