"""Credentials: masking, settings shapes, environment resolution, the encrypted store and the CLI."""

from __future__ import annotations

import argparse
import io
import json
import sqlite3
from pathlib import Path

import msgspec
import pytest

from actors.venues.credentials import (
    ApiWalletCredentials,
    CredentialSettings,
    CredentialStore,
    CredentialStoreError,
    HmacCredentials,
    MissingCredentials,
    WrongMasterKey,
    credentials_from_env,
    master_key_from_env,
    resolve_credentials,
)
from actors.venues.credentials_cli import add_credentials_parser, run_credentials_cli
from actors.venues.signing import signer_address

API_KEY = "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83"
API_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
SIGNER_KEY = "0x" + "2e" * 32
SIGNER = signer_address(SIGNER_KEY)
USER = "0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e"
MASTER = "correct horse battery staple"
FAST_KDF = 10  # scrypt n = 2**10: the format is the same, the tests stay fast


def wallet() -> ApiWalletCredentials:
    return ApiWalletCredentials(USER, SIGNER, SIGNER_KEY)


def test_repr_and_str_never_show_a_secret() -> None:
    hmac_creds = HmacCredentials(API_KEY, API_SECRET)
    for text in (repr(hmac_creds), str(hmac_creds), f"{hmac_creds}", repr([hmac_creds])):
        assert API_SECRET not in text and API_KEY not in text
        assert "dbef…cc83" in text
    assert hmac_creds.key_id == "dbef…cc83"
    wallet_creds = wallet()
    assert SIGNER_KEY[2:] not in repr(wallet_creds) and SIGNER_KEY[2:] not in str(wallet_creds)
    # serialisers refuse them instead of dumping the fields
    with pytest.raises(TypeError):
        msgspec.json.encode(hmac_creds)
    with pytest.raises(TypeError):
        json.dumps(wallet_creds)


def test_an_api_wallet_key_must_belong_to_its_signer() -> None:
    with pytest.raises(ValueError, match="not the key of signer") as info:
        ApiWalletCredentials(USER, USER, SIGNER_KEY)
    assert SIGNER_KEY[2:] not in str(info.value)
    with pytest.raises(ValueError, match="address"):
        ApiWalletCredentials("0x123", SIGNER, SIGNER_KEY)
    assert ApiWalletCredentials(USER, SIGNER, SIGNER_KEY[2:]).signer_key == SIGNER_KEY


def test_settings_shapes() -> None:
    hmac_settings = msgspec.convert({"api_key_env": "BN_KEY", "api_secret_env": "BN_SECRET"}, CredentialSettings)
    assert hmac_settings.kind == "hmac"
    wallet_settings = msgspec.convert(
        {"user": USER, "signer": SIGNER, "signer_key_env": "ASTER_SIGNER_KEY"}, CredentialSettings
    )
    assert wallet_settings.kind == "api_wallet"
    for bad in (
        {"api_key_env": "K"},
        {"api_key_env": "K", "api_secret_env": "S", "user": USER},
        {"user": USER, "signer": SIGNER},
        {},
        {"api_key_env": "K", "api_secret": "oops"},  # unknown field: a secret in the settings file
        {"api_key_env": "not a name", "api_secret_env": "S"},
    ):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, CredentialSettings)


def test_resolution_from_the_environment_names_account_and_variable() -> None:
    settings = CredentialSettings(api_key_env="BN_KEY", api_secret_env="BN_SECRET")
    creds = credentials_from_env("acct-1", settings, {"BN_KEY": API_KEY, "BN_SECRET": API_SECRET})
    assert creds == HmacCredentials(API_KEY, API_SECRET)
    with pytest.raises(MissingCredentials, match=r"account 'acct-1'.*BN_SECRET.*api_secret_env"):
        credentials_from_env("acct-1", settings, {"BN_KEY": API_KEY})
    wallet_settings = CredentialSettings(user=USER, signer=SIGNER, signer_key_env="ASTER_KEY")
    assert credentials_from_env("a", wallet_settings, {"ASTER_KEY": SIGNER_KEY}) == wallet()
    with pytest.raises(MissingCredentials, match="not the key of signer") as info:
        credentials_from_env("a", wallet_settings, {"ASTER_KEY": "0x" + "3f" * 32})
    assert "3f3f" not in str(info.value)


