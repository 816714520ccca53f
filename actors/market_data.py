"""The market-data actor of one venue: its quote board and price-alarm index, and their one owner.

A *source* feeds it: the offline ``sim`` market on a timer, a ``replay`` file, or a live venue
feed (websocket + REST fallback). Whatever the source, quotes land on the same board through the
same :class:`FeedSink` methods, and the same alarm index is checked on every update.

Readers (account actors, the HTTP front door) read the board through :class:`MarketData`'s
read-only methods. Accounts register and cancel alarms with calls that take effect at once (the
index is checked by the same synchronous code that publishes a quote, so an alarm registered is
watched from the very next price on; no queue in between where a price could slip past). Symbol
subscriptions go by message, through the actor, to the source. A fired alarm is delivered to its
account with ``send_nowait`` (market data never blocks on a slow account); a drop is counted, and
the account's periodic re-check of its triggers covers it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Protocol

import msgspec
import trio

from .clock import ServiceClock
from .domain.alarms import Alarm, AlarmIndex
from .domain.market import Instrument, MarkPrice, OrderBook, Quote
from .messages import AcquireSymbol, AlarmFired, ReleaseSymbol, SymbolCommand

log = logging.getLogger("actors.market_data")


#: the holder of symbols acquired for a decision (not for a position): released once unused
ON_DEMAND_HOLDER = "~on-demand"


class AlarmSink(Protocol):
    """Where an account's fired alarms go: its mailbox's venue path (never blocks)."""

    def post_venue(self, message: AlarmFired) -> bool: ...


class FeedHealth(msgspec.Struct, kw_only=True):
    """What /health shows of a venue's market data, whatever its source (sim, replay, live)."""

    state: str = "connecting"
    detail: str = ""
    last_message_at: float | None = None
    messages: int = 0


