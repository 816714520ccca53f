"""The service clock: epoch seconds derived from trio's clock.

Every actor reads time through one :class:`ServiceClock`, so tests on trio's virtual clock
(``autojump_clock``/``MockClock``) move wall-clock stamps, cooldowns and funding times too.
The pure domain never reads a clock: actors pass ``now`` in.
"""

from __future__ import annotations

import time

import trio


class ServiceClock:
    """``now()`` = a fixed epoch anchor + trio time elapsed since the anchor was taken."""

    def __init__(self, epoch_anchor: float | None = None) -> None:
        self._epoch_anchor = time.time() if epoch_anchor is None else epoch_anchor
        self._wall = epoch_anchor is None
        self._trio_anchor: float | None = None

    def now(self) -> float:
        current = trio.current_time()
        if self._trio_anchor is None:
            self._trio_anchor = current
            if self._wall:  # both anchors at one moment: stamps agree with other processes' (cluster nodes)
                self._epoch_anchor = time.time()
        return self._epoch_anchor + (current - self._trio_anchor)

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def monotonic(self) -> float:
        """trio time, for timeouts and deadlines."""
        return trio.current_time()
