"""Venue profiles: where a venue lives, which paths it speaks, and the quirks that differ.

AsterDEX futures speaks Binance's USDⓈ-M dialect with a handful of differences; a profile captures
them as data so that the REST client, the market-data feed and the paper fill model stay
venue-agnostic. Sources for every figure are in ``reference/exchange-api.md`` (sections A and B).

Every URL can be overridden (settings, or tests pointing a venue at the fake exchange on
loopback) with :func:`get_profile`.
"""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType
from typing import Literal, Mapping

import msgspec

from actors.domain.market import FeeRates

__all__ = [
    "EndpointPaths",
    "PROFILES",
    "UnknownVenue",
    "VenueFamily",
    "VenueProfile",
    "get_profile",
]

VenueFamily = Literal["asterdex", "binance"]


class EndpointPaths(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Request paths of one venue (REST paths relative to ``rest_url``, WS relative to ``ws_url``).

    The defaults are the ``/fapi/v1`` paths both venues share; the profiles override the few that
    differ (ticker price v2 and v3 account endpoints on Binance, the Algo Order API, Aster's v2/v4
    account endpoints).
    """

    # public market data (MARKET_DATA: no signature)
    ping: str = "/fapi/v1/ping"
    time: str = "/fapi/v1/time"
    exchange_info: str = "/fapi/v1/exchangeInfo"
    depth: str = "/fapi/v1/depth"
    book_ticker: str = "/fapi/v1/ticker/bookTicker"
    ticker_price: str = "/fapi/v1/ticker/price"
    premium_index: str = "/fapi/v1/premiumIndex"
    funding_info: str = "/fapi/v1/fundingInfo"
    # signed (USER_DATA / TRADE): listed here so that the live adapter shares one table
    leverage_bracket: str = "/fapi/v1/leverageBracket"
    commission_rate: str = "/fapi/v1/commissionRate"
    order: str = "/fapi/v1/order"
    conditional_order: str = "/fapi/v1/order"
    open_orders: str = "/fapi/v1/openOrders"
    all_open_orders: str = "/fapi/v1/allOpenOrders"
    batch_orders: str = "/fapi/v1/batchOrders"
    user_trades: str = "/fapi/v1/userTrades"
    income: str = "/fapi/v1/income"
    leverage: str = "/fapi/v1/leverage"
    margin_type: str = "/fapi/v1/marginType"
    position_side: str = "/fapi/v1/positionSide/dual"
    position_risk: str = "/fapi/v2/positionRisk"
    balance: str = "/fapi/v2/balance"
    account: str = "/fapi/v4/account"
    listen_key: str = "/fapi/v1/listenKey"
    #: open conditional orders: the open orders (Aster) or the Algo Service's (Binance)
    open_conditional_orders: str = "/fapi/v1/openOrders"
    #: cancels every open conditional order of a symbol where ``all_open_orders`` does not (Binance)
    cancel_all_conditional: str | None = None
    # websocket
    ws_combined: str = "/stream"
    ws_raw: str = "/ws"


class VenueProfile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Static facts about one venue (one network: mainnet or testnet)."""

    name: str
    family: VenueFamily
    rest_url: str
    ws_url: str
    testnet: bool = False
    paths: EndpointPaths = EndpointPaths()
    #: where STOP_MARKET / TAKE_PROFIT_MARKET go: the order endpoint (Aster) or the Algo Order
    #: API (Binance, since 2025-12-09; ``-4120 STOP_ORDER_SWITCH_ALGO`` otherwise)
    conditional_orders: Literal["order", "algo"] = "order"
    #: whether the venue documents ``Retry-After`` on 429/418 (Aster futures does not; we honour it
    #: whenever it is present anyway)
    retry_after_documented: bool = True
    #: the server pings every N seconds and drops a connection that has not answered in M
    server_ping_interval_seconds: float
    pong_timeout_seconds: float
    max_streams_per_connection: int
    max_connection_seconds: float = 86_400.0
    max_ws_messages_per_second: int = 10
    request_weight_per_minute: int = 2400
    orders_per_minute: int = 1200
    orders_per_10_seconds: int | None = None
    default_fees: FeeRates
    #: used when exchangeInfo carries no per-symbol ``liquidationFee``
    default_liquidation_fee: Decimal
    #: EIP-712 chain id of Aster's V3 API-wallet signatures (None: HMAC only)
    chain_id: int | None = None
    #: the paths of the API generation that API-wallet (EIP-712) credentials use (Aster V3:
    #: ``/fapi/v3/*``); None when the venue has no API wallets. HMAC credentials use ``paths``.
    api_wallet_paths: EndpointPaths | None = None


class UnknownVenue(KeyError):
    """A venue name that has no profile."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown venue"


def _aster_v3_paths() -> EndpointPaths:
    """Aster's V3 API: every path under ``/fapi/v3`` (reference A2), the account endpoint renamed."""
    v1 = EndpointPaths()
    changes = {
        field: value.replace("/fapi/v1/", "/fapi/v3/").replace("/fapi/v2/", "/fapi/v3/")
        for field, value in msgspec.structs.asdict(v1).items()
        if isinstance(value, str) and value.startswith("/fapi/")
    }
    changes["account"] = "/fapi/v3/accountWithJoinMargin"
    return msgspec.structs.replace(v1, **changes)


def _asterdex(name: str, rest_url: str, ws_url: str, *, testnet: bool, chain_id: int) -> VenueProfile:
    return VenueProfile(
        name=name,
        family="asterdex",
        rest_url=rest_url,
        ws_url=ws_url,
        testnet=testnet,
        paths=EndpointPaths(),
        conditional_orders="order",
        retry_after_documented=False,
        server_ping_interval_seconds=300.0,  # ping every 5 min, dropped after 15 min without pong
        pong_timeout_seconds=900.0,
        max_streams_per_connection=200,
        # the recorded commissionRate of BTCUSDT (CCXT fixture; reference A6)
        default_fees=FeeRates(maker=Decimal("0.0001"), taker=Decimal("0.00035")),
        # the exchangeInfo example's ``liquidationFee``; the per-symbol value wins when present
        default_liquidation_fee=Decimal("0.010"),
        chain_id=chain_id,
        api_wallet_paths=_aster_v3_paths(),
    )


def _binance(name: str, rest_url: str, ws_url: str, *, testnet: bool) -> VenueProfile:
    return VenueProfile(
        name=name,
        family="binance",
        rest_url=rest_url,
        ws_url=ws_url,
        testnet=testnet,
        paths=EndpointPaths(
            ticker_price="/fapi/v2/ticker/price",  # v1 is marked deprecated
            conditional_order="/fapi/v1/algoOrder",
            position_risk="/fapi/v3/positionRisk",
            balance="/fapi/v3/balance",
            account="/fapi/v3/account",
            open_conditional_orders="/fapi/v1/openAlgoOrders",
            cancel_all_conditional="/fapi/v1/algoOpenOrders",
        ),
        conditional_orders="algo",
        retry_after_documented=True,
        server_ping_interval_seconds=180.0,  # ping every 3 min, dropped after 10 min without pong
        pong_timeout_seconds=600.0,
        max_streams_per_connection=1024,
        orders_per_10_seconds=300,
        # the documented commissionRate example; query commissionRate when signed access exists
        default_fees=FeeRates(maker=Decimal("0.0002"), taker=Decimal("0.0004")),
        default_liquidation_fee=Decimal("0.010"),
    )


PROFILES: Mapping[str, VenueProfile] = MappingProxyType(
    {
        profile.name: profile
        for profile in (
            _asterdex(
                "asterdex", "https://fapi.asterdex.com", "wss://fstream.asterdex.com", testnet=False, chain_id=1666
            ),
            _asterdex(
                "asterdex-testnet",
                "https://fapi.asterdex-testnet.com",
                "wss://fstream.asterdex-testnet.com",
                testnet=True,
                chain_id=714,
            ),
            _binance("binance-usdm", "https://fapi.binance.com", "wss://fstream.binance.com", testnet=False),
            _binance(
                "binance-usdm-testnet", "https://demo-fapi.binance.com", "wss://fstream.binancefuture.com", testnet=True
            ),
        )
    }
)


def get_profile(name: str, rest_url: str | None = None, ws_url: str | None = None) -> VenueProfile:
    """The profile of venue ``name``, with its base URLs optionally overridden.

    Raises:
        UnknownVenue: ``name`` is not one of :data:`PROFILES`.
        ValueError: an override is not an http(s) / ws(s) URL.
    """
    try:
        profile = PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise UnknownVenue(f"unknown venue {name!r}; known venues: {known}") from None
    changes: dict[str, str] = {}
    if rest_url is not None:
        changes["rest_url"] = _checked_url(rest_url, ("http://", "https://"), "rest_url")
    if ws_url is not None:
        changes["ws_url"] = _checked_url(ws_url, ("ws://", "wss://"), "ws_url")
    return msgspec.structs.replace(profile, **changes) if changes else profile


def _checked_url(url: str, schemes: tuple[str, ...], what: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(schemes):
        raise ValueError(f"{what} must start with {' or '.join(schemes)}, got {url!r}")
    return url
