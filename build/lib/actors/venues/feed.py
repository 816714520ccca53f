"""The live market-data feed of one venue: ref-counted subscriptions over one combined stream.

``venue_feed`` is a long-lived task. It reads :class:`~actors.messages.AcquireSymbol` / :class:`~actors.messages.ReleaseSymbol` commands and
keeps one websocket connection subscribed to ``<s>@bookTicker``, ``<s>@markPrice@1s`` and
``<s>@depth<N>@<speed>`` of every symbol that at least one consumer holds. It publishes every
:class:`~actors.domain.market.OrderBook` / :class:`~actors.domain.market.MarkPrice` to a
:class:`FeedSink` (synchronously; the sink must not block), each stamped with the venue's event
time and the local receive time.

Resilience:

* a newly acquired symbol is primed with one REST snapshot (depth + premiumIndex), so quotes
  exist before the stream delivers;
* a dropped connection is reopened with exponential backoff and every stream resubscribed;
* the connection is rotated before the venue's 24 h limit: the new one is opened and subscribed
  before the old one is closed, so there is no gap;
* a symbol without a stream message for ``stale_after_seconds`` is polled over REST every
  ``poll_interval_seconds`` until the stream delivers again;
* malformed frames are counted (``sink.count("malformed")``) and skipped;
* updates older than the last one published for the same symbol and kind are dropped (overlap
  of two connections during a rotation, a late REST snapshot).

Feed states reported to the sink: ``connecting`` (no connection yet), ``connected``,
``reconnecting`` (connection lost), ``polling`` (connected, some symbols served by REST) and
``stale`` (some symbol has had no data at all for twice ``stale_after_seconds``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final, Literal, Protocol

import msgspec
import trio

from actors.backoff import Backoff
from actors.domain.market import MarkPrice, OrderBook
from actors.messages import AcquireSymbol, ReleaseSymbol, SymbolCommand
from actors.venues.parsing import ControlReply, ParseError, parse_frame
from actors.venues.profiles import VenueProfile
from actors.venues.rest import PublicRestClient, VenueBanned, VenueIOError
from actors.venues.stream import (
    CONNECTION_ERRORS,
    ConnectionOptions,
    DesiredStreams,
    StreamConnection,
    run_stream_connection,
    stream_names,
)

__all__ = [
    "FeedCommand",
    "FeedSettings",
    "FeedSink",
    "FeedState",
    "FeedStatistics",
    "FeedStatus",
    "venue_feed",
]

log = logging.getLogger("actors.venues")

FeedState = Literal["connecting", "connected", "reconnecting", "polling", "stale"]

_STREAMS_PER_SYMBOL: Final = 3


class FeedSink(Protocol):
    """Where a feed delivers. Every method is called from the feed's tasks and must not block."""

    def publish_book(self, book: OrderBook) -> None: ...

    def publish_mark(self, mark: MarkPrice) -> None: ...

    def set_feed_state(self, state: str, detail: str = "") -> None: ...

    def count(self, name: str, n: int = 1) -> None: ...


FeedCommand = SymbolCommand


class FeedSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Tuning of one venue feed. Defaults suit production; tests shrink the times."""

    depth_levels: Literal[5, 10, 20] = 20
    depth_speed: Literal["100ms", "250ms", "500ms"] = "100ms"
    stale_after_seconds: float = 5.0
    poll_interval_seconds: float = 1.0
    reconnect_initial_seconds: float = 0.5
    reconnect_max_seconds: float = 30.0
    #: each reconnect delay is multiplied by a random factor in [1, 1 + jitter)
    reconnect_jitter: float = 0.25
    #: rotate before the venue's 24 h connection limit
    rotate_after_seconds: float = 23.5 * 3600
    #: streams on the connection; None: the profile's limit (3 streams per symbol)
    max_streams: int | None = None
    ping_interval_seconds: float = 30.0
    pong_timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 10.0
    #: minimum gap between two SUBSCRIBE/UNSUBSCRIBE messages
    control_interval_seconds: float = 0.25
    #: concurrent REST snapshots when many symbols are acquired at once
    snapshot_concurrency: int = 4
    message_queue_size: int = 256

    def __post_init__(self) -> None:
        if self.depth_levels not in (5, 10, 20):
            raise ValueError(f"depth_levels must be 5, 10 or 20, got {self.depth_levels}")
        if self.depth_speed not in ("100ms", "250ms", "500ms"):
            raise ValueError(f"depth_speed must be 100ms, 250ms or 500ms, got {self.depth_speed!r}")
        for name in ("stale_after_seconds", "poll_interval_seconds", "rotate_after_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0 <= self.reconnect_initial_seconds <= self.reconnect_max_seconds:
            raise ValueError("reconnect backoff must satisfy 0 <= initial <= max")
        if self.max_streams is not None and self.max_streams < _STREAMS_PER_SYMBOL:
            raise ValueError(f"max_streams must be at least {_STREAMS_PER_SYMBOL}")


class FeedStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """An immutable snapshot of :class:`FeedStatus`."""

    venue: str
    state: str
    detail: str
    symbols: dict[str, int]
    polling: tuple[str, ...]
    connections_opened: int
    reconnects: int
    rotations: int
    stream_messages: int
    malformed: int
    ignored: int
    out_of_order: int
    poll_errors: int


class FeedStatus:
    """The live state of one venue feed. Mutated by the feed only; read it freely.

    Times are epoch seconds from the feed's clock.
    """

    def __init__(self, venue: str) -> None:
        self.venue = venue
        self.state: str = "connecting"
        self.detail = ""
        self.connections_opened = 0
        self.reconnects = 0
        self.rotations = 0
        self.stream_messages = 0
        self.malformed = 0
        self.ignored = 0
        self.out_of_order = 0
        self.poll_errors = 0
        self._refs: dict[str, int] = {}
        self._last_stream_at: dict[str, float] = {}
        self._last_data_at: dict[str, float] = {}
        self._polling: dict[str, trio.CancelScope] = {}

    @property
    def symbols(self) -> Mapping[str, int]:
        """Reference count of every acquired symbol."""
        return MappingProxyType(self._refs)

    @property
    def polling(self) -> frozenset[str]:
        """Symbols currently served by REST polling."""
        return frozenset(self._polling)

    def last_stream_message_at(self, symbol: str) -> float | None:
        """When the stream last delivered ``symbol``."""
        return self._last_stream_at.get(symbol)

    def last_data_at(self, symbol: str) -> float | None:
        """When ``symbol`` last got data from any source (stream, snapshot or poll)."""
        return self._last_data_at.get(symbol)

    def age(self, symbol: str, now: float) -> float | None:
        """Seconds since ``symbol`` last got data, or None if it never did."""
        last = self._last_data_at.get(symbol)
        return None if last is None else max(0.0, now - last)

    def statistics(self) -> FeedStatistics:
        return FeedStatistics(
            venue=self.venue,
            state=self.state,
            detail=self.detail,
            symbols=dict(self._refs),
            polling=tuple(sorted(self._polling)),
            connections_opened=self.connections_opened,
            reconnects=self.reconnects,
            rotations=self.rotations,
            stream_messages=self.stream_messages,
            malformed=self.malformed,
            ignored=self.ignored,
            out_of_order=self.out_of_order,
            poll_errors=self.poll_errors,
        )


async def venue_feed(
    profile: VenueProfile,
    rest: PublicRestClient,
    sink: FeedSink,
    commands: trio.MemoryReceiveChannel[FeedCommand],
    clock: Callable[[], float],
    settings: FeedSettings,
    *,
    task_status: trio.TaskStatus[FeedStatus] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the market-data feed of one venue until ``commands`` is closed.

    Reports its :class:`FeedStatus` through ``task_status`` as soon as it accepts commands (it
    connects when the first symbol is acquired). Closing the sending side of ``commands`` stops
    the feed cleanly; cancelling it works too.
    """
    feed = _VenueFeed(profile, rest, sink, clock, settings)
    async with trio.open_nursery() as nursery:
        feed.nursery = nursery
        nursery.start_soon(feed.supervise_connection)
        nursery.start_soon(feed.watch_staleness)
        task_status.started(feed.status)
        await feed.serve_commands(commands)
        nursery.cancel_scope.cancel()


