"""Every risk-gate rejection code over the real socket (DESIGN.md §6, §8).

Each case sets the account up through the API (limits with ``PUT .../risk``, trading states,
earlier decisions), then submits one decision the gate must refuse, and checks the whole
contract of a refusal: ``422`` with the stored result and the ``error`` object beside it, nothing
traded for it (no order, no fill, positions untouched), and an audit row whose checks are the
gate's fixed order up to the one that failed. The service runs on the real clock with the offline
``sim`` venue; every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
import trio

from actors.domain.risk import CHECK_NAMES
from actors.service import Service
from tests.conftest import db_rows, decision

pytestmark = pytest.mark.slow

BOUND = 20  # seconds: the ceiling of any single test's traffic
ACCOUNT = "paper-1"
START_BALANCE = Decimal(10000)
CLOSE_GUARDS = ("leverage", "tpsl", "stop_loss_required", "cooldown", "order_size", "min_notional",
                "position_notional", "total_exposure", "open_positions", "margin", "price_deviation",
                "daily_loss", "drawdown")  # the checks that guard new exposure only: skipped for a close


# ---------------------------------------------------------------------------------- helpers


def mark(service: Service, symbol: str = "BTCUSDT") -> Decimal:
    quote = service.markets["sim"].quote(symbol)
    assert quote is not None
    return quote.mark_price


async def submit(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post(f"/v1/accounts/{ACCOUNT}/decisions", json=body)


async def put_risk(client: httpx.AsyncClient, **limits: Any) -> None:
    response = await client.put(f"/v1/accounts/{ACCOUNT}/risk", json=limits)
    assert response.status_code == 200, response.text


async def put_state(client: httpx.AsyncClient, state: str) -> None:
    response = await client.put(f"/v1/accounts/{ACCOUNT}/trading-state", json={"state": state})
    assert response.status_code == 200, response.text


async def filled(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await submit(client, body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "filled", response.text
    return response.json()


def close(decision_id: str, symbol: str = "BTCUSDT") -> dict[str, Any]:
    return {"decision_id": decision_id, "symbol": symbol, "action": "close"}


async def newest_audit(client: httpx.AsyncClient) -> dict[str, Any]:
    page = (await client.get(f"/v1/accounts/{ACCOUNT}/audit", params={"limit": 1})).json()
    return page["items"][0]


async def lose_money(client: httpx.AsyncClient, at_least: Decimal = Decimal(0)) -> Decimal:
    """Round trips until the account is flat with a net loss (fees make one, barring a lucky move)."""
    for n in range(10):
        await filled(client, decision(f"lose-open-{n}", notional="5000", leverage=5))
        await filled(client, close(f"lose-close-{n}"))
        balance = Decimal((await client.get(f"/v1/accounts/{ACCOUNT}")).json()["balance"])
        if START_BALANCE - balance > at_least:
            return START_BALANCE - balance
    raise AssertionError("ten round trips and still no loss")


def state_of(service: Service) -> list[tuple[object, ...]]:
    return db_rows(service, "SELECT id, status, side, quantity, entry_price FROM positions WHERE account_id = ?"
                            " ORDER BY id", (ACCOUNT,))


# ---------------------------------------------------------------------------------- every code


Setup = tuple[tuple[str, Any], ...]


async def prepare(client: httpx.AsyncClient, setup: Setup) -> None:
    for n, (step, arg) in enumerate(setup):
        if step == "risk":
            await put_risk(client, **arg)
        elif step == "state":
            await put_state(client, arg)
        elif step == "open":
            await filled(client, decision(f"setup-{n}", **arg))
        elif step == "close":
            await filled(client, close(f"setup-{n}", arg))
        elif step == "loss":  # a realized loss, then the limit set exactly at it: reached means blocked
            loss = await lose_money(client)
            limit = loss if arg == "daily_loss_limit" else loss / START_BALANCE * 100
            await put_risk(client, **{arg: format(limit, "f")})
        else:
            raise AssertionError(step)


def case(code: str, last_check: str, setup: Setup, make: Callable[[Decimal], dict[str, Any]], message: str,
         *, id: str | None = None) -> Any:
    return pytest.param(code, last_check, setup, make, message, id=id or code)


CASES = [
    case("TRADING_HALTED", "trading_state", (("state", "halted"),), lambda m: decision("x"),
         r"trading is halted \(account halted, global active\)"),
    case("REDUCE_ONLY_MODE", "trading_state", (("state", "reducing"),), lambda m: decision("x"),
         r"trading is reducing .*only closes are accepted"),
    case("UNKNOWN_SYMBOL", "symbol", (), lambda m: decision("x", symbol="NOPEUSDT"), r"unknown symbol NOPEUSDT"),
    case("NO_POSITION", "position", (), lambda m: close("x", "ETHUSDT"), r"no open position in ETHUSDT"),
    case("OPPOSITE_POSITION", "position", (("open", {}),), lambda m: decision("x", side="short"),
         r"cannot open short BTCUSDT: a long position of [\d.]+ is open"),
    case("LEVERAGE_ABOVE_MAX", "leverage", (("risk", {"max_leverage": 10}),), lambda m: decision("x", leverage=15),
         r"leverage 15 exceeds the maximum 10 \(max_leverage 10, hard cap 25"),
    case("INVALID_TPSL", "tpsl", (), lambda m: decision("x", take_profit=str(int(m / 2))),
         r"long take_profit \d+ must be above the mark"),
    case("STOP_LOSS_REQUIRED", "stop_loss_required", (("risk", {"require_stop_loss": True}),),
         lambda m: decision("x"), r"a stop_loss is required"),
    case("MARKET_DATA_STALE", "market_data", (("risk", {"market_data_max_age_seconds": "0.000001"}),),
         lambda m: decision("x"), r"market data for BTCUSDT is [\d.]+ s old, market_data_max_age_seconds 0.000001"),
    case("COOLDOWN_ACTIVE", "cooldown", (("risk", {"cooldown_seconds": 30}), ("open", {})),
         lambda m: decision("x", symbol="ETHUSDT"), r"cooldown active: (2\d(\.\d)?|30) s left"),
    case("RATE_LIMITED", "rate", (("risk", {"max_orders_per_minute": 2}), ("open", {}), ("close", "BTCUSDT")),
         lambda m: decision("x"), r"rate limit: 2 orders in the last 60 s, max_orders_per_minute 2"),
    case("ORDER_TOO_LARGE", "order_size", (("risk", {"max_order_notional": "1000"}),),
         lambda m: decision("x", notional="1500"), r"order notional 1500 exceeds max_order_notional 1000"),
    case("BELOW_MIN_NOTIONAL", "min_notional", (("risk", {"min_notional": "100"}),),
         lambda m: decision("x", notional="50"), r"order notional 50 is below min_notional 100"),
    case("POSITION_LIMIT", "position_notional",
         (("risk", {"max_position_notional": "600"}), ("open", {"notional": "400"})),
         lambda m: decision("x", notional="300"), r"BTCUSDT position notional after the order [\d.]+ .* exceeds "
                                                  r"max_position_notional 600"),
    case("EXPOSURE_LIMIT", "total_exposure", (("risk", {"max_total_notional": "1000"}), ("open", {"notional": "500"})),
         lambda m: decision("x", symbol="ETHUSDT", notional="600"), r"total notional after the order [\d.]+ .* "
                                                                    r"exceeds max_total_notional 1000",
         id="EXPOSURE_LIMIT-total-notional"),
    case("EXPOSURE_LIMIT", "open_positions", (("risk", {"max_open_positions": 1}), ("open", {})),
         lambda m: decision("x", symbol="ETHUSDT"), r"1 open positions: a new ETHUSDT position would make 2, "
                                                    r"above max_open_positions 1",
         id="EXPOSURE_LIMIT-open-positions"),
    case("INSUFFICIENT_MARGIN", "margin", (), lambda m: decision("x", notional="60000", leverage=5),
         r"required margin 12021 \(notional 60000 / leverage 5 \+ fee 21\) exceeds available balance 10000"),
    case("PRICE_DEVIATION", "price_deviation", (("risk", {"max_price_deviation_bps": "50"}),),
         lambda m: decision("x", reference_price=str(int(m * Decimal("1.05")))),
         r"reference price \d+ deviates [\d.]+ bps from the mark [\d.]+, max_price_deviation_bps 50"),
    case("DAILY_LOSS_LIMIT", "daily_loss", (("loss", "daily_loss_limit"),), lambda m: decision("x"),
         r"daily loss [\d.]+ \([\d.]+% of day start equity\) reached daily_loss_limit [\d.]+"),
    case("MAX_DRAWDOWN", "drawdown", (("loss", "max_drawdown_pct"),), lambda m: decision("x"),
         r"drawdown [\d.]+% from peak equity 10000 \(equity [\d.]+\) reached max_drawdown_pct [\d.]+%"),
]


def test_the_table_covers_every_rejection_code() -> None:
    from actors.domain.risk import REJECTION_CODES

    assert {p.values[0] for p in CASES} == set(REJECTION_CODES)


@pytest.mark.parametrize(("code", "last_check", "setup", "make", "message"), CASES)
async def test_rejection_code(service: Service, client: httpx.AsyncClient, code: str, last_check: str,
                              setup: Setup, make: Callable[[Decimal], dict[str, Any]], message: str) -> None:
    with trio.fail_after(BOUND):
        await prepare(client, setup)
        body = make(mark(service))
        positions_before = state_of(service)
        response = await submit(client, body)
        stored = await client.get(f"/v1/accounts/{ACCOUNT}/decisions/x")
        audit = await newest_audit(client)
    assert response.status_code == 422, response.text
    result = response.json()
    assert (result["decision_id"], result["status"], result["is_paper"]) == ("x", "rejected", True)
    rejection = result["rejection"]
    assert rejection["code"] == code
    assert re.search(message, rejection["message"]), rejection["message"]
    assert result["error"] == {"code": code, "message": rejection["message"], "field": None}
    assert stored.status_code == 200 and stored.json() == result  # stored like any other decision
    # nothing was traded for it
    assert (result["order"], result["fills"]) == (None, [])
    assert db_rows(service, "SELECT count(*) FROM orders WHERE decision_id = 'x'") == [(0,)]
    assert db_rows(service, "SELECT count(*) FROM fills WHERE decision_id = 'x'") == [(0,)]
    assert state_of(service) == positions_before
    # the audit row: the checks in the gate's fixed order, up to and including the failing one
    assert (audit["decision_id"], audit["accepted"], audit["code"]) == ("x", False, code)
    assert audit["message"] == rejection["message"]
    names = [c["name"] for c in audit["checks"]]
    assert names == list(CHECK_NAMES[:CHECK_NAMES.index(last_check) + 1])
    assert [c["passed"] for c in audit["checks"]] == [True] * (len(names) - 1) + [False]
    assert audit["checks"][-1]["detail"] == rejection["details"]


# ---------------------------------------------------------------------------------- closes


async def test_a_close_passes_the_cooldown_and_every_exposure_limit(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        await put_risk(client, cooldown_seconds=600)
        await filled(client, decision("c-open"))  # the cooldown starts now
        await put_risk(client, max_order_notional="1", max_position_notional="1", max_total_notional="1",
                       max_open_positions=1, min_notional="1", require_stop_loss=True, max_price_deviation_bps="1")
        blocked = await submit(client, decision("c-more", symbol="ETHUSDT", stop_loss="1"))
        closed = await submit(client, close("c-close"))
        audit = await newest_audit(client)
        positions = (await client.get(f"/v1/accounts/{ACCOUNT}/positions")).json()
    assert blocked.status_code == 422 and blocked.json()["rejection"]["code"] == "COOLDOWN_ACTIVE"
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "filled" and closed.json()["position"]["status"] == "closed"
    assert positions["items"] == []
    assert_close_audit(audit, "c-close")


async def test_a_close_passes_the_loss_limits(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        await lose_money(client, at_least=Decimal(1))
        await filled(client, decision("l-open", notional="100"))  # a small position: its PnL cannot undo the loss
        # reducing, not halted: should the watcher act before the close, the close still passes
        await put_risk(client, daily_loss_limit="0.5", max_drawdown_pct="0.005", on_loss_limit="reducing")
        blocked = await submit(client, decision("l-more", symbol="ETHUSDT", notional="100"))
        closed = await submit(client, close("l-close"))
        audit = await newest_audit(client)
    assert blocked.status_code == 422 and blocked.json()["rejection"]["code"] == "DAILY_LOSS_LIMIT"
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "filled" and closed.json()["position"]["status"] == "closed"
    assert_close_audit(audit, "l-close")


def assert_close_audit(audit: dict[str, Any], decision_id: str) -> None:
    assert (audit["decision_id"], audit["accepted"], audit["code"]) == (decision_id, True, None)
    assert [c["name"] for c in audit["checks"]] == list(CHECK_NAMES)
    assert all(c["passed"] for c in audit["checks"])
    skipped = [c["name"] for c in audit["checks"] if "skipped" in c["detail"]]
    assert skipped == list(CLOSE_GUARDS)
