"""Exponential backoff with jitter: the one schedule of the service's retry loops (account
restarts, venue reconnects, user-data streams).

The n-th delay (n from 1) is ``initial * 2**(n - 1)``, capped at ``maximum``, times a random factor
in ``[1, 1 + jitter)``: jitter only lengthens a delay, so a schedule is never shorter than written,
and many retrying clients spread out instead of hammering a venue in step.
"""

from __future__ import annotations

import random


def backoff_delay(attempt: int, initial: float, maximum: float, jitter: float = 0.0,
                  rng: random.Random | None = None) -> float:
    """The delay before retry number ``attempt`` (1 = the first retry)."""
    base = min(maximum, initial * 2 ** max(0, attempt - 1))
    if jitter <= 0:
        return base
    return base * (1.0 + jitter * (rng or random).random())


class Backoff:
    """A retry loop's schedule: :meth:`next` gives the next delay, :meth:`reset` starts over."""

    def __init__(self, initial: float, maximum: float, jitter: float = 0.0, rng: random.Random | None = None) -> None:
        self._initial, self._maximum, self._jitter = initial, maximum, jitter
        self._rng = rng or random.Random()
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    def next(self) -> float:
        self.attempt += 1
        return backoff_delay(self.attempt, self._initial, self._maximum, self._jitter, self._rng)
