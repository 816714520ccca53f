"""The signed trading client on trio's virtual clock, against ``httpx.MockTransport`` handlers.

Every handler is a plain function of the request (as in httpx's own tests); jitter is 0, so every
backoff and every rate-limit wait is asserted to the exact virtual time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import msgspec
import pytest
import trio
import trio.testing

from actors.venues.credentials import ApiWalletCredentials, HmacCredentials
from actors.venues.limits import LimiterSettings, LocalRateLimited, Priority, VenueLimiter
from actors.venues.profiles import get_profile
from actors.venues.rest import RateLimited, VenueBanned, VenueError, VenueUnavailable
from actors.venues.signed_http import (
    AmbiguousOutcome,
    CredentialsRejected,
    ListenKeyInvalid,
    TimestampRejected,
    TradingSettings,
)
from actors.venues.signing import hmac_signature, recover_api_wallet_signer, signer_address, strip_signature
from actors.venues.trading import TradingClient
from actors.venues.trading_types import OrderRequest

PAYLOADS = Path(__file__).parent / "payloads" / "account"
EPOCH = 1_699_999_995.0  # trio time 0 is hh:mm:15 on the service clock
SERVER_AHEAD_MS = 250  # the venue's clock runs 250 ms ahead of ours

API_KEY = "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83"
API_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
SIGNER_KEY = "0x" + "4d" * 32
SIGNER = signer_address(SIGNER_KEY)
USER = "0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e"

SETTINGS = TradingSettings(jitter=0.0, backoff_initial_seconds=0.25, backoff_max_seconds=8.0, max_attempts=4)
BINANCE = get_profile("binance-usdm", rest_url="https://fapi.test")
ASTER = get_profile("asterdex", rest_url="https://fapi.test")

MARKET = OrderRequest(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=Decimal("0.010"), client_order_id="entry-1")
STOP = OrderRequest(symbol="BTCUSDT", side="SELL", type="STOP_MARKET", stop_price=Decimal("25000"),
                    close_position=True, working_type="MARK_PRICE", client_order_id="sl-1")


def clock() -> float:
    return EPOCH + trio.current_time()


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def ok(body: bytes | object, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return httpx.Response(200, content=content, headers=headers)


def error(status: int, code: int | None = None, msg: str = "", **headers: str) -> httpx.Response:
    content = msgspec.json.encode({"code": code, "msg": msg}) if code is not None else msg.encode()
    return httpx.Response(status, content=content, headers=headers)


Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def _route(key: str) -> str:
    """``POST_fapi_v1_order`` → ``POST /fapi/v1/order``."""
    method, _, path = key.partition("_")
    return f"{method} /{path.replace('_', '/')}"


class Venue:
    """A MockTransport handler: ``GET /time`` answers the venue's clock; other requests are
    answered from per-route scripts (``"POST /fapi/v1/order"`` → answers, in order; the last repeats)."""

    def __init__(self, **routes: list[Answer]) -> None:
        self.routes = {_route(key): list(answers) for key, answers in routes.items()}
        self.requests: list[tuple[float, httpx.Request]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((trio.current_time(), request))
        key = f"{request.method} {request.url.path}"
        if key.endswith("/time") and key not in self.routes:
            return ok({"serverTime": round(clock() * 1000) + SERVER_AHEAD_MS})
        answers = self.routes.get(key)
        if not answers:
            return error(404, msg=f"no route {key}")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer

    def sent(self, key: str) -> list[tuple[float, httpx.Request]]:
        return [(t, r) for t, r in self.requests if f"{r.method} {r.url.path}" == key]

    def times(self, key: str) -> list[float]:
        return [t for t, _ in self.sent(key)]


def params_of(request: httpx.Request) -> str:
    """The parameter string as sent: the query string of a GET/DELETE, the form body otherwise."""
    return request.url.query.decode() if request.method in ("GET", "DELETE") else request.content.decode()


def client(venue: Venue, profile=BINANCE, credentials=None, **options) -> TradingClient:  # type: ignore[no-untyped-def]
    return TradingClient(
        profile,
        credentials or HmacCredentials(API_KEY, API_SECRET),
        account_id="acct-1",
        clock=clock,
        settings=options.pop("settings", SETTINGS),
        transport=httpx.MockTransport(venue),
        **options,
    )


# ------------------------------------------------------------------------------ signing


async def test_hmac_order_is_signed_exactly_as_sent(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(POST_fapi_v1_order=[ok(payload("binance_order_new.json"))])
    async with client(venue) as c:
        order = await c.place_order(MARKET)
    assert order.venue_order_id == 22542179 and not order.is_algo
    (_, time_request), (_, request) = venue.requests
    assert time_request.url.path == "/fapi/v1/time"
    assert request.headers["X-MBX-APIKEY"] == API_KEY
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded" and request.url.query == b""
    body = params_of(request)
    params = parse_qsl(body)
    assert [k for k, _ in params] == [
        "symbol", "side", "type", "quantity", "newClientOrderId", "newOrderRespType", "recvWindow", "timestamp", "signature"
    ]
    assert dict(params)["timestamp"] == str(round(EPOCH * 1000) + SERVER_AHEAD_MS)  # corrected by the offset
    assert dict(params)["recvWindow"] == "5000"
    assert dict(params)["signature"] == hmac_signature(API_SECRET, strip_signature(body))
    assert c.clock_offset_ms == SERVER_AHEAD_MS


async def test_reads_and_deletes_carry_their_signed_params_in_the_query(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(GET_fapi_v1_order=[ok(payload("binance_order_query.json"))],
                  DELETE_fapi_v1_order=[ok(payload("binance_order_cancel.json"))])
    async with client(venue) as c:
        assert (await c.query_order("BTCUSDT", "abc")).status == "NEW"  # type: ignore[union-attr]
        assert (await c.cancel_order("BTCUSDT", "myOrder1")).status == "CANCELED"  # type: ignore[union-attr]
    for _, request in venue.requests[1:]:
        query = params_of(request)
        assert request.content == b"" and query.startswith("symbol=BTCUSDT&origClientOrderId=")
        assert query.rsplit("&", 1)[1] == f"signature={hmac_signature(API_SECRET, strip_signature(query))}"


async def test_api_wallet_requests_use_v3_paths_and_eip712(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(POST_fapi_v3_order=[ok(payload("aster_order_new.json"))])
    async with client(venue, ASTER, ApiWalletCredentials(USER, SIGNER, SIGNER_KEY)) as c:
        assert c.paths.order == "/fapi/v3/order" and c.paths.position_risk == "/fapi/v3/positionRisk"
        await c.place_order(MARKET)
        await c.place_order(MARKET)
    assert [r.url.path for _, r in venue.requests] == ["/fapi/v3/time", "/fapi/v3/order", "/fapi/v3/order"]
    nonces = []
    for _, request in venue.requests[1:]:
        assert "x-mbx-apikey" not in request.headers
        body = params_of(request)
        params = dict(parse_qsl(body))
        assert list(params)[-4:] == ["nonce", "user", "signer", "signature"]
        assert "timestamp" not in params and (params["user"], params["signer"]) == (USER, SIGNER)
        msg = strip_signature(body)
        assert recover_api_wallet_signer(msg, params["signature"], 1666) == SIGNER
        nonces.append(int(params["nonce"]))
    # microseconds of the venue's clock, strictly increasing
    assert nonces[0] == (round(EPOCH * 1000) + SERVER_AHEAD_MS) * 1000 and nonces[1] == nonces[0] + 1


async def test_api_wallet_credentials_need_a_venue_with_api_wallets() -> None:
    with pytest.raises(ValueError, match="API-wallet"):
        client(Venue(), BINANCE, ApiWalletCredentials(USER, SIGNER, SIGNER_KEY))


# ------------------------------------------------------------------- conditional routing


async def test_binance_conditional_orders_go_to_the_algo_service(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(POST_fapi_v1_algoOrder=[ok(payload("binance_algoOrder_new.json"))],
                  GET_fapi_v1_algoOrder=[ok(payload("binance_algoOrder_query.json"))],
                  DELETE_fapi_v1_algoOrder=[ok(payload("binance_algoOrder_cancel.json"))],
                  GET_fapi_v1_openAlgoOrders=[ok(payload("binance_openAlgoOrders.json"))])
    async with client(venue) as c:
        placed = await c.place_order(STOP)
        assert placed.is_algo and placed.venue_order_id == 2146760
        assert (await c.query_order("BTCUSDT", "sl-1", conditional=True)).is_algo  # type: ignore[union-attr]
        cancelled = await c.cancel_order("BTCUSDT", "sl-1", conditional=True)
        assert cancelled is not None and cancelled.status == "CANCELED"
        (open_algo,) = await c.open_conditional_orders("BNBUSDT")
    assert open_algo.status == "NEW"
    placed_params = dict(parse_qsl(params_of(venue.sent("POST /fapi/v1/algoOrder")[0][1])))
    assert placed_params["algoType"] == "CONDITIONAL" and placed_params["triggerPrice"] == "25000"
    assert placed_params["clientAlgoId"] == "sl-1" and "stopPrice" not in placed_params
    assert "newOrderRespType" not in placed_params
    assert dict(parse_qsl(params_of(venue.sent("GET /fapi/v1/algoOrder")[0][1])))["clientAlgoId"] == "sl-1"
    # the cancel is read back: DELETE, then GET
    assert [r.method for _, r in venue.requests if r.url.path == "/fapi/v1/algoOrder"] == ["POST", "GET", "DELETE", "GET"]


async def test_aster_conditional_orders_stay_on_the_order_endpoint(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(POST_fapi_v1_order=[ok(payload("aster_order_new.json"))],
                  GET_fapi_v1_openOrders=[ok(payload("aster_openOrders.json"))],
                  DELETE_fapi_v1_allOpenOrders=[ok(payload("aster_allOpenOrders_cancel.json"))])
    async with client(venue, ASTER) as c:
        await c.place_order(STOP)
        (conditional,) = await c.open_conditional_orders("BTCUSDT")
        await c.cancel_all("BTCUSDT")
    assert conditional.is_conditional and not conditional.is_algo
    params = dict(parse_qsl(params_of(venue.sent("POST /fapi/v1/order")[0][1])))
    assert (params["stopPrice"], params["closePosition"], params["newClientOrderId"]) == ("25000", "true", "sl-1")
    assert len(venue.sent("DELETE /fapi/v1/allOpenOrders")) == 1


async def test_binance_cancel_all_also_cancels_algo_orders(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(DELETE_fapi_v1_allOpenOrders=[ok(payload("binance_allOpenOrders_cancel.json"))],
                  DELETE_fapi_v1_algoOpenOrders=[ok({"code": 200, "msg": "success"})])
    async with client(venue) as c:
        await c.cancel_all("BTCUSDT")
    assert [r.url.path for _, r in venue.requests[1:]] == ["/fapi/v1/allOpenOrders", "/fapi/v1/algoOpenOrders"]


# --------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (error(400, -2010, "Order would immediately trigger."), VenueError),
        (error(400, -2019, "Margin is insufficient."), VenueError),
        (error(400, -4164, "Order's notional must be no smaller than 5.0"), VenueError),
        (error(403, msg="<html>WAF</html>"), VenueError),
        (error(401, msg="unauthorized"), CredentialsRejected),
        (error(401, -2015, "Invalid API-key, IP, or permissions for action."), CredentialsRejected),
        (error(400, -2014, "API-key format invalid."), CredentialsRejected),
        (error(400, -1022, "Signature for this request is not valid."), CredentialsRejected),
        (error(500, msg="Internal Server Error"), AmbiguousOutcome),
        (error(502, msg="<html>Bad Gateway</html>"), AmbiguousOutcome),
        (error(503, -1000, "Unknown error, please check your request or try again later."), AmbiguousOutcome),
        (error(503, msg="Service Unavailable."), AmbiguousOutcome),
        (error(400, -1001, "Internal error; unable to process your request. Please try again."), AmbiguousOutcome),
        (error(408, -1007, "Timeout waiting for response from backend server. Send status unknown."), AmbiguousOutcome),
        (error(400, -1007, "Timeout waiting for response from backend server. Send status unknown."), AmbiguousOutcome),
        (error(429, -1003, "Too many requests.", **{"Retry-After": "3"}), RateLimited),
        (error(418, -1003, "Way too many requests; IP banned.", **{"Retry-After": "60"}), VenueBanned),
        (httpx.ReadTimeout("timed out"), AmbiguousOutcome),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), AmbiguousOutcome),
        (httpx.WriteError("broken pipe"), AmbiguousOutcome),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, (type, Exception)) else getattr(v, "status_code", str(v)),
)
async def test_a_new_order_is_classified_and_never_resent(
    autojump_clock: trio.testing.MockClock, response: Answer, expected: type[Exception]
) -> None:
    venue = Venue(POST_fapi_v1_order=[response, ok(payload("binance_order_new.json"))])
    async with client(venue) as c:
        with pytest.raises(expected) as info:
            await c.place_order(MARKET)
    assert len(venue.sent("POST /fapi/v1/order")) == 1  # whatever happened, it was sent once
    if expected is AmbiguousOutcome:
        assert c.stats.ambiguous == 1 and "query before acting again" in str(info.value)
    elif expected is VenueError:
        assert type(info.value) is VenueError  # a plain refusal, not a subclass


async def test_an_unreadable_200_is_ambiguous(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(POST_fapi_v1_order=[ok(b"<html>maintenance</html>")])
    async with client(venue) as c:
        with pytest.raises(AmbiguousOutcome, match="unreadable answer"):
            await c.place_order(MARKET)


async def test_an_order_that_never_left_is_retried(autojump_clock: trio.testing.MockClock) -> None:
    refused = httpx.ConnectError("connection refused")
    venue = Venue(POST_fapi_v1_order=[refused, httpx.ConnectTimeout("connect timeout"), ok(payload("binance_order_new.json"))])
    async with client(venue) as c:
        await c.place_order(MARKET)
    assert venue.times("POST /fapi/v1/order") == [0.0, 0.25, 0.75]
    # every attempt was signed afresh
    stamps = [dict(parse_qsl(params_of(r)))["timestamp"] for _, r in venue.sent("POST /fapi/v1/order")]
    assert len(set(stamps)) == 3
    venue = Venue(POST_fapi_v1_order=[refused])
    async with client(venue) as c:
        with pytest.raises(VenueUnavailable, match="not sent") as info:
            await c.place_order(MARKET)
    assert not isinstance(info.value, AmbiguousOutcome) and len(venue.sent("POST /fapi/v1/order")) == 3


async def test_reads_retry_transient_failures_with_backoff(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(GET_fapi_v3_positionRisk=[
        error(503, msg="Service Unavailable."), httpx.ReadTimeout("t"), error(400, -1008, "Server is overloaded"),
        ok(payload("binance_positionRisk_v3_oneway.json")),
    ])
    async with client(venue) as c:
        (position,) = await c.positions()
        assert position.symbol == "ADAUSDT"
        assert venue.times("GET /fapi/v3/positionRisk") == [0.0, 0.25, 0.75, 1.75]
        assert c.stats.retries == 3
        venue.routes["GET /fapi/v3/positionRisk"] = [error(500, msg="down")]
        with pytest.raises(VenueUnavailable):
            await c.positions()
    assert len(venue.sent("GET /fapi/v3/positionRisk")) == 4 + SETTINGS.max_attempts


async def test_a_rejected_timestamp_resyncs_the_clock_and_retries_once(autojump_clock: trio.testing.MockClock) -> None:
    skew = error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
    venue = Venue(POST_fapi_v1_order=[skew, ok(payload("binance_order_new.json"))])
    async with client(venue) as c:
        await c.place_order(MARKET)
        assert [r.url.path for _, r in venue.requests] == ["/fapi/v1/time", "/fapi/v1/order", "/fapi/v1/time", "/fapi/v1/order"]
        assert c.stats.clock_resyncs == 1
        venue.routes["POST /fapi/v1/order"] = [skew]
        with pytest.raises(TimestampRejected):
            await c.place_order(MARKET)
    assert len(venue.sent("POST /fapi/v1/order")) == 4  # once more, then no further


async def test_aster_v3_nonce_expired_resyncs_and_retries(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(POST_fapi_v3_order=[error(400, -4225, "Nonce Expired"), ok(payload("aster_order_new.json"))])
    async with client(venue, ASTER, ApiWalletCredentials(USER, SIGNER, SIGNER_KEY)) as c:
        await c.place_order(MARKET)
    assert len(venue.sent("POST /fapi/v3/order")) == 2 and len(venue.sent("GET /fapi/v3/time")) == 2


async def test_unknown_orders_are_none(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(GET_fapi_v1_order=[error(400, -2013, "Order does not exist.")],
                  DELETE_fapi_v1_order=[error(400, -2011, "Unknown order sent.")],
                  GET_fapi_v1_algoOrder=[error(400, -2013, "Order does not exist.")],
                  DELETE_fapi_v1_algoOrder=[error(400, -2011, "Unknown order sent.")])
    async with client(venue) as c:
        assert await c.query_order("BTCUSDT", "nope") is None
        assert await c.cancel_order("BTCUSDT", "nope") is None
        assert await c.query_order("BTCUSDT", "nope", conditional=True) is None
        assert await c.cancel_order("BTCUSDT", "nope", conditional=True) is None


async def test_account_reads(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(GET_fapi_v3_balance=[ok(payload("binance_balance_v3.json"))],
                  GET_fapi_v1_userTrades=[ok(payload("binance_userTrades.json"))],
                  GET_fapi_v1_income=[ok(payload("binance_income.json"))],
                  GET_fapi_v1_openOrders=[ok(payload("binance_openOrders.json"))])
    async with client(venue) as c:
        (balance,) = await c.check_credentials()
        assert balance.asset == "USDT"
        (trade,) = await c.user_trades("BTCUSDT", from_id=698759, limit=10)
        assert trade.id == 698759
        assert len(await c.income(income_type="COMMISSION", start_ms=1, end_ms=2)) == 2
        assert len(await c.open_orders()) == 1
        with pytest.raises(ValueError, match="from_id"):
            await c.user_trades("BTCUSDT", from_id=1, start_ms=2)
    trades_query = dict(parse_qsl(params_of(venue.sent("GET /fapi/v1/userTrades")[0][1])))
    assert (trades_query["symbol"], trades_query["fromId"], trades_query["limit"]) == ("BTCUSDT", "698759", "10")
    assert "symbol" not in dict(parse_qsl(params_of(venue.sent("GET /fapi/v1/openOrders")[0][1])))


async def test_leverage_and_margin_type(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(POST_fapi_v1_leverage=[ok(payload("binance_leverage_change.json"))],
                  POST_fapi_v1_marginType=[ok(payload("binance_marginType_change.json")),
                                           error(400, -4046, "No need to change margin type."),
                                           error(400, -4048, "Margin type cannot be changed if there exists position.")])
    async with client(venue) as c:
        assert (await c.set_leverage("BTCUSDT", 21)).leverage == 21
        assert await c.set_margin_type("BTCUSDT", "ISOLATED") is True
        assert await c.set_margin_type("BTCUSDT", "ISOLATED") is False
        with pytest.raises(VenueError) as info:
            await c.set_margin_type("BTCUSDT", "ISOLATED")
        assert info.value.code == -4048
        with pytest.raises(ValueError):
            await c.set_leverage("BTCUSDT", 0)


async def test_listen_keys(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(POST_fapi_v1_listenKey=[ok(payload("binance_listenKey_start.json"))],
                  PUT_fapi_v1_listenKey=[ok({}), error(400, -1125, "This listenKey does not exist.")],
                  DELETE_fapi_v1_listenKey=[ok({})])
    async with client(venue) as c:
        assert (await c.new_listen_key()).startswith("pqia91ma")
        await c.keepalive_listen_key()
        with pytest.raises(ListenKeyInvalid):
            await c.keepalive_listen_key()
        await c.close_listen_key()
    # USER_STREAM on Binance: the API key, no signature, no clock sync
    assert all(r.url.path == "/fapi/v1/listenKey" for _, r in venue.requests)
    for _, request in venue.requests:
        assert request.headers["X-MBX-APIKEY"] == API_KEY and b"signature" not in request.content + request.url.query
    venue = Venue(POST_fapi_v3_listenKey=[ok(payload("aster_listenKey_start.json"))])
    async with client(venue, ASTER, ApiWalletCredentials(USER, SIGNER, SIGNER_KEY)) as c:
        await c.new_listen_key()
    assert "signature=0x" in params_of(venue.sent("POST /fapi/v3/listenKey")[0][1])


# ------------------------------------------------------------------------- rate limits


def small_limiter(**settings: object) -> VenueLimiter:
    return VenueLimiter("binance-usdm", weight_per_minute=100, settings=LimiterSettings(**settings))  # type: ignore[arg-type]


async def test_entries_wait_for_the_next_minute_while_exits_use_the_headroom(autojump_clock: trio.testing.MockClock) -> None:
    # 60 of 100 used this minute (the venue says so): entries (60 %) are out, exits (95 %) are not
    venue = Venue(GET_fapi_v1_openOrders=[ok(b"[]", **{"X-MBX-USED-WEIGHT-1M": "60"})],
                  POST_fapi_v1_order=[ok(payload("binance_order_new.json"))],
                  DELETE_fapi_v1_order=[ok(payload("binance_order_cancel.json"))])
    limiter = small_limiter(entry_max_wait_seconds=60.0)
    async with client(venue, limiter=limiter) as c:
        await c.open_orders("BTCUSDT")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.place_order, MARKET)
            nursery.start_soon(c.cancel_order, "BTCUSDT", "other")
    assert venue.times("DELETE /fapi/v1/order") == [0.0]
    assert venue.times("POST /fapi/v1/order") == [45.0]  # trio time 45 is the next minute (EPOCH is hh:mm:15)
    assert c.stats.limiter_wait_seconds == 45.0


async def test_an_entry_that_would_wait_too_long_is_refused_locally(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(GET_fapi_v1_openOrders=[ok(b"[]", **{"X-MBX-USED-WEIGHT-1M": "60"})],
                  POST_fapi_v1_order=[ok(payload("binance_order_new.json"))],
                  POST_fapi_v1_algoOrder=[ok(payload("binance_algoOrder_new.json"))])
    limiter = small_limiter(entry_max_wait_seconds=2.0)
    async with client(venue, limiter=limiter) as c:
        await c.open_orders("BTCUSDT")
        with pytest.raises(LocalRateLimited) as info:
            await c.place_order(MARKET)
        assert info.value.retry_after == 45.0 and trio.current_time() == 0.0
        assert isinstance(info.value, RateLimited) and info.value.http_status == 0
        # a protective order may still go
        await c.place_order(STOP)
    assert venue.sent("POST /fapi/v1/order") == [] and venue.times("POST /fapi/v1/algoOrder") == [0.0]
    assert limiter.statistics(clock()).refusals == 1


async def test_order_counts_hold_entries_for_the_next_ten_seconds(autojump_clock: trio.testing.MockClock) -> None:
    # Binance: 300 orders per 10 s; the venue reports 200 (> 60 % of 300) after this order
    venue = Venue(POST_fapi_v1_order=[ok(payload("binance_order_new.json"), **{"X-MBX-ORDER-COUNT-10S": "200"})])
    async with client(venue, limiter=small_limiter(entry_max_wait_seconds=10.0)) as c:
        await c.place_order(MARKET)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.place_order, MARKET)  # an entry: waits for the next window
            nursery.start_soon(c.place_order, msgspec.structs.replace(MARKET, reduce_only=True))  # an exit: at once
    sent = [(t, dict(parse_qsl(params_of(r))).get("reduceOnly")) for t, r in venue.sent("POST /fapi/v1/order")]
    assert sent == [(0.0, None), (0.0, "true"), (5.0, None)]  # hh:mm:15 → the 10 s window rolls at :20


def test_limiter_windows_are_pure_arithmetic() -> None:
    limiter = VenueLimiter("v", weight_per_minute=100, settings=LimiterSettings(entry_share=0.5, read_share=0.8))
    now = 1_699_999_995.0  # hh:mm:15
    assert limiter.delay(weight=50, priority=Priority.ENTRY, now=now) == 0.0
    limiter.record_sent(weight=50, now=now)
    assert limiter.delay(weight=1, priority=Priority.ENTRY, now=now) == 45.0
    assert limiter.delay(weight=30, priority=Priority.READ, now=now) == 0.0
    assert limiter.delay(weight=31, priority=Priority.READ, now=now) == 45.0
    # a venue figure of another window is not adopted; a higher one of this window is
    limiter.record_response({"x-mbx-used-weight-1m": "99"}, sent_at=now - 20.0, now=now)
    assert limiter.statistics(now).used_weight == 50
    limiter.record_response({"x-mbx-used-weight-1m": "70"}, sent_at=now, now=now)
    assert limiter.statistics(now).used_weight == 70
    assert limiter.delay(weight=1, priority=Priority.ENTRY, now=now + 45.0) == 0.0  # a new minute
    assert limiter.statistics(now - 1.0).used_weight == 0  # a clock stepping back keeps the window
    assert limiter.record_429(None, now) == 1.0 and limiter.record_429(None, now) == 2.0
    assert limiter.delay(weight=0, priority=Priority.EXIT, now=now + 1.5) == 0.5
    limiter.record_418(None, now)
    with pytest.raises(VenueBanned):
        limiter.delay(weight=0, priority=Priority.EXIT, now=now + 119.0)
    assert limiter.delay(weight=0, priority=Priority.EXIT, now=now + 120.0) == 0.0


async def test_429_pauses_every_request_for_retry_after(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(GET_fapi_v3_balance=[error(429, -1003, "Too many requests.", **{"Retry-After": "7"}),
                                      ok(payload("binance_balance_v3.json"))],
                  GET_fapi_v1_openOrders=[ok(b"[]")])
    limiter = small_limiter()
    async with client(venue, limiter=limiter) as c, client(venue, limiter=limiter) as other:
        await other.sync_time()

        async def later_read() -> None:
            await trio.sleep(1)
            await other.open_orders("BTCUSDT")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.balances)
            nursery.start_soon(later_read)
    assert venue.times("GET /fapi/v3/balance") == [0.0, 7.0]
    assert venue.times("GET /fapi/v1/openOrders") == [7.0]  # the other account's client waited too


async def test_429_without_retry_after_backs_off_exponentially(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(GET_fapi_v3_balance=[error(429, -1003, "Too many requests."), error(429, -1003, "Too many requests."),
                                      ok(payload("binance_balance_v3.json"))])
    async with client(venue, limiter=small_limiter(backoff_429_seconds=1.0)) as c:
        await c.balances()
    assert venue.times("GET /fapi/v3/balance") == [0.0, 1.0, 3.0]


async def test_418_stops_all_traffic_until_the_ban_ends(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(GET_fapi_v3_balance=[error(418, -1003, "IP banned", **{"Retry-After": "30"}),
                                      ok(payload("binance_balance_v3.json"))],
                  POST_fapi_v1_order=[ok(payload("binance_order_new.json"))])
    async with client(venue, limiter=small_limiter()) as c:
        with pytest.raises(VenueBanned):
            await c.balances()
        sent = len(venue.requests)
        await trio.sleep(29)
        with pytest.raises(VenueBanned) as info:
            await c.place_order(msgspec.structs.replace(MARKET, reduce_only=True))
        assert info.value.retry_after == pytest.approx(1.0)
        assert len(venue.requests) == sent  # nothing went out during the ban
        await trio.sleep(1)
        await c.balances()
    assert venue.times("GET /fapi/v3/balance") == [0.0, 30.0]


# ---------------------------------------------------------------------------- secrets


async def test_no_secret_in_logs_errors_or_reprs(autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    signatures: list[str] = []

    def record_signature(response: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
        def answer(request: httpx.Request) -> httpx.Response:
            signatures.append(dict(parse_qsl(params_of(request)))["signature"])
            return response
        return answer

    venue = Venue(
        POST_fapi_v1_order=[record_signature(error(400, -2019, "Margin is insufficient.")),
                            record_signature(error(503, msg="Service Unavailable.")),
                            httpx.ReadTimeout("timed out"), record_signature(ok(payload("binance_order_new.json")))],
        GET_fapi_v1_order=[record_signature(error(500, msg="oops")), record_signature(ok(payload("binance_order_query.json")))],
        GET_fapi_v3_balance=[record_signature(error(401, -2015, "Invalid API-key, IP, or permissions for action."))],
        POST_fapi_v1_listenKey=[ok(payload("binance_listenKey_start.json"))],
    )
    texts: list[str] = []
    async with client(venue) as c:
        texts.append(repr(c))
        for _ in range(3):
            with pytest.raises(Exception) as info:
                await c.place_order(MARKET)
            texts += [str(info.value), repr(info.value)]
        await c.place_order(MARKET)
        await c.query_order("BTCUSDT", "abc")
        with pytest.raises(CredentialsRejected) as rejected:
            await c.check_credentials()
        texts += [str(rejected.value), repr(rejected.value), str(c.stats.snapshot())]
        await c.new_listen_key()
    wallet = client(venue, ASTER, ApiWalletCredentials(USER, SIGNER, SIGNER_KEY))
    texts.append(repr(wallet))
    await wallet.aclose()
    assert len(signatures) >= 5
    logged = caplog.text + "\n".join(texts)
    assert "HTTP Request: GET https://fapi.test/fapi/v1/order" in caplog.text  # httpx did log the URLs...
    assert "signature=<redacted>" in caplog.text  # ...redacted
    for secret in (API_KEY, API_SECRET, SIGNER_KEY, SIGNER_KEY[2:], *signatures):
        assert secret not in logged


# ------------------------------------------------------------------------- paths, idempotent


def test_paths_follow_the_venue_and_the_api_generation() -> None:
    venue = Venue()
    binance = client(venue)
    aster_v1 = client(venue, ASTER)
    aster_v3 = client(venue, ASTER, ApiWalletCredentials(USER, SIGNER, SIGNER_KEY))
    assert (binance.paths.position_risk, binance.paths.balance, binance.paths.conditional_order) == (
        "/fapi/v3/positionRisk", "/fapi/v3/balance", "/fapi/v1/algoOrder"
    )
    assert binance.paths.open_conditional_orders == "/fapi/v1/openAlgoOrders"
    assert (aster_v1.paths.position_risk, aster_v1.paths.balance, aster_v1.paths.conditional_order) == (
        "/fapi/v2/positionRisk", "/fapi/v2/balance", "/fapi/v1/order"
    )
    assert {aster_v3.paths.order, aster_v3.paths.listen_key, aster_v3.paths.time} == {
        "/fapi/v3/order", "/fapi/v3/listenKey", "/fapi/v3/time"
    }
    assert get_profile("asterdex-testnet").api_wallet_paths == get_profile("asterdex").api_wallet_paths
    assert get_profile("binance-usdm").api_wallet_paths is None


async def test_idempotent_writes_retry_unknown_outcomes(autojump_clock: trio.testing.MockClock) -> None:
    venue = Venue(DELETE_fapi_v1_allOpenOrders=[error(503, msg="Service Unavailable."), httpx.ReadTimeout("t"),
                                               ok(payload("aster_allOpenOrders_cancel.json"))])
    async with client(venue, ASTER) as c:
        await c.cancel_all("BTCUSDT")
        assert venue.times("DELETE /fapi/v1/allOpenOrders") == [0.0, 0.25, 0.75]
        venue.routes["DELETE /fapi/v1/allOpenOrders"] = [error(502, msg="Bad Gateway")]
        with pytest.raises(AmbiguousOutcome):
            await c.cancel_all("BTCUSDT")
    # a cancel of one order is not resent: "unknown order" on a resend would be misread
    venue = Venue(DELETE_fapi_v1_order=[error(503, msg="Service Unavailable.")])
    async with client(venue) as c:
        with pytest.raises(AmbiguousOutcome):
            await c.cancel_order("BTCUSDT", "entry-1")
    assert len(venue.sent("DELETE /fapi/v1/order")) == 1
