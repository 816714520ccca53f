"""Roles over a real socket: every route against every kind of caller (DESIGN.md §8).

The service runs with three tokens configured by their SHA-256 (an admin, a trader scoped to
``paper-1``, a viewer). Each caller -- no token, an unknown token, each role -- calls every route
(for account routes: on ``paper-1``, in the trader's scope, and on ``paper-2``, outside it) and the
answer must be ``401`` without a valid token, ``403`` outside the role or the scope, and anything
but those otherwise. The expectations are written here from the design, independently of the
service's own table; a route the app serves but this table misses fails the test.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from actors.service import Service, run_service
from tests.conftest import TEST_SETTINGS, make_settings

pytestmark = pytest.mark.slow

TOKENS = {"admin": "admin-token-1", "trader": "trader-token-1", "viewer": "viewer-token-1"}
ALL, READ, TRADE, ADMIN = "public", {"admin", "trader", "viewer"}, {"admin", "trader"}, {"admin"}


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


AUTH_SETTINGS = TEST_SETTINGS + f"""
auth:
  tokens:
    - {{sha256: "{sha(TOKENS['admin'])}", role: admin}}
    - {{sha256: "{sha(TOKENS['trader'])}", role: trader, accounts: [paper-1]}}
    - {{sha256: "{sha(TOKENS['viewer'])}", role: viewer}}
