"""The paper venue on its own: a simulated venue that answers like a real one.

No service and no actors here: a scripted market board, the account's position table as a plain
dict, and the venue's answers checked report by report.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from actors.domain.alarms import Alarm
from actors.domain.execution import CancelIntent, ExecutionReport, FundingReport, OrderIntent
from actors.domain.market import FeeRates, Instrument, LeverageBracket, MarkPrice, OrderBook, Quote, SymbolFilters
from actors.domain.money import ZERO
from actors.domain.positions import Position, apply_open_fill, new_position
from actors.execution.paper import PaperVenue
from actors.messages import AlarmFired

D = Decimal
TAKER, MAKER = D("0.0004"), D("0.0002")
FUNDING_TIME = 1_700_006_400_000  # 00:00 UTC: on the 8-hour grid


def instrument(symbol: str = "BTCUSDT") -> Instrument:
    return Instrument(
        symbol=symbol, base_asset="BTC", quote_asset="USDT",
        filters=SymbolFilters(tick_size=D("0.1"), step_size=D("0.001"), min_qty=D("0.001"), min_notional=D("5")),
        fees=FeeRates(maker=MAKER, taker=TAKER),
        brackets=(LeverageBracket(bracket=1, initial_leverage=50, notional_floor=ZERO, notional_cap=D("1e9"),
                                  maint_margin_ratio=D("0.004"), cum=ZERO),),
        max_leverage=50, liquidation_fee_rate=D("0.0125"),
    )


class Board:
    """A scripted market: books and marks set by the test, alarms recorded."""

    venue = "sim"

    def __init__(self) -> None:
        self.quotes: dict[str, Quote] = {}
        self.update_id = 0
        self.added: list[tuple[Alarm, bool]] = []
        self.cancelled: list[str] = []
        self.settled: dict[int, tuple[Decimal, Decimal]] | None = None  # funding times seen pass

    def set(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]], mark: str, *, rate: str = "0.0001",
            next_funding: int = 0) -> None:
        self.update_id += 1
        book = OrderBook(symbol="BTCUSDT", bids=tuple((D(p), D(q)) for p, q in bids),
                         asks=tuple((D(p), D(q)) for p, q in asks), venue_ms=self.update_id, received_at=0.0,
                         update_id=self.update_id)
        self.quotes["BTCUSDT"] = Quote(symbol="BTCUSDT", book=book, mark=MarkPrice(
            symbol="BTCUSDT", mark=D(mark), funding_rate=D(rate), next_funding_ms=next_funding, venue_ms=0,
            received_at=0.0))

    def quote(self, symbol: str) -> Quote | None:
        return self.quotes.get(symbol)

    def instrument(self, symbol: str) -> Instrument | None:
        return instrument(symbol) if symbol == "BTCUSDT" else None

    def settlement(self, symbol: str, funding_time_ms: int) -> tuple[Decimal, Decimal] | None:
        return (self.settled or {}).get(funding_time_ms)

    def funding_times(self, symbol: str, after_ms: int) -> list[int] | None:
        if self.settled is None:
            return None  # announces nothing: the 8-hour grid
        return sorted(t for t in self.settled if t > after_ms)

    async def add_alarm(self, alarm: Alarm, *, check_now: bool = True) -> None:
        self.added.append((alarm, check_now))

    async def cancel_alarms(self, *alarm_ids: str) -> None:
        self.cancelled.extend(alarm_ids)


def venue(board: Board, positions: dict[str, Position] | None = None) -> PaperVenue:
    return PaperVenue("acct", board, positions if positions is not None else {}, {})


def market(order_id: str, side: str, qty: str, **kw: Any) -> OrderIntent:
    return OrderIntent(order_id=order_id, client_order_id=f"c-{order_id}", symbol="BTCUSDT", side=side,  # type: ignore[arg-type]
                       type="MARKET", purpose=kw.pop("purpose", "entry"), quantity=D(qty), leverage=kw.pop("leverage", 5),
                       **kw)


def trigger(order_id: str, purpose: str, price: str, side: str = "SELL") -> OrderIntent:
    return OrderIntent(order_id=order_id, client_order_id=f"c-{order_id}", symbol="BTCUSDT", side=side,  # type: ignore[arg-type]
                       type="STOP_MARKET" if purpose == "stop_loss" else "TAKE_PROFIT_MARKET", purpose=purpose,
                       trigger_price=D(price), close_position=True, reduce_only=True)


def long_position(qty: str = "1", entry: str = "100") -> Position:
    p = new_position(position_id="acct.p1", account_id="acct", symbol="BTCUSDT", side="long", leverage=5,
                     now=1_700_000_000.0, opened_by="d0")
    return apply_open_fill(p, D(qty), D(entry), ZERO, 1_700_000_000.0).position


def trades(reports: list[Any]) -> list[tuple[Decimal, Decimal]]:
    return [(r.fill.price, r.fill.quantity) for r in reports if r.exec_type == "TRADE"]


async def test_a_market_order_walks_the_book_and_pays_the_taker_fee() -> None:
    board = Board()
    board.set([("99.9", "5")], [("100.1", "0.4"), ("100.2", "0.4"), ("100.5", "5")], "100")
    reports = await venue(board).submit(market("e1", "BUY", "1"))
    assert [r.exec_type for r in reports] == ["NEW", "TRADE", "TRADE", "TRADE"]
    assert trades(reports) == [(D("100.1"), D("0.4")), (D("100.2"), D("0.4")), (D("100.5"), D("0.2"))]
    assert [r.status for r in reports[1:]] == ["PARTIALLY_FILLED", "PARTIALLY_FILLED", "FILLED"]
    assert reports[-1].cumulative_quantity == D("1")
    assert reports[1].fill.fee == D("100.1") * D("0.4") * TAKER
    assert reports[1].fill.fill_id == "e1.1" and reports[3].fill.fill_id == "e1.3"


async def test_liquidity_taken_stays_taken_until_the_book_updates() -> None:
    board = Board()
    board.set([("99.9", "5")], [("100.1", "0.5"), ("100.2", "5")], "100")
    paper = venue(board)
    first = await paper.submit(market("e1", "BUY", "0.4"))
    second = await paper.submit(market("e2", "BUY", "0.4"))
    assert trades(first) == [(D("100.1"), D("0.4"))]
    assert trades(second) == [(D("100.1"), D("0.1")), (D("100.2"), D("0.3"))]  # only 0.1 was left at the touch
    board.set([("99.9", "5")], [("100.1", "0.5"), ("100.2", "5")], "100")  # the venue's book moved on
    third = await paper.submit(market("e3", "BUY", "0.4"))
    assert trades(third) == [(D("100.1"), D("0.4"))]


async def test_a_slippage_cap_fills_part_and_the_venue_expires_the_rest() -> None:
    board = Board()
    board.set([("99.9", "5")], [("100", "0.3"), ("101", "5")], "100")
    reports = await venue(board).submit(market("e1", "BUY", "1", max_slippage_bps=D("50")))
    assert trades(reports) == [(D("100"), D("0.3"))]
    assert (reports[-1].exec_type, reports[-1].status, reports[-1].reason) == ("EXPIRED", "EXPIRED", "slippage cap")


async def test_orders_the_venue_would_refuse_are_refused_with_its_codes() -> None:
    board = Board()
    board.set([("99.9", "5")], [("100.1", "5")], "100")
    paper = venue(board)
    (small,) = await paper.submit(market("e1", "BUY", "0.01"))  # 1 USDT, min notional 5
    (reduce,) = await paper.submit(market("x1", "SELL", "0.1", reduce_only=True, purpose="exit", leverage=None))
    (leverage,) = await paper.submit(market("e2", "BUY", "0.1", leverage=75))
    assert (small.exec_type, small.reject.code) == ("REJECTED", -4164)
    assert reduce.reject.code == -2022  # nothing to reduce
    assert leverage.reject.code == -4028


async def test_a_stop_that_gaps_fills_worse_than_its_trigger() -> None:
    board = Board()
    board.set([("99.9", "5")], [("100.1", "5")], "100")
    positions = {"BTCUSDT": long_position("1", "100")}
    paper = venue(board, positions)
    (accepted,) = await paper.submit(trigger("sl", "stop_loss", "99"))
    assert accepted.exec_type == "NEW"
    await paper.settle(committed=True)
    (alarm, check_now) = board.added[-1]
    assert (alarm.alarm_id, alarm.direction, alarm.threshold, alarm.price_type, check_now) == (
        "c-sl", "below", D("99"), "mark", True)
    board.set([("95", "0.6"), ("94", "5")], [("95.2", "5")], "94.5")  # the market gapped through 99
    reports = await paper.on_message(AlarmFired(alarm_id="c-sl", symbol="BTCUSDT", kind="stop_loss", ref="c-sl",
                                                threshold=D("99"), price=D("94.5")))
    assert trades(reports) == [(D("95"), D("0.6")), (D("94"), D("0.4"))]
    assert all(r.trigger_price == D("99") for r in reports)
    assert reports[-1].status == "FILLED"
    assert await paper.query("BTCUSDT", "c-sl") is None  # done: off the venue


async def test_a_trigger_whose_book_runs_out_stays_armed_for_the_rest() -> None:
    board = Board()
    board.set([("99.9", "5")], [("100.1", "5")], "100")
    paper = venue(board, {"BTCUSDT": long_position("1", "100")})
    await paper.submit(trigger("sl", "stop_loss", "99"))
    await paper.settle(committed=True)
    board.set([("98", "0.25")], [("98.2", "5")], "98.1")
    reports = await paper.on_message(AlarmFired(alarm_id="c-sl", symbol="BTCUSDT", kind="stop_loss", ref="c-sl",
                                                threshold=D("99"), price=D("98.1")))
    assert trades(reports) == [(D("98"), D("0.25"))]
    assert reports[-1].status == "PARTIALLY_FILLED"
    await paper.settle(committed=True)
    assert board.added[-1][0].alarm_id == "c-sl" and board.added[-1][1] is False  # re-armed for the next update
    assert (await paper.query("BTCUSDT", "c-sl")).filled_quantity == D("0.25")


async def test_a_level_the_market_is_already_through_would_immediately_trigger() -> None:
    board = Board()
    board.set([("98.9", "5")], [("99.1", "5")], "99")
    paper = venue(board, {"BTCUSDT": long_position()})
    (refused,) = await paper.submit(trigger("sl", "stop_loss", "99.5"))
    assert (refused.exec_type, refused.reject.code) == ("REJECTED", -2021)


async def test_what_the_account_did_not_commit_is_undone() -> None:
    board = Board()
    board.set([("99.9", "5")], [("100.1", "0.5"), ("100.2", "5")], "100")
    paper = venue(board, {"BTCUSDT": long_position()})
    await paper.submit(market("e1", "BUY", "0.4"))
    await paper.submit(trigger("sl", "stop_loss", "90"))
    await paper.settle(committed=False)
    assert await paper.open_orders() == [] and board.added == []  # nothing reached the market actor
    again = await paper.submit(market("e2", "BUY", "0.4"))
    assert trades(again) == [(D("100.1"), D("0.4"))]  # the undone fill gave its liquidity back
    await paper.settle(committed=True)
    second = await paper.submit(market("e3", "BUY", "0.4"))
    assert trades(second)[0] == (D("100.1"), D("0.1"))


async def test_a_book_that_arrives_while_a_resting_limit_is_committed_is_checked_when_its_alarm_goes_on() -> None:
    """A resting limit's alarm goes on once the order is committed. A book that arrived meanwhile
    (while the commit was made) is not the one whose crossing liquidity the order took: the alarm
    is checked against it at once, or a price that crossed the limit would slip past it."""
    board = Board()
    board.set([("99.9", "5")], [("100.1", "5")], "100")
    paper = venue(board)
    limit = OrderIntent(order_id="l1", client_order_id="c-l1", symbol="BTCUSDT", side="BUY", type="LIMIT",
                        purpose="entry", quantity=D("1"), price=D("99.5"), leverage=5)
    await paper.submit(limit)
    board.set([("99.3", "5")], [("99.4", "5")], "99.35")  # published during the commit
    await paper.settle(committed=True)
    alarm, check_now = board.added[-1]
    assert (alarm.alarm_id, check_now) == ("c-l1", True)


async def test_a_resting_limit_fills_as_maker_when_the_book_comes_to_it() -> None:
    board = Board()
    board.set([("99.9", "5")], [("100.1", "5")], "100")
    paper = venue(board)
    limit = OrderIntent(order_id="l1", client_order_id="c-l1", symbol="BTCUSDT", side="BUY", type="LIMIT",
                        purpose="entry", quantity=D("1"), price=D("99.5"), leverage=5)
    (accepted,) = await paper.submit(limit)
    assert (accepted.exec_type, accepted.status) == ("NEW", "NEW")
    await paper.settle(committed=True)
    alarm, check_now = board.added[-1]
    assert (alarm.price_type, alarm.direction, alarm.threshold, check_now) == ("ask", "below", D("99.5"), False)
    board.set([("99.3", "5")], [("99.4", "0.6"), ("99.5", "0.1"), ("99.6", "5")], "99.45")
    reports = await paper.on_message(AlarmFired(alarm_id="c-l1", symbol="BTCUSDT", kind="limit", ref="c-l1",
                                                threshold=D("99.5"), price=D("99.4")))
    assert trades(reports) == [(D("99.4"), D("0.6")), (D("99.5"), D("0.1"))]
    assert all(r.fill.liquidity == "maker" and r.fill.fee == r.fill.price * r.fill.quantity * MAKER for r in reports)
    assert reports[-1].status == "PARTIALLY_FILLED"
    cancelled = await paper.cancel(CancelIntent(order_id="l1", client_order_id="c-l1", symbol="BTCUSDT"))
    assert [(r.exec_type, r.cumulative_quantity) for r in cancelled] == [("CANCELED", D("0.7"))]


async def test_liquidation_closes_at_the_bankruptcy_price_and_takes_the_fee() -> None:
    board = Board()
    board.set([("80", "5")], [("80.2", "5")], "80")
    position = msgspec.structs.replace(long_position("1", "100"), liquidation_price=D("80.4"))
    paper = venue(board, {"BTCUSDT": position})
    (report,) = await paper.on_message(AlarmFired(alarm_id="x", symbol="BTCUSDT", kind="liquidation",
                                                  ref=position.id, threshold=D("80.4"), price=D("80")))
    assert isinstance(report, ExecutionReport)
    assert (report.exec_type, report.order_type, report.status) == ("CALCULATED", "LIQUIDATION", "FILLED")
    assert report.bankruptcy_price == D("80")  # entry 100 - margin 20 / quantity 1
    assert report.fill.price == D("80") and report.fill.fee == D("80") * D("0.0125")
    assert report.trigger_price == D("80")  # the mark that liquidated it


@pytest.mark.parametrize(("now_ms", "paid"), [(FUNDING_TIME - 1, 0), (FUNDING_TIME, 1), (FUNDING_TIME + 8 * 3_600_000, 2)])
async def test_funding_is_settled_at_each_funding_time_lived_through(now_ms: int, paid: int) -> None:
    board = Board()
    board.set([("99.9", "5")], [("100.1", "5")], "100", rate="0.0001")
    position = msgspec.structs.replace(long_position("2", "100"), opened_at=(FUNDING_TIME - 1000) / 1000)
    reports = await venue(board, {"BTCUSDT": position}).poll(now_ms / 1000)
    funding = [r for r in reports if isinstance(r, FundingReport)]
    assert len(funding) == paid
    assert all(r.amount == -D("2") * D("100") * D("0.0001") for r in funding)  # a long pays a positive rate


async def test_funding_is_paid_at_the_times_the_venue_announced_not_on_the_grid() -> None:
    """Marks that announce funding times (here hourly, off the 8-hour grid) are what counts: each
    time seen pass is paid once, at the mark and rate in force then, and nothing on the grid."""
    board = Board()
    board.set([("99.9", "5")], [("100.1", "5")], "100", rate="0.0001")
    one, two = FUNDING_TIME + 3_600_000, FUNDING_TIME + 2 * 3_600_000
    board.settled = {one: (D("101"), D("0.0002")), two: (D("99"), D("-0.0001"))}
    position = msgspec.structs.replace(long_position("2", "100"), opened_at=(FUNDING_TIME + 1000) / 1000)
    funded: dict[str, int] = {}
    paper = PaperVenue("acct", board, {"BTCUSDT": position}, funded)
    reports = [r for r in await paper.poll((two + 5_000) / 1000) if isinstance(r, FundingReport)]
    assert [(r.funding_time, r.mark, r.rate, r.amount) for r in reports] == [
        (one, D("101"), D("0.0002"), -D("2") * D("101") * D("0.0002")),
        (two, D("99"), D("-0.0001"), D("2") * D("99") * D("0.0001")),
    ]
    funded[position.id] = one  # the account committed the first one only (e.g. then restarted)
    again = [r for r in await paper.poll((two + 6_000) / 1000) if isinstance(r, FundingReport)]
    assert [r.funding_time for r in again] == [two]
    board.settled = {}  # announced, but no time seen pass yet: nothing, not even the grid's 08:00
    assert [r for r in await paper.poll((FUNDING_TIME + 8 * 3_600_000 + 1) / 1000) if isinstance(r, FundingReport)] == []
