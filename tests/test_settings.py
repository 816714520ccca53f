"""Settings: ``settings.yaml`` + environment overrides (DESIGN.md §4).

An unknown or misspelled key, a value of the wrong type or an inconsistent account stops start-up
with a :class:`SettingsError` whose message names the key path and the file.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from actors.settings import SettingsError, load_settings, parse_settings

SHIPPED = Path(__file__).resolve().parent.parent / "settings.yaml"
SOURCE = "conf/desk-settings.yaml"

VALID = """
server: {host: 127.0.0.1, port: 8080}
database: {path: execd.sqlite3}
venues:
  sim: {seed: 7, symbols: [BTCUSDT, ETHUSDT]}
risk: {max_leverage: 20, cooldown_seconds: 5}
accounts:
  - {id: paper-a, mode: paper, venue: sim, balance: "10000"}
  - {id: paper-b, mode: paper, venue: sim, balance: "500.5", risk: {max_leverage: 10}}
"""


def refused(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingsError) as info:
        parse_settings(text, source=SOURCE, env={} if env is None else env)
    return str(info.value)


# ---------------------------------------------------------------------------------- the shipped file


def test_the_shipped_settings_load_with_paper_accounts_on_sim() -> None:
    assert SHIPPED.is_file()
    settings = load_settings(SHIPPED, env={})
    assert settings.source == str(SHIPPED)
    paper_on_sim = [a for a in settings.accounts if a.mode == "paper" and a.venue == "sim"]
    assert len(paper_on_sim) >= 2
    assert set(settings.venues) == {"sim"}  # runs offline on a fresh machine
    assert len({a.id for a in settings.accounts}) == len(settings.accounts)
    for account in settings.accounts:
        limits = settings.account_limits(account)
        assert 1 <= limits.max_leverage <= 25


def test_the_default_path_is_the_shipped_file() -> None:
    assert load_settings(env={}).source == str(SHIPPED)


def test_valid_settings_decode_into_typed_values() -> None:
    settings = parse_settings(VALID, source=SOURCE, env={})
    assert settings.source == SOURCE
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert [a.id for a in settings.accounts] == ["paper-a", "paper-b"]
    assert settings.accounts[1].balance == Decimal("500.5")
    assert settings.risk_defaults.max_leverage == 20
    assert settings.account_limits(settings.accounts[1]).max_leverage == 10
    assert settings.account_limits(settings.accounts[1]).cooldown_seconds == 5  # inherited default
    assert settings.venue_settings("sim").symbols == ("BTCUSDT", "ETHUSDT")


# ---------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("text", "key"), [
    pytest.param(VALID + "serverr: {port: 1}\n", "serverr", id="unknown-top-level-key"),
    pytest.param("server: {prot: 1}\n", "server.prot", id="misspelled-nested-key"),
    pytest.param("database: {pth: x.db}\n", "database.pth", id="misspelled-database-key"),
    pytest.param('server: {port: "abc"}\n', "server.port", id="port-not-an-integer"),
    pytest.param("server: {port: 70000}\n", "server.port", id="port-out-of-range"),
    pytest.param("server: 8080\n", "server", id="section-not-a-mapping"),
    pytest.param("database: execd.sqlite3\n", "database", id="database-not-a-mapping"),
    pytest.param("database: {synchronous: SOMETIMES}\n", "database.synchronous", id="bad-enum"),
    pytest.param("venues: {sim: {sybmols: [BTCUSDT]}}\n", "venues.sim.sybmols", id="bad-venue-key"),
    pytest.param("venues: {sim: {seed: seven}}\n", "venues.sim.seed", id="bad-venue-value"),
    pytest.param("venues: {sim: {}, kraken: {}}\n", "venues.kraken", id="unknown-venue"),
    pytest.param("venues: {sim: {}}\naccounts:\n  - {id: a1, venue: asterdex}\n", "accounts[0].venue",
                 id="account-on-unconfigured-venue"),
    pytest.param("venues: {sim: {}}\naccounts:\n  - {id: a1}\n  - {id: a2}\n  - {id: a1}\n", "accounts[2].id",
                 id="duplicate-account-id"),
    pytest.param("accounts:\n  - {id: 'bad id'}\n", "accounts[0].id", id="invalid-account-id"),
    pytest.param("accounts:\n  - {id: \"a1\\n\"}\n", "accounts[0].id", id="account-id-trailing-newline"),
    pytest.param("accounts:\n  - {id: a1, balanse: 5}\n", "accounts[0].balanse", id="misspelled-account-key"),
    pytest.param("accounts:\n  - {id: a1, balance: '-5'}\n", "accounts[0].balance", id="negative-balance"),
    pytest.param("accounts:\n  - {id: a1, mode: demo}\n", "accounts[0].mode", id="unknown-mode"),
    pytest.param("accounts:\n  - {id: a1, risk: {max_leverage: 30}}\n", "accounts[0].risk.max_leverage",
                 id="account-risk-leverage-30"),
    pytest.param("accounts:\n  - {id: a1, risk: {max_levrage: 5}}\n", "accounts[0].risk.max_levrage",
                 id="account-risk-unknown-limit"),
    pytest.param("risk: {max_leverage: 30}\n", "risk.max_leverage", id="default-risk-leverage-30"),
    pytest.param("risk: {daily_loss_limit_pct: 150}\n", "risk.daily_loss_limit_pct", id="risk-pct-above-100"),
    pytest.param("supervisor: {inbox_size: many}\n", "supervisor.inbox_size", id="supervisor-type"),
])
def test_bad_settings_are_refused_naming_the_key_and_the_file(text: str, key: str) -> None:
    message = refused(text)
    assert message.startswith(SOURCE + ":"), message
    assert key in message, message


def test_invalid_yaml_is_refused_naming_the_file() -> None:
    message = refused("server: {host: [\n")
    assert message.startswith(SOURCE) and "YAML" in message


def test_a_top_level_list_is_refused() -> None:
    assert "mapping" in refused("- server\n- accounts\n")


# ---------------------------------------------------------------------------------- environment


def test_environment_overrides_host_port_and_database() -> None:
    settings = parse_settings(VALID, source=SOURCE, env={
        "EXECD_HOST": "0.0.0.0", "EXECD_PORT": "9191", "EXECD_DB": "elsewhere/desk.sqlite3",
        "EXECD_API_TOKEN": "a-token"})  # a non-loopback host needs a token
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 9191
    assert settings.database.path == "elsewhere/desk.sqlite3"
    assert settings.database.synchronous == "FULL"  # the rest of the section is kept


def test_environment_overrides_apply_without_the_sections_in_the_file() -> None:
    settings = parse_settings("venues: {sim: {}}\n", source=SOURCE, env={"EXECD_PORT": "0", "EXECD_DB": "x.db"})
    assert (settings.server.port, settings.database.path) == (0, "x.db")


def test_without_overrides_the_file_values_stay() -> None:
    settings = parse_settings(VALID, source=SOURCE, env={"UNRELATED": "1"})
    assert (settings.server.host, settings.server.port, settings.database.path) == (
        "127.0.0.1", 8080, "execd.sqlite3")


def test_the_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECD_PORT", "9292")
    monkeypatch.setenv("EXECD_HOST", "127.0.0.2")
    settings = parse_settings(VALID, source=SOURCE)
    assert (settings.server.host, settings.server.port) == ("127.0.0.2", 9292)


@pytest.mark.parametrize("port", ["abc", "80.5", "", "8080x"])
def test_a_non_integer_execd_port_is_refused_clearly(port: str) -> None:
    message = refused(VALID, env={"EXECD_PORT": port})
    assert "EXECD_PORT" in message
    assert "integer" in message
    assert repr(port) in message


def test_an_out_of_range_execd_port_is_refused() -> None:
    message = refused(VALID, env={"EXECD_PORT": "65536"})
    assert "server.port" in message and "65535" in message


# ---------------------------------------------------------------------------------- files


def test_load_settings_reads_another_file(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text("venues: {sim: {seed: 3}}\naccounts:\n  - {id: solo, balance: '42'}\n", encoding="utf-8")
    settings = load_settings(path, env={})
    assert settings.source == str(path)
    assert [(a.id, a.balance) for a in settings.accounts] == [("solo", Decimal(42))]
    assert settings.venue_settings("sim").seed == 3


def test_an_error_in_another_file_names_that_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("server: {prot: 1}\n", encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(path, env={})
    assert str(path) in str(info.value) and "server.prot" in str(info.value)


def test_a_missing_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SettingsError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert str(path) in message
    assert "cannot read settings" in message and "No such file" in message


def test_a_directory_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path, env={})
    assert str(tmp_path) in str(info.value) and "cannot read settings" in str(info.value)


def test_tokens_come_from_the_file_and_the_environment() -> None:
    viewer = "a" * 64
    text = VALID + f'auth:\n  tokens:\n    - {{sha256: "{viewer}", role: viewer}}\n'
    settings = parse_settings(text, source=SOURCE, env={
        "EXECD_API_TOKEN": "clear", "EXECD_AUTH_TOKENS": '[{"sha256": "' + "b" * 64 + '", "role": "trader", '
                                                       '"accounts": ["paper-1"]}]'})
    assert [(t.role, t.accounts) for t in settings.auth.tokens] == [
        ("viewer", None), ("admin", None), ("trader", ("paper-1",))]


@pytest.mark.parametrize(("entry", "message"), [
    ('{sha256: "abc", role: admin}', "64 lowercase hex digits"),
    ('{sha256: "' + "c" * 64 + '", role: trader}', "a trader token needs the list of accounts"),
    ('{sha256: "' + "c" * 64 + '", role: admin, accounts: [paper-1]}', "not scoped to accounts"),
    ('{sha256: "' + "c" * 64 + '", role: root}', "auth.tokens[0].role"),
])
def test_bad_token_entries_are_refused_naming_the_key(entry: str, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        parse_settings(VALID + f"auth:\n  tokens:\n    - {entry}\n", source=SOURCE, env={})


def test_the_decision_stream_bound_and_synthetic_symbols_are_checked() -> None:
    assert parse_settings("server: {stream_max_in_flight: 8}\n", source=SOURCE, env={}).server.stream_max_in_flight == 8
    message = refused("server: {stream_max_in_flight: 0}\n")
    assert "server.stream_max_in_flight" in message and "got 0" in message
    message = refused("venues:\n  sim: {synthetic_symbols: 100001}\n")
    assert "venues.sim" in message and "synthetic_symbols" in message
