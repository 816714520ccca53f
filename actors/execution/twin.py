"""The venue of a live account's paper twin: the paper venue, reading the market as the live
order went out.

:class:`TwinVenue` *is* the :class:`~actors.execution.paper.PaperVenue` every paper account uses
(book walking, fees, filters, resting limits, TP/SL triggers, funding, liquidation), on the same
market-data board as its live account. The one difference is what it reads: while the twin
executes a decision its live account forwarded, the quote of that symbol is the one the live
account saw when its order went out (:meth:`TwinVenue.market_as_sent`), so that a twin that runs a
moment later (its inbox, a commit) still fills on the market the live order met. Everything else
(price alarms, funding, other symbols) reads the board as it is.

Like any paper venue it is given the market board and nothing else: it holds no trading client
and cannot write to an exchange.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from typing import Literal

from ..domain.alarms import Alarm
from ..domain.market import Instrument, Quote
from ..domain.positions import Position
from .paper import MarketBoard, PaperVenue


class MarketAsSent:
    """A venue's board, with one quote per symbol held at a moment while a twin executes."""

    def __init__(self, board: MarketBoard) -> None:
        self._board = board
        self.venue = board.venue
        self._held: dict[str, Quote] = {}

    @contextmanager
    def holding(self, quote: Quote) -> Iterator[None]:
        self._held[quote.symbol] = quote
        try:
            yield
        finally:
            self._held.pop(quote.symbol, None)

    def quote(self, symbol: str) -> Quote | None:
        held = self._held.get(symbol)
        return held if held is not None else self._board.quote(symbol)

    def instrument(self, symbol: str) -> Instrument | None:
        return self._board.instrument(symbol)

    def settlement(self, symbol: str, funding_time_ms: int) -> tuple[Decimal, Decimal] | None:
        return self._board.settlement(symbol, funding_time_ms)

    def funding_times(self, symbol: str, after_ms: int) -> list[int] | None:
        return self._board.funding_times(symbol, after_ms)

    async def add_alarm(self, alarm: Alarm, *, check_now: bool = True) -> None:
        await self._board.add_alarm(alarm, check_now=check_now)

    async def cancel_alarms(self, *alarm_ids: str) -> None:
        await self._board.cancel_alarms(*alarm_ids)


class TwinVenue(PaperVenue):
    """The paper venue of a paper twin (see the module docstring)."""

    def __init__(self, account_id: str, market: MarketBoard, positions: Mapping[str, Position],
                 funded_until: Mapping[str, int], *, trigger_price: Literal["mark", "last"] = "mark",
                 latency: float = 0.0) -> None:
        self._as_sent = MarketAsSent(market)
        super().__init__(account_id, self._as_sent, positions, funded_until, trigger_price=trigger_price,
                         latency=latency)

    def market_as_sent(self, quote: Quote) -> AbstractContextManager[None]:
        """While inside, ``quote.symbol`` is read at ``quote``: the market the live order met."""
        return self._as_sent.holding(quote)
