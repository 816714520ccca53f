"""Deadlines on the fake's server clock (listenKey expiry, countdownCancelAll).

One background task sleeps until the earliest deadline and runs its callback. Deadlines are in
server milliseconds, so moving the server clock (``clock_offset_ms``) can make them due at once:
:meth:`Timers.poke` re-evaluates them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

import trio


class Timers:
    def __init__(self, server_ms: Callable[[], int]) -> None:
        self._server_ms = server_ms
        self._due: dict[Hashable, tuple[int, Callable[[], None]]] = {}
        self._changed = trio.Event()

    def schedule(self, key: Hashable, at_ms: int, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the server clock reaches ``at_ms`` (replaces ``key``'s deadline)."""
        self._due[key] = (at_ms, callback)
        self.poke()

    def cancel(self, key: Hashable) -> None:
        self._due.pop(key, None)
        self.poke()

    def poke(self) -> None:
        """Re-evaluate the deadlines now (the set changed, or the server clock moved)."""
        self._changed.set()
        self._changed = trio.Event()

    def fire_due(self) -> None:
        now = self._server_ms()
        for key, (at_ms, callback) in sorted(self._due.items(), key=lambda item: item[1][0]):
            if at_ms <= now and self._due.get(key, (None,))[0] == at_ms:
                del self._due[key]
                callback()

    async def run(self) -> None:
        while True:
            self.fire_due()
            changed = self._changed
            wait = min((at for at, _cb in self._due.values()), default=None)
            seconds = math.inf if wait is None else max(0.0, (wait - self._server_ms()) / 1000)
            with trio.move_on_after(seconds):
                await changed.wait()
