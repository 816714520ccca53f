"""Recorded market sessions: JSONL of combined-stream messages exactly as the venues send them.

``load_market`` reads one (``{"stream": "btcusdt@depth20@100ms", "data": {...}}``, ``@bookTicker``,
``@markPrice`` with funding) into book and mark updates at their venue times; ``load_instruments``
finds the symbols' filters in a saved ``exchangeInfo`` or, without one, in the ``sim`` profile.
Used by ``execd replay`` and by a ``replay`` venue in ``execd serve``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from ..domain.market import Instrument, MarkPrice, OrderBook
from .parsing import ParseError, build_instruments, parse_stream_message
from .profiles import get_profile
from .sim import SIM_SYMBOLS, sim_instrument


class RecordingError(Exception):
    """A recorded session that cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class MarketEvent:
    at_ms: int
    line: int
    update: OrderBook | MarkPrice


def lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of a JSONL file with their line numbers."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            raw = raw.strip()
            if raw:
                yield number, raw


def load_market(path: Path) -> list[MarketEvent]:
    events: list[MarketEvent] = []
    for number, raw in lines(path):
        try:
            update = parse_stream_message(raw, 0.0)
        except ParseError as exc:
            raise RecordingError(f"{path}:{number}: not a market message: {exc}") from None
        if update is None:
            continue
        update = msgspec.structs.replace(update, received_at=update.venue_ms / 1000)
        events.append(MarketEvent(update.venue_ms, number, update))
    if not events:
        raise RecordingError(f"{path}: no market data")
    return events


def load_instruments(market: list[MarketEvent], exchange_info: Path | None) -> dict[str, Instrument]:
    symbols = sorted({e.update.symbol for e in market})
    if exchange_info is not None:
        instruments = build_instruments(exchange_info.read_bytes(), profile=get_profile("asterdex"), symbols=symbols)
        missing = [s for s in symbols if s not in instruments]
        if missing:
            raise RecordingError(f"{exchange_info}: exchangeInfo has no symbol {', '.join(missing)}")
        return instruments
    unknown = [s for s in symbols if s not in SIM_SYMBOLS]
    if unknown:
        raise RecordingError(f"no filters for {', '.join(unknown)}: pass --exchange-info with the venue's exchangeInfo")
    return {s: sim_instrument(s) for s in symbols}
