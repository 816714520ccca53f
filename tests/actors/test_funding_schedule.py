"""Funding on the venue's clock: the paper venue pays at the funding times the venue's mark-price
messages announce (here every hour, off the 8-hour grid), each exactly once, across an actor
restart and a service restart that fall between two funding times. Virtual clock; scripted market.
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

import trio

from actors.domain.market import MarkPrice
from actors.messages import InjectCrash
from actors.service import Service
from tests.actors.helpers import body, submit, wait_until
from tests.actors.test_paper_fills import START, ScriptedMarket, scripted_service, state

HOUR_MS = 3_600_000
START_MS = int(START * 1000)
RATE = D("0.0002")


def announce(market: ScriptedMarket, mark: str = "68000") -> None:
    """A BTCUSDT mark that announces the next whole hour as the funding time."""
    now = market.handle._clock.now()
    now_ms = int(now * 1000)
    market.handle.publish_mark(MarkPrice(symbol="BTCUSDT", mark=D(mark), funding_rate=RATE,
                                         next_funding_ms=(now_ms // HOUR_MS + 1) * HOUR_MS,
                                         venue_ms=now_ms, received_at=now))


async def settled(predicate: Any) -> None:
    """Wait until ``predicate()`` holds, bounded (virtual time: the service's shutdown, which
    closes the database in a worker thread, stays outside every deadline)."""
    with trio.fail_after(600):
        await wait_until(predicate)


async def run_until(market: ScriptedMarket, until_ms: int) -> None:
    """Marks every minute of virtual time until the venue clock reaches ``until_ms``."""
    while int(market.handle._clock.now() * 1000) < until_ms:
        await trio.sleep(60)
        announce(market)


async def payments(service: Service) -> list[tuple[int, D]]:
    rows = await service.reader.fetchall("SELECT funding_time, amount FROM funding_payments ORDER BY funding_time")
    return [(r["funding_time"], D(r["amount"])) for r in rows]


async def test_announced_funding_times_are_paid_once_across_restarts(tmp_path: Path, autojump_clock: Any) -> None:
    paid_each = -D("0.5") * D("68000") * RATE  # a long pays a positive rate on the notional at the mark
    await _session(tmp_path, paid_each)


async def _session(tmp_path: Path, paid_each: D) -> None:
    async with scripted_service(tmp_path) as (service, market):
        announce(market)
        opened = await submit(service, "paper-1", body("fs-1", quantity="0.5", notional=None))
        assert opened["status"] == "filled"
        await run_until(market, START_MS + HOUR_MS + 90_000)  # through 01:00
        await settled(lambda: len(state(service).funded_until) == 1)
        # read on the trio thread: a worker-thread read here lets the virtual clock run ahead
        # (housekeeping spins while the thread waits for the GIL) past the next funding time
        assert await_rows(tmp_path) == [(START_MS + HOUR_MS, paid_each)]

        service.supervisor.control("paper-1", InjectCrash(where="now"))  # an actor restart between two times
        await settled(lambda: service.supervisor.slot("paper-1").restarts == 1
                         and service.supervisor.slot("paper-1").status == "running")
        await run_until(market, START_MS + 2 * HOUR_MS + 90_000)  # through 02:00
        await settled(lambda: state(service).funded_until == {opened["position"]["id"]: START_MS + 2 * HOUR_MS})
        elapsed = trio.current_time()
    assert await_rows(tmp_path) == [(START_MS + HOUR_MS, paid_each), (START_MS + 2 * HOUR_MS, paid_each)]

    # a service restart between two funding times: the new market-data actor has seen neither
    # earlier time, and the account's funded_until (rebuilt from the database) pays 03:00 only
    async with scripted_service(tmp_path, anchor=START + elapsed) as (service, market):
        announce(market)
        await run_until(market, START_MS + 3 * HOUR_MS + 90_000)
        await settled(lambda: len(await_rows(tmp_path)) == 3)
        assert [t for t, _ in await payments(service)] == [START_MS + h * HOUR_MS for h in (1, 2, 3)]
        assert state(service).funding == 3 * paid_each
        assert all(t % (8 * HOUR_MS) for t, _ in await payments(service))  # none on the 8-hour grid


def await_rows(tmp_path: Path) -> list[tuple[int, D]]:
    """The funding payments in the database file, read with a connection of its own."""
    import sqlite3

    conn = sqlite3.connect(tmp_path / "execd.sqlite3")
    try:
        return [(t, D(a)) for t, a in conn.execute("SELECT funding_time, amount FROM funding_payments ORDER BY funding_time")]
    finally:
        conn.close()
