"""Rate limits on live accounts: a 429 and its Retry-After, a 418 ban, and the local shares that
stop new entries before closes and cancels, over loopback against the fake exchange."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.fake_exchange import FakeExchange, open_fake_exchange
from tests.live.support import BOUND, decision, hmac_account, live_service, market, open_position, wait_until

pytestmark = pytest.mark.slow

ORDER = "/fapi/v1/order"


def close(decision_id: str) -> dict[str, str]:
    return {"decision_id": decision_id, "symbol": "BTCUSDT", "action": "close"}


async def test_a_429_refuses_an_entry_as_rate_limited_and_a_close_waits_out_retry_after(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "rl-1", prefix="RL1")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                await open_position(client, "rl-1", "o-1")
                fake.fault_next("429", path=ORDER, retry_after=1)
                refused = await client.post("/v1/accounts/rl-1/decisions", json=decision("o-2"))
                assert refused.status_code == 422, refused.text
                rejection = refused.json()["rejection"]
                assert rejection["code"] == "RATE_LIMITED" and rejection["details"]["venue_code"] == "-1003"
                assert fake.position("rl-1", "BTCUSDT").amount == Decimal("0.1")

                fake.fault_next("429", path=ORDER, retry_after=1)
                closed = await client.post("/v1/accounts/rl-1/decisions", json=close("c-1"))
                assert closed.status_code == 200, closed.text
                assert closed.json()["status"] == "filled"
                attempts = fake.order_requests(closed.json()["order"]["client_order_id"])
                assert [r.status for r in attempts] == [429, 200]
                assert attempts[1].at - attempts[0].at >= 0.95  # Retry-After honoured
                assert fake.position("rl-1", "BTCUSDT").amount == 0


async def test_a_418_stops_every_request_to_the_venue_until_the_ban_ends(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "rl-2", prefix="RL2") + "\n" + hmac_account(fake, "rl-3", prefix="RL3")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                await open_position(client, "rl-3", "o-0")  # its symbol is set up: the next entry is one request
                fake.fault_next("418", path=ORDER, retry_after=2)
                banned = await client.post("/v1/accounts/rl-2/decisions", json=decision("o-1"))
                assert banned.status_code == 422 and banned.json()["rejection"]["code"] == "RATE_LIMITED"
                signed_before = signed_requests(fake)
                during = await client.post("/v1/accounts/rl-3/decisions", json=decision("o-2"))
                assert during.status_code == 422 and during.json()["rejection"]["code"] == "RATE_LIMITED"
                assert "banned" in during.json()["rejection"]["message"]
                assert signed_requests(fake) == signed_before  # the other account sent nothing either
                limiter = service.supervisor.limiters["binance-usdm"]
                assert limiter.statistics(service.clock.now()).banned_seconds > 0
                await wait_until(lambda: limiter.statistics(service.clock.now()).banned_seconds == 0, step=0.1)
                await open_position(client, "rl-3", "o-3")


async def test_local_shares_refuse_new_entries_first_and_let_closes_through(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        accounts = hmac_account(fake, "rl-4", prefix="RL4")
        shares = ", rate_limits: {entry_share: 0.5, entry_max_wait_seconds: 0}"
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts, venue_extra=shares) as (service, client):
                await open_position(client, "rl-4", "o-1")
                await away_from_the_minute_boundary(fake)
                fake.set_used_weight(1500)  # of 2400: above the entries' share, below the closes'
                await open_position(client, "rl-4", "o-2")  # its answer tells the limiter the venue's count
                refused = await client.post("/v1/accounts/rl-4/decisions", json=decision("o-3"))
                assert refused.status_code == 422, refused.text
                body = refused.json()
                assert body["rejection"]["code"] == "RATE_LIMITED"
                assert fake.order_requests(body["order"]["client_order_id"]) == []  # never sent
                closed = await client.post("/v1/accounts/rl-4/decisions", json=close("c-1"))
                assert closed.status_code == 200 and closed.json()["status"] == "filled", closed.text
                assert fake.position("rl-4", "BTCUSDT").amount == 0


def signed_requests(fake: FakeExchange) -> int:
    return sum(1 for r in fake.requests if r.api_key)


async def away_from_the_minute_boundary(fake: FakeExchange) -> None:
    """The venue counts weight per clock minute: start a test that relies on it with 10 s to spare."""
    minute = int(fake.clock() // 60)
    if fake.clock() % 60 > 50:
        await wait_until(lambda: int(fake.clock() // 60) != minute, step=0.1)



async def test_the_accounts_share_the_request_weight_the_venue_states(tmp_path: Path) -> None:
    """The budget the live accounts of a venue share is the REQUEST_WEIGHT per minute the venue's
    exchangeInfo states, not the profile's default (2400)."""
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        fake.weight_limit = 6000
        accounts = hmac_account(fake, "rl-w", prefix="RLW")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, _client):
                limiter = service.supervisor.limiters["binance-usdm"]
                assert limiter.statistics(trio.current_time()).weight_limit == 6000
