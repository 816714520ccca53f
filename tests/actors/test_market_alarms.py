"""The market-data handle's alarms: registered and cancelled at once, not through a queue."""

from __future__ import annotations

from decimal import Decimal as D

import trio

from actors.clock import ServiceClock
from actors.domain.alarms import Alarm
from actors.domain.market import OrderBook
from actors.market_data import MarketData
from actors.messages import AlarmFired


class Sink:
    def __init__(self) -> None:
        self.fired: list[AlarmFired] = []

    def post_venue(self, message: AlarmFired) -> bool:
        self.fired.append(message)
        return True


def book(bid: str, ask: str, n: int) -> OrderBook:
    return OrderBook(symbol="BTCUSDT", bids=((D(bid), D("1")),), asks=((D(ask), D("1")),), venue_ms=n,
                     received_at=float(n), update_id=n)


def market_with_sink() -> tuple[MarketData, Sink]:
    """A market-data handle with no actor running (nothing would take a queued command) and an
    account's sink of fired alarms."""
    send, _receive = trio.open_memory_channel[object](8)
    market = MarketData("sim", ServiceClock(0.0), send)  # type: ignore[arg-type]
    sink = Sink()
    market.register_account("acct", sink)
    return market, sink


def limit_alarm() -> Alarm:
    return Alarm(alarm_id="a-1", account_id="acct", symbol="BTCUSDT", price_type="ask", direction="below",
                 threshold=D("99.5"), kind="limit", ref="c-1")


async def test_an_alarm_is_watched_from_the_next_price_on_with_no_step_of_the_actor_between() -> None:
    market, sink = market_with_sink()
    market.publish_book(book("99.9", "100.1", 1))
    await market.add_alarm(limit_alarm(), check_now=False)  # checked against this book already
    assert sink.fired == []
    market.publish_book(book("99.3", "99.4", 2))  # no checkpoint since: nothing queued, nothing missed
    assert [(f.alarm_id, f.price) for f in sink.fired] == [("a-1", D("99.4"))]


async def test_an_alarm_already_crossed_fires_when_registered_and_a_cancelled_one_never() -> None:
    market, sink = market_with_sink()
    market.publish_book(book("99.3", "99.4", 1))
    await market.add_alarm(limit_alarm())
    assert [f.alarm_id for f in sink.fired] == ["a-1"]
    sink.fired.clear()
    await market.add_alarm(limit_alarm(), check_now=False)
    await market.cancel_alarms("a-1")
    market.publish_book(book("99.2", "99.3", 2))
    assert sink.fired == []