def test_resolution_falls_back_to_the_store(tmp_path: Path) -> None:
    store = CredentialStore.open(str(tmp_path / "db.sqlite3"), MASTER, kdf_cost_log2=FAST_KDF)
    with pytest.raises(MissingCredentials, match=r"account 'acct-1' on binance-usdm: no credentials.*execd credentials set"):
        resolve_credentials("acct-1", "binance-usdm", None, store=store, env={})
    store.put("acct-1", "binance-usdm", HmacCredentials(API_KEY, API_SECRET))
    assert resolve_credentials("acct-1", "binance-usdm", None, store=store, env={}) == HmacCredentials(API_KEY, API_SECRET)
    store.close()


def test_store_round_trip_and_nothing_in_clear(tmp_path: Path) -> None:
    path = tmp_path / "execd.sqlite3"
    store = CredentialStore.open(str(path), MASTER, clock=lambda: 1_700_000_000.0, kdf_cost_log2=FAST_KDF)
    store.put("acct-1", "binance-usdm", HmacCredentials(API_KEY, API_SECRET))
    store.put("acct-2", "asterdex", wallet())
    assert store.get("acct-1", "binance-usdm") == HmacCredentials(API_KEY, API_SECRET)
    assert store.get("acct-2", "asterdex") == wallet()
    assert store.get("acct-1", "asterdex") is None
    # replacing keeps one row per account and venue
    store.put("acct-1", "binance-usdm", HmacCredentials(API_KEY[::-1], API_SECRET[::-1]))
    assert store.get("acct-1", "binance-usdm") == HmacCredentials(API_KEY[::-1], API_SECRET[::-1])
    listed = store.entries()
    assert [(e.account_id, e.venue, e.kind, e.key_id) for e in listed] == [
        ("acct-1", "binance-usdm", "hmac", "38cc…febd"),
        ("acct-2", "asterdex", "api_wallet", f"{SIGNER[:4]}…{SIGNER[-4:]}"),
    ]
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())  # the database, its WAL and shm
    for secret in (API_KEY, API_SECRET, API_KEY[::-1], API_SECRET[::-1], SIGNER_KEY[2:]):
        assert secret.encode() not in raw
        assert secret.encode().hex().encode() not in raw
    assert sqlite3.connect(path).execute("SELECT count(*) FROM credentials").fetchone() == (2,)


