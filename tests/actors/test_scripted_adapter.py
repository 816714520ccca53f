"""The account actor on a second implementation of the execution protocol.

:class:`ScriptedVenue` is a test double that speaks the protocol the way a remote venue does: it
is write-ahead (the account commits each intent before sending it), it answers nothing at once —
its reports arrive later over its "user stream" (the account's venue path), split in two messages
and out of order (a fill before the acknowledgement, the last fill first) — and partial fills come
one report each. It works the orders on an inner paper venue, so its fills are the paper model's.

The same session runs on paper and on the double; the durable records (orders, fills, positions,
decisions, balances) must be the same.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import msgspec
import trio

from actors.account.context import AccountContext
from actors.domain.book import AccountBook
from actors.domain.execution import CancelIntent, ExecutionReport, OrderIntent, Report
from actors.execution.paper import PaperVenue
from actors.service import Service
from tests.actors.helpers import body, submit
from tests.actors.test_paper_fills import ScriptedMarket, scripted_service, state


class ScriptedAnswer(msgspec.Struct, frozen=True):
    """What the double's "venue" sends later, on its stream."""

    reports: list[Any]


class ScriptedVenue:
    """A remote-venue-like double over an inner paper venue (see the module docstring)."""

    is_paper = False
    write_ahead = True
    interruptible = True

    def __init__(self, inner: PaperVenue, ctx: AccountContext, nursery: trio.Nursery) -> None:
        self.venue = inner.venue
        self.account_id = inner.account_id
        self._inner = inner
        self._mailbox = ctx.mailbox
        self._nursery = nursery
        self.answers = 0

    def _later(self, reports: Sequence[Report]) -> None:
        """Deliver ``reports`` asynchronously, in two messages, the acknowledgement last and the
        fills in reverse order (the last fill first)."""
        if not reports:
            return
        new = [r for r in reports if isinstance(r, ExecutionReport) and r.exec_type == "NEW"]
        rest = [r for r in reports if r not in new][::-1]
        first, second = rest[: (len(rest) + 1) // 2], rest[(len(rest) + 1) // 2:] + new

        async def deliver() -> None:
            for part in (first, second):
                await trio.sleep(0.01)
                if part:
                    self.answers += 1
                    self._mailbox.post_venue(ScriptedAnswer(part))

        self._nursery.start_soon(deliver)

    async def submit(self, intent: OrderIntent) -> Sequence[Report]:
        self._later(await self._inner.submit(intent))
        return []

    async def cancel(self, intent: CancelIntent) -> Sequence[Report]:
        self._later(await self._inner.cancel(intent))
        return []

    async def query(self, symbol: str, client_order_id: str, *, conditional: bool = False) -> Any:
        return await self._inner.query(symbol, client_order_id)

    async def open_orders(self) -> Sequence[Any]:
        return await self._inner.open_orders()

    async def positions(self) -> Sequence[Any]:
        return await self._inner.positions()

    async def on_message(self, message: Any) -> Sequence[Report]:
        if isinstance(message, ScriptedAnswer):
            return message.reports
        self._later(await self._inner.on_message(message))  # a price alarm: the venue acts, tells later
        return []

    async def poll(self, now: float) -> Sequence[Report]:
        self._later(await self._inner.poll(now))
        return []

    async def settle(self, committed: bool) -> None:
        await self._inner.settle(committed=True)  # what a remote venue did is done


def scripted_factory(doubles: list[ScriptedVenue]) -> Any:
    async def factory(ctx: AccountContext, book: AccountBook, nursery: trio.Nursery) -> ScriptedVenue:
        inner = PaperVenue(book.account_id, ctx.market, book.positions, book.funded_until)
        await inner.restore(list(book.orders.values()))
        double = ScriptedVenue(inner, ctx, nursery)
        doubles.append(double)
        return double

    return factory


async def session(service: Service, market: ScriptedMarket) -> list[dict[str, Any]]:
    """Open with TP/SL (three fills), reduce part of it, let the stop-loss fire (the take-profit is
    cancelled), then open again and close with a decision."""
    results = []
    market.book("BTCUSDT", bids=[("67999.9", "5")], asks=[("68000.0", "0.2"), ("68000.5", "0.2"), ("68001.0", "5")],
                mark="68000")
    results.append(await submit(service, "paper-1", body("sd-1", quantity="0.5", notional=None, leverage=5,
                                                         stop_loss="67000", take_profit="70000")))
    results.append(await submit(service, "paper-1", {"decision_id": "sd-2", "symbol": "BTCUSDT", "action": "close",
                                                     "quantity": "0.2"}))
    market.book("BTCUSDT", bids=[("66900.0", "0.1"), ("66890.0", "5")], asks=[("66900.5", "5")], mark="66950")
    with trio.fail_after(10):
        while "BTCUSDT" in state(service).positions or state(service).orders:
            await trio.sleep(0.05)
    market.book("BTCUSDT", bids=[("66900.0", "5")], asks=[("66900.5", "0.3"), ("66901.0", "5")], mark="66900")
    results.append(await submit(service, "paper-1", body("sd-3", quantity="0.4", notional=None, leverage=5)))
    results.append(await submit(service, "paper-1", {"decision_id": "sd-4", "symbol": "BTCUSDT", "action": "close"}))
    with trio.fail_after(10):
        while state(service).orders:
            await trio.sleep(0.05)
    return results


def records(db: str) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    try:
        def rows(sql: str) -> list[tuple[Any, ...]]:
            return conn.execute(sql).fetchall()

        return {
            "orders": rows("SELECT id, type, purpose, side, status, quantity, filled_quantity, avg_price, fee,"
                           " trigger_price, client_order_id FROM orders WHERE account_id = 'paper-1' ORDER BY id"),
            "fills": rows("SELECT id, order_id, decision_id, side, quantity, price, fee, realized_pnl, trigger_price"
                          " FROM fills WHERE account_id = 'paper-1' ORDER BY id"),
            "positions": rows("SELECT id, status, quantity, entry_price, realized_pnl, fees, close_reason, max_quantity,"
                              " closed_quantity FROM positions WHERE account_id = 'paper-1' ORDER BY id"),
            "decisions": rows("SELECT decision_id, status FROM decisions WHERE account_id = 'paper-1' ORDER BY decision_id"),
            "account": rows("SELECT balance, realized_pnl, fees FROM accounts WHERE id = 'paper-1'"),
            "event_types": sorted(t for (t,) in rows("SELECT type FROM events WHERE account_id = 'paper-1'")),
        }
    finally:
        conn.close()


def essentials(result: dict[str, Any]) -> tuple[Any, ...]:
    position = result["position"] or {}
    return (result["status"], [(f["price"], f["quantity"], f["fee"]) for f in result["fills"]],
            position.get("quantity"), position.get("realized_pnl"), result["balance"],
            sorted(o["purpose"] for o in result["protective_orders"]))


async def test_an_asynchronous_reordering_venue_gives_the_same_durable_records_as_paper(
        tmp_path: Path, autojump_clock: Any) -> None:
    (tmp_path / "paper").mkdir()
    (tmp_path / "double").mkdir()
    async with scripted_service(tmp_path / "paper") as (service, market):
        paper_results = await session(service, market)
        paper_db = service.settings.database.path
    doubles: list[ScriptedVenue] = []
    async with scripted_service(tmp_path / "double", adapter_factory=scripted_factory(doubles)) as (service, market):
        double_results = await session(service, market)
        double_db = service.settings.database.path
    (double_venue,) = [d for d in doubles if d.account_id == "paper-1"]
    assert double_venue.answers > 10  # everything came back over the double's stream
    assert [essentials(r) for r in double_results] == [essentials(r) for r in paper_results]
    first = paper_results[0]
    assert first["status"] == "filled" and len(first["fills"]) == 3  # three partial fills
    assert D(first["position"]["quantity"]) == D("0.5")
    paper, double = records(paper_db), records(double_db)
    for table in ("orders", "fills", "positions", "decisions", "account"):
        assert double[table] == paper[table], table
    stop = next(o for o in paper["orders"] if o[2] == "stop_loss")
    take = next(o for o in paper["orders"] if o[2] == "take_profit")
    assert (stop[4], take[4]) == ("FILLED", "CANCELED")  # the stop fired, its other leg was cancelled
    assert paper["positions"][0][6] == "stop_loss"
    # the same events, but for one summary of an order's fills per venue message: the double
    # reported each execution in two messages
    extra = Counter(double["event_types"]) - Counter(paper["event_types"])
    assert set(extra) <= {"order.filled", "position.updated"} and extra["order.filled"] == extra["position.updated"]
    assert not Counter(paper["event_types"]) - Counter(double["event_types"])
