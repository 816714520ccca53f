"""Account actors and their supervisor, on trio's virtual clock (``autojump_clock``)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import trio

from actors.messages import ActorCrashed, CloseAll, InjectCrash, SetTradingState
from tests.actors.helpers import body, open_service, submit, submit_nowait, wait_until
from tests.conftest import TEST_SETTINGS

COOLDOWN_SETTINGS = TEST_SETTINGS.replace("cooldown_seconds: 0", "cooldown_seconds: 30")


async def test_decisions_of_one_account_are_serialized_and_accounts_run_concurrently(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with open_service(tmp_path, paper_latency=1.0) as service:
        finished: dict[str, float] = {}
        start = trio.current_time()

        async def one(account: str, decision_id: str, symbol: str) -> None:
            result = await submit(service, account, body(decision_id, symbol=symbol))
            assert result["status"] == "filled"
            finished[decision_id] = trio.current_time() - start

        async with trio.open_nursery() as nursery:
            for i, symbol in enumerate(("BTCUSDT", "ETHUSDT", "SOLUSDT")):
                nursery.start_soon(one, "paper-1", f"a-{i}", symbol)
            nursery.start_soon(one, "paper-2", "b-0", "BTCUSDT")
        same_account = sorted(finished[f"a-{i}"] for i in range(3))
        assert same_account == [1.0, 2.0, 3.0]  # one at a time on paper-1, each a 1 s trip
        assert finished["b-0"] == 1.0  # paper-2 did not wait for paper-1


async def test_cooldown_blocks_new_exposure_but_never_a_close(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with open_service(tmp_path, COOLDOWN_SETTINGS) as service:
        first = await submit(service, "paper-1", body("c-1"))
        assert first["status"] == "filled"
        await trio.sleep(10)
        blocked = await submit(service, "paper-1", body("c-2"))
        assert blocked["status"] == "rejected"
        assert blocked["rejection"]["code"] == "COOLDOWN_ACTIVE"
        assert "20 s left" in blocked["rejection"]["message"]  # seconds left, with the number
        closing = await submit(service, "paper-1", {"decision_id": "c-3", "symbol": "BTCUSDT", "action": "close",
                                                    "quantity": "0.001"})
        assert closing["status"] == "filled"  # reducing is never blocked by the cooldown
        await trio.sleep(30)  # the close started a new cooldown; wait it out
        again = await submit(service, "paper-1", body("c-4"))
        assert again["status"] == "filled"


async def test_crashed_account_restarts_with_its_positions_while_another_keeps_trading(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with open_service(tmp_path) as service:
        opened = await submit(service, "paper-1", body("p-1", take_profit="90000", stop_loss="50000"))
        before = service.supervisor.slot("paper-1").actor.state
        position_before = before.positions["BTCUSDT"]
        balance_before = before.balance
        service.supervisor.control("paper-1", InjectCrash(where="now"))
        slot = service.supervisor.slot("paper-1")
        await wait_until(lambda: slot.status == "restarting")
        # paper-2 trades while paper-1 is down
        other = await submit(service, "paper-2", body("o-1"))
        assert other["status"] == "filled"
        assert slot.status == "restarting"
        await wait_until(lambda: slot.status == "running")
        assert slot.restarts == 1
        assert "injected crash" in (slot.last_error or "")
        state = slot.actor.state
        assert state is not before  # a new actor, rebuilt from the database
        assert state.positions["BTCUSDT"] == position_before
        assert state.balance == balance_before
        assert {o.purpose for o in state.orders.values()} == {"take_profit", "stop_loss"}
        assert service.supervisor.slot("paper-2").restarts == 0
        assert opened["position"]["quantity"] == state.positions["BTCUSDT"].quantity.__str__()


async def test_message_in_flight_at_a_crash_gets_an_error_and_nothing_is_committed(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with open_service(tmp_path) as service:
        service.supervisor.control("paper-1", InjectCrash(where="next_decision"))
        await trio.sleep(0.1)
        reply = submit_nowait(service, "paper-1", body("x-1"))
        queued = submit_nowait(service, "paper-1", body("x-2", symbol="ETHUSDT"))
        with pytest.raises(ActorCrashed):
            await reply.wait()
        # the queued message survived the crash and is handled by the restarted actor
        assert (await queued.wait())
        slot = service.supervisor.slot("paper-1")
        assert slot.restarts == 1
        assert "x-1" not in slot.actor.recent
        retried = await submit(service, "paper-1", body("x-1"))
        assert retried["status"] == "filled"
        rows = await service.reader.fetchall("SELECT COUNT(*) AS n FROM fills WHERE decision_id = 'x-1'")
        assert rows[0]["n"] == len(retried["fills"])


async def test_too_many_restarts_leave_the_account_failed_until_an_operator_restarts_it(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    text = TEST_SETTINGS.replace("restart_backoff_max_seconds: 0.5}", "restart_backoff_max_seconds: 0.5, max_restarts: 2}")
    async with open_service(tmp_path, text) as service:
        slot = service.supervisor.slot("paper-1")
        for crash in range(3):
            await wait_until(lambda: slot.status == "running")
            service.supervisor.control("paper-1", InjectCrash(where="now"))
            await wait_until(lambda: slot.status != "running")
        await wait_until(lambda: slot.status == "failed")
        assert slot.restarts == 3
        await trio.sleep(60)
        assert slot.status == "failed"  # it stays failed: no restart without an operator
        with pytest.raises(Exception, match="failed"):
            submit_nowait(service, "paper-1", body("f-1"))
        service.supervisor.restart("paper-1")
        await wait_until(lambda: slot.status == "running")
        assert (await submit(service, "paper-1", body("f-2")))["status"] == "filled"
        events = await service.reader.fetchall(
            "SELECT type FROM events WHERE account_id = 'paper-1' AND type IN ('actor.restarted', 'actor.failed')")
        assert [e["type"] for e in events] == ["actor.restarted"] * 3 + ["actor.failed"]


async def test_close_all_cancels_a_slow_execution_in_flight_and_closes_positions(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with open_service(tmp_path, paper_latency=5.0) as service:
        await submit(service, "paper-1", body("k-1", symbol="ETHUSDT"))
        slow = submit_nowait(service, "paper-1", body("k-2"))
        await trio.sleep(1.0)  # k-2 is in flight (its order is on its way to the venue)
        started = trio.current_time()
        result = await service.supervisor.control("paper-1", CloseAll()).wait()
        assert trio.current_time() - started < 0.5  # did not wait for the slow execution
        assert [c["symbol"] for c in result["closed_positions"]] == ["ETHUSDT"]
        cancelled = __import__("msgspec").json.decode(await slow.wait())
        assert cancelled["status"] == "rejected"
        assert cancelled["rejection"]["code"] == "CANCELLED"
        state = service.supervisor.slot("paper-1").actor.state
        assert state.positions == {}
        assert service.supervisor.slot("paper-1").mailbox.work_scope is None


async def test_halted_refuses_every_decision_and_reducing_only_lets_closes_through(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with open_service(tmp_path) as service:
        await submit(service, "paper-1", body("h-1"))
        await service.supervisor.control("paper-1", SetTradingState(state="reducing", reason="test")).wait()
        refused = await submit(service, "paper-1", body("h-2"))
        assert refused["rejection"]["code"] == "REDUCE_ONLY_MODE"
        partial = await submit(service, "paper-1", {"decision_id": "h-3", "symbol": "BTCUSDT", "action": "close",
                                                    "quantity": "0.001"})
        assert partial["status"] == "filled"
        await service.supervisor.control("paper-1", SetTradingState(state="halted")).wait()
        halted = await submit(service, "paper-1", {"decision_id": "h-4", "symbol": "BTCUSDT", "action": "close"})
        assert halted["rejection"]["code"] == "TRADING_HALTED"
        await service.supervisor.set_global_state("halted", "global test")
        await service.supervisor.control("paper-2", SetTradingState(state="active")).wait()
        assert (await submit(service, "paper-2", body("h-5")))["rejection"]["code"] == "TRADING_HALTED"


async def test_paper_balance_moves_by_fees_and_realized_pnl_exactly(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with open_service(tmp_path) as service:
        opened = await submit(service, "paper-1", body("m-1", side="short", quantity="0.05", notional=None))
        await trio.sleep(5)
        reduced = await submit(service, "paper-1", {"decision_id": "m-2", "symbol": "BTCUSDT", "action": "close",
                                                    "quantity": "0.02"})
        closed = await submit(service, "paper-1", {"decision_id": "m-3", "symbol": "BTCUSDT", "action": "close"})
        fills = opened["fills"] + reduced["fills"] + closed["fills"]
        fees = sum(Decimal(f["fee"]) for f in fills)
        realized = sum(Decimal(f["realized_pnl"]) for f in fills)
        entry_qty = sum(Decimal(f["quantity"]) for f in opened["fills"])
        entry = sum(Decimal(f["price"]) * Decimal(f["quantity"]) for f in opened["fills"]) / entry_qty
        expected_realized = sum((entry - Decimal(f["price"])) * Decimal(f["quantity"])
                                for f in reduced["fills"] + closed["fills"])
        assert realized == expected_realized  # short: profit when the exit is below the entry
        state = service.supervisor.slot("paper-1").actor.state
        assert state.balance == Decimal("10000") - fees + realized
        assert Decimal(closed["balance"]) == state.balance
        assert closed["position"]["status"] == "closed"
        assert state.positions == {}
        assert state.margin == 0


async def test_a_full_inbox_is_refused_at_once_not_queued_without_bound(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with open_service(tmp_path, paper_latency=1.0) as service:  # inbox_size 16 in the test settings
        replies = [submit_nowait(service, "paper-1", body(f"q-{n}", notional="100")) for n in range(16)]
        await trio.sleep(0.1)  # the first one is in flight: 15 queued + room for 1
        replies.append(submit_nowait(service, "paper-1", body("q-16", notional="100")))
        with pytest.raises(Exception, match="inbox is full") as refused:
            submit_nowait(service, "paper-1", body("q-17", notional="100"))
        assert refused.value.retry_after >= 1  # type: ignore[attr-defined]
        assert (await submit(service, "paper-2", body("other", notional="100")))["status"] == "filled"
        for reply in replies:  # everything that was accepted is executed
            await reply.wait()
        assert trio.current_time() >= 17.0


async def test_the_global_order_rate_limit_spans_accounts(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    text = TEST_SETTINGS.replace("risk: {max_leverage: 25, cooldown_seconds: 0}",
                                 "risk: {max_leverage: 25, cooldown_seconds: 0}\nglobal_risk: {max_orders_per_minute: 3}")
    async with open_service(tmp_path, text) as service:
        for n, account in enumerate(("paper-1", "paper-2", "paper-1")):
            assert (await submit(service, account, body(f"gr-{n}", notional="100")))["status"] == "filled"
        limited = await submit(service, "paper-2", body("gr-3", notional="100"))
        assert limited["rejection"]["code"] == "RATE_LIMITED"
        await trio.sleep(61)
        assert (await submit(service, "paper-2", body("gr-4", notional="100")))["status"] == "filled"
