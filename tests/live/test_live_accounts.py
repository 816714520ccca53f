"""Live accounts' credentials (environment, encrypted store, Aster V3 API wallets), an account
that cannot start, and a paper account that can never write to a venue."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import msgspec
import pytest
import trio
from eth_account import Account as EthAccount

from actors.http.shapes import Inspection
from tests.fake_exchange import open_fake_exchange
from tests.live.support import BOUND, VENUES, decision, hmac_account, live_service, market, open_position, wait_until

pytestmark = pytest.mark.slow


async def test_an_aster_v3_api_wallet_account_trades_with_eip712_signatures(tmp_path: Path) -> None:
    signer = EthAccount.create()
    user = EthAccount.create().address
    async with open_fake_exchange(flavour="aster") as fake:
        market(fake)
        fake.add_account("v3", user=user, signer=signer.address, wallet="10000")
        os.environ["LV3_SIGNER_KEY"] = signer.key.hex()
        accounts = (f"  - {{id: v3, mode: live, venue: asterdex, credentials: {{user: \"{user}\", "
                    f"signer: \"{signer.address}\", signer_key_env: LV3_SIGNER_KEY}}}}")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, accounts) as (service, client):
                result = await open_position(client, "v3", "w-1", stop_loss="59000")
                assert result["protective_orders"][0]["status"] == "NEW"
                assert fake.position("v3", "BTCUSDT").amount == D("0.1")
                placed = fake.order_requests(result["order"]["client_order_id"])
                assert len(placed) == 1 and placed[0].path.startswith("/fapi/v3/")
                assert placed[0].query["signer"].lower() == signer.address.lower()
                inspected = (await client.get("/v1/accounts/v3")).json()
                assert inspected["venue_connection"]["key_id"] != signer.address  # masked
                assert inspected["venue_connection"]["stream_connected"] in (True, False)
                msgspec.convert(inspected, Inspection)  # the documented shape


async def test_an_account_whose_credentials_are_missing_fails_and_the_others_run(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        good = hmac_account(fake, "ok-1", prefix="LOK")
        os.environ.pop("LMISSING_SECRET", None)
        os.environ["LMISSING_KEY"] = "k" * 64
        missing = ("  - {id: nokey, mode: live, venue: binance-usdm, "
                   "credentials: {api_key_env: LMISSING_KEY, api_secret_env: LMISSING_SECRET}}")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, f"{good}\n{missing}") as (service, client):
                slot = service.supervisor.slot("nokey")
                await wait_until(lambda: slot.status == "failed")
                assert "nokey" in slot.last_error and "LMISSING_SECRET" in slot.last_error
                inspected = (await client.get("/v1/accounts/nokey")).json()
                assert inspected["actor"]["state"] == "failed"
                refused = await client.post("/v1/accounts/nokey/decisions", json=decision("d-1"))
                assert refused.status_code == 503, refused.text
                await open_position(client, "ok-1", "d-1")  # the other account trades


async def test_an_account_whose_key_the_venue_refuses_fails_naming_the_account_and_variable(tmp_path: Path) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        good = hmac_account(fake, "ok-2", prefix="LOK2")
        os.environ["LBAD_KEY"] = "x" * 64
        os.environ["LBAD_SECRET"] = "y" * 64
        bad = ("  - {id: badkey, mode: live, venue: binance-usdm, "
               "credentials: {api_key_env: LBAD_KEY, api_secret_env: LBAD_SECRET}}")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, f"{good}\n{bad}") as (service, client):
                slot = service.supervisor.slot("badkey")
                await wait_until(lambda: slot.status == "failed")
                assert "badkey" in slot.last_error and "LBAD_KEY" in slot.last_error
                assert "-2014" in slot.last_error or "-2015" in slot.last_error
                assert "x" * 64 not in slot.last_error and "y" * 64 not in slot.last_error
                await open_position(client, "ok-2", "d-1")


@pytest.mark.parametrize("flavour", ["binance", "aster"])
async def test_a_paper_account_on_a_live_venue_with_credentials_never_writes_to_it(tmp_path: Path, flavour: str) -> None:
    async with open_fake_exchange(flavour=flavour) as fake:
        market(fake)
        venue = VENUES[flavour]
        account = fake.add_account("pp", wallet="10000")
        os.environ["LPP_KEY"], os.environ["LPP_SECRET"] = account.api_key, account.api_secret
        paper = (f"  - {{id: pp, mode: paper, venue: {venue}, "
                 "credentials: {api_key_env: LPP_KEY, api_secret_env: LPP_SECRET}}")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, paper) as (service, client):
                opened = await open_position(client, "pp", "p-1", stop_loss="59000", take_profit="62000")
                assert opened["is_paper"] is True
                closed = await client.post("/v1/accounts/pp/close-all", json={"reason": "test"})
                assert closed.status_code == 200
        assert fake.write_calls() == []
        assert [r for r in fake.requests if r.api_key or r.account] == []  # not even a signed read
        assert fake.orders("pp") == []


def store_credentials(db: Path, account: str, venue: str, lines: str, master: str) -> str:
    """``execd credentials set`` as an operator runs it (secrets on stdin, never in argv)."""
    env = {**os.environ, "EXECD_MASTER_KEY": master}
    done = subprocess.run([sys.executable, "-m", "actors.cli", "credentials", "set", account, "--venue", venue,
                           "--db", str(db)], input=lines, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listed = subprocess.run([sys.executable, "-m", "actors.cli", "credentials", "list", "--db", str(db)],
                            env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and account in listed.stdout
    return done.stdout + listed.stdout


async def test_credentials_from_the_encrypted_store_trade_and_a_wrong_master_key_fails_the_account(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_fake_exchange(flavour="binance") as fake:
        market(fake)
        account = fake.add_account("st-1", wallet="10000")
        master = "correct horse battery staple"
        printed = store_credentials(tmp_path / "live.sqlite3", "st-1", "binance-usdm",
                                    f"{account.api_key}\n{account.api_secret}\n", master)
        assert account.api_key not in printed and account.api_secret not in printed
        raw = (tmp_path / "live.sqlite3").read_bytes()
        assert account.api_key.encode() not in raw and account.api_secret.encode() not in raw  # encrypted at rest
        line = "  - {id: st-1, mode: live, venue: binance-usdm}"
        monkeypatch.setenv("EXECD_MASTER_KEY", master)
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, line) as (service, client):
                await open_position(client, "st-1", "s-1")
        monkeypatch.setenv("EXECD_MASTER_KEY", "not the key it was stored with")
        with trio.fail_after(BOUND):
            async with live_service(tmp_path, fake, line) as (service, client):
                slot = service.supervisor.slot("st-1")
                await wait_until(lambda: slot.status == "failed")
                assert "st-1" in slot.last_error and "EXECD_MASTER_KEY" in slot.last_error
