"""A whole paper session on a live venue's market data (the fake exchange over loopback HTTP and
websocket): opens, closes, TP/SL, close-all, staleness; the exchange receives zero write calls."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from actors.service import Service, run_service
from actors.settings import parse_settings
from tests.fake_exchange import FakeExchange, open_fake_exchange

BIDS = [("59999.9", "0.5"), ("59999.0", "1"), ("59995.0", "3")]
ASKS = [("60000.0", "0.5"), ("60001.0", "1"), ("60005.0", "3")]


def settings_text(fake: FakeExchange, db: Path) -> str:
    return f"""
server: {{host: 127.0.0.1, port: 0, request_timeout_seconds: 5}}
database: {{path: {db}}}
venues:
  asterdex: {{rest_url: "{fake.rest_url}", ws_url: "{fake.ws_url}", symbols: [BTCUSDT],
             stale_after_seconds: 1, poll_interval_seconds: 0.2}}
risk: {{cooldown_seconds: 0, market_data_max_age_seconds: 2}}
accounts:
  - {{id: live-paper, mode: paper, venue: asterdex, balance: "10000"}}
"""


async def wait_for(predicate: Any) -> None:
    while not predicate():
        await trio.sleep(0.02)


@pytest.mark.slow
async def test_paper_session_on_venue_data_never_writes_to_the_exchange(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="aster") as fake:
        fake.set_book("BTCUSDT", BIDS, ASKS)
        fake.set_mark("BTCUSDT", "60000")
        ticker = fake.start_ticker(0.05)
        settings = parse_settings(settings_text(fake, tmp_path / "live.sqlite3"), env={})
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                service: Service = await nursery.start(run_service, settings)
                market = service.markets["asterdex"]
                assert market.instrument("BTCUSDT") is not None  # from the venue's exchangeInfo
                async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
                    # 1) an open walks the venue's book: 0.5 at 60000, then 0.3 at 60001
                    opened = (await client.post("/v1/accounts/live-paper/decisions", json={
                        "decision_id": "lv-1", "symbol": "BTCUSDT", "action": "open", "side": "long",
                        "quantity": "0.8", "leverage": 5, "stop_loss": "59000", "take_profit": "62000"})).json()
                    assert opened["status"] == "filled", opened
                    assert opened["is_paper"] is True
                    assert [(f["price"], f["quantity"]) for f in opened["fills"]] == [("60000", "0.5"), ("60001", "0.3")]
                    # 2) a partial close
                    part = (await client.post("/v1/accounts/live-paper/decisions", json={
                        "decision_id": "lv-2", "symbol": "BTCUSDT", "action": "close", "quantity": "0.3"})).json()
                    assert part["status"] == "filled" and part["position"]["quantity"] == "0.5"
                    # 3) the venue's mark falls through the stop: the paper stop-loss fires on venue data
                    fake.set_book("BTCUSDT", [("58900.0", "5")], [("58901.0", "5")])
                    fake.set_mark("BTCUSDT", "58950")
                    await wait_for(lambda: "BTCUSDT" not in service.supervisor.slot("live-paper").actor.state.positions)
                    fills = (await client.get("/v1/accounts/live-paper/trades")).json()["items"]
                    assert fills[0]["trigger_price"] == "59000" and fills[0]["price"] == "58900"
                    # 4) open again, then the emergency close-all
                    fake.set_book("BTCUSDT", BIDS, ASKS)
                    fake.set_mark("BTCUSDT", "60000")
                    await wait_for(lambda: market.quote("BTCUSDT").mark_price == Decimal("60000"))
                    again = (await client.post("/v1/accounts/live-paper/decisions", json={
                        "decision_id": "lv-3", "symbol": "BTCUSDT", "action": "open", "side": "short",
                        "notional": "600", "leverage": 3})).json()
                    assert again["status"] == "filled", again
                    done = (await client.post("/v1/accounts/live-paper/close-all")).json()
                    assert [c["symbol"] for c in done["closed_positions"]] == ["BTCUSDT"]
                    # 5) the feed goes silent and REST is banned: data turns stale, decisions refused
                    ticker.cancel()
                    fake.silence_websockets(True)
                    fake.ban(30)
                    await trio.sleep(2.5)  # older than market_data_max_age_seconds
                    stale = await client.post("/v1/accounts/live-paper/decisions", json={
                        "decision_id": "lv-4", "symbol": "BTCUSDT", "action": "open", "side": "long",
                        "notional": "600", "leverage": 2})
                    assert stale.status_code == 422
                    assert stale.json()["rejection"]["code"] == "MARKET_DATA_STALE"
                    health = (await client.get("/health")).json()
                    feed = next(f for f in health["feeds"] if f["venue"] == "asterdex")
                    assert feed["state"] in ("polling", "stale")
                    assert feed["last_message_age_seconds"] >= 2
                service.request_stop()
        # the whole session made no write call, and nothing signed, on the exchange
        assert fake.write_calls() == []
        assert all(r.method == "GET" for r in fake.requests if not r.websocket)
        assert not any("signature" in r.query for r in fake.requests)
