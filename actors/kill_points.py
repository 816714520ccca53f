"""Test-only kill points on a live order's path: a crash test arms one and the process kills
itself there (SIGKILL: nothing flushed, nothing cleaned up), as a power cut or an OOM kill would.

Armed only with ``EXECD_TEST_FAULTS=1`` and ``EXECD_TEST_KILL_AT=<point>``; a production process
never reads the second variable. The points, in the order an open with TP/SL passes them:

* ``sent:entry``: the venue has the entry; its answer is not applied (the intent alone is durable);
* ``before:stop_loss``: the entry's fills and the stop-loss's intent are durable; nothing sent;
* ``sent:stop_loss``: the venue has the stop-loss; its answer is not applied;
* ``before:take_profit``: the stop-loss's answer and the take-profit's intent are durable;
* ``sent:take_profit``: the venue has the take-profit; its answer is not applied.
"""

from __future__ import annotations

import os
import signal

POINTS = ("sent:entry", "before:stop_loss", "sent:stop_loss", "before:take_profit", "sent:take_profit")

_ARMED = os.environ.get("EXECD_TEST_KILL_AT") if os.environ.get("EXECD_TEST_FAULTS") == "1" else None
if _ARMED is not None and _ARMED not in POINTS:
    raise RuntimeError(f"EXECD_TEST_KILL_AT={_ARMED!r}: not a kill point ({', '.join(POINTS)})")


def reached(point: str) -> None:
    """Kill this process now if ``point`` is the armed one."""
    if point == _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
