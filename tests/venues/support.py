"""Helpers for the venue tests: a recording feed sink and a feed harness on the fake exchange."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from actors.domain.market import MarkPrice, OrderBook
from actors.venues.feed import FeedCommand, FeedSettings, FeedStatus, venue_feed
from actors.venues.profiles import VenueProfile, get_profile
from actors.venues.rest import PublicRestClient, RestSettings
from tests.fake_exchange import FakeExchange

#: feed timings shrunk so that the real-socket tests stay fast
FAST_FEED = FeedSettings(
    stale_after_seconds=0.3,
    poll_interval_seconds=0.05,
    reconnect_initial_seconds=0.05,
    reconnect_max_seconds=0.2,
    reconnect_jitter=0.0,
    control_interval_seconds=0.01,
    connect_timeout_seconds=2.0,
)

FAST_REST = RestSettings(
    timeout_seconds=2.0,
    backoff_initial_seconds=0.01,
    backoff_max_seconds=0.05,
    jitter=0.0,
    leverage_brackets_unsigned=True,
)


class RecordingSink:
    """A :class:`~actors.venues.feed.FeedSink` that records everything and can be waited on."""

    def __init__(self) -> None:
        self.books: list[OrderBook] = []
        self.marks: list[MarkPrice] = []
        self.states: list[tuple[str, str]] = []
        self.counts: Counter[str] = Counter()
        self._changed = trio.Event()

    def publish_book(self, book: OrderBook) -> None:
        self.books.append(book)
        self._notify()

    def publish_mark(self, mark: MarkPrice) -> None:
        self.marks.append(mark)
        self._notify()

    def set_feed_state(self, state: str, detail: str = "") -> None:
        self.states.append((state, detail))
        self._notify()

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] += n
        self._notify()

    @property
    def state(self) -> str:
        return self.states[-1][0] if self.states else ""

    def state_names(self) -> list[str]:
        return [state for state, _ in self.states]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checking on every call into the sink."""
        while not predicate():
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


def profile_for(fake: FakeExchange) -> VenueProfile:
    name = "asterdex" if fake.flavour == "aster" else "binance-usdm"
    return get_profile(name, rest_url=fake.rest_url, ws_url=fake.ws_url)


@dataclass
class FeedHarness:
    fake: FakeExchange
    sink: RecordingSink
    status: FeedStatus
    commands: trio.MemorySendChannel[FeedCommand]
    rest: PublicRestClient


@asynccontextmanager
async def open_feed(fake: FakeExchange, settings: FeedSettings = FAST_FEED) -> AsyncIterator[FeedHarness]:
    """Run ``venue_feed`` against ``fake``; closing the block closes its command channel."""
    profile = profile_for(fake)
    sink = RecordingSink()
    async with PublicRestClient(profile, clock=fake.clock, settings=FAST_REST) as rest:
        send, receive = trio.open_memory_channel[FeedCommand](16)
        async with trio.open_nursery() as nursery:
            status = await nursery.start(venue_feed, profile, rest, sink, receive, fake.clock, settings)
            async with send:
                yield FeedHarness(fake, sink, status, send, rest)