class MarketData:
    """Handle of a market-data actor: the board and the alarm index (read-only views, alarm calls
    that take effect at once) and the channel of symbol commands."""

    def __init__(self, venue: str, clock: ServiceClock, commands: trio.MemorySendChannel[SymbolCommand]) -> None:
        self.venue = venue
        self._clock = clock
        self._commands = commands
        self._quotes: dict[str, Quote] = {}
        self._early_marks: dict[str, MarkPrice] = {}
        self._holders: dict[str, set[str]] = {}
        self._settlements: dict[str, dict[int, tuple[Decimal, Decimal]]] = {}
        self._next_funding: dict[str, int] = {}  # the funding time each symbol's marks announce
        self._instruments: dict[str, Instrument] = {}
        self._alarm_sinks: dict[str, AlarmSink] = {}
        self.alarms = AlarmIndex()
        self.status = FeedHealth()
        self.counters: Counter[str] = Counter()
        self.rest_stats: Any = None  # a live source's REST client counters (RestStats), for the metrics
        #: the REQUEST_WEIGHT per minute the venue's exchangeInfo states (None: not stated, or no venue)
        self.request_weight_per_minute: int | None = None
        self.ready = trio.Event()
        # symbols on demand (live venues; see serve_on_demand)
        self.on_demand = False
        self.symbol_linger_seconds = 300.0
        self._pinned: frozenset[str] = frozenset()
        self._leases: dict[str, float] = {}  # symbol -> when its on-demand hold ends (trio time)
        self._watched_since: dict[str, float] = {}  # symbol -> when it was last acquired (service clock)
        self._data_waiters: dict[str, trio.Event] = {}

    # ---- read-only views (any task)

    def quote(self, symbol: str) -> Quote | None:
        return self._quotes.get(symbol)

    def instrument(self, symbol: str) -> Instrument | None:
        return self._instruments.get(symbol)

    def settlement(self, symbol: str, funding_time_ms: int) -> tuple[Decimal, Decimal] | None:
        """(mark, funding rate) in force at a funding time this actor saw pass, if it did."""
        return self._settlements.get(symbol, {}).get(funding_time_ms)

    def funding_times(self, symbol: str, after_ms: int) -> list[int] | None:
        """The funding times after ``after_ms`` that this actor saw announced and pass (each has a
        :meth:`settlement`), oldest first; ``None`` when the symbol's marks announce no funding
        time at all (the ``sim`` venue, a recording without ``T``): the 8-hour grid applies there."""
        if symbol not in self._next_funding:
            return None
        return sorted(t for t in self._settlements.get(symbol, ()) if t > after_ms)

    def next_funding_ms(self, symbol: str) -> int | None:
        """The next funding time the venue announced for ``symbol`` (epoch ms), if it did."""
        return self._next_funding.get(symbol)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._instruments)

    def health(self) -> dict[str, Any]:
        now = self._clock.now()
        age = None if self.status.last_message_at is None else round(now - self.status.last_message_at, 3)
        return {
            "venue": self.venue,
            "state": self.status.state,
            "detail": self.status.detail,
            "last_message_age_seconds": age,
            "symbols": len(self._quotes),
            "alarms": len(self.alarms),
            "alarms_dropped": self.counters["alarms_dropped"],
            "malformed": self.counters["malformed"],
        }

    def is_fresh(self, max_age: float) -> bool:
        """Whether every symbol this venue must keep fresh has data younger than ``max_age``
        (true for none: a venue that serves symbols on demand may watch none yet)."""
        now = self._clock.now()
        if not self.on_demand:
            return all(q.age(now) <= max_age for q in self._quotes.values())
        for symbol in self._pinned.union(self._holders):
            quote = self._quotes.get(symbol)
            if quote is None or quote.age(now) > max_age:
                return False
        return True

    # ---- symbols on demand

    def serve_on_demand(self, pinned: tuple[str, ...], linger_seconds: float) -> None:
        """Called by a source that subscribes per symbol (a live venue): ``pinned`` symbols are
        always subscribed; others are acquired by whoever needs them, and a symbol acquired only
        for a decision is released ``linger_seconds`` after the last decision that used it."""
        self.on_demand = True
        self._pinned = frozenset(pinned)
        self.symbol_linger_seconds = linger_seconds

    def watched(self, symbol: str) -> bool:
        return symbol in self._pinned or symbol in self._holders

    def has_data_since_watched(self, symbol: str) -> bool:
        """A book and a mark of ``symbol`` received since it was last acquired."""
        quote = self._quotes.get(symbol)
        if quote is None or quote.mark is None:
            return False
        since = self._watched_since.get(symbol, 0.0)
        return quote.book.received_at >= since and quote.mark.received_at >= since

    async def watch_for_decision(self, symbol: str, timeout: float) -> None:
        """A decision is about to trade ``symbol``: make sure it is subscribed (acquired on demand
        and held ``symbol_linger_seconds`` past this call) and, if it has had no data since it was
        acquired, wait up to ``timeout`` seconds for its first book and mark. Whatever arrives,
        the risk gate then judges the data (``MARKET_DATA_STALE`` if none came)."""
        if not self.on_demand or symbol in self._pinned or symbol not in self._instruments:
            return
        self._leases[symbol] = trio.current_time() + self.symbol_linger_seconds
        await self.acquire(symbol, ON_DEMAND_HOLDER)
        with trio.move_on_after(timeout):
            while not self.has_data_since_watched(symbol):
                await self._data_waiters.setdefault(symbol, trio.Event()).wait()

    async def release_expired(self) -> None:
        """Release the on-demand holds whose linger time has passed (the symbol stays subscribed
        while an account holds it for a position)."""
        now = trio.current_time()
        for symbol, until in list(self._leases.items()):
            if until <= now:
                del self._leases[symbol]
                await self.release(symbol, ON_DEMAND_HOLDER)

    def _data_arrived(self, symbol: str) -> None:
        event = self._data_waiters.pop(symbol, None)
        if event is not None:
            event.set()

    # ---- symbol commands (by message, through the actor to the source)

    async def _command(self, command: Any) -> None:
        """Queue ``command`` for the actor. Once the actor has returned (the service is stopping:
        it outlives every account otherwise), there is no one to act on it, and nothing to keep:
        subscriptions live only in the source, and an account acquires its symbols again on start."""
        try:
            try:  # a queue with room takes it without a trip through the scheduler
                self._commands.send_nowait(command)
            except trio.WouldBlock:
                await self._commands.send(command)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.debug("market data %s has stopped: %s dropped", self.venue, type(command).__name__)

    # ---- alarms (in effect when the call returns; async for the adapters' market interface)

    async def add_alarm(self, alarm: Alarm, *, check_now: bool = True) -> None:
        """Watch ``alarm`` from the next price on; with ``check_now``, also against the current
        quote (already crossed: it fires at once rather than on the next tick). ``check_now=False``
        is for an alarm checked against this very quote already (a limit order whose crossing
        liquidity it took)."""
        self.alarms.add(alarm)
        quote = self._quotes.get(alarm.symbol)
        if quote is not None and check_now:
            price = _price_of(quote, alarm.price_type)
            if price is not None:
                self._fire(alarm.symbol, alarm.price_type, price)

    async def cancel_alarms(self, *alarm_ids: str) -> None:
        for alarm_id in alarm_ids:
            self.alarms.cancel(alarm_id)

    async def cancel_account_alarms(self, account_id: str) -> None:
        self.alarms.cancel_account(account_id)

    async def acquire(self, symbol: str, holder: str) -> None:
        """``holder`` (an account) needs ``symbol`` live; idempotent per holder, so an actor that
        restarts and acquires again does not leak a reference."""
        holders = self._holders.setdefault(symbol, set())
        if holder in holders:
            return
        holders.add(holder)
        if len(holders) == 1:
            self._watched_since[symbol] = self._clock.now()
            await self._command(AcquireSymbol(symbol))

    async def release(self, symbol: str, holder: str) -> None:
        holders = self._holders.get(symbol)
        if not holders or holder not in holders:
            return
        holders.discard(holder)
        if not holders:
            del self._holders[symbol]
            self._watched_since.pop(symbol, None)
            await self._command(ReleaseSymbol(symbol))

    def register_account(self, account_id: str, sink: AlarmSink) -> None:
        """Where this account's fired alarms go (its supervisor-owned mailbox)."""
        self._alarm_sinks[account_id] = sink

    def unregister_account(self, account_id: str) -> None:
        self._alarm_sinks.pop(account_id, None)

    # ---- the FeedSink side (called only from the actor's own tasks)

    def set_instruments(self, instruments: dict[str, Instrument]) -> None:
        self._instruments.update(instruments)

    def publish_book(self, book: OrderBook) -> None:
        previous = self._quotes.get(book.symbol)
        if not book.depth and previous is not None and previous.book.depth and book.bids and book.asks:
            book = _refresh_top(previous.book, book)
        mark = previous.mark if previous is not None else self._early_marks.pop(book.symbol, None)
        self._quotes[book.symbol] = Quote(symbol=book.symbol, book=book, mark=mark, last_price=book.mid)
        self._touch(book.received_at)
        if self._data_waiters:
            self._data_arrived(book.symbol)
        if book.bids:
            self._fire(book.symbol, "bid", book.bids[0][0])
        if book.asks:
            self._fire(book.symbol, "ask", book.asks[0][0])
        if book.mid is not None:
            self._fire(book.symbol, "last", book.mid)

    def publish_mark(self, mark: MarkPrice) -> None:
        if mark.next_funding_ms:
            self._next_funding[mark.symbol] = mark.next_funding_ms
        previous = self._quotes.get(mark.symbol)
        if previous is None:  # kept until the symbol's first book arrives
            self._early_marks[mark.symbol] = mark
            self._touch(mark.received_at)
            return
        if previous.mark is not None and 0 < previous.mark.next_funding_ms <= mark.venue_ms:
            # the venue crossed a funding time: remember the mark and rate in force at it
            settlements = self._settlements.setdefault(mark.symbol, {})
            settlements[previous.mark.next_funding_ms] = (previous.mark.mark, previous.mark.funding_rate)
            while len(settlements) > 16:
                settlements.pop(min(settlements))
        self._quotes[mark.symbol] = msgspec.structs.replace(previous, mark=mark)
        self._touch(mark.received_at)
        if self._data_waiters:
            self._data_arrived(mark.symbol)
        self._fire(mark.symbol, "mark", mark.mark)

    def set_feed_state(self, state: str, detail: str = "") -> None:
        if state != self.status.state:
            log.info("%s feed: %s %s", self.venue, state, detail)
        self.status.state = state
        self.status.detail = detail

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def _touch(self, received_at: float) -> None:
        self.status.last_message_at = received_at
        self.status.messages += 1

    def _fire(self, symbol: str, price_type: str, price: Decimal) -> None:
        for alarm in self.alarms.on_price(symbol, price_type, price):
            sink = self._alarm_sinks.get(alarm.account_id)
            if sink is None:
                self.counters["alarms_orphaned"] += 1
                continue
            message = AlarmFired(
                alarm_id=alarm.alarm_id, symbol=symbol, kind=alarm.kind, ref=alarm.ref,
                threshold=alarm.threshold, price=price,
            )
            if sink.post_venue(message):
                self.counters["alarms_fired"] += 1
            else:
                self.counters["alarms_dropped"] += 1


