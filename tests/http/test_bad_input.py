"""Bad input to ``POST /v1/accounts/{id}/decisions`` (DESIGN.md §8).

Each case gets the right status and an error body ``{"error": {"code", "message", "field"}}``
naming the problem, and changes no state: no order, fill, position or decision row, the balance
unchanged. A request refused as malformed (400) stores nothing but its audit line.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
import trio

from actors.service import Service
from tests.conftest import db_rows, decision

pytestmark = pytest.mark.slow

BOUND = 15
ACCOUNT = "paper-1"
PATH = f"/v1/accounts/{ACCOUNT}/decisions"
TABLES = ("orders", "fills", "positions", "decisions", "audit")


def body(**changes: Any) -> bytes:
    """A valid decision with some fields changed (``None`` removes a field)."""
    fields = decision("bad-1")
    fields.update(changes)
    return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()


async def rows(service: Service, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    return await trio.to_thread.run_sync(db_rows, service, sql, params)


async def snapshot(service: Service, client: httpx.AsyncClient) -> dict[str, Any]:
    counts = {table: (await rows(service, f"SELECT count(*) FROM {table}"))[0][0] for table in TABLES}
    inspection = (await client.get(f"/v1/accounts/{ACCOUNT}")).json()
    [(db_balance,)] = await rows(service, "SELECT balance FROM accounts WHERE id = ?", (ACCOUNT,))
    return {"counts": counts, "balance": Decimal(inspection["balance"]), "db_balance": Decimal(str(db_balance)),
            "positions": inspection["positions"], "open_orders": inspection["open_orders"]}


async def post(client: httpx.AsyncClient, content: bytes, path: str = PATH) -> httpx.Response:
    return await client.post(path, content=content, headers={"content-type": "application/json"})


def error_of(response: httpx.Response) -> dict[str, Any]:
    payload = response.json()
    assert set(payload["error"]) == {"code", "message", "field"}, payload
    assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]
    return payload["error"]


BAD_AMOUNTS = [0, "-1", "NaN", "Infinity", "1e999", "1e-999", "abc"]
CASES_400 = [
    # malformed JSON
    pytest.param(b'{"decision_id": "bad-1", "symbol": ', "MALFORMED_JSON", None, id="truncated-json"),
    pytest.param(b"{decision_id: bad-1}", "MALFORMED_JSON", None, id="not-json"),
    pytest.param(b"", "MALFORMED_JSON", None, id="empty-body"),
    pytest.param(b"[1, 2]", "INVALID_FIELD", None, id="array-body"),
    # a missing field is named
    pytest.param(body(decision_id=None), "MISSING_FIELD", "decision_id", id="missing-decision_id"),
    pytest.param(body(symbol=None), "MISSING_FIELD", "symbol", id="missing-symbol"),
    pytest.param(body(action=None), "MISSING_FIELD", "action", id="missing-action"),
    pytest.param(body(side=None), "INVALID_DECISION", "side", id="open-without-side"),
    # a mistyped field is named by its path
    pytest.param(body(leverage="x"), "INVALID_FIELD", "leverage", id="leverage-string"),
    pytest.param(body(leverage=2.5), "INVALID_FIELD", "leverage", id="leverage-float"),
    pytest.param(body(side=3), "INVALID_FIELD", "side", id="side-number"),
    pytest.param(body(side="up"), "INVALID_FIELD", "side", id="side-unknown"),
    pytest.param(body(action="buy"), "INVALID_FIELD", "action", id="action-unknown"),
    pytest.param(body(symbol=5), "INVALID_FIELD", "symbol", id="symbol-number"),
    pytest.param(body(symbol="BTC/USDT"), "INVALID_DECISION", "symbol", id="symbol-not-a-name"),
    pytest.param(body(decision_id=7), "INVALID_FIELD", "decision_id", id="decision_id-number"),
    pytest.param(body(meta="v3"), "INVALID_FIELD", "meta", id="meta-string"),
    pytest.param(body(notional=True), "INVALID_FIELD", "notional", id="notional-boolean"),
    pytest.param(body(order_type="stop"), "INVALID_FIELD", "order_type", id="order_type-unknown"),
    # amounts: zero, negative, not finite, out of range, not numbers
    *[pytest.param(body(quantity=v, notional=None), "INVALID_DECISION", "quantity", id=f"quantity={v}")
      for v in BAD_AMOUNTS],
    *[pytest.param(body(notional=v), "INVALID_DECISION", "notional", id=f"notional={v}") for v in BAD_AMOUNTS],
    *[pytest.param(body(take_profit=v), "INVALID_DECISION", "take_profit", id=f"take_profit={v}")
      for v in BAD_AMOUNTS],
    pytest.param(body(stop_loss="NaN"), "INVALID_DECISION", "stop_loss", id="stop_loss=NaN"),
    pytest.param(body().replace(b'"500"', b"1e999"), "INVALID_FIELD", "notional", id="notional-number-1e999"),
    # open takes exactly one of quantity or notional
    pytest.param(body(quantity="0.01"), "INVALID_DECISION", "quantity", id="quantity-and-notional"),
    pytest.param(body(notional=None), "INVALID_DECISION", "quantity", id="neither-quantity-nor-notional"),
    # close takes no side, notional or protection
    pytest.param(body(action="close", notional=None, leverage=None), "INVALID_DECISION", "side", id="close-with-side"),
    pytest.param(body(action="close", side=None), "INVALID_DECISION", "notional", id="close-with-notional"),
    pytest.param(body(action="close", side=None, notional=None, take_profit="90000"), "INVALID_DECISION",
                 "take_profit", id="close-with-take_profit"),
    # leverage 1..25
    pytest.param(body(leverage=0), "INVALID_DECISION", "leverage", id="leverage-0"),
    pytest.param(body(leverage=26), "INVALID_DECISION", "leverage", id="leverage-26"),
    pytest.param(body(leverage=-5), "INVALID_DECISION", "leverage", id="leverage-negative"),
    # decision_id: 1-64 of letters, digits and . _ : -
    *[pytest.param(body(decision_id=v), "INVALID_DECISION", "decision_id", id=f"decision_id-{name}")
      for name, v in [("empty", ""), ("65-chars", "a" * 65), ("space", "d 1"), ("slash", "d/1"),
                      ("dot-dot-slash", "../d1"), ("unicode", "dé-1"), ("emoji", "d-\U0001F680"),
                      ("inner-newline", "d\n1"), ("leading-dash", "-d1"), ("question-mark", "d1?x")]],
    pytest.param(body(decision_id="d1\n"), "INVALID_DECISION", "decision_id", id="decision_id-trailing-newline"),
    # unknown top-level field
    pytest.param(body(extra=1), "UNKNOWN_FIELD", "extra", id="unknown-field"),
    pytest.param(body(Symbol="ETHUSDT"), "UNKNOWN_FIELD", "Symbol", id="unknown-field-case"),
]


@pytest.mark.parametrize(("content", "code", "field"), CASES_400)
async def test_malformed_decision_is_400_and_stores_only_its_audit_line(
        service: Service, client: httpx.AsyncClient, content: bytes, code: str, field: str | None) -> None:
    with trio.fail_after(BOUND):
        before = await snapshot(service, client)
        response = await post(client, content)
        after = await snapshot(service, client)
        audit = await rows(service, "SELECT account_id, accepted, code FROM audit ORDER BY seq DESC LIMIT 1")
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == code
    assert error["field"] == field
    if field is not None:
        assert field in error["message"]
    assert "status" not in response.json()  # no decision result: nothing was decided
    expected = dict(before["counts"], audit=before["counts"]["audit"] + 1)
    assert after["counts"] == expected
    assert (after["balance"], after["db_balance"]) == (before["balance"], before["db_balance"])
    assert after["positions"] == before["positions"] == []
    [(account_id, accepted, audit_code)] = audit
    assert (account_id, accepted, audit_code) == (ACCOUNT, 0, code)


async def test_a_refused_decision_id_is_not_burned(service: Service, client: httpx.AsyncClient) -> None:
    """Nothing but the audit line is stored: the id can still be used by a valid decision."""
    with trio.fail_after(BOUND):
        refused = await post(client, json.dumps(decision("reuse-1", leverage=26)).encode())
        accepted = await post(client, json.dumps(decision("reuse-1")).encode())
        audit = await rows(service, "SELECT accepted, code FROM audit WHERE decision_id = 'reuse-1' ORDER BY seq")
    assert refused.status_code == 400
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "filled"
    assert audit == [(0, "INVALID_DECISION"), (1, None)]


async def test_a_64_character_decision_id_is_accepted(client: httpx.AsyncClient) -> None:
    decision_id = "A1._:-" + "x" * 58
    assert len(decision_id) == 64
    with trio.fail_after(BOUND):
        response = await post(client, json.dumps(decision(decision_id)).encode())
        stored = await client.get(f"/v1/accounts/{ACCOUNT}/decisions/{decision_id}")
    assert response.status_code == 200, response.text
    assert stored.json()["decision_id"] == decision_id


async def test_body_over_64_kib_is_413(service: Service, client: httpx.AsyncClient) -> None:
    content = json.dumps(decision("big-1", meta={"pad": "x" * (64 * 1024)})).encode()
    assert len(content) > 64 * 1024
    with trio.fail_after(BOUND):
        before = await snapshot(service, client)
        response = await post(client, content)
        after = await snapshot(service, client)
    assert response.status_code == 413, response.text
    error = error_of(response)
    assert error["code"] == "BODY_TOO_LARGE"
    assert "65536" in error["message"]
    assert after == before  # refused before it was read: not even an audit line


async def test_unknown_account_is_404(service: Service, client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        before = await snapshot(service, client)
        response = await post(client, body(), path="/v1/accounts/no-such-account/decisions")
        after = await snapshot(service, client)
        stored = await rows(service, "SELECT count(*) FROM accounts WHERE id = 'no-such-account'")
    assert response.status_code == 404, response.text
    error = error_of(response)
    assert error["code"] == "UNKNOWN_ACCOUNT"
    assert "no-such-account" in error["message"]
    assert after == before
    assert stored == [(0,)]


async def test_unknown_symbol_is_422_and_stored_as_a_rejection(service: Service, client: httpx.AsyncClient) -> None:
    with trio.fail_after(BOUND):
        before = await snapshot(service, client)
        response = await post(client, json.dumps(decision("sym-1", symbol="DOGEBTC")).encode())
        after = await snapshot(service, client)
        stored = await client.get(f"/v1/accounts/{ACCOUNT}/decisions/sym-1")
        decisions = await rows(service, "SELECT status FROM decisions WHERE decision_id = 'sym-1'")
        retry = await post(client, json.dumps(decision("sym-1", symbol="DOGEBTC")).encode())
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["status"] == "rejected"
    assert payload["rejection"]["code"] == "UNKNOWN_SYMBOL"
    assert error_of(response)["code"] == "UNKNOWN_SYMBOL"
    assert "DOGEBTC" in payload["rejection"]["message"]
    assert payload["order"] is None and payload["fills"] == [] and payload["position"] is None
    assert stored.status_code == 200
    assert stored.json() == payload
    assert decisions == [("rejected",)]
    counts = before["counts"]
    assert after["counts"] == dict(counts, decisions=counts["decisions"] + 1, audit=counts["audit"] + 1)
    assert (after["balance"], after["db_balance"]) == (before["balance"], before["db_balance"])
    assert retry.status_code == 422 and retry.json() == payload