"""

DECISION = {"decision_id": "roles-1", "symbol": "BTCUSDT", "action": "open", "side": "long", "notional": "100",
            "leverage": 2}
# (method, path, who may call it, body); {a} is the account
ROUTES: list[tuple[str, str, Any, Any]] = [
    ("GET", "/health", ALL, None),
    ("GET", "/ready", ALL, None),
    ("GET", "/openapi.json", ALL, None),
    ("GET", "/", ALL, None),
    ("GET", "/dashboard/app.js", ALL, None),
    ("GET", "/v1/events", ALL, None),  # without an upgrade: 426 for anyone (the websocket is below)
    ("GET", "/v1/decisions/stream", ALL, None),  # the same (its websocket: tests/http/test_decision_stream.py)
    ("GET", "/metrics", READ, None),
    ("GET", "/v1/whoami", READ, None),
    ("GET", "/v1/accounts", READ, None),
    ("POST", "/v1/accounts", ADMIN, {"id": "created-by-admin"}),
    ("PUT", "/v1/trading-state", ADMIN, {"state": "active"}),
    ("POST", "/v1/close-all", ADMIN, None),
    ("POST", "/v1/accounts/{a}/decisions", TRADE, DECISION),
    ("GET", "/v1/accounts/{a}/decisions/roles-1", READ, None),
    ("GET", "/v1/accounts/{a}", READ, None),
    ("GET", "/v1/accounts/{a}/positions", READ, None),
    ("GET", "/v1/accounts/{a}/orders", READ, None),
    ("GET", "/v1/accounts/{a}/trades", READ, None),
    ("GET", "/v1/accounts/{a}/audit", READ, None),
    ("GET", "/v1/accounts/{a}/performance", READ, None),
    ("GET", "/v1/accounts/{a}/twin", READ, None),  # 404 on a paper account, after the role check
    ("PUT", "/v1/accounts/{a}/positions/BTCUSDT/protection", TRADE, {"stop_loss": "1"}),
    ("DELETE", "/v1/accounts/{a}/orders/no-such-order", TRADE, None),
    ("POST", "/v1/accounts/{a}/restart", ADMIN, None),
    ("PUT", "/v1/accounts/{a}/risk", ADMIN, {"cooldown_seconds": 0}),
    ("PUT", "/v1/accounts/{a}/trading-state", ADMIN, {"state": "active"}),
    ("POST", "/v1/accounts/{a}/close-all", ADMIN, None),
]
CALLERS = ["none", "unknown", "admin", "trader", "viewer"]


def headers_of(caller: str) -> dict[str, str]:
    if caller == "none":
        return {}
    token = TOKENS.get(caller, "not-a-configured-token")
    return {"Authorization": f"Bearer {token}"}


def expected(caller: str, allowed: Any, account: str | None) -> str:
    """``ok`` (anything but 401/403), ``401`` or ``403``."""
    if allowed == ALL:
        return "ok"
    if caller in ("none", "unknown"):
        return "401"
    if caller not in allowed:
        return "403"
    if caller == "trader" and account not in (None, "paper-1"):
        return "403"
    return "ok"


def outcome(status: int) -> str:
    return str(status) if status in (401, 403) else "ok"


async def open_auth_service(tmp_path: Path, nursery: trio.Nursery) -> Service:
    return await nursery.start(run_service, make_settings(tmp_path, AUTH_SETTINGS))


@pytest.mark.parametrize("caller", CALLERS)
async def test_every_route_answers_each_caller_by_role_and_scope(caller: str, tmp_path: Path) -> None:
    mismatches: list[str] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            service = await open_auth_service(tmp_path, nursery)
            async with httpx.AsyncClient(base_url=service.url, timeout=15, headers=headers_of(caller)) as client:
                for method, path, allowed, body in ROUTES:
                    accounts = ["paper-1", "paper-2"] if "{a}" in path else [None]
                    for account in accounts:
                        url = path.format(a=account)
                        response = await client.request(method, url, json=body)
                        want, got = expected(caller, allowed, account), outcome(response.status_code)
                        if want != got:
                            mismatches.append(f"{caller}: {method} {url} -> {response.status_code} "
                                              f"(expected {want}): {response.text[:200]}")
                        if got == "401":
                            assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")
                        if got in ("401", "403"):
                            assert set(response.json()["error"]) == {"code", "message", "field"}
                if caller == "trader":  # the list shows its accounts only
                    listed = (await client.get("/v1/accounts")).json()["items"]
                    assert [a["id"] for a in listed] == ["paper-1"]
            service.request_stop()
    assert not mismatches, "\n".join(mismatches)


async def test_the_table_covers_every_route_the_app_serves(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        service = await open_auth_service(tmp_path, nursery)
        from actors.http.app import create_app

        served = {(method, rule.rule) for rule in create_app(service).url_map.iter_rules()
                  for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
        service.request_stop()
    tested = {(method, _as_rule(path)) for method, path, _, _ in ROUTES}
    assert served - tested == set(), "routes without an expectation in ROUTES"


def _as_rule(path: str) -> str:
    path = path.replace("{a}", "<account_id>").replace("/decisions/roles-1", "/decisions/<decision_id>")
    path = path.replace("/positions/BTCUSDT/", "/positions/<symbol>/").replace("/orders/no-such-order", "/orders/<order_id>")
    return path.replace("/dashboard/app.js", "/dashboard/<path:filename>")


@pytest.mark.parametrize("caller", CALLERS)
async def test_the_event_stream_websocket_by_role_and_scope(caller: str, tmp_path: Path) -> None:
    """401 without a valid token (header or browser subprotocol); every role may read the
    stream; a trader sees only the events of its accounts."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            service = await open_auth_service(tmp_path, nursery)
            url = service.url.replace("http://", "ws://") + "/v1/events"
            if caller in ("none", "unknown"):
                with pytest.raises(ConnectionRejected) as rejected:
                    async with open_websocket_url(url, extra_headers=list(headers_of(caller).items())):
                        pass
                assert rejected.value.status_code == 401
            else:
                token = base64.urlsafe_b64encode(TOKENS[caller].encode()).decode().rstrip("=")
                async with open_websocket_url(url, subprotocols=["execd", f"bearer.{token}"]) as ws:
                    assert ws.subprotocol == "execd"
                    async with httpx.AsyncClient(base_url=service.url, headers=headers_of("admin")) as admin:
                        for account in ("paper-2", "paper-1"):
                            await admin.put(f"/v1/accounts/{account}/trading-state", json={"state": "halted"})
                    seen: set[str] = set()
                    while True:  # the backlog (account.created...), then the two state changes
                        event = json.loads(await ws.get_message())
                        seen.add(event["account_id"])
                        if event["type"] == "account.state_changed" and event["account_id"] == "paper-1":
                            break
                    assert seen == ({"paper-1"} if caller == "trader" else {"paper-1", "paper-2"})
            service.request_stop()


async def test_without_tokens_the_service_refuses_a_non_loopback_host(tmp_path: Path) -> None:
    from actors.settings import SettingsError

    with pytest.raises(SettingsError, match="not a loopback address and no API token"):
        make_settings(tmp_path, TEST_SETTINGS.replace("host: 127.0.0.1", "host: 0.0.0.0"))
    settings = make_settings(tmp_path, TEST_SETTINGS.replace("host: 127.0.0.1", "host: 0.0.0.0"),
                             EXECD_API_TOKEN="an-admin-token")
    assert [t.role for t in settings.auth.tokens] == ["admin"]


def test_execd_token_makes_a_token_and_the_entry_that_grants_it(capsys: pytest.CaptureFixture[str],
                                                                tmp_path: Path) -> None:
    from actors.cli import main as cli_main
    from actors.http.auth import Authenticator

    assert cli_main(["token", "--role", "trader", "--accounts", "paper-1", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    settings = make_settings(tmp_path, TEST_SETTINGS + f"auth:\n  tokens:\n    - {made['settings_entry']}\n")
    principal = Authenticator(settings).principal(made["token"])
    assert principal is not None and principal.role == "trader" and principal.accounts == {"paper-1"}
    assert Authenticator(settings).principal(made["token"] + "x") is None
