"""No secret, signing key or full API key leaves the process's memory: not in a log line (at
DEBUG, tracebacks included), an HTTP answer, an event or the database file. A whole live
session is scanned: fills, protection, an ambiguous answer, a refusal, moved TP/SL, close-all."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import pytest
import trio
from eth_account import Account as EthAccount

from tests.fake_exchange import FakeExchange, open_fake_exchange
from tests.live.support import BOUND, decision, hmac_account, live_service, market, wait_until

pytestmark = pytest.mark.slow


def wallet_account(fake: FakeExchange, account_id: str) -> tuple[str, list[str]]:
    signer = EthAccount.create()
    user = EthAccount.create().address
    fake.add_account(account_id, user=user, signer=signer.address, wallet="10000")
    os.environ["LSEC_SIGNER_KEY"] = signer.key.hex()
    line = (f"  - {{id: {account_id}, mode: live, venue: asterdex, credentials: {{user: \"{user}\", "
            f"signer: \"{signer.address}\", signer_key_env: LSEC_SIGNER_KEY}}}}")
    key = signer.key.hex().removeprefix("0x")
    return line, [key, "0x" + key]


@pytest.mark.parametrize("flavour", ["binance", "aster-v3"])
async def test_a_whole_live_session_leaks_no_secret(tmp_path: Path, flavour: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []

    async def call(client: httpx.AsyncClient, method: str, url: str, **kw: object) -> httpx.Response:
        response = await client.request(method, url, **kw)  # type: ignore[arg-type]
        answers.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        return response

    async with open_fake_exchange(flavour="binance" if flavour == "binance" else "aster") as fake:
        market(fake)
        if flavour == "binance":
            accounts = hmac_account(fake, "sx", prefix="LSEC")
            account = fake.account("sx")
            secrets = [account.api_secret, account.api_key]
        else:
            accounts, secrets = wallet_account(fake, "sx")
        db = tmp_path / "live.sqlite3"
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                opened = await call(client, "POST", "/v1/accounts/sx/decisions",
                                    json=decision("s-1", stop_loss="59000", take_profit="62000"))
                assert opened.json()["status"] == "filled", opened.text
                await call(client, "PUT", "/v1/accounts/sx/positions/BTCUSDT/protection", json={"stop_loss": "59500"})
                fake.fault_next(-2019)
                refused = await call(client, "POST", "/v1/accounts/sx/decisions", json=decision("s-2"))
                assert refused.status_code == 422
                fake.fault_next("timeout", placed=True)
                pending = await call(client, "POST", "/v1/accounts/sx/decisions", json=decision("s-3"))
                assert pending.json()["status"] == "pending"
                await wait_until(lambda: not any(o.status == "PENDING_NEW"
                                                 for o in service.supervisor.slot("sx").snapshot().orders))
                for path in ("/v1/accounts/sx", "/v1/accounts/sx/orders", "/v1/accounts/sx/trades",
                             "/v1/accounts/sx/audit", "/v1/accounts/sx/decisions/s-3", "/metrics", "/v1/accounts"):
                    assert (await call(client, "GET", path)).status_code == 200
                await call(client, "POST", "/v1/accounts/sx/close-all", json={"reason": "scan"})
                inspected = (await client.get("/v1/accounts/sx")).json()
                key_id = inspected["venue_connection"]["key_id"]
                assert "…" in key_id or "..." in key_id
        signatures = [r.query["signature"] for r in fake.requests if "signature" in r.query]
        assert signatures  # the session did sign requests
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    lines = [formatter.format(record) for record in caplog.records]
    assert any("DEBUG" in line for line in lines)  # the scan saw the most talkative level
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(db.name))
    for secret in secrets:
        assert not [line for line in lines if secret in line], "a secret in a log line"
        assert not [text for text in answers if secret in text], "a secret in an HTTP answer"
        assert secret.encode() not in stored, "a secret in the database file"
    for signature in signatures:
        assert not [line for line in lines if signature in line], "a signature in a log line"
