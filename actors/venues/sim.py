"""The offline ``sim`` venue: a seeded synthetic perpetual-futures market.

Pure and deterministic: :class:`SimMarket` turns (seed, step number, time) into books and mark
prices. The market-data actor calls :meth:`SimMarket.step` on its own timer; nothing here sleeps or
reads a clock.

* mid price: geometric random walk, ``volatility_bps`` standard deviation per step
* book: 20+ levels a side on the tick grid, a 1-3 tick spread, sizes growing with depth
* mark price: mid plus a small, mean-reverting premium
* funding: a rate around 0.01 % per 8 hours, paid at 00:00, 08:00 and 16:00 UTC of the sim clock
* filters and fees: like AsterDEX's (maker 0.01 %, taker 0.035 %; min notional 5 USDT)
"""

from __future__ import annotations

import math
import random
import re
from decimal import Decimal

from ..domain.margin import default_brackets
from ..domain.market import FeeRates, Instrument, LeverageBracket, MarkPrice, OrderBook, SymbolFilters
from ..domain.money import round_step_down, round_to_tick

FUNDING_INTERVAL_MS = 8 * 3600 * 1000
ASTER_FEES = FeeRates(maker=Decimal("0.0001"), taker=Decimal("0.00035"))


BTC_LADDER = default_brackets([
    ("0", 125, "0.004"), ("50000", 100, "0.005"), ("250000", 50, "0.01"), ("3000000", 20, "0.025"),
    ("15000000", 10, "0.05"), ("30000000", 5, "0.1"), ("80000000", 4, "0.125"),
    ("100000000", 3, "0.15"), ("200000000", 2, "0.25"), ("300000000", 1, "0.5"),
])
ALT_LADDER = default_brackets([
    ("0", 75, "0.01"), ("10000", 50, "0.02"), ("100000", 25, "0.025"), ("500000", 10, "0.05"),
    ("1000000", 5, "0.1"), ("3000000", 4, "0.125"), ("5000000", 3, "0.15"), ("10000000", 2, "0.25"),
    ("20000000", 1, "0.5"),
])


class SimSymbol:
    """Static parameters of one simulated symbol."""

    def __init__(self, symbol: str, start: str, tick: str, step: str, level_size: str, ladder: tuple[LeverageBracket, ...]) -> None:
        self.symbol = symbol
        self.start = Decimal(start)
        self.tick = Decimal(tick)
        self.step = Decimal(step)
        self.level_size = float(level_size)
        self.ladder = ladder


SIM_SYMBOLS: dict[str, SimSymbol] = {
    "BTCUSDT": SimSymbol("BTCUSDT", "68000", "0.1", "0.001", "0.8", BTC_LADDER),
    "ETHUSDT": SimSymbol("ETHUSDT", "3500", "0.01", "0.001", "12", BTC_LADDER),
    "SOLUSDT": SimSymbol("SOLUSDT", "150", "0.01", "0.01", "250", ALT_LADDER),
    "BNBUSDT": SimSymbol("BNBUSDT", "600", "0.01", "0.01", "60", ALT_LADDER),
    "XRPUSDT": SimSymbol("XRPUSDT", "0.6", "0.0001", "0.1", "60000", ALT_LADDER),
}


_SYNTHETIC = re.compile(r"S(\d{5})USDT")


def synthetic_symbols(count: int) -> tuple[str, ...]:
    """``count`` made-up symbols (``S00000USDT``, ``S00001USDT``...): a venue with as many
    instruments as a benchmark needs (10,000 open positions on one account need 10,000 symbols)."""
    return tuple(f"S{i:05d}USDT" for i in range(count))


def sim_spec(symbol: str) -> SimSymbol | None:
    """The parameters of a sim symbol: one of :data:`SIM_SYMBOLS`, or a synthetic one (priced
    between 10 and 99.9, altcoin-like filters and ladder)."""
    spec = SIM_SYMBOLS.get(symbol)
    if spec is None and (match := _SYNTHETIC.fullmatch(symbol)) is not None:
        start = 10 + int(match.group(1)) % 900 / 10
        spec = SimSymbol(symbol, f"{start:.1f}", "0.001", "0.1", "500", ALT_LADDER)
        SIM_SYMBOLS_SYNTHETIC[symbol] = spec
    return spec


SIM_SYMBOLS_SYNTHETIC: dict[str, SimSymbol] = {}