def test_a_wrong_master_key_is_an_error_not_garbage(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite3")
    store = CredentialStore.open(path, MASTER, kdf_cost_log2=FAST_KDF)
    store.put("acct-1", "binance-usdm", HmacCredentials(API_KEY, API_SECRET))
    store.close()
    wrong = CredentialStore.open(path, MASTER + "!", kdf_cost_log2=FAST_KDF)
    with pytest.raises(WrongMasterKey, match="account 'acct-1' on binance-usdm.*wrong EXECD_MASTER_KEY"):
        wrong.get("acct-1", "binance-usdm")
    assert wrong.entries()[0].error is not None and wrong.entries()[0].key_id is None
    wrong.close()
    locked = CredentialStore.open(path, None)
    with pytest.raises(CredentialStoreError, match="EXECD_MASTER_KEY is not set"):
        locked.get("acct-1", "binance-usdm")
    assert locked.entries()[0].key_id is None  # listing works without the key
    locked.close()


def test_a_record_cannot_be_moved_to_another_account(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite3")
    store = CredentialStore.open(path, MASTER, kdf_cost_log2=FAST_KDF)
    store.put("acct-1", "binance-usdm", HmacCredentials(API_KEY, API_SECRET))
    store.put("acct-2", "binance-usdm", HmacCredentials(API_KEY[::-1], API_SECRET[::-1]))
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "UPDATE credentials SET ciphertext = (SELECT ciphertext FROM credentials WHERE account_id = 'acct-1') "
            "WHERE account_id = 'acct-2'"
        )
    conn.close()
    with pytest.raises(CredentialStoreError, match="belongs to another account"):
        store.get("acct-2", "binance-usdm")
    store.close()


def test_master_key_from_env() -> None:
    assert master_key_from_env({"EXECD_MASTER_KEY": MASTER}) == MASTER
    with pytest.raises(CredentialStoreError, match="not set"):
        master_key_from_env({})
    with pytest.raises(CredentialStoreError, match="at least 16"):
        master_key_from_env({"EXECD_MASTER_KEY": "short"})


# ------------------------------------------------------------------------------------- CLI


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="execd")
    add_credentials_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def run(argv: list[str], stdin_text: str = "", **env: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_credentials_cli(parse(argv), env={"EXECD_MASTER_KEY": MASTER, **env}, stdin=io.StringIO(stdin_text),
                               stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_set_list_delete(tmp_path: Path) -> None:
    db = str(tmp_path / "execd.sqlite3")
    code, out, err = run(["credentials", "set", "acct-1", "--venue", "binance-usdm", "--db", db], f"{API_KEY}\n{API_SECRET}\n")
    assert (code, err) == (0, "") and "hmac credentials of account acct-1 on binance-usdm (key dbef…cc83)" in out
    code, out, _ = run(
        ["credentials", "set", "acct-2", "--venue", "asterdex", "--user", USER, "--signer", SIGNER, "--db", db],
        SIGNER_KEY + "\n",
    )
    assert code == 0 and "api_wallet" in out
    code, out, _ = run(["credentials", "list", "--db", db])
    assert code == 0
    assert "acct-1  binance-usdm" in out and "hmac key dbef…cc83" in out and "acct-2  asterdex" in out
    assert API_KEY not in out and API_SECRET not in out
    code, out, _ = run(["credentials", "delete", "acct-1", "--venue", "binance-usdm", "--db", db])
    assert code == 0 and "deleted" in out
    code, _, err = run(["credentials", "delete", "acct-1", "--venue", "binance-usdm", "--db", db])
    assert code == 1 and "no stored credentials" in err
    store = CredentialStore.open(db, MASTER)
    assert store.get("acct-2", "asterdex") == wallet()
    store.close()


def test_cli_refuses_bad_input_without_echoing_secrets(tmp_path: Path) -> None:
    db = str(tmp_path / "execd.sqlite3")
    code, _, err = run(["credentials", "set", "a", "--venue", "binance-usdm", "--db", db], f"{API_KEY}\n")
    assert code == 2 and "API secret on stdin" in err
    code, _, err = run(["credentials", "set", "a", "--venue", "binance-usdm", "--user", USER, "--signer", SIGNER,
                        "--db", db], SIGNER_KEY)
    assert code == 2 and "does not use API wallets" in err
    code, _, err = run(["credentials", "set", "a", "--venue", "asterdex", "--user", USER, "--signer", USER, "--db", db],
                       SIGNER_KEY)
    assert code == 1 and "not the key of signer" in err and SIGNER_KEY[2:] not in err
    code, _, err = run(["credentials", "set", "a", "--venue", "binance-usdm", "--db", db], f"{API_KEY}\n{API_SECRET}\n",
                       EXECD_MASTER_KEY="")
    assert code == 1 and "EXECD_MASTER_KEY is not set" in err
    # secrets cannot be given as arguments at all
    with pytest.raises(SystemExit):
        parse(["credentials", "set", "a", "--venue", "binance-usdm", "--api-secret", API_SECRET])


def test_cli_prompts_without_echo_on_a_terminal(tmp_path: Path) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter([API_KEY, API_SECRET])
    prompts: list[str] = []

    def prompt(label: str) -> str:
        prompts.append(label)
        return next(answers)

    out = io.StringIO()
    code = run_credentials_cli(
        parse(["credentials", "set", "acct-1", "--venue", "asterdex", "--db", str(tmp_path / "d.sqlite3")]),
        env={"EXECD_MASTER_KEY": MASTER}, stdin=Terminal(), stdout=out, stderr=io.StringIO(), prompt=prompt,
    )
    assert code == 0 and prompts == ["API key: ", "API secret: "]