def _refresh_top(depth: OrderBook, top: OrderBook) -> OrderBook:
    """A real-time top of book (bookTicker) over the last partial-depth snapshot: the new best
    levels, then the snapshot's deeper levels that the new top has not crossed."""
    best_bid, best_ask = top.bids[0], top.asks[0]
    return OrderBook(
        symbol=top.symbol,
        bids=(best_bid,) + tuple(level for level in depth.bids if level[0] < best_bid[0]),
        asks=(best_ask,) + tuple(level for level in depth.asks if level[0] > best_ask[0]),
        venue_ms=top.venue_ms, received_at=top.received_at, depth=True, update_id=top.update_id,
    )


def _price_of(quote: Quote, price_type: str) -> Decimal | None:
    if price_type == "mark":
        return quote.mark.mark if quote.mark is not None else None
    if price_type == "bid":
        return quote.book.best_bid
    if price_type == "ask":
        return quote.book.best_ask
    return quote.book.mid


Source = Callable[..., Awaitable[None]]


async def _release_unused_symbols(handle: MarketData) -> None:
    """Sweep the on-demand holds of a venue that serves symbols on demand."""
    period = min(max(handle.symbol_linger_seconds / 4, 0.05), 5.0)
    while True:
        await trio.sleep(period)
        await handle.release_expired()


async def market_data_actor(
    venue: str,
    source: Source,
    clock: ServiceClock,
    *,
    command_buffer: int = 4096,
    task_status: trio.TaskStatus[MarketData] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``source(handle, symbol_commands, task_status=...)`` and serve alarm commands.

    The source must publish instruments and a first quote for each symbol before it reports
    started, so that the actor is ready with data when ``nursery.start`` returns.
    """
    send, receive = trio.open_memory_channel[SymbolCommand](command_buffer)
    handle = MarketData(venue, clock, send)
    symbol_send, symbol_receive = trio.open_memory_channel[SymbolCommand](command_buffer)
    async with trio.open_nursery() as nursery:
        await nursery.start(source, handle, symbol_receive)
        if handle.on_demand:
            nursery.start_soon(_release_unused_symbols, handle)
        handle.ready.set()
        task_status.started(handle)
        async with receive, symbol_send:
            async for command in receive:  # to sources that subscribe per symbol (see live feeds)
                try:
                    symbol_send.send_nowait(command)
                except trio.WouldBlock:
                    await symbol_send.send(command)
        nursery.cancel_scope.cancel()
