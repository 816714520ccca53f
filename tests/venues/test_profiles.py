"""Venue profiles: the four venues, their quirks, and URL overrides."""

from __future__ import annotations

from decimal import Decimal

import pytest

from actors.venues.profiles import PROFILES, UnknownVenue, get_profile


def test_the_four_venues() -> None:
    assert {name: (p.rest_url, p.ws_url) for name, p in PROFILES.items()} == {
        "asterdex": ("https://fapi.asterdex.com", "wss://fstream.asterdex.com"),
        "asterdex-testnet": ("https://fapi.asterdex-testnet.com", "wss://fstream.asterdex-testnet.com"),
        "binance-usdm": ("https://fapi.binance.com", "wss://fstream.binance.com"),
        "binance-usdm-testnet": ("https://demo-fapi.binance.com", "wss://fstream.binancefuture.com"),
    }
    assert get_profile("asterdex-testnet").chain_id == 714 and get_profile("asterdex-testnet").testnet


def test_quirks_differ_where_the_venues_differ() -> None:
    aster, binance = get_profile("asterdex"), get_profile("binance-usdm")
    assert aster.conditional_orders == "order" and aster.paths.conditional_order == "/fapi/v1/order"
    assert binance.conditional_orders == "algo" and binance.paths.conditional_order == "/fapi/v1/algoOrder"
    assert binance.paths.ticker_price == "/fapi/v2/ticker/price" and aster.paths.ticker_price == "/fapi/v1/ticker/price"
    assert (aster.max_streams_per_connection, binance.max_streams_per_connection) == (200, 1024)
    assert (aster.server_ping_interval_seconds, binance.server_ping_interval_seconds) == (300, 180)
    assert not aster.retry_after_documented and binance.retry_after_documented
    assert aster.max_connection_seconds == binance.max_connection_seconds == 86_400
    assert (aster.default_fees.maker, aster.default_fees.taker) == (Decimal("0.0001"), Decimal("0.00035"))
    assert (binance.default_fees.maker, binance.default_fees.taker) == (Decimal("0.0002"), Decimal("0.0004"))
    # market-data paths are shared
    assert aster.paths.depth == binance.paths.depth == "/fapi/v1/depth"


def test_urls_can_be_overridden() -> None:
    profile = get_profile("binance-usdm", rest_url="http://127.0.0.1:9000/", ws_url="ws://127.0.0.1:9000")
    assert (profile.rest_url, profile.ws_url) == ("http://127.0.0.1:9000", "ws://127.0.0.1:9000")
    assert profile.paths == get_profile("binance-usdm").paths
    assert PROFILES["binance-usdm"].rest_url == "https://fapi.binance.com"  # the table is untouched


def test_bad_overrides_and_unknown_venues_are_refused() -> None:
    with pytest.raises(ValueError, match="ws_url"):
        get_profile("asterdex", ws_url="http://127.0.0.1:1")
    with pytest.raises(UnknownVenue, match="known venues: asterdex, asterdex-testnet"):
        get_profile("ftx")
