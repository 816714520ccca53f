"""The loss-limit watcher (DESIGN.md §6), on trio's virtual clock with a scripted market.

The account actor's housekeeping (every ``HOUSEKEEPING_SECONDS`` of idle time) values the account
at the marks and moves it to ``halted`` (or ``reducing``, per ``on_loss_limit``) as soon as the
daily loss (realized + unrealized; absolute or percent of the day's start equity) or the drawdown
from peak equity reaches its limit: no decision is needed for that. A daily-loss halt is lifted on
the next UTC day; a drawdown halt stays until an operator resumes the account.
"""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import trio

from actors.account import HOUSEKEEPING_SECONDS
from actors.domain.risk import SECONDS_PER_DAY, utc_day
from actors.messages import CloseAll, SetTradingState, UpdateRiskLimits
from actors.service import Service
from tests.actors.helpers import body, submit
from tests.actors.test_paper_fills import START, TAKER, ScriptedMarket, scripted_service
from tests.conftest import db_rows

MIDNIGHT = START + SECONDS_PER_DAY  # 2026-01-02T00:00:00Z
ANCHOR = MIDNIGHT - 120  # the service starts at 23:58:00 UTC, two minutes before the day ends
ACCOUNT = "paper-1"
ENTRY = D("68000")  # the scripted market's BTCUSDT ask (and mark) at start
QUANTITY = D("0.1")


def loss_service(tmp_path: Path) -> Any:
    """The in-process service (inline commits) on a scripted market, its clock at ``ANCHOR``."""
    return scripted_service(tmp_path, anchor=ANCHOR)


def account(service: Service) -> Any:
    return service.supervisor.slot(ACCOUNT).actor.state


async def set_limits(service: Service, **overrides: Any) -> None:
    await service.supervisor.control(ACCOUNT, UpdateRiskLimits(overrides=overrides)).wait()


def btc_at(market: ScriptedMarket, mark: str) -> None:
    """A fresh BTCUSDT book one tick around ``mark``, and that mark."""
    price = D(mark)
    market.book("BTCUSDT", bids=[(str(price - D("0.1")), "5")], asks=[(mark, "5")], mark=mark)


def state_changes(service: Service) -> list[tuple[float, dict[str, Any]]]:
    rows = db_rows(service, "SELECT ts, payload FROM events WHERE type = 'account.state_changed' AND account_id = ?"
                            " ORDER BY seq", (ACCOUNT,))
    return [(ts, json.loads(payload)) for ts, payload in rows]


async def next_state_change(events: trio.MemoryReceiveChannel[Any]) -> Any:
    async for event in events:
        if event.type == "account.state_changed" and event.account_id == ACCOUNT:
            return event
    raise AssertionError("the event bus closed")


async def open_long(service: Service, decision_id: str) -> dict[str, Any]:
    result = await submit(service, ACCOUNT, body(decision_id, quantity=str(QUANTITY), notional=None))
    assert result["status"] == "filled", result
    return result


def close(decision_id: str) -> dict[str, Any]:
    return {"decision_id": decision_id, "symbol": "BTCUSDT", "action": "close"}


# ------------------------------------------------------------------------------ daily loss


