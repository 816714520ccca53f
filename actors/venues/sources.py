"""Market-data sources for the market-data actor: live venues (read-only) and replay files.

A live source fetches the venue's ``exchangeInfo`` (filters, status), builds the instruments
(maintenance-margin brackets from a saved ``leverageBracket`` response when configured, since the
endpoint is signed on the real venues; the profile's default fee rates), then runs the venue feed:
one combined websocket stream with reference-counted symbols, REST fallback when it goes silent.
Accounts acquire the symbols they hold; ``symbols`` in the venue's settings are always live.

Nothing here can write to an exchange: the only client is :class:`PublicRestClient`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import trio

from ..clock import ServiceClock
from ..market_data import AcquireSymbol, MarketData, ReleaseSymbol
from ..settings import LiveVenueSettings, ReplayVenueSettings

log = logging.getLogger("actors.venues")

FIRST_QUOTES_TIMEOUT = 15.0


def source_for(name: str, venue: Any, clock: ServiceClock) -> Any:
    if isinstance(venue, ReplayVenueSettings):
        return replay_file_source(venue, clock)
    assert isinstance(venue, LiveVenueSettings)
    return live_source(name, venue, clock)


def live_source(name: str, venue: LiveVenueSettings, clock: ServiceClock, *, transport: Any = None) -> Any:
    from .feed import Acquire, FeedSettings, Release, venue_feed
    from .parsing import build_instruments, parse_leverage_brackets
    from .profiles import get_profile
    from .rest import PublicRestClient

    profile = get_profile(name, venue.rest_url, venue.ws_url)
    feed_settings = FeedSettings(depth_levels=venue.depth_levels,  # type: ignore[arg-type]
                                 stale_after_seconds=venue.stale_after_seconds,
                                 poll_interval_seconds=venue.poll_interval_seconds)

    async def run(handle: MarketData, symbol_commands: trio.MemoryReceiveChannel[Any], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with PublicRestClient(profile, clock=clock.now, transport=transport) as rest:
            handle.set_feed_state("connecting", profile.rest_url)
            brackets = None
            if venue.leverage_brackets:
                brackets = parse_leverage_brackets(Path(venue.leverage_brackets).read_bytes())
            instruments = build_instruments(await rest.exchange_info(), brackets, profile=profile)
            handle.set_instruments(instruments)
            unknown = [s for s in venue.symbols if s not in instruments]
            if unknown:
                raise ValueError(f"venue {name} does not list {', '.join(unknown)}")
            feed_send, feed_receive = trio.open_memory_channel[Any](1024)
            async with trio.open_nursery() as nursery:
                await nursery.start(venue_feed, profile, rest, handle, feed_receive, clock.now, feed_settings)
                for symbol in venue.symbols:
                    await feed_send.send(Acquire(symbol))
                with trio.move_on_after(FIRST_QUOTES_TIMEOUT):
                    while any(handle.quote(s) is None for s in venue.symbols):
                        await trio.sleep(0.05)
                task_status.started()
                async with symbol_commands, feed_send:
                    async for command in symbol_commands:
                        if command.symbol not in instruments:
                            continue
                        match command:
                            case AcquireSymbol(symbol=symbol):
                                await feed_send.send(Acquire(symbol))
                            case ReleaseSymbol(symbol=symbol):
                                await feed_send.send(Release(symbol))
                nursery.cancel_scope.cancel()

    return run


def replay_file_source(venue: ReplayVenueSettings, clock: ServiceClock) -> Any:
    """``serve`` with a replay venue: the recorded messages at their recorded pace, from now on."""
    from ..replay import load_instruments, load_market

    async def run(handle: MarketData, symbol_commands: trio.MemoryReceiveChannel[Any], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if not venue.market:
            raise ValueError("venues.replay.market: the replay venue needs a market file to serve")
        events = load_market(Path(venue.market))
        handle.set_instruments(load_instruments(events, Path(venue.exchange_info) if venue.exchange_info else None))
        handle.set_feed_state("connected", f"replay of {venue.market}")
        first_ms = events[0].at_ms
        started = trio.current_time()
        import msgspec

        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_discard, symbol_commands)
            for event in events:
                await trio.sleep_until(started + (event.at_ms - first_ms) / 1000)
                now = clock.now()
                update = msgspec.structs.replace(event.update, received_at=now, venue_ms=int(now * 1000))
                if hasattr(update, "bids"):
                    handle.publish_book(update)  # type: ignore[arg-type]
                else:
                    handle.publish_mark(update)  # type: ignore[arg-type]
            handle.set_feed_state("stale", "end of the replay file")
            nursery.cancel_scope.cancel()

    return run


async def _discard(channel: Any) -> None:
    async with channel:
        async for _ in channel:
            pass
