"""Market-data sources, all in one place: the offline ``sim`` market, a recorded session
(``replay`` venue) and the live venues (read-only).

A source is ``async def run(board, symbol_commands, *, task_status)``: it publishes instruments
and a first quote of each symbol it starts with before it reports started, then keeps the board
(the market-data actor's :class:`~actors.market_data.MarketData`) up to date, and serves the
symbols accounts acquire and release.

A live source fetches the venue's ``exchangeInfo`` (filters, status), builds the instruments
(maintenance-margin brackets from a saved ``leverageBracket`` response when configured, since the
endpoint is signed on the real venues; the profile's default fee rates), then runs the venue feed:
one combined websocket stream with reference-counted symbols, REST fallback when it goes silent.
Nothing here can write to an exchange: the only client is :class:`PublicRestClient`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import trio

from ..clock import ServiceClock
from ..domain.market import Instrument, OrderBook
from ..market_data import MarketData
from ..messages import AcquireSymbol, ReleaseSymbol, SymbolCommand
from ..settings import LiveVenueSettings, ReplayVenueSettings, Settings, SimVenueSettings
from .feed import FeedSettings, venue_feed
from .parsing import build_instruments, parse_leverage_brackets
from .profiles import get_profile
from .recorded import MarketEvent, load_instruments, load_market
from .rest import PublicRestClient
from .sim import SimMarket, synthetic_symbols

log = logging.getLogger("actors.venues")

FIRST_QUOTES_TIMEOUT = 15.0

Source = Callable[..., Awaitable[None]]


def source_for(name: str, settings: Settings, clock: ServiceClock) -> Source:
    """The source of venue ``name`` as configured."""
    venue = settings.venue_settings(name)
    if isinstance(venue, SimVenueSettings):
        symbols = venue.symbols + synthetic_symbols(venue.synthetic_symbols)
        return sim_source(venue.seed, symbols, venue.tick_interval_seconds, venue.volatility_bps, clock)
    if isinstance(venue, ReplayVenueSettings):
        return replay_file_source(venue, clock)
    return live_source(name, venue, clock)


def sim_source(seed: int, symbols: tuple[str, ...], interval: float, volatility_bps: float,
               clock: ServiceClock) -> Source:
    """The offline sim market: a seeded random walk stepped on a timer."""

    async def run(board: MarketData, symbol_commands: trio.MemoryReceiveChannel[SymbolCommand], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        market = SimMarket(seed, symbols, volatility_bps=volatility_bps)
        board.set_instruments(market.instruments())

        def step() -> None:
            now = clock.now()
            for book, mark in market.step(int(now * 1000), now):
                board.publish_book(book)
                board.publish_mark(mark)

        step()
        board.set_feed_state("connected", "sim")
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_discard, symbol_commands)  # every sim symbol is always live
            while True:
                await trio.sleep(interval)
                step()

    return run


def recorded_source(instruments: dict[str, Instrument], updates: trio.MemoryReceiveChannel[Any]) -> Source:
    """Updates pushed by a driver (``execd replay``), published as they come."""

    async def run(board: MarketData, symbol_commands: trio.MemoryReceiveChannel[SymbolCommand], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        board.set_instruments(instruments)
        board.set_feed_state("connected", "replay")
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_discard, symbol_commands)
            async for update in updates:
                _publish(board, update)

    return run


def replay_file_source(venue: ReplayVenueSettings, clock: ServiceClock) -> Source:
    """``serve`` with a replay venue: the recorded messages at their recorded pace, from now on."""

    async def run(board: MarketData, symbol_commands: trio.MemoryReceiveChannel[SymbolCommand], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if not venue.market:
            raise ValueError("venues.replay.market: the replay venue needs a market file to serve")
        events: list[MarketEvent] = load_market(Path(venue.market))
        board.set_instruments(load_instruments(events, Path(venue.exchange_info) if venue.exchange_info else None))
        board.set_feed_state("connected", f"replay of {venue.market}")
        first_ms = events[0].at_ms
        started = trio.current_time()
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_discard, symbol_commands)
            for event in events:
                await trio.sleep_until(started + (event.at_ms - first_ms) / 1000)
                now = clock.now()
                _publish(board, msgspec.structs.replace(event.update, received_at=now, venue_ms=int(now * 1000)))
            board.set_feed_state("stale", "end of the replay file")
            nursery.cancel_scope.cancel()

    return run


def live_source(name: str, venue: LiveVenueSettings, clock: ServiceClock, *, transport: Any = None) -> Source:
    """A live venue's public market data (read-only)."""
    profile = get_profile(name, venue.rest_url, venue.ws_url)
    feed_settings = FeedSettings(depth_levels=venue.depth_levels,  # type: ignore[arg-type]
                                 stale_after_seconds=venue.stale_after_seconds,
                                 poll_interval_seconds=venue.poll_interval_seconds)

    async def run(board: MarketData, symbol_commands: trio.MemoryReceiveChannel[SymbolCommand], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with PublicRestClient(profile, clock=clock.now, transport=transport) as rest:
            board.rest_stats = rest.stats
            board.set_feed_state("connecting", profile.rest_url)
            brackets = None
            if venue.leverage_brackets:
                brackets = parse_leverage_brackets(Path(venue.leverage_brackets).read_bytes())
            info = await rest.exchange_info()
            board.request_weight_per_minute = info.request_weight_per_minute  # the accounts' limiter adopts it
            instruments = build_instruments(info, brackets, profile=profile)
            board.set_instruments(instruments)
            unknown = [s for s in venue.symbols if s not in instruments]
            if unknown:
                raise ValueError(f"venue {name} does not list {', '.join(unknown)}")
            board.serve_on_demand(venue.symbols, venue.symbol_linger_seconds)
            feed_send, feed_receive = trio.open_memory_channel[SymbolCommand](1024)
            async with trio.open_nursery() as nursery:
                await nursery.start(venue_feed, profile, rest, board, feed_receive, clock.now, feed_settings)
                for symbol in venue.symbols:
                    await feed_send.send(AcquireSymbol(symbol))
                with trio.move_on_after(FIRST_QUOTES_TIMEOUT):
                    while any(board.quote(s) is None for s in venue.symbols):
                        await trio.sleep(0.05)
                task_status.started()
                async with symbol_commands, feed_send:
                    async for command in symbol_commands:
                        if command.symbol in instruments and isinstance(command, (AcquireSymbol, ReleaseSymbol)):
                            await feed_send.send(command)
                nursery.cancel_scope.cancel()

    return run


def _publish(board: MarketData, update: Any) -> None:
    if isinstance(update, OrderBook):
        board.publish_book(update)
    else:
        board.publish_mark(update)


async def _discard(channel: trio.MemoryReceiveChannel[Any]) -> None:
    async with channel:
        async for _ in channel:
            pass
