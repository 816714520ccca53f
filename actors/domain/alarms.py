"""The price-alarm index of the market-data actor (DESIGN.md §4).

Take-profit, stop-loss, liquidation and resting limit orders in paper mode are price thresholds.
The index keeps them per symbol and per price type (``mark``, ``last``, ``bid``, ``ask``) in two
heaps:

* ``above`` alarms fire when the price is **at or above** the threshold: a min-heap, so the
  lowest threshold is the first to be crossed on the way up;
* ``below`` alarms fire when the price is **at or below** the threshold: a max-heap (negated
  keys), the highest threshold first on the way down.

A tick peeks at the two heap tops and pops while they are crossed: ``O(1)`` when nothing fires,
``O((fired + garbage) * log n)`` otherwise. Cancellation is lazy: the alarm leaves the live table
at once (``O(1)``) and its heap entry becomes garbage, skipped when it reaches the top. A heap
whose garbage outgrows its live entries (and a small floor) is rebuilt, so storage stays under
``2 * live + COMPACT_FLOOR`` entries per heap and the rebuild cost is amortized ``O(1)`` per cancel.

Pure and synchronous: no trio, no clock (except :func:`measure_tick_cost`, a benchmark).
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Literal, get_args

import msgspec

PriceType = Literal["mark", "last", "bid", "ask"]
Direction = Literal["above", "below"]

PRICE_TYPES: frozenset[str] = frozenset(get_args(PriceType))
DIRECTIONS: frozenset[str] = frozenset(get_args(Direction))
COMPACT_FLOOR = 64  # garbage entries a heap may carry before a rebuild is considered


class Alarm(msgspec.Struct, frozen=True, kw_only=True):
    """One price threshold of one account.

    ``kind`` says what the alarm stands for (``take_profit``, ``stop_loss``, ``liquidation``,
    ``limit``...) and ``ref`` what it refers to (a position or order id); the index does not
    interpret either.
    """

    alarm_id: str
    account_id: str
    symbol: str
    price_type: PriceType
    direction: Direction
    threshold: Decimal
    kind: str
    ref: str = ""


def is_crossed(alarm: Alarm, price: Decimal) -> bool:
    """Whether ``price`` triggers ``alarm``: ``price >= threshold`` above, ``price <= threshold`` below."""
    if alarm.direction == "above":
        return price >= alarm.threshold
    return price <= alarm.threshold


# A heap entry: (approx, key, seq, alarm_id). ``key`` is the threshold (above) or its negation
# (below) and ``approx`` is ``float(key)``: float rounding is monotone, so ordering by (approx, key)
# is exactly the Decimal order of ``key``, while most heap comparisons are cheap float ones. Whether
# an alarm is crossed is always decided on the exact ``key``. ``seq`` is unique per add: an entry
# is live iff the live table holds the same seq for its id.
_Entry = tuple[float, Decimal, int, str]


class _Heap:
    """One lazily-deleted heap with its count of live entries."""

    __slots__ = ("entries", "live")

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.live = 0

    @property
    def garbage(self) -> int:
        return len(self.entries) - self.live


class _Live(msgspec.Struct, frozen=True):
    alarm: Alarm
    seq: int
    heap: _Heap


class AlarmIndex:
    """Price alarms by (symbol, price type, direction), with lazy deletion and compaction."""

    def __init__(self) -> None:
        self._heaps: dict[tuple[str, str, str], _Heap] = {}
        self._live: dict[str, _Live] = {}
        self._by_account: dict[str, set[str]] = {}
        self._seq = 0

    # ---------------------------------------------------------------- queries

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, alarm_id: object) -> bool:
        return alarm_id in self._live

    def __iter__(self) -> Iterator[Alarm]:
        return (live.alarm for live in self._live.values())

    def get(self, alarm_id: str) -> Alarm | None:
        live = self._live.get(alarm_id)
        return live.alarm if live is not None else None

    def count_for(self, account_id: str) -> int:
        """Live alarms of ``account_id``."""
        return len(self._by_account.get(account_id, ()))

    def alarms_for(self, account_id: str) -> list[Alarm]:
        return [self._live[alarm_id].alarm for alarm_id in self._by_account.get(account_id, ())]

    @property
    def storage_size(self) -> int:
        """Heap entries held, live and garbage (what compaction keeps bounded)."""
        return sum(len(heap.entries) for heap in self._heaps.values())

    # ---------------------------------------------------------------- updates

    def add(self, alarm: Alarm) -> None:
        """Register ``alarm``; an alarm with the same ``alarm_id`` is replaced. ``O(log n)``.

        The index does not know the current price: an alarm that is already crossed fires on the
        next :meth:`on_price` of its symbol and price type (see :func:`is_crossed`).
        """
        if alarm.price_type not in PRICE_TYPES:
            raise ValueError(f"unknown price type {alarm.price_type!r}")
        if alarm.direction not in DIRECTIONS:
            raise ValueError(f"unknown alarm direction {alarm.direction!r}")
        if not isinstance(alarm.threshold, Decimal) or not alarm.threshold.is_finite():
            raise ValueError(f"alarm threshold must be a finite Decimal, got {alarm.threshold!r}")
        if alarm.alarm_id in self._live:
            self.cancel(alarm.alarm_id)
        heap_key = (alarm.symbol, alarm.price_type, alarm.direction)
        heap = self._heaps.get(heap_key)
        if heap is None:
            heap = self._heaps[heap_key] = _Heap()
        self._seq += 1
        key = alarm.threshold if alarm.direction == "above" else -alarm.threshold
        heapq.heappush(heap.entries, (float(key), key, self._seq, alarm.alarm_id))
        heap.live += 1
        self._live[alarm.alarm_id] = _Live(alarm, self._seq, heap)
        self._by_account.setdefault(alarm.account_id, set()).add(alarm.alarm_id)

    def cancel(self, alarm_id: str) -> bool:
        """Remove one alarm; False if it is not (or no longer) registered. Amortized ``O(1)``."""
        live = self._live.pop(alarm_id, None)
        if live is None:
            return False
        self._forget_account(live.alarm)
        live.heap.live -= 1
        self._maybe_compact(live.heap)
        return True

    def cancel_account(self, account_id: str) -> int:
        """Remove every alarm of ``account_id``; returns how many. ``O(k)`` for its ``k`` alarms."""
        alarm_ids = self._by_account.pop(account_id, set())
        for alarm_id in alarm_ids:
            live = self._live.pop(alarm_id)
            live.heap.live -= 1
            self._maybe_compact(live.heap)
        return len(alarm_ids)

    def on_price(self, symbol: str, price_type: str, price: Decimal) -> list[Alarm]:
        """Remove and return the alarms that ``price`` crosses.

        ``above`` alarms come first, lowest threshold first; then ``below`` alarms, highest
        threshold first (the order in which a moving price would have met them). Ties keep the
        order in which the alarms were added.
        """
        fired: list[Alarm] = []
        above = self._heaps.get((symbol, price_type, "above"))
        if above is not None and above.entries and above.entries[0][1] <= price:
            self._pop_while(above, price, fired)
        below = self._heaps.get((symbol, price_type, "below"))
        if below is not None and below.entries and below.entries[0][1] <= -price:
            self._pop_while(below, -price, fired)
        return fired

    # ---------------------------------------------------------------- internals

    def _pop_while(self, heap: _Heap, limit: Decimal, fired: list[Alarm]) -> None:
        """Pop the entries whose key is <= ``limit`` (the price, negated for ``below``)."""
        entries = heap.entries
        while entries and entries[0][1] <= limit:
            _, _, seq, alarm_id = heapq.heappop(entries)
            live = self._live.get(alarm_id)
            if live is None or live.seq != seq:
                continue  # garbage of a cancelled or replaced alarm
            del self._live[alarm_id]
            heap.live -= 1
            self._forget_account(live.alarm)
            fired.append(live.alarm)

    def _forget_account(self, alarm: Alarm) -> None:
        ids = self._by_account.get(alarm.account_id)
        if ids is None:
            return
        ids.discard(alarm.alarm_id)
        if not ids:
            del self._by_account[alarm.account_id]

    def _maybe_compact(self, heap: _Heap) -> None:
        """Rebuild ``heap`` from its live entries once garbage exceeds both the live count and
        :data:`COMPACT_FLOOR` (each rebuild is paid for by at least as many cancels)."""
        if heap.garbage <= COMPACT_FLOOR or heap.garbage <= heap.live:
            return
        live_table = self._live
        kept = []
        for entry in heap.entries:
            live = live_table.get(entry[3])
            if live is not None and live.seq == entry[2]:
                kept.append(entry)
        heapq.heapify(kept)
        heap.entries = kept
        assert len(kept) == heap.live


# --------------------------------------------------------------------------------------------
# Benchmark (used by ``execd bench``)


def _random_alarm(
    rng: random.Random, alarm_id: str, account_id: str, price: Decimal, tick: Decimal, gap: float, spread: float
) -> Alarm:
    """An alarm between ``gap`` and ``spread`` (fractions) away from ``price``, on either side."""
    distance = rng.uniform(gap, spread)
    if rng.random() < 0.5:
        direction: Direction = "above"
        raw = float(price) * (1 + distance)
    else:
        direction = "below"
        raw = float(price) * (1 - distance)
    threshold = (Decimal(repr(raw)) / tick).to_integral_value() * tick
    return Alarm(
        alarm_id=alarm_id,
        account_id=account_id,
        symbol="BTCUSDT",
        price_type="mark",
        direction=direction,
        threshold=threshold,
        kind="take_profit" if direction == "above" else "stop_loss",
        ref=alarm_id,
    )


def _price_path(rng: random.Random, start: Decimal, tick: Decimal, ticks: int) -> list[Decimal]:
    """A mark-price random walk: each update moves 0 to 5 ticks either way."""
    path = []
    price = start
    for _ in range(ticks):
        price += tick * rng.randint(-5, 5)
        path.append(price)
    return path


def _run_ticks(
    n_alarms: int,
    n_accounts: int,
    path: list[Decimal],
    *,
    seed: int,
    start: Decimal,
    tick: Decimal,
    gap: float,
    spread: float,
    repeats: int,
    timer: Callable[[], float],
) -> tuple[float, int, int]:
    """Best-of-``repeats`` seconds spent in ``on_price`` over the whole path (re-adding the fired
    alarms is the accounts' work, not the tick's, and is timed apart and left out), alarms fired
    per run, heap storage at the end."""
    best = float("inf")
    fired_total = 0
    storage = 0
    for _ in range(repeats):
        rng = random.Random(seed)
        index = AlarmIndex()
        for i in range(n_alarms):
            index.add(_random_alarm(rng, f"a{i}", f"acct{i % n_accounts}", start, tick, gap, spread))
        fired_total = 0
        readding = 0.0
        on_price = index.on_price
        began = timer()
        for price in path:
            fired = on_price("BTCUSDT", "mark", price)
            if fired:
                fired_total += len(fired)
                paused = timer()
                for alarm in fired:  # a new TP/SL replaces the one that fired: n stays constant
                    index.add(_random_alarm(rng, alarm.alarm_id, alarm.account_id, price, tick, gap, spread))
                readding += timer() - paused
        best = min(best, timer() - began - readding)
        storage = index.storage_size
        assert len(index) == n_alarms
    return best, fired_total, storage


def measure_tick_cost(
    n_alarms: int = 100_000,
    n_accounts: int = 10_000,
    ticks: int = 20_000,
    *,
    baseline_alarms: int = 1_000,
    seed: int = 7,
    gap: float = 0.001,
    spread: float = 0.10,
    repeats: int = 3,
    timer: Callable[[], float] = time.perf_counter,
) -> dict[str, float | int | bool]:
    """Per-tick cost of :meth:`AlarmIndex.on_price` with ``n_alarms`` resting alarms against
    ``baseline_alarms``, on the same mark-price path (pure Python, in process).

    Alarms sit between ``gap`` and ``spread`` (fractions of the price, 0.1 % to 10 % by default)
    above or below a BTC-like price; the mark walks 0 to 5 ticks of 0.1 per update, so a tick
    fires few alarms. A fired alarm is re-added at a new distance from the current price (a new
    TP/SL), keeping ``n`` constant; that re-add is the accounts' work and is not counted in the
    tick cost. Each configuration runs ``repeats`` times and the best run counts.

    The goal is ``ratio <= 2`` (``us_per_tick`` over ``baseline_us_per_tick``): the cost of a
    tick must not grow with the number of resting alarms. A tick that fires nothing costs two heap
    peeks; one that fires costs ``O(log n)`` per fired alarm, and since a larger index is denser
    around the price it fires more often (``fired_per_tick``). ``event_ratio`` divides the time by
    ticks + fired alarms, a rough cost per unit of work that discounts that density.
    """
    if n_alarms < 1 or baseline_alarms < 1 or n_accounts < 1 or ticks < 1:
        raise ValueError("n_alarms, baseline_alarms, n_accounts and ticks must be positive")
    start = Decimal("60000.0")
    tick = Decimal("0.1")
    path = _price_path(random.Random(seed + 1), start, tick, ticks)
    common = dict(seed=seed, start=start, tick=tick, gap=gap, spread=spread, repeats=repeats, timer=timer)
    seconds, fired, storage = _run_ticks(n_alarms, n_accounts, path, **common)  # type: ignore[arg-type]
    base_seconds, base_fired, _ = _run_ticks(
        baseline_alarms, min(n_accounts, baseline_alarms), path, **common  # type: ignore[arg-type]
    )
    per_tick_us = seconds / ticks * 1e6
    base_per_tick_us = base_seconds / ticks * 1e6
    ratio = per_tick_us / base_per_tick_us if base_per_tick_us > 0 else float("inf")
    # per event (a tick or a fired alarm): removes the effect of the larger index firing more
    per_event_us = seconds / (ticks + fired) * 1e6
    base_per_event_us = base_seconds / (ticks + base_fired) * 1e6
    return {
        "n_alarms": n_alarms,
        "n_accounts": n_accounts,
        "ticks": ticks,
        "ticks_per_second": ticks / seconds if seconds > 0 else float("inf"),
        "us_per_tick": per_tick_us,
        "fired": fired,
        "fired_per_tick": fired / ticks,
        "storage_size": storage,
        "baseline_alarms": baseline_alarms,
        "baseline_ticks_per_second": ticks / base_seconds if base_seconds > 0 else float("inf"),
        "baseline_us_per_tick": base_per_tick_us,
        "baseline_fired": base_fired,
        "baseline_fired_per_tick": base_fired / ticks,
        "us_per_event": per_event_us,
        "baseline_us_per_event": base_per_event_us,
        "event_ratio": per_event_us / base_per_event_us if base_per_event_us > 0 else float("inf"),
        "ratio": ratio,
        "goal_ratio": 2.0,
        "ok": ratio <= 2.0,
    }