@pytest.mark.parametrize(("limits", "mark", "moved_to", "open_code", "close_passes"), [
    pytest.param({"daily_loss_limit": "100"}, "66900", "halted", "TRADING_HALTED", False,
                 id="absolute-halted"),  # -110 unrealized
    pytest.param({"daily_loss_limit_pct": "1", "on_loss_limit": "reducing"}, "66500", "reducing",
                 "REDUCE_ONLY_MODE", True, id="percent-reducing"),  # -150 unrealized, 1.5 %
])
async def test_daily_loss_moves_the_account_within_a_housekeeping_tick_and_lifts_on_the_next_utc_day(
        tmp_path: Path, autojump_clock: Any, limits: dict[str, str], mark: str, moved_to: str, open_code: str,
        close_passes: bool) -> None:
    async with loss_service(tmp_path) as (service, market):
        events = service.bus.subscribe()
        await set_limits(service, **limits)
        await open_long(service, "dl-open")
        t_open, opened_at = trio.current_time(), service.clock.now()
        assert opened_at == ANCHOR
        # no decision from here on: the watcher values the open position on its own every second
        await trio.sleep(10.5)
        st = account(service)
        assert st.trading_state == "active" and st.day == utc_day(ANCHOR)  # it ran, found nothing
        btc_at(market, mark)  # the mark moves against the long
        changed = await next_state_change(events)
        assert trio.current_time() == t_open + 11.0  # the next housekeeping tick after the move
        assert changed.ts == opened_at + 11.0
        assert changed.payload["from"] == "active" and changed.payload["to"] == moved_to
        assert changed.payload["source"] == "loss_limit"
        assert changed.payload["reason"].startswith("DAILY_LOSS_LIMIT: daily loss ")
        name, value = next((k, v) for k, v in limits.items() if k.startswith("daily_loss_limit"))
        assert f"reached {name} {value}" in changed.payload["reason"]
        assert (st.trading_state, st.state_source) == (moved_to, "loss_limit")

        refused = await submit(service, ACCOUNT, body("dl-more", quantity="0.01", notional=None))
        assert refused["rejection"]["code"] == open_code
        closing = await submit(service, ACCOUNT, close("dl-close"))
        if close_passes:  # reducing: exposure may only go down
            assert closing["status"] == "filled"
            assert st.positions == {}
        else:  # halted: every decision is refused (close-all is the way out)
            assert closing["rejection"]["code"] == "TRADING_HALTED"
            assert set(st.positions) == {"BTCUSDT"}

        # the halt holds for the rest of the UTC day...
        await trio.sleep_until(t_open + (MIDNIGHT - opened_at) - 0.5)
        assert st.trading_state == moved_to
        # ...and is lifted by the first housekeeping tick of the next one (ticks fall on whole seconds here)
        lifted = await next_state_change(events)
        assert lifted.ts == MIDNIGHT and trio.current_time() == t_open + (MIDNIGHT - opened_at)
        assert lifted.payload == {"from": moved_to, "to": "active", "source": "loss_limit",
                                  "reason": "new UTC day: daily loss limit reset"}
        assert st.trading_state == "active" and st.day == utc_day(MIDNIGHT)
        assert st.day_start_equity == st.equity(service.markets["sim"])  # today's loss starts from here
        await trio.sleep(5 * HOUSEKEEPING_SECONDS)
        assert st.trading_state == "active"  # yesterday's loss does not halt it again
        changes = [(p["from"], p["to"]) for _, p in state_changes(service)]
        assert changes == [("active", moved_to), (moved_to, "active")]
        btc_at(market, mark)
        again = await submit(service, ACCOUNT, body("dl-next-day", quantity="0.01", notional=None))
        assert again["status"] == "filled"


# ------------------------------------------------------------------------------ drawdown


