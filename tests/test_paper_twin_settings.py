"""The settings of a live account's paper twin: what is derived, what is refused (naming the key)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from actors.account.twin import paper_twin_settings, with_paper_twins
from actors.settings import SettingsError, parse_settings

BASE = """
venues: {{binance-usdm: {{}}, sim: {{}}}}
{extra}
accounts:
  - {{id: lv-1, mode: live, venue: binance-usdm, balance: "7000", max_slippage_bps: "40", trigger_price: last,
      default_leverage: 3, risk: {{max_leverage: 10}}{live}}}
  - {{id: p-1, mode: paper, venue: sim{paper}}}
"""


def settings(live: str = ", paper_twin: true", paper: str = "", extra: str = "") -> object:
    return parse_settings(BASE.format(live=live, paper=paper, extra=extra), source="twin.yaml", env={})


def test_a_live_account_with_paper_twin_gets_a_paper_account_beside_it() -> None:
    parsed = settings()
    accounts = with_paper_twins(parsed.accounts)  # type: ignore[attr-defined]
    assert [a.id for a in accounts] == ["lv-1", "lv-1-twin", "p-1"]
    twin = accounts[1]
    assert (twin.mode, twin.venue, twin.twin_of, twin.credentials, twin.paper_twin) == (
        "paper", "binance-usdm", "lv-1", None, False)
    assert twin.balance == D("7000")  # the live account's configured balance by default
    assert (twin.max_slippage_bps, twin.trigger_price, twin.default_leverage, twin.risk) == (
        D("40"), "last", 3, {"max_leverage": 10})
    with_balance = settings(live=', paper_twin: true, paper_twin_balance: "1234.5"')
    assert paper_twin_settings(with_balance.accounts[0]).balance == D("1234.5")  # type: ignore[attr-defined]
    assert [a.id for a in with_paper_twins(settings(live="").accounts)] == ["lv-1", "p-1"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("live", "paper", "extra", "message"), [
    ("", ", paper_twin: true", "", "accounts[1].paper_twin: only a live account has a paper twin"),
    (', paper_twin_balance: "10"', "", "", "accounts[0].paper_twin_balance: only meaningful with paper_twin: true"),
    (', paper_twin: true, paper_twin_balance: "-1"', "", "", "accounts[0].paper_twin_balance: must not be negative"),
    (", twin_of: p-1", "", "", "accounts[0].twin_of: not a settings key"),
    (", paper_twin: true", "", "cluster: {node_id: n1}\ndatabase: {url: 'postgresql://h/db'}",
     "accounts[0].paper_twin: a paper twin runs beside its live account on one node"),
])
def test_bad_twin_settings_are_refused_naming_the_key(live: str, paper: str, extra: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        settings(live=live, paper=paper, extra=extra)
    assert str(info.value).startswith("twin.yaml: ") and message in str(info.value)


def test_a_twin_id_taken_by_another_account_or_too_long_is_refused() -> None:
    taken = BASE.format(live=", paper_twin: true", paper="", extra="").replace("id: p-1", "id: lv-1-twin")
    with pytest.raises(SettingsError, match="the twin of 'lv-1' is named 'lv-1-twin', which another account"):
        parse_settings(taken, source="twin.yaml", env={})
    long_id = "a" * 60
    text = BASE.format(live=", paper_twin: true", paper="", extra="").replace("id: lv-1", f"id: {long_id}")
    with pytest.raises(SettingsError, match="too long for a paper twin"):
        parse_settings(text, source="twin.yaml", env={})
