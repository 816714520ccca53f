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

Pure and synchronous: no trio, no clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
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
