"""Live accounts against the fake exchange over real loopback HTTP and websockets.

:func:`live_service` runs the whole service (real SQLite file, real HTTP socket) with live
accounts whose venue URLs point at a fake exchange, and their keys in environment variables the
fake knows. Timings are shrunk (request timeout, receive-window margin, stream reconnects) so
that ambiguous outcomes settle in a second or two.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from actors.service import Service, run_service
from actors.settings import parse_settings
from tests.fake_exchange import FakeExchange

BIDS = [("59999.9", "2"), ("59999.0", "3"), ("59990.0", "10")]
ASKS = [("60000.0", "0.05"), ("60000.5", "0.1"), ("60001.0", "10")]
VENUES = {"binance": "binance-usdm", "aster": "asterdex"}
BOUND = 30  # seconds: the ceiling of one test's traffic


def live_settings(fake: FakeExchange, db: Path, accounts: str, *, venue_extra: str = "") -> str:
    venue = VENUES[fake.flavour]
    return f"""
server: {{host: 127.0.0.1, port: 0, request_timeout_seconds: 10}}
database: {{path: {db}}}
venues:
  {venue}: {{rest_url: "{fake.rest_url}", ws_url: "{fake.ws_url}", symbols: [BTCUSDT],
            stale_after_seconds: 2, poll_interval_seconds: 0.2, request_timeout_seconds: 1.5,
            settle_margin_seconds: 0.3, user_stream_reconnect_seconds: 0.05{venue_extra}}}
risk: {{cooldown_seconds: 0, market_data_max_age_seconds: 5}}
supervisor: {{restart_backoff_initial_seconds: 0.05, restart_backoff_max_seconds: 0.5}}
accounts:
{accounts}
"""


def hmac_account(fake: FakeExchange, account_id: str, *, prefix: str, extra: str = "") -> str:
    """A live account with HMAC keys the fake knows, in environment variables ``{prefix}_KEY`` /
    ``{prefix}_SECRET``; returns its settings line."""
    account = fake.add_account(account_id, wallet="10000")
    os.environ[f"{prefix}_KEY"] = account.api_key
    os.environ[f"{prefix}_SECRET"] = account.api_secret
    venue = VENUES[fake.flavour]
    return (f"  - {{id: {account_id}, mode: live, venue: {venue}, "
            f"credentials: {{api_key_env: {prefix}_KEY, api_secret_env: {prefix}_SECRET}}{extra}}}")


def market(fake: FakeExchange, mark: str = "60000") -> None:
    fake.set_book("BTCUSDT", BIDS, ASKS)
    fake.set_mark("BTCUSDT", mark)


@asynccontextmanager
async def live_service(tmp_path: Path, fake: FakeExchange, accounts: str, *, settled: bool = True, **kw: Any
                       ) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    """``settled``: wait until every account is past ``starting`` (a live account has reconciled
    with the venue, or failed)."""
    settings = parse_settings(live_settings(fake, tmp_path / "live.sqlite3", accounts, **kw), env={})
    async with trio.open_nursery() as nursery:
        service: Service = await nursery.start(run_service, settings)
        if settled:
            await wait_until(lambda: all(s.status != "starting" for s in service.supervisor.slots.values()))
        try:
            async with httpx.AsyncClient(base_url=service.url, timeout=20) as client:
                yield service, client
        finally:
            service.request_stop()
            with trio.fail_after(15):
                await service.stopped.wait()


async def wait_until(predicate: Any, *, step: float = 0.02) -> None:
    """Poll a condition of the service or the fake (bounded by the caller's fail_after)."""
    while not predicate():
        await trio.sleep(step)


def decision(decision_id: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"decision_id": decision_id, "symbol": "BTCUSDT", "action": "open", "side": "long",
                            "quantity": "0.1", "leverage": 5}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def working_protection(fake: FakeExchange, account: str) -> dict[str, tuple[str, str]]:
    """The account's working trigger orders on the venue, by client id: (type, trigger price).
    Binance keeps them in the Algo Order book, AsterDEX among the ordinary orders."""
    if fake.flavour == "binance":
        return {a.client_algo_id: (a.order_type, f"{a.trigger_price.normalize():f}")
                for a in fake.algo_orders(account) if a.status == "NEW"}
    return {o.client_id: (o.orig_type, f"{o.stop_price.normalize():f}")
            for o in fake.open_orders(account) if o.orig_type in ("STOP_MARKET", "TAKE_PROFIT_MARKET")}


async def open_position(client: httpx.AsyncClient, account: str, decision_id: str, **fields: Any) -> dict[str, Any]:
    response = await client.post(f"/v1/accounts/{account}/decisions", json=decision(decision_id, **fields))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["status"] == "filled", result
    return result