async def test_drawdown_halt_outlives_the_utc_day_until_an_operator_resumes(tmp_path: Path,
                                                                           autojump_clock: Any) -> None:
    async with loss_service(tmp_path) as (service, market):
        events = service.bus.subscribe()
        # a daily limit too, never reached: the new day lifts only a daily-loss halt
        await set_limits(service, max_drawdown_pct="1", daily_loss_limit="1000")
        await open_long(service, "dd-open")
        t_open, opened_at = trio.current_time(), service.clock.now()
        await trio.sleep(20.25)
        btc_at(market, "66500")  # equity 10000 - fee - 150: 1.52 % below the 10000 peak
        halted = await next_state_change(events)
        assert trio.current_time() == t_open + 21.0 and halted.ts == opened_at + 21.0
        assert (halted.payload["to"], halted.payload["source"]) == ("halted", "loss_limit")
        assert halted.payload["reason"].startswith("MAX_DRAWDOWN: drawdown 1.52% from peak equity 10000")
        st = account(service)
        assert st.peak_equity == D("10000")

        closed = await service.supervisor.control(ACCOUNT, CloseAll(reason="desk")).wait()
        assert [p["symbol"] for p in closed["closed_positions"]] == ["BTCUSDT"]  # close-all passes a halt
        assert st.positions == {} and st.trading_state == "halted"

        await trio.sleep_until(t_open + (MIDNIGHT - opened_at) + 5)
        assert st.day == utc_day(MIDNIGHT)  # the watcher rolled the day...
        assert st.trading_state == "halted"  # ...but a drawdown halt is not a daily one
        assert len(state_changes(service)) == 1

        resumed = await service.supervisor.control(
            ACCOUNT, SetTradingState(state="active", reason="desk reviewed the drawdown")).wait()
        assert (resumed["previous"], resumed["trading_state"]) == ("halted", "active")
        await trio.sleep(5 * HOUSEKEEPING_SECONDS)
        assert st.trading_state == "active"
        assert [(p["from"], p["to"], p["source"]) for _, p in state_changes(service)] == [
            ("active", "halted", "loss_limit"), ("halted", "active", "account")]
        # resumed, but the drawdown is still there: the gate keeps refusing new exposure
        btc_at(market, "66500")
        refused = await submit(service, ACCOUNT, body("dd-after", quantity="0.01", notional=None))
        assert refused["rejection"]["code"] == "MAX_DRAWDOWN"


# ------------------------------------------------------------------------------ regressions (bugs found by these tests)


async def test_the_watcher_also_runs_while_decisions_keep_arriving(tmp_path: Path, autojump_clock: Any) -> None:
    async with loss_service(tmp_path) as (service, market):
        await set_limits(service, daily_loss_limit="100")
        await open_long(service, "busy-open")
        t_open = trio.current_time()
        btc_at(market, "66900")  # -110: the limit is crossed right away
        for n in range(6):  # a decision every half second (refused: nothing to close in ETHUSDT)
            await trio.sleep(0.5)
            await submit(service, ACCOUNT, {"decision_id": f"busy-{n}", "symbol": "ETHUSDT", "action": "close"})
        assert trio.current_time() == t_open + 3.0
        assert account(service).trading_state == "halted"


async def test_a_loss_made_before_the_first_housekeeping_tick_counts_for_the_day(tmp_path: Path,
                                                                                 autojump_clock: Any) -> None:
    async with loss_service(tmp_path) as (service, market):
        await set_limits(service, daily_loss_limit="2")
        await open_long(service, "early-open")  # the taker fee alone: 6800 x 0.00035 = 2.38 >= 2
        assert account(service).balance == D("10000") - QUANTITY * ENTRY * TAKER
        await trio.sleep(1.5 * HOUSEKEEPING_SECONDS)
        assert account(service).trading_state == "halted"


async def test_losses_of_a_new_day_count_even_when_the_account_was_flat_at_midnight(tmp_path: Path,
                                                                                   autojump_clock: Any) -> None:
    async with loss_service(tmp_path) as (service, market):
        await open_long(service, "d1-open")
        await trio.sleep(1.5 * HOUSEKEEPING_SECONDS)  # the watcher ran: the account is on day 1
        await submit(service, ACCOUNT, close("d1-close"))
        assert account(service).day == utc_day(ANCHOR)
        await trio.sleep(MIDNIGHT - service.clock.now() + 60)  # flat through midnight
        await set_limits(service, daily_loss_limit="2")
        btc_at(market, "68000")
        await open_long(service, "d2-open")  # one quick round trip on day 2: about 4.8 of fees, over 2
        await submit(service, ACCOUNT, close("d2-close"))
        refused = await submit(service, ACCOUNT, body("d2-more", quantity="0.01", notional=None))
        assert refused["status"] == "rejected" and refused["rejection"]["code"] == "DAILY_LOSS_LIMIT"
