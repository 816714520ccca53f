"""The price-alarm benchmark of ``execd bench``: the cost of a tick with many alarms resting,
against the cost with few (the index must keep a tick ``O(log n + fired)``)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from decimal import Decimal

from ..domain.alarms import Alarm, AlarmIndex, Direction


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