def sim_instrument(symbol: str) -> Instrument:
    spec = sim_spec(symbol)
    assert spec is not None, symbol
    return Instrument(
        symbol=symbol,
        base_asset=symbol.removesuffix("USDT"),
        quote_asset="USDT",
        filters=SymbolFilters(
            tick_size=spec.tick,
            min_price=spec.tick,
            max_price=Decimal(0),
            step_size=spec.step,
            min_qty=spec.step,
            max_qty=Decimal("1000000"),
            min_notional=Decimal("5"),
            percent_up=Decimal("1.05"),
            percent_down=Decimal("0.95"),
        ),
        fees=ASTER_FEES,
        brackets=spec.ladder,
        max_leverage=spec.ladder[0].initial_leverage,
        liquidation_fee_rate=Decimal("0.015"),
    )


def next_funding_ms(now_ms: int) -> int:
    return (now_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS


class SimMarket:
    """A deterministic market: the same seed and the same step times give the same books."""

    def __init__(self, seed: int, symbols: tuple[str, ...], *, volatility_bps: float = 3.0, levels: int = 25) -> None:
        unknown = [s for s in symbols if sim_spec(s) is None]
        if unknown:
            raise ValueError(f"sim venue has no symbol {unknown[0]} (it has {', '.join(SIM_SYMBOLS)}, and "
                             "synthetic_symbols: N adds S00000USDT...)")
        self._rng = random.Random(seed)
        self.symbols = tuple(symbols)
        self._specs = {s: sim_spec(s) for s in symbols}
        self.levels = levels
        self.volatility = volatility_bps / 10_000
        self._log_mid = {s: math.log(float(self._specs[s].start)) for s in symbols}  # type: ignore[union-attr]
        self._premium = {s: 0.0 for s in symbols}
        self._funding = {s: 0.0001 for s in symbols}
        self.update_id = 0

    def instruments(self) -> dict[str, Instrument]:
        return {s: sim_instrument(s) for s in self.symbols}

    def step(self, now_ms: int, received_at: float) -> list[tuple[OrderBook, MarkPrice]]:
        """Advance every symbol one step; return its new book and mark."""
        self.update_id += 1
        out = []
        for symbol in self.symbols:
            out.append(self._step_symbol(self._specs[symbol], now_ms, received_at))  # type: ignore[arg-type]
        return out

    def _step_symbol(self, spec: SimSymbol, now_ms: int, received_at: float) -> tuple[OrderBook, MarkPrice]:
        rng = self._rng
        symbol = spec.symbol
        self._log_mid[symbol] += rng.gauss(0.0, self.volatility)
        mid = Decimal(repr(math.exp(self._log_mid[symbol])))
        spread_ticks = rng.choice((1, 1, 1, 2, 3))
        best_bid = round_to_tick(mid - spec.tick * spread_ticks / 2, spec.tick, up=False)
        if best_bid <= 0:
            best_bid = spec.tick
        best_ask = best_bid + spec.tick * spread_ticks
        bids, asks = [], []
        for level in range(self.levels):
            gap = spec.tick * (1 + level // 5)  # sparser further out
            bid_price = best_bid - gap * level if level else best_bid
            ask_price = best_ask + gap * level if level else best_ask
            bids.append((bid_price, self._size(spec, level)))
            asks.append((ask_price, self._size(spec, level)))
        bids = [(p, q) for p, q in bids if p > 0]
        self._premium[symbol] = 0.8 * self._premium[symbol] + rng.gauss(0.0, 0.00005)
        self._funding[symbol] = min(0.00075, max(-0.00075, 0.9 * self._funding[symbol] + 0.1 * 0.0001 + rng.gauss(0.0, 0.00001)))
        mark = round_to_tick(((best_bid + best_ask) / 2) * Decimal(repr(1.0 + self._premium[symbol])), spec.tick)
        book = OrderBook(
            symbol=symbol, bids=tuple(bids), asks=tuple(asks), venue_ms=now_ms,
            received_at=received_at, depth=True, update_id=self.update_id,
        )
        mark_price = MarkPrice(
            symbol=symbol,
            mark=mark,
            index=round_to_tick((best_bid + best_ask) / 2, spec.tick),
            funding_rate=Decimal(repr(round(self._funding[symbol], 8))),
            next_funding_ms=next_funding_ms(now_ms),
            venue_ms=now_ms,
            received_at=received_at,
        )
        return book, mark_price

    def _size(self, spec: SimSymbol, level: int) -> Decimal:
        size = spec.level_size * (1 + level * 0.35) * self._rng.uniform(0.4, 1.6)
        quantity = round_step_down(Decimal(repr(size)), spec.step)
        return quantity if quantity > 0 else spec.step