class _VenueFeed:
    """The state and tasks behind :func:`venue_feed` (single owner of every field)."""

    nursery: trio.Nursery

    def __init__(
        self,
        profile: VenueProfile,
        rest: PublicRestClient,
        sink: FeedSink,
        clock: Callable[[], float],
        settings: FeedSettings,
    ) -> None:
        self.profile = profile
        self.rest = rest
        self.sink = sink
        self.clock = clock
        self.settings = settings
        self.status = FeedStatus(profile.name)
        self.desired = DesiredStreams()
        max_streams = min(settings.max_streams or profile.max_streams_per_connection, profile.max_streams_per_connection)
        self.max_streamed_symbols = max_streams // _STREAMS_PER_SYMBOL
        self.options = ConnectionOptions(
            connect_timeout=settings.connect_timeout_seconds,
            ping_interval=settings.ping_interval_seconds,
            pong_timeout=settings.pong_timeout_seconds,
            control_interval=settings.control_interval_seconds,
            max_streams=self.max_streamed_symbols * _STREAMS_PER_SYMBOL,
            message_queue_size=settings.message_queue_size,
        )
        self.label = f"{profile.name} stream"
        self.connected = False
        self.ever_connected = False
        self.symbols_wanted = trio.Event()
        self.snapshot_limiter = trio.CapacityLimiter(settings.snapshot_concurrency)
        # alias the status's dicts: the feed is their only writer
        self.refs = self.status._refs
        self.last_stream_at = self.status._last_stream_at
        self.last_data_at = self.status._last_data_at
        self.polling = self.status._polling
        self.streamed: frozenset[str] = frozenset()
        self.overflow = 0  # acquired symbols beyond the connection's stream limit
        self.acquired_at: dict[str, float] = {}
        self.last_book_ms: dict[tuple[str, bool], int] = {}
        self.last_mark_ms: dict[str, int] = {}

    # -- commands ---------------------------------------------------------------------------

    async def serve_commands(self, commands: trio.MemoryReceiveChannel[FeedCommand]) -> None:
        async with commands:
            async for command in commands:
                match command:
                    case AcquireSymbol(symbol=symbol):
                        self.acquire(symbol.upper())
                    case ReleaseSymbol(symbol=symbol):
                        self.release(symbol.upper())
        log.info("%s: command channel closed; stopping the feed", self.profile.name)

    def acquire(self, symbol: str) -> None:
        count = self.refs.get(symbol, 0) + 1
        self.refs[symbol] = count
        if count > 1:
            return
        log.info("%s: acquired %s", self.profile.name, symbol)
        self.acquired_at[symbol] = self.clock()
        self.update_streams()
        self.symbols_wanted.set()
        self.nursery.start_soon(self.prime, symbol)

    def release(self, symbol: str) -> None:
        count = self.refs.get(symbol)
        if count is None:
            log.warning("%s: release of %s, which is not acquired; ignored", self.profile.name, symbol)
            self.sink.count("release_unknown")
            return
        if count > 1:
            self.refs[symbol] = count - 1
            return
        log.info("%s: released %s", self.profile.name, symbol)
        del self.refs[symbol]
        for per_symbol in (self.acquired_at, self.last_stream_at, self.last_data_at, self.last_mark_ms):
            per_symbol.pop(symbol, None)
        self.last_book_ms.pop((symbol, True), None)
        self.last_book_ms.pop((symbol, False), None)
        self.stop_polling(symbol)
        self.update_streams()
        if not self.refs:
            self.symbols_wanted = trio.Event()
        self.refresh_state()

    def update_streams(self) -> None:
        """Give streams to the first symbols acquired, up to the per-connection limit."""
        streamed = list(self.refs)[: self.max_streamed_symbols]
        overflow = len(self.refs) - len(streamed)
        if overflow > self.overflow:
            log.warning(
                "%s: %d symbols acquired but one connection carries %d; %d are polled over REST",
                self.profile.name,
                len(self.refs),
                self.max_streamed_symbols,
                overflow,
            )
        self.overflow = overflow
        self.streamed = frozenset(streamed)
        s = self.settings
        self.desired.update(
            [name for sym in streamed for name in stream_names(sym, depth_levels=s.depth_levels, depth_speed=s.depth_speed)]
        )

    # -- the hot path: one websocket frame ----------------------------------------------------

    def on_frame(self, raw: str | bytes) -> ControlReply | None:
        now = self.clock()
        try:
            item = parse_frame(raw, now)
        except ParseError as exc:
            self.note_malformed(exc)
            return None
        if isinstance(item, OrderBook):
            symbol = item.symbol
            if symbol in self.refs:
                self.note_stream_message(symbol, now)
                self.publish_book(item)
                return None
        elif isinstance(item, MarkPrice):
            symbol = item.symbol
            if symbol in self.refs:
                self.note_stream_message(symbol, now)
                self.publish_mark(item)
                return None
        elif item is not None:  # a control reply
            if not item.ok:
                self.sink.count("subscribe_errors")
            return item
        self.status.ignored += 1
        return None

    def note_stream_message(self, symbol: str, now: float) -> None:
        self.status.stream_messages += 1
        self.last_stream_at[symbol] = now
        self.last_data_at[symbol] = now
        if symbol in self.polling:
            log.info("%s: stream delivers %s again; polling stops", self.profile.name, symbol)
            self.stop_polling(symbol)
            self.refresh_state()

    def note_malformed(self, exc: ParseError) -> None:
        self.status.malformed += 1
        self.sink.count("malformed")
        n = self.status.malformed
        if n & (n - 1) == 0:  # 1, 2, 4, 8...: visible without flooding the log
            log.warning("%s: malformed frame #%d skipped: %s", self.profile.name, n, exc)

    def publish_book(self, book: OrderBook) -> bool:
        key = (book.symbol, book.depth)
        if book.venue_ms < self.last_book_ms.get(key, 0):
            self.status.out_of_order += 1
            return False
        self.last_book_ms[key] = book.venue_ms
        self.sink.publish_book(book)
        return True

    def publish_mark(self, mark: MarkPrice) -> bool:
        if mark.venue_ms < self.last_mark_ms.get(mark.symbol, 0):
            self.status.out_of_order += 1
            return False
        self.last_mark_ms[mark.symbol] = mark.venue_ms
        self.sink.publish_mark(mark)
        return True

    # -- REST snapshots: priming and polling --------------------------------------------------

    async def prime(self, symbol: str) -> None:
        """One REST snapshot right after the first acquire, so quotes exist immediately."""
        try:
            await self.snapshot(symbol)
        except (VenueIOError, ParseError) as exc:
            self.sink.count("prime_errors")
            log.warning("%s: initial snapshot of %s failed: %s", self.profile.name, symbol, exc)

    async def snapshot(self, symbol: str) -> None:
        """Fetch depth and mark price over REST and publish them (if still wanted)."""
        async with self.snapshot_limiter:
            book = await self.rest.depth(symbol, self.settings.depth_levels)
            mark = await self.rest.premium_index(symbol)
        if symbol not in self.refs:
            return
        self.publish_book(book)
        self.publish_mark(mark)
        self.last_data_at[symbol] = max(book.received_at, mark.received_at)

    def start_polling(self, symbol: str, reason: str) -> None:
        if symbol in self.polling:
            return
        log.warning("%s: %s; polling %s over REST", self.profile.name, reason, symbol)
        self.sink.count("polling_started")
        scope = trio.CancelScope()
        self.polling[symbol] = scope
        self.nursery.start_soon(self.poll, symbol, scope)

    def stop_polling(self, symbol: str) -> None:
        scope = self.polling.pop(symbol, None)
        if scope is not None:
            scope.cancel()

    async def poll(self, symbol: str, scope: trio.CancelScope) -> None:
        failures = 0  # consecutive
        with scope:
            while True:
                delay = self.settings.poll_interval_seconds
                try:
                    await self.snapshot(symbol)
                except (VenueIOError, ParseError) as exc:
                    failures += 1
                    self.note_poll_error(symbol, exc, failures)
                    if isinstance(exc, VenueBanned):
                        delay = max(delay, exc.retry_after)
                else:
                    if failures:
                        log.info("%s: polling %s works again after %d failures", self.profile.name, symbol, failures)
                    failures = 0
                    self.sink.count("polls")
                self.refresh_state()
                await trio.sleep(delay)

    def note_poll_error(self, symbol: str, exc: Exception, failures: int) -> None:
        self.status.poll_errors += 1
        self.sink.count("poll_errors")
        if failures & (failures - 1) == 0:  # 1st, 2nd, 4th, 8th... consecutive failure
            log.warning("%s: polling %s failed (%d in a row): %s", self.profile.name, symbol, failures, exc)

    # -- staleness ----------------------------------------------------------------------------

    async def watch_staleness(self) -> None:
        period = min(max(self.settings.stale_after_seconds / 5, 0.02), 1.0)
        while True:
            await trio.sleep(period)
            self.check_staleness()

    def check_staleness(self) -> None:
        now = self.clock()
        limit = self.settings.stale_after_seconds
        for symbol in self.refs:
            if symbol in self.polling:
                continue
            if symbol not in self.streamed:
                self.start_polling(symbol, f"{symbol} has no stream (connection limit)")
                continue
            last = self.last_stream_at.get(symbol, self.acquired_at[symbol])
            if now - last > limit:
                self.start_polling(symbol, f"no stream message for {symbol} in {now - last:.1f} s")
        self.refresh_state()

    def refresh_state(self) -> None:
        now = self.clock()
        stale_limit = 2 * self.settings.stale_after_seconds
        stale = sorted(
            s for s in self.refs if now - self.last_data_at.get(s, self.acquired_at.get(s, now)) > stale_limit
        )
        polling = ",".join(sorted(self.polling))
        state: str
        if stale:
            state, detail = "stale", "no data for " + ",".join(stale)
        elif not self.connected:
            state = "reconnecting" if self.ever_connected else "connecting"
            detail = f"polling {polling}" if polling else ("" if self.refs else "no symbol acquired")
        elif polling:
            state, detail = "polling", polling
        else:
            state, detail = "connected", ""
        self.set_state(state, detail)

    def set_state(self, state: str, detail: str) -> None:
        if (state, detail) == (self.status.state, self.status.detail):
            return
        log.info("%s: feed %s%s", self.profile.name, state, f" ({detail})" if detail else "")
        self.status.state, self.status.detail = state, detail
        self.sink.set_feed_state(state, detail)

    # -- the connection: (re)connect, rotate ----------------------------------------------------

    async def supervise_connection(self) -> None:
        """Keep one subscribed connection while symbols are wanted; rotate it before 24 h."""
        backoff = Backoff(
            self.settings.reconnect_initial_seconds,
            self.settings.reconnect_max_seconds,
            self.settings.reconnect_jitter,
        )
        self.set_state("connecting", "no symbol acquired")
        conn: StreamConnection | None = None
        while True:
            if conn is None:
                await self.symbols_wanted.wait()
                conn = await self.connect(backoff)
            with trio.move_on_at(conn.opened_at + self.settings.rotate_after_seconds):
                await conn.closed.wait()
            if conn.closed.is_set():
                self.on_connection_lost(conn)
                if conn.frames:
                    backoff.reset()
                conn = None
                await trio.sleep(backoff.next())
            else:
                conn = await self.rotate(conn, backoff)

    async def connect(self, backoff: Backoff, *, replacing: bool = False) -> StreamConnection:
        """Open a connection, retrying with backoff until one is established.

        While ``replacing`` (a rotation), the old connection still serves, so a failed attempt
        does not change the feed state.
        """
        while True:
            try:
                conn: StreamConnection = await self.nursery.start(
                    functools.partial(
                        run_stream_connection,
                        self.profile.ws_url,
                        self.profile.paths.ws_combined,
                        self.desired,
                        self.on_frame,
                        self.options,
                        label=self.label,
                    )
                )
            except CONNECTION_ERRORS as exc:
                delay = backoff.next()
                self.sink.count("connect_failures")
                log.warning("%s: cannot connect (%s: %s); retrying in %.2f s", self.label, type(exc).__name__, exc, delay)
                if not replacing:
                    self.connected = False
                    self.refresh_state()
                await trio.sleep(delay)
                continue
            self.status.connections_opened += 1
            self.connected = self.ever_connected = True
            log.info("%s: connected with %d streams", self.label, len(conn.subscribed))
            self.refresh_state()
            return conn

    def on_connection_lost(self, conn: StreamConnection) -> None:
        self.status.reconnects += 1
        self.connected = False
        self.sink.count("disconnects")
        log.warning("%s: connection lost (%s); reconnecting", self.label, conn.close_reason or "unknown reason")
        self.refresh_state()

    async def rotate(self, old: StreamConnection, backoff: Backoff) -> StreamConnection:
        """Open the replacement first, then close the old connection: no gap in the data."""
        log.info("%s: rotating the connection (open for %.0f s)", self.label, trio.current_time() - old.opened_at)
        new = await self.connect(backoff, replacing=True)
        self.status.rotations += 1
        self.sink.count("rotations")
        await old.aclose("rotated")
        return new
