"""Every endpoint of the front door over a real loopback socket (DESIGN.md §8).

Each test runs the whole service (real SQLite file, real clock, the offline ``sim`` venue) and
talks to it with httpx. Every wait is bounded by ``trio.fail_after``; nothing sleeps.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
import trio

from actors.http.app import create_app
from actors.http.decisions import parse_decision
from actors.messages import DecisionConflict
from actors.service import Service
from tests.conftest import db_rows, decision

pytestmark = pytest.mark.slow

BOUND = 20  # seconds: the ceiling of any single test's traffic


# ---------------------------------------------------------------------------------- helpers


def D(value: Any) -> Decimal:
    assert isinstance(value, str), f"money must be a JSON string, got {value!r}"
    return Decimal(value)


async def rows(service: Service, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    return await trio.to_thread.run_sync(db_rows, service, sql, params)


def mark(service: Service, symbol: str = "BTCUSDT") -> Decimal:
    quote = service.markets["sim"].quote(symbol)
    assert quote is not None
    return quote.mark_price


async def submit(client: httpx.AsyncClient, account: str = "paper-1", **body: Any) -> httpx.Response:
    return await client.post(f"/v1/accounts/{account}/decisions", json=body)


async def open_position(client: httpx.AsyncClient, decision_id: str, account: str = "paper-1",
                        **fields: Any) -> dict[str, Any]:
    response = await submit(client, account, **decision(decision_id, **fields))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "filled", result
    return result


async def close_position(client: httpx.AsyncClient, decision_id: str, symbol: str = "BTCUSDT",
                         account: str = "paper-1") -> dict[str, Any]:
    response = await submit(client, account, decision_id=decision_id, symbol=symbol, action="close")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "filled", result
    return result


async def inspect(client: httpx.AsyncClient, account: str = "paper-1") -> dict[str, Any]:
    response = await client.get(f"/v1/accounts/{account}")
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "field"}
    assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert error["field"] == field
    return error


async def walk(client: httpx.AsyncClient, path: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await client.get(path, params=params)).json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


# ---------------------------------------------------------------------------------- decisions


async def test_open_long_by_notional_with_take_profit_and_stop_loss(service: Service,
                                                                    client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        m = mark(service)
        tp, sl = str(int(m * Decimal("1.2"))), str(int(m * Decimal("0.8")))
        response = await submit(client, **decision("long-1", notional="500", leverage=5, take_profit=tp, stop_loss=sl))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "filled"
    assert result["is_paper"] is True
    assert result["rejection"] is None
    order = result["order"]
    assert (order["side"], order["type"], order["status"], order["purpose"]) == ("BUY", "MARKET", "FILLED", "entry")
    fills = result["fills"]
    assert fills
    for fill in fills:
        assert D(fill["price"]) > 0 and D(fill["quantity"]) > 0 and D(fill["fee"]) > 0
    filled = sum((D(f["quantity"]) for f in fills), Decimal(0))
    notional = sum((D(f["quantity"]) * D(f["price"]) for f in fills), Decimal(0))
    assert filled == D(order["filled_quantity"])
    # sized at the mark and rounded down to the step; the fill then pays the spread
    assert Decimal(0) < notional <= Decimal(500) * Decimal("1.01")
    assert sum((D(f["fee"]) for f in fills), Decimal(0)) == D(order["fee"])
    position = result["position"]
    assert (position["side"], position["status"], position["leverage"]) == ("long", "open", 5)
    assert D(position["quantity"]) == filled
    assert (D(position["take_profit"]), D(position["stop_loss"])) == (Decimal(tp), Decimal(sl))
    protective = {o["purpose"]: o for o in result["protective_orders"]}
    assert set(protective) == {"take_profit", "stop_loss"}
    assert protective["take_profit"]["type"] == "TAKE_PROFIT_MARKET"
    assert protective["stop_loss"]["type"] == "STOP_MARKET"
    for purpose, price in (("take_profit", tp), ("stop_loss", sl)):
        o = protective[purpose]
        assert (o["side"], o["status"], o["reduce_only"]) == ("SELL", "NEW", True)
        assert D(o["trigger_price"]) == Decimal(price)
    assert D(result["balance"]) == Decimal(10000) - D(order["fee"])


async def test_open_short_by_quantity(service: Service, client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        m = mark(service)
        tp, sl = str(int(m * Decimal("0.8"))), str(int(m * Decimal("1.2")))
        response = await submit(client, **decision("short-1", side="short", notional=None, quantity="0.01",
                                                   leverage=3, take_profit=tp, stop_loss=sl))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "filled"
    assert result["order"]["side"] == "SELL"
    assert D(result["order"]["filled_quantity"]) == Decimal("0.01")
    assert sum((D(f["quantity"]) for f in result["fills"]), Decimal(0)) == Decimal("0.01")
    position = result["position"]
    assert (position["side"], D(position["quantity"]), position["leverage"]) == ("short", Decimal("0.01"), 3)
    sides = {o["purpose"]: o["side"] for o in result["protective_orders"]}
    assert sides == {"take_profit": "BUY", "stop_loss": "BUY"}


async def test_open_without_protection_has_no_protective_orders(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        result = await open_position(client, "plain-1")
    assert result["protective_orders"] == []
    assert result["position"]["take_profit"] is None and result["position"]["stop_loss"] is None


async def test_get_decision_returns_the_stored_result(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        posted = await open_position(client, "get-1")
        got = await client.get("/v1/accounts/paper-1/decisions/get-1")
        unknown = await client.get("/v1/accounts/paper-1/decisions/never-sent")
        other_account = await client.get("/v1/accounts/paper-2/decisions/get-1")
        no_account = await client.get("/v1/accounts/nobody/decisions/get-1")
    assert got.status_code == 200
    assert got.json() == posted
    assert_error(unknown, 404, "UNKNOWN_DECISION")
    assert_error(other_account, 404, "UNKNOWN_DECISION")  # decision ids are per account
    assert_error(no_account, 404, "UNKNOWN_ACCOUNT")


# ---------------------------------------------------------------------------------- idempotency


async def test_same_id_and_body_returns_the_stored_result_and_trades_once(service: Service,
                                                                         client: httpx.AsyncClient) -> None:
    body = decision("idem-1", notional="400", leverage=2)
    reordered = json.dumps(dict(reversed(list(body.items())))).encode()  # same body, other key order
    with trio.fail_after(BOUND):
        first = await submit(client, **body)
        second = await submit(client, **body)
        third = await client.post("/v1/accounts/paper-1/decisions", content=reordered,
                                  headers={"content-type": "application/json"})
        inspection = await inspect(client)
        orders = await rows(service, "SELECT id FROM orders WHERE account_id = ? AND decision_id = ?",
                            ("paper-1", "idem-1"))
        fills = await rows(service, "SELECT id FROM fills WHERE account_id = ? AND decision_id = ?",
                           ("paper-1", "idem-1"))
        decisions = await rows(service, "SELECT status FROM decisions WHERE decision_id = ?", ("idem-1",))
    assert first.status_code == second.status_code == third.status_code == 200
    assert first.json() == second.json() == third.json()
    assert len(orders) == 1
    assert len(fills) == len(first.json()["fills"]) >= 1
    assert decisions == [("filled",)]
    [position] = inspection["positions"]
    assert position["quantity"] == first.json()["position"]["quantity"]  # not doubled


async def test_same_id_with_another_body_is_a_conflict(service: Service, client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        original = await open_position(client, "idem-2", notional="300")
        conflict = await submit(client, **decision("idem-2", notional="301"))
        stored = await client.get("/v1/accounts/paper-1/decisions/idem-2")
        orders = await rows(service, "SELECT id FROM orders WHERE decision_id = ?", ("idem-2",))
    assert_error(conflict, 409, "IDEMPOTENCY_CONFLICT", field="decision_id")
    assert stored.json() == original
    assert len(orders) == 1


async def test_a_resent_body_gets_its_stored_result_while_another_body_under_its_id_waits(
        service: Service, client: httpx.AsyncClient) -> None:
    """A stored decision's id sent again with another body, and, while that one waits in the
    inbox, with its own body: the other body is the conflict (409), the own body gets the stored
    result. Only the account, which knows what is stored, tells them apart."""
    with trio.fail_after(BOUND):
        original = await open_position(client, "idem-6", notional="300")
        other = service.supervisor.submit("paper-1", parse_decision(json.dumps(decision("idem-6", notional="301")).encode()))
        same = service.supervisor.submit("paper-1", parse_decision(json.dumps(decision("idem-6", notional="300")).encode()))
        with pytest.raises(DecisionConflict):
            await other.wait()
        assert json.loads(await same.wait()) == original
        orders = await rows(service, "SELECT id FROM orders WHERE decision_id = ?", ("idem-6",))
    assert len(orders) == 1


async def test_a_rejected_decision_retried_gets_the_same_rejection(service: Service,
                                                                  client: httpx.AsyncClient) -> None:
    body = decision("idem-3")
    with trio.fail_after(BOUND):
        halt = await client.put("/v1/accounts/paper-1/trading-state", json={"state": "halted"})
        assert halt.status_code == 200
        first = await submit(client, **body)
        resume = await client.put("/v1/accounts/paper-1/trading-state", json={"state": "active"})
        assert resume.status_code == 200
        retry = await submit(client, **body)  # conditions changed: it still must not trade
        got = await client.get("/v1/accounts/paper-1/decisions/idem-3")
        traded = await rows(service, "SELECT count(*) FROM orders WHERE account_id = 'paper-1'")
        filled = await rows(service, "SELECT count(*) FROM fills WHERE account_id = 'paper-1'")
        inspection = await inspect(client)
    assert_error(first, 422, "TRADING_HALTED")
    assert first.json()["status"] == "rejected"
    assert first.json()["rejection"]["code"] == "TRADING_HALTED"
    assert retry.status_code == 422
    assert retry.json() == first.json()
    assert got.status_code == 200
    assert got.json() == first.json()
    assert traded == [(0,)] and filled == [(0,)]
    assert inspection["positions"] == []


# ---------------------------------------------------------------------------------- accounts


async def test_list_accounts(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        response = await client.get("/v1/accounts")
    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    by_id = {item["id"]: item for item in body["items"]}
    assert set(by_id) == {"paper-1", "paper-2"}
    assert by_id["paper-1"]["mode"] == "paper" and by_id["paper-1"]["venue"] == "sim"
    assert D(by_id["paper-1"]["balance"]) == Decimal(10000)


async def test_create_account_then_trade_on_it(service: Service, client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        created = await client.post("/v1/accounts", json={"id": "desk-7", "balance": "2500"})
        assert created.status_code == 201, created.text
        assert created.headers["Location"] == "/v1/accounts/desk-7"
        listed = (await client.get("/v1/accounts")).json()
        result = await open_position(client, "desk-7-1", account="desk-7", notional="100")
        inspection = await inspect(client, "desk-7")
        duplicate = await client.post("/v1/accounts", json={"id": "desk-7"})
        duplicate_configured = await client.post("/v1/accounts", json={"id": "paper-1"})
        bad_id = await client.post("/v1/accounts", json={"id": "bad id"})
        bad_slash = await client.post("/v1/accounts", json={"id": "a/b"})
        bad_newline = await client.post("/v1/accounts", json={"id": "desk-8\n"})
        bad_long = await client.post("/v1/accounts", json={"id": "a" * 65})
        bad_leverage = await client.post("/v1/accounts", json={"id": "desk-9", "risk": {"max_leverage": 26}})
        listed_after = (await client.get("/v1/accounts")).json()
        stored = await rows(service, "SELECT id, mode, venue FROM accounts WHERE id = 'desk-7'")
    assert created.json()["id"] == "desk-7"
    assert D(created.json()["balance"]) == Decimal(2500)
    assert "desk-7" in {item["id"] for item in listed["items"]}
    assert result["account_id"] == "desk-7"
    assert D(inspection["balance"]) == Decimal(2500) - D(result["order"]["fee"])
    assert len(inspection["positions"]) == 1
    assert_error(duplicate, 409, "ACCOUNT_EXISTS", field="id")
    assert_error(duplicate_configured, 409, "ACCOUNT_EXISTS", field="id")
    assert_error(bad_id, 400, "INVALID_FIELD", field="id")
    assert_error(bad_slash, 400, "INVALID_FIELD", field="id")
    assert_error(bad_newline, 400, "INVALID_FIELD", field="id")
    assert_error(bad_long, 400, "INVALID_FIELD", field="id")
    assert_error(bad_leverage, 400, "INVALID_LIMIT", field="risk.max_leverage")
    assert {item["id"] for item in listed_after["items"]} == {"paper-1", "paper-2", "desk-7"}
    assert stored == [("desk-7", "paper", "sim")]


async def test_inspection_shows_actor_trading_money_and_risk(service: Service, client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        limits = await client.put("/v1/accounts/paper-1/risk", json={"cooldown_seconds": 30})
        assert limits.status_code == 200
        tp = str(int(mark(service) * Decimal("1.5")))
        opened = await open_position(client, "insp-1", take_profit=tp)
        body = await inspect(client)
        cooled = await submit(client, **decision("insp-2"))
    actor = body["actor"]
    assert actor["state"] == "running"
    assert actor["restarts"] == 0
    assert actor["inbox_depth"] == 0
    assert actor["last_error"] is None
    assert body["trading_state"] == "active" and body["effective_trading_state"] == "active"
    assert 0 < body["cooldown_seconds_left"] <= 30
    fee = D(opened["order"]["fee"])
    assert D(body["balance"]) == Decimal(10000) - fee
    assert D(body["fees"]) == fee
    assert D(body["realized_pnl"]) == 0
    assert D(body["equity"]) == D(body["balance"]) + D(body["unrealized_pnl"])
    [position] = body["positions"]
    assert position["id"] == opened["position"]["id"]
    assert D(position["quantity"]) == D(opened["position"]["quantity"])
    assert D(position["unrealized_pnl"]) == D(body["unrealized_pnl"])
    [order] = body["open_orders"]
    assert order["purpose"] == "take_profit" and D(order["trigger_price"]) == Decimal(tp)
    assert body["risk_limits"]["cooldown_seconds"] == 30
    assert body["risk_limits"]["max_leverage"] == 25
    usage = body["risk_usage"]
    assert usage["open_positions"] == 1
    assert usage["orders_last_minute"] == 1
    assert D(usage["total_notional"]) == D(position["notional"])
    # the cooldown the inspection shows is the one the gate applies
    assert_error(cooled, 422, "COOLDOWN_ACTIVE")


async def test_inspection_of_unknown_account_is_404(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        response = await client.get("/v1/accounts/nobody")
    assert_error(response, 404, "UNKNOWN_ACCOUNT")


# ---------------------------------------------------------------------------------- history


async def test_positions_open_and_closed(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        await open_position(client, "pos-1", symbol="BTCUSDT")
        await open_position(client, "pos-2", symbol="ETHUSDT", side="short")
        closed_result = await close_position(client, "pos-3", "BTCUSDT")
        open_ = (await client.get("/v1/accounts/paper-1/positions", params={"status": "open"})).json()
        closed = (await client.get("/v1/accounts/paper-1/positions", params={"status": "closed"})).json()
        default = (await client.get("/v1/accounts/paper-1/positions")).json()
        bad = await client.get("/v1/accounts/paper-1/positions", params={"status": "sideways"})
    assert [(p["symbol"], p["side"], p["status"]) for p in open_["items"]] == [("ETHUSDT", "short", "open")]
    assert [p["id"] for p in default["items"]] == [p["id"] for p in open_["items"]]  # default: open
    [btc] = closed["items"]
    assert (btc["symbol"], btc["status"], btc["close_reason"]) == ("BTCUSDT", "closed", "decision")
    assert D(btc["exit_price"]) == D(closed_result["order"]["avg_price"])
    assert D(btc["quantity"]) == 0
    assert_error(bad, 400, "INVALID_FIELD", field="status")


async def test_orders_newest_first(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        await open_position(client, "ord-1", take_profit="999999", stop_loss="1")
        await close_position(client, "ord-2")
        page = (await client.get("/v1/accounts/paper-1/orders")).json()
    orders = {o["id"]: o for o in page["items"]}
    assert page["items"][0]["id"] == "ord-2.exit"
    assert orders["ord-1.entry"]["status"] == "FILLED"
    assert orders["ord-2.exit"]["status"] == "FILLED" and orders["ord-2.exit"]["reduce_only"] is True
    protective = [o for o in page["items"] if o["purpose"] in ("take_profit", "stop_loss")]
    assert len(protective) == 2 and all(o["status"] == "CANCELED" for o in protective)
    assert page["next_cursor"] is None


async def test_trades_keyset_pagination_is_stable_under_inserts(client: httpx.AsyncClient) -> None:
    limit = 2
    with trio.fail_after(BOUND):
        for n, symbol in enumerate(["BTCUSDT", "ETHUSDT", "SOLUSDT"]):
            await open_position(client, f"tr-open-{n}", symbol=symbol, notional="200")
            await close_position(client, f"tr-close-{n}", symbol)
        await open_position(client, "tr-open-last", notional="200")
        snapshot = (await client.get("/v1/accounts/paper-1/trades", params={"limit": 500})).json()
        expected = [t["id"] for t in snapshot["items"]]
        assert len(expected) > 3 * limit  # several pages
        assert snapshot["next_cursor"] is None

        walked: list[dict[str, Any]] = []
        cursor: str | None = None
        pages = 0
        inserted = 0
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor is not None:
                params["cursor"] = cursor
            page = (await client.get("/v1/accounts/paper-1/trades", params=params)).json()
            pages += 1
            assert len(page["items"]) <= limit
            walked += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert isinstance(cursor, str)
            # a new trade lands between two page fetches
            if inserted % 2 == 0:
                await close_position(client, f"tr-new-{inserted}")
            else:
                await open_position(client, f"tr-new-{inserted}", notional="200")
            inserted += 1
        fresh = (await client.get("/v1/accounts/paper-1/trades", params={"limit": 500})).json()
        bad_cursor = await client.get("/v1/accounts/paper-1/trades", params={"cursor": "not-a-cursor!"})
        bad_limit = await client.get("/v1/accounts/paper-1/trades", params={"limit": 0})
    ids = [t["id"] for t in walked]
    assert ids == expected  # no duplicate, no gap, same order, unaffected by the inserts
    assert len(set(ids)) == len(ids)
    assert pages == -(-len(expected) // limit)
    assert inserted >= 2
    stamps = [t["ts"] for t in walked]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    for trade in walked:
        assert D(trade["price"]) > 0 and D(trade["quantity"]) > 0 and D(trade["fee"]) > 0
        D(trade["realized_pnl"])
    newer = [t["id"] for t in fresh["items"]]
    assert newer[len(newer) - len(expected):] == expected  # new trades went on top only
    assert len(newer) > len(expected)
    assert_error(bad_cursor, 400, "INVALID_CURSOR", field="cursor")
    assert_error(bad_limit, 400, "INVALID_FIELD", field="limit")


async def test_audit_lists_risk_evaluations(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        await open_position(client, "aud-1")
        rejected = await submit(client, **decision("aud-2", symbol="NOPEUSDT"))
        page = (await client.get("/v1/accounts/paper-1/audit", params={"limit": 1})).json()
        everything = await walk(client, "/v1/accounts/paper-1/audit", 1)
    assert rejected.status_code == 422
    assert len(page["items"]) == 1 and page["next_cursor"] is not None
    assert [(a["decision_id"], a["accepted"], a["code"]) for a in everything] == [
        ("aud-2", False, "UNKNOWN_SYMBOL"), ("aud-1", True, None)]
    accepted_checks = {c["name"]: c["passed"] for c in everything[1]["checks"]}
    assert {"trading_state", "symbol", "leverage", "market_data", "margin"} <= set(accepted_checks)
    assert all(accepted_checks.values())
    assert any(c["name"] == "symbol" and c["passed"] is False for c in everything[0]["checks"])


async def test_performance_of_closed_round_trips(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        await open_position(client, "perf-1")
        closed = await close_position(client, "perf-2")
        response = await client.get("/v1/accounts/paper-1/performance")
    assert response.status_code == 200, response.text
    perf = response.json()
    assert perf["account_id"] == "paper-1"
    assert perf["trades"] == 1
    assert perf["wins"] + perf["losses"] + perf["breakeven"] == 1
    position = closed["position"]
    assert D(perf["net_pnl"]) == D(position["net_pnl"])
    assert D(perf["realized_pnl"]) == D(position["realized_pnl"])
    assert D(perf["total_fees"]) == D(position["fees"])


# ---------------------------------------------------------------------------------- risk limits


async def test_put_risk_valid_limits_show_in_inspection_and_apply(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        response = await client.put("/v1/accounts/paper-1/risk",
                                    json={"max_order_notional": "1000", "max_open_positions": 2, "max_leverage": 20})
        body = await inspect(client)
        too_large = await submit(client, **decision("risk-1", notional="1500"))
        too_levered = await submit(client, **decision("risk-2", leverage=21))
        fine = await submit(client, **decision("risk-3", notional="900"))
    assert response.status_code == 200, response.text
    assert response.json()["risk_limits"]["max_order_notional"] == "1000"
    limits = body["risk_limits"]
    assert (limits["max_order_notional"], limits["max_open_positions"], limits["max_leverage"]) == ("1000", 2, 20)
    assert_error(too_large, 422, "ORDER_TOO_LARGE")
    assert_error(too_levered, 422, "LEVERAGE_ABOVE_MAX")
    assert fine.status_code == 200


@pytest.mark.parametrize(("account", "limits", "field"), [
    ("paper-1", {"max_leverage": 26}, "max_leverage"),
    ("paper-2", {"max_leverage": 30}, "max_leverage"),
    ("paper-1", {"max_leverage": 0}, "max_leverage"),
    ("paper-1", {"max_open_positions": "many"}, "max_open_positions"),
    ("paper-1", {"daily_loss_limit_pct": 150}, "daily_loss_limit_pct"),
    ("paper-1", {"max_order_notional": "NaN"}, "max_order_notional"),
    ("paper-1", {"on_loss_limit": "panic"}, "on_loss_limit"),
    ("paper-1", {"max_leverag": 5}, "max_leverag"),
])
async def test_put_risk_invalid_value_is_refused_naming_the_field(client: httpx.AsyncClient, account: str,
                                                                   limits: dict[str, Any], field: str) -> None:
    with trio.fail_after(BOUND):
        before = (await inspect(client, account))["risk_limits"]
        response = await client.put(f"/v1/accounts/{account}/risk", json=limits)
        after = (await inspect(client, account))["risk_limits"]
    error = assert_error(response, 422, "INVALID_LIMIT", field=field)
    assert error["message"]
    assert after == before


async def test_put_risk_malformed_body_is_400(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        broken = await client.put("/v1/accounts/paper-1/risk", content=b"{max_leverage: 5",
                                  headers={"content-type": "application/json"})
        not_object = await client.put("/v1/accounts/paper-1/risk", json=[1, 2])
        unknown = await client.put("/v1/accounts/nobody/risk", json={"max_leverage": 5})
    assert_error(broken, 400, "MALFORMED_JSON")
    assert not_object.status_code == 400
    assert_error(unknown, 404, "UNKNOWN_ACCOUNT")


# ---------------------------------------------------------------------------------- kill switches


async def test_account_halted_refuses_every_decision(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        await open_position(client, "halt-0")
        response = await client.put("/v1/accounts/paper-1/trading-state", json={"state": "halted", "reason": "desk"})
        open_refused = await submit(client, **decision("halt-1"))
        close_refused = await submit(client, decision_id="halt-2", symbol="BTCUSDT", action="close")
        other_account = await submit(client, "paper-2", **decision("halt-3"))
        body = await inspect(client)
        bad_state = await client.put("/v1/accounts/paper-1/trading-state", json={"state": "paused"})
        no_account = await client.put("/v1/accounts/nobody/trading-state", json={"state": "halted"})
    assert response.status_code == 200, response.text
    assert (response.json()["trading_state"], response.json()["reason"]) == ("halted", "desk")
    assert_error(open_refused, 422, "TRADING_HALTED")
    assert_error(close_refused, 422, "TRADING_HALTED")
    assert other_account.status_code == 200  # one account's halt does not touch another
    assert (body["trading_state"], body["effective_trading_state"]) == ("halted", "halted")
    assert body["state_reason"] == "desk"
    assert len(body["positions"]) == 1
    assert_error(bad_state, 400, "INVALID_FIELD", field="state")
    assert_error(no_account, 404, "UNKNOWN_ACCOUNT")


async def test_reducing_refuses_opens_but_lets_a_close_pass(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        await open_position(client, "red-0")
        response = await client.put("/v1/accounts/paper-1/trading-state", json={"state": "reducing"})
        refused = await submit(client, **decision("red-1"))
        closed = await submit(client, decision_id="red-2", symbol="BTCUSDT", action="close")
        body = await inspect(client)
    assert response.status_code == 200
    assert_error(refused, 422, "REDUCE_ONLY_MODE")
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "filled"
    assert body["positions"] == []


async def test_global_trading_state(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        await open_position(client, "glob-0")
        halted = await client.put("/v1/trading-state", json={"state": "halted", "reason": "exchange incident"})
        refused_1 = await submit(client, "paper-1", **decision("glob-1"))
        refused_2 = await submit(client, "paper-2", **decision("glob-2"))
        body = await inspect(client, "paper-2")
        closing = await client.post("/v1/accounts/paper-1/close-all")  # close-all still runs when halted
        reducing = await client.put("/v1/trading-state", json={"state": "reducing"})
        refused_3 = await submit(client, "paper-2", **decision("glob-3"))
        resumed = await client.put("/v1/trading-state", json={"state": "active"})
        passes = await submit(client, "paper-2", **decision("glob-4"))
        bad = await client.put("/v1/trading-state", json={"state": "off"})
    assert halted.status_code == 200 and halted.json()["trading_state"] == "halted"
    assert_error(refused_1, 422, "TRADING_HALTED")
    assert_error(refused_2, 422, "TRADING_HALTED")
    assert (body["trading_state"], body["global_trading_state"], body["effective_trading_state"]) == (
        "active", "halted", "halted")
    assert closing.status_code == 200
    assert [p["symbol"] for p in closing.json()["closed_positions"]] == ["BTCUSDT"]
    assert reducing.status_code == 200
    assert_error(refused_3, 422, "REDUCE_ONLY_MODE")
    assert resumed.status_code == 200 and resumed.json()["previous"] == "reducing"
    assert passes.status_code == 200
    assert_error(bad, 400, "INVALID_FIELD", field="state")


async def test_close_all_of_one_account(service: Service, client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        m = mark(service)
        btc = await open_position(client, "ca-1", take_profit=str(int(m * 2)), stop_loss=str(int(m / 2)))
        eth = await open_position(client, "ca-2", symbol="ETHUSDT", side="short")
        other = await open_position(client, "ca-3", account="paper-2")
        response = await client.post("/v1/accounts/paper-1/close-all")
        body = await inspect(client)
        still_open = (await client.get("/v1/accounts/paper-1/positions", params={"status": "open"})).json()
        closed = (await client.get("/v1/accounts/paper-1/positions", params={"status": "closed"})).json()
        untouched = await inspect(client, "paper-2")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["account_id"] == "paper-1"
    assert sorted(result["cancelled_orders"]) == sorted(o["id"] for o in btc["protective_orders"])
    assert {p["position_id"] for p in result["closed_positions"]} == {btc["position"]["id"], eth["position"]["id"]}
    assert all(D(p["remaining"]) == 0 for p in result["closed_positions"])
    assert result["failed"] == []
    assert body["positions"] == [] and body["open_orders"] == []
    assert D(body["margin"]) == 0
    assert still_open["items"] == []
    assert {p["close_reason"] for p in closed["items"]} == {"close_all"}
    assert [p["id"] for p in untouched["positions"]] == [other["position"]["id"]]


async def test_close_all_of_every_account(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        await open_position(client, "gca-1", take_profit="999999")
        await open_position(client, "gca-2", account="paper-2", symbol="SOLUSDT", side="short")
        response = await client.post("/v1/close-all")
        one = await inspect(client, "paper-1")
        two = await inspect(client, "paper-2")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["errors"] == []
    by_account = {item["account_id"]: item for item in result["items"]}
    assert set(by_account) == {"paper-1", "paper-2"}
    assert len(by_account["paper-1"]["cancelled_orders"]) == 1
    assert [p["symbol"] for p in by_account["paper-1"]["closed_positions"]] == ["BTCUSDT"]
    assert [p["symbol"] for p in by_account["paper-2"]["closed_positions"]] == ["SOLUSDT"]
    assert one["positions"] == [] and two["positions"] == [] and one["open_orders"] == []


# ---------------------------------------------------------------------------------- orders and protection


async def test_delete_order_cancels_a_take_profit(service: Service, client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        m = mark(service)
        opened = await open_position(client, "del-1", take_profit=str(int(m * 2)), stop_loss=str(int(m / 2)))
        tp_id = next(o["id"] for o in opened["protective_orders"] if o["purpose"] == "take_profit")
        response = await client.delete(f"/v1/accounts/paper-1/orders/{tp_id}")
        body = await inspect(client)
        orders = {o["id"]: o for o in (await client.get("/v1/accounts/paper-1/orders")).json()["items"]}
    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["status"]) == (tp_id, "CANCELED")
    assert [o["purpose"] for o in body["open_orders"]] == ["stop_loss"]
    [position] = body["positions"]
    assert position["take_profit"] is None and position["stop_loss"] is not None
    assert orders[tp_id]["status"] == "CANCELED"


async def test_put_protection_sets_and_moves_take_profit_and_stop_loss(service: Service,
                                                                       client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        opened = await open_position(client, "prot-1")
        m = mark(service)
        tp1, sl1 = str(int(m * Decimal("1.3"))), str(int(m * Decimal("0.7")))
        tp2, sl2 = str(int(m * Decimal("1.4"))), str(int(m * Decimal("0.6")))
        first = await client.put("/v1/accounts/paper-1/positions/BTCUSDT/protection",
                                 json={"take_profit": tp1, "stop_loss": sl1})
        after_first = await inspect(client)
        moved = await client.put("/v1/accounts/paper-1/positions/btcusdt/protection", json={"take_profit": tp2})
        moved_sl = await client.put("/v1/accounts/paper-1/positions/BTCUSDT/protection", json={"stop_loss": sl2})
        after_move = await inspect(client)
        empty = await client.put("/v1/accounts/paper-1/positions/BTCUSDT/protection", json={})
        not_a_number = await client.put("/v1/accounts/paper-1/positions/BTCUSDT/protection",
                                        json={"take_profit": "NaN"})
    assert opened["protective_orders"] == []
    assert first.status_code == 200, first.text
    assert (D(first.json()["take_profit"]), D(first.json()["stop_loss"])) == (Decimal(tp1), Decimal(sl1))
    triggers = {o["purpose"]: D(o["trigger_price"]) for o in after_first["open_orders"]}
    assert triggers == {"take_profit": Decimal(tp1), "stop_loss": Decimal(sl1)}
    assert moved.status_code == 200 and moved_sl.status_code == 200
    assert (D(moved_sl.json()["take_profit"]), D(moved_sl.json()["stop_loss"])) == (Decimal(tp2), Decimal(sl2))
    triggers = {o["purpose"]: D(o["trigger_price"]) for o in after_move["open_orders"]}
    assert triggers == {"take_profit": Decimal(tp2), "stop_loss": Decimal(sl2)}  # moved, not duplicated
    assert len(after_move["open_orders"]) == 2
    assert_error(empty, 400, "MISSING_FIELD")
    assert_error(not_a_number, 400, "INVALID_FIELD", field="take_profit")


@pytest.mark.parametrize(("side", "protection"), [
    ("long", {"take_profit": "below"}),
    ("long", {"stop_loss": "above"}),
    ("short", {"take_profit": "above"}),
    ("short", {"stop_loss": "below"}),
])
async def test_put_protection_on_the_wrong_side_is_invalid_tpsl(service: Service, client: httpx.AsyncClient,
                                                                side: str, protection: dict[str, str]) -> None:
    with trio.fail_after(BOUND):
        m = mark(service)
        valid = ({"take_profit": str(int(m * 2)), "stop_loss": str(int(m / 2))} if side == "long"
                 else {"take_profit": str(int(m / 2)), "stop_loss": str(int(m * 2))})
        await open_position(client, "prot-bad", side=side, **valid)
        before = await inspect(client)
        body = {k: str(int(m * (Decimal("0.8") if v == "below" else Decimal("1.2")))) for k, v in protection.items()}
        with trio.fail_after(5):  # a refusal is an answer, not a hang
            response = await client.put("/v1/accounts/paper-1/positions/BTCUSDT/protection", json=body)
        after = await inspect(client)
    error = assert_error(response, 422, "INVALID_TPSL")
    assert next(iter(protection)) in error["message"]
    assert after["actor"]["restarts"] == 0 and after["actor"]["last_error"] is None
    assert after["open_orders"] == before["open_orders"]  # the protection in place is unchanged
    assert after["positions"][0]["take_profit"] == valid["take_profit"]


async def test_put_protection_without_a_position_is_no_position(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        response = await client.put("/v1/accounts/paper-1/positions/ETHUSDT/protection", json={"stop_loss": "1"})
        after = await inspect(client)
    assert_error(response, 422, "NO_POSITION")
    assert after["actor"]["restarts"] == 0


async def test_delete_unknown_order_is_404(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        with trio.fail_after(5):
            response = await client.delete("/v1/accounts/paper-1/orders/no-such-order")
        after = await inspect(client)
    assert_error(response, 404, "UNKNOWN_ORDER")
    assert after["actor"]["restarts"] == 0


# ---------------------------------------------------------------------------------- money


async def test_money_invariant_after_open_and_close(service: Service, client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        await open_position(client, "money-1", notional="800", leverage=4)
        await close_position(client, "money-2")
        await open_position(client, "money-3", symbol="ETHUSDT", side="short", notional="600")
        last = await close_position(client, "money-4", "ETHUSDT")
        trades = await walk(client, "/v1/accounts/paper-1/trades", 500)
        body = await inspect(client)
        [(db_balance, db_fees, db_realized)] = await rows(
            service, "SELECT balance, fees, realized_pnl FROM accounts WHERE id = 'paper-1'")
    fees = sum((D(t["fee"]) for t in trades), Decimal(0))
    realized = sum((D(t["realized_pnl"]) for t in trades), Decimal(0))
    assert len(trades) >= 4
    assert D(body["funding"]) == 0
    expected = Decimal(10000) - fees + realized
    assert D(body["balance"]) == expected
    assert Decimal(str(db_balance)) == expected
    assert D(last["balance"]) == expected
    assert D(body["fees"]) == fees and Decimal(str(db_fees)) == fees
    assert D(body["realized_pnl"]) == realized and Decimal(str(db_realized)) == realized
    assert D(body["equity"]) == expected  # flat: no unrealized PnL
    assert D(body["net_pnl"]) == expected - Decimal(10000)


# ---------------------------------------------------------------------------------- operations


async def test_health(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "ok"
    [feed] = body["feeds"]
    assert feed["venue"] == "sim"
    assert feed["state"] == "connected"
    assert body["accounts"]["running"] == 2


async def test_ready(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json()["ready"] is True


async def test_metrics(client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        await open_position(client, "met-1")
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = [line for line in response.text.splitlines() if line]
    samples = [line for line in lines if not line.startswith("#")]
    assert samples and all(line.startswith("execd_") for line in samples)
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in samples}
    assert values["execd_persistence_round_batches_count"] >= 1
    assert 'execd_actor_restarts_total{account="paper-1"}' in values


async def test_openapi_documents_every_route(service: Service, client: httpx.AsyncClient,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXECD_TEST_FAULTS", raising=False)  # test-only hooks are not part of the contract
    with trio.fail_after(BOUND):
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = json.loads(response.content)
    assert spec["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    app = create_app(service)
    served: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<path:", "<").replace("<", "{").replace(">", "}")
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                served.add((path, method))
    assert len(served) >= 20
    assert served - documented == set(), "routes without an OpenAPI entry"
    assert documented - served == set(), "OpenAPI entries without a route"
