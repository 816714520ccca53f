"""Symbols on demand: a paper account on a live venue whose settings list no ``symbols:`` trades
any symbol the venue lists (the fake exchange over loopback HTTP and websocket).

The first decision on a listed symbol subscribes to it and waits, bounded by the account's
``market_data_max_age_seconds``, for its first book and mark; an unlisted symbol is refused at
once (``UNKNOWN_SYMBOL``); ``/ready`` does not wait for data on zero symbols; a symbol subscribed
only for a decision is released once unused, one held by a position stays subscribed.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from actors.market_data import ON_DEMAND_HOLDER
from actors.service import Service, run_service
from actors.settings import parse_settings
from tests.fake_exchange import FakeExchange, open_fake_exchange

pytestmark = pytest.mark.slow

LINGER = 0.5


def settings_text(fake: FakeExchange, db: Path) -> str:
    return f"""
server: {{host: 127.0.0.1, port: 0, request_timeout_seconds: 10}}
database: {{path: {db}}}
venues:
  asterdex: {{rest_url: "{fake.rest_url}", ws_url: "{fake.ws_url}", stale_after_seconds: 2,
             poll_interval_seconds: 0.2, symbol_linger_seconds: {LINGER}}}
risk: {{cooldown_seconds: 0, market_data_max_age_seconds: 5}}
accounts:
  - {{id: paper-aster, mode: paper, venue: asterdex, balance: "10000"}}
"""


def subscribed(fake: FakeExchange, symbol: str) -> bool:
    prefix = symbol.lower() + "@"
    return any(s.startswith(prefix) for session in fake.sessions.values() for s in session.streams)


async def decide(client: httpx.AsyncClient, decision_id: str, symbol: str, **fields: object) -> httpx.Response:
    body = {"decision_id": decision_id, "symbol": symbol, "action": "open", "side": "long", "leverage": 2, **fields}
    return await client.post("/v1/accounts/paper-aster/decisions", json=body)


async def test_listed_symbols_are_subscribed_on_demand_and_released_when_unused(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="aster") as fake:
        fake.set_book("BTCUSDT", [("59999.9", "2")], [("60000.0", "2")])
        fake.set_mark("BTCUSDT", "60000")
        fake.set_book("ETHUSDT", [("2999.99", "20")], [("3000.00", "20")])
        fake.set_mark("ETHUSDT", "3000")
        fake.start_ticker(0.1)
        settings = parse_settings(settings_text(fake, tmp_path / "db.sqlite3"), env={})
        with trio.fail_after(45):
            async with trio.open_nursery() as nursery:
                service: Service = await nursery.start(run_service, settings)
                market = service.markets["asterdex"]
                async with httpx.AsyncClient(base_url=service.url, timeout=15) as client:
                    ready = await client.get("/ready")  # nothing watched: nothing to wait for
                    assert ready.status_code == 200, ready.text
                    assert not subscribed(fake, "BTCUSDT")

                    opened = await decide(client, "od-1", "BTCUSDT", quantity="0.01")
                    assert opened.status_code == 200, opened.text
                    assert opened.json()["status"] == "filled"
                    while not subscribed(fake, "BTCUSDT"):  # the first data came by REST; the stream follows
                        await trio.sleep(0.05)

                    started = trio.current_time()
                    unknown = await decide(client, "od-2", "DOGEUSDT", quantity="1")
                    assert unknown.status_code == 422
                    assert unknown.json()["rejection"]["code"] == "UNKNOWN_SYMBOL"
                    assert trio.current_time() - started < 2  # at once, no wait for data

                    tiny = await decide(client, "od-3", "ETHUSDT", notional="1")
                    assert tiny.status_code == 422
                    assert tiny.json()["rejection"]["code"] == "VENUE_REJECTED"  # the data came; the filters refused
                    assert market.watched("ETHUSDT")

                    # unused for longer than the linger time: ETHUSDT is released; BTCUSDT stays,
                    # held by the open position
                    while market.watched("ETHUSDT") or ON_DEMAND_HOLDER in market._holders.get("BTCUSDT", ()):
                        await trio.sleep(0.05)
                    while subscribed(fake, "ETHUSDT"):
                        await trio.sleep(0.05)
                    assert market.watched("BTCUSDT") and subscribed(fake, "BTCUSDT")
                    assert (await client.get("/ready")).status_code == 200

                    # after its release, a decision on it subscribes again
                    again = await decide(client, "od-4", "ETHUSDT", quantity="0.01")
                    assert again.status_code == 200, again.text
                    while not subscribed(fake, "ETHUSDT"):
                        await trio.sleep(0.05)
                service.request_stop()


async def test_a_listed_symbol_without_data_is_stale_after_the_bounded_wait(tmp_path: Path) -> None:
    """The venue lists the symbol but never delivers data: the decision waits at most
    ``market_data_max_age_seconds``, then the gate answers ``MARKET_DATA_STALE``."""
    async with open_fake_exchange(flavour="aster") as fake:
        text = settings_text(fake, tmp_path / "db.sqlite3").replace("market_data_max_age_seconds: 5",
                                                                    "market_data_max_age_seconds: 1")
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                service: Service = await nursery.start(run_service, parse_settings(text, env={}))
                fake.silence_websockets(True)
                fake.ban(60)  # no REST snapshot either
                async with httpx.AsyncClient(base_url=service.url, timeout=15) as client:
                    started = trio.current_time()
                    stale = await decide(client, "st-1", "BTCUSDT", quantity="0.01")
                    waited = trio.current_time() - started
                    assert stale.status_code == 422
                    assert stale.json()["rejection"]["code"] == "MARKET_DATA_STALE"
                    assert 0.9 <= waited < 5
                service.request_stop()
