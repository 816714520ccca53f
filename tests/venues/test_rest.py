"""The public REST client on trio's virtual clock (``httpx.MockTransport``, no sockets).

Back-off timings are asserted exactly: jitter is 0 and every wait is a ``trio.sleep``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from decimal import Decimal

import httpx
import msgspec
import pytest
import trio
import trio.testing

from actors.venues.profiles import get_profile
from actors.venues.rest import (
    EndpointNotPublic,
    PublicRestClient,
    RateLimited,
    RestSettings,
    VenueBanned,
    VenueError,
    VenueUnavailable,
)

EPOCH = 1_699_999_995.0  # at trio time 0 the clock reads hh:mm:15
PROFILE = get_profile("binance-usdm", rest_url="https://fapi.test")
SETTINGS = RestSettings(jitter=0.0, backoff_initial_seconds=0.5, backoff_max_seconds=8.0, max_attempts=4)

DEPTH = {"lastUpdateId": 7, "E": 1_700_000_000_123, "T": 1_700_000_000_120, "bids": [["100.5", "2"]], "asks": [["100.6", "3"]]}
PREMIUM = {
    "symbol": "BTCUSDT",
    "markPrice": "100.55",
    "indexPrice": "100.50",
    "lastFundingRate": "0.0001",
    "nextFundingTime": 1_700_006_400_000,
    "time": 1_700_000_000_200,
}


def clock() -> float:
    return EPOCH + trio.current_time()


def ok(payload: object, weight: int = 10) -> httpx.Response:
    return httpx.Response(200, content=msgspec.json.encode(payload), headers={"X-MBX-USED-WEIGHT-1M": str(weight)})


def error(status: int, code: int, msg: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=msgspec.json.encode({"code": code, "msg": msg}), headers=headers)


class Script:
    """A MockTransport handler answering from a list, recording every request and its time."""

    def __init__(self, *answers: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers: Iterator[httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]] = iter(answers)
        self.requests: list[tuple[float, httpx.Request]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((trio.current_time(), request))
        answer = next(self.answers)
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.requests]


def client(script: Script, settings: RestSettings = SETTINGS) -> PublicRestClient:
    return PublicRestClient(PROFILE, clock=clock, settings=settings, transport=httpx.MockTransport(script))


async def test_endpoints_parse_into_domain_types(autojump_clock: trio.testing.MockClock) -> None:
    script = Script(ok(DEPTH), ok(PREMIUM), ok({**PREMIUM, "bidPrice": "1", "bidQty": "2", "askPrice": "3", "askQty": "4"}))
    async with client(script) as rest:
        book = await rest.depth("BTCUSDT", 5)
        mark = await rest.premium_index("BTCUSDT")
        top = await rest.book_ticker("BTCUSDT")
    assert book.symbol == "BTCUSDT" and book.best_bid == Decimal("100.5") and book.venue_ms == DEPTH["E"]
    assert book.received_at == clock()
    assert mark.mark == Decimal("100.55") and mark.funding_rate == Decimal("0.0001")
    assert not top.depth and top.best_ask == Decimal(3)
    paths = [(r.method, r.url.path, dict(r.url.params)) for _, r in script.requests]
    assert paths == [
        ("GET", "/fapi/v1/depth", {"symbol": "BTCUSDT", "limit": "5"}),
        ("GET", "/fapi/v1/premiumIndex", {"symbol": "BTCUSDT"}),
        ("GET", "/fapi/v1/ticker/bookTicker", {"symbol": "BTCUSDT"}),
    ]


async def test_server_time_and_clock_offset(autojump_clock: trio.testing.MockClock) -> None:
    script = Script(lambda request: ok({"serverTime": int((clock() + 2.5) * 1000)}))
    async with client(script) as rest:
        offset = await rest.measure_clock_offset()
    assert offset == pytest.approx(2.5, abs=0.001) and rest.clock_offset == offset


async def test_429_honours_retry_after(autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    script = Script(error(429, -1003, "Too many requests", **{"Retry-After": "7"}), ok(DEPTH))
    with caplog.at_level(logging.WARNING, logger="actors.venues"):
        async with client(script) as rest:
            await rest.depth("BTCUSDT")
    assert script.times == [0, 7]
    assert (rest.stats.backoffs_429, rest.stats.retries, rest.stats.requests, rest.stats.errors) == (1, 1, 2, 1)
    assert any("HTTP 429" in r.getMessage() and "Retry-After 7" in r.getMessage() for r in caplog.records)


async def test_429_without_retry_after_backs_off_exponentially(autojump_clock: trio.testing.MockClock) -> None:
    script = Script(error(429, -1003, "slow down"), error(429, -1003, "slow down"), ok(DEPTH))
    async with client(script) as rest:
        await rest.depth("BTCUSDT")
    assert script.times == [0, 0.5, 1.5]
    assert rest.stats.backoffs_429 == 2


async def test_429_pauses_every_request_to_the_venue(autojump_clock: trio.testing.MockClock) -> None:
    limited = error(429, -1003, "Too many requests", **{"Retry-After": "5"})
    by_path = {"/fapi/v1/depth": ok(DEPTH), "/fapi/v1/premiumIndex": ok(PREMIUM)}
    script = Script(limited, *[lambda request: by_path[request.url.path]] * 2)  # either may go first
    async with client(script) as rest:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rest.depth, "BTCUSDT")
            await trio.testing.wait_all_tasks_blocked()  # the 429 has been answered
            await trio.sleep(1)
            nursery.start_soon(rest.premium_index, "BTCUSDT")
    assert script.times == [0, 5, 5]  # the second request waited for the pause too


async def test_429_after_every_attempt_raises_rate_limited(autojump_clock: trio.testing.MockClock) -> None:
    script = Script(*[error(429, -1003, "Too many requests")] * 4)
    async with client(script) as rest:
        with pytest.raises(RateLimited) as caught:
            await rest.depth("BTCUSDT")
    assert caught.value.http_status == 429 and caught.value.code == -1003 and caught.value.retry_after is None
    assert script.times == [0, 0.5, 1.5, 3.5]


async def test_418_bans_every_request_until_retry_after(autojump_clock: trio.testing.MockClock) -> None:
    script = Script(error(418, -1003, "Way too many requests; IP banned", **{"Retry-After": "30"}), ok(DEPTH))
    async with client(script) as rest:
        with pytest.raises(VenueBanned) as first:
            await rest.depth("BTCUSDT")
        assert first.value.retry_after == 30
        await trio.sleep(10)
        with pytest.raises(VenueBanned) as second:  # refused locally, nothing sent
            await rest.premium_index("BTCUSDT")
        assert second.value.retry_after == 20 and len(script.requests) == 1
        await trio.sleep(rest.ban_seconds_left())
        await rest.depth("BTCUSDT")
    assert script.times == [0, 30]
    assert rest.stats.bans_418 == 1 and rest.stats.retries == 0


async def test_418_without_retry_after_bans_for_the_default(autojump_clock: trio.testing.MockClock) -> None:
    script = Script(error(418, -1003, "banned"))
    async with client(script) as rest:
        with pytest.raises(VenueBanned):
            await rest.depth("BTCUSDT")
        assert rest.ban_seconds_left() == SETTINGS.ban_default_seconds == 120


async def test_5xx_and_transport_errors_are_retried(autojump_clock: trio.testing.MockClock) -> None:
    script = Script(
        error(503, -1001, "Service Unavailable."),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        ok(DEPTH),
    )
    async with client(script) as rest:
        book = await rest.depth("BTCUSDT")
    assert book.update_id == 7
    assert script.times == [0, 0.5, 1.5, 3.5]
    assert (rest.stats.retries, rest.stats.errors, rest.stats.backoffs_429) == (3, 3, 0)


async def test_5xx_after_every_attempt_raises_venue_unavailable(autojump_clock: trio.testing.MockClock) -> None:
    script = Script(*[error(500, -1000, "unknown error")] * 4)
    async with client(script) as rest:
        with pytest.raises(VenueUnavailable) as caught:
            await rest.depth("BTCUSDT")
    assert caught.value.http_status == 500 and "-1000" in str(caught.value)


async def test_backoff_is_capped(autojump_clock: trio.testing.MockClock) -> None:
    settings = msgspec.structs.replace(SETTINGS, max_attempts=6, backoff_max_seconds=2.0)
    script = Script(*[error(502, 0, "bad gateway")] * 5, ok(DEPTH))
    async with client(script, settings) as rest:
        await rest.depth("BTCUSDT")
    assert script.times == [0, 0.5, 1.5, 3.5, 5.5, 7.5]


async def test_jitter_only_lengthens_the_backoff(autojump_clock: trio.testing.MockClock) -> None:
    settings = msgspec.structs.replace(SETTINGS, jitter=0.5)
    script = Script(error(500, 0, "x"), ok(DEPTH))
    async with client(script, settings) as rest:
        await rest.depth("BTCUSDT")
    assert 0.5 <= script.times[1] < 0.75


async def test_venue_error_body_is_raised_without_retry(autojump_clock: trio.testing.MockClock) -> None:
    script = Script(error(400, -1121, "Invalid symbol."))
    async with client(script) as rest:
        with pytest.raises(VenueError) as caught:
            await rest.depth("NOPE")
    assert (caught.value.code, caught.value.msg, caught.value.http_status) == (-1121, "Invalid symbol.", 400)
    assert len(script.requests) == 1 and rest.stats.retries == 0


async def test_weight_near_the_limit_waits_for_the_next_minute(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    script = Script(ok(DEPTH, weight=2200), ok(DEPTH, weight=4), ok(DEPTH, weight=6))
    with caplog.at_level(logging.WARNING, logger="actors.venues"):
        async with client(script) as rest:
            await rest.depth("BTCUSDT")  # at hh:mm:15, 2200 of 2400 used: above 90 %
            await rest.depth("BTCUSDT")
            await rest.depth("BTCUSDT")
    assert script.times == [0, 45, 45]
    assert rest.stats.weight_slowdowns == 1 and rest.stats.used_weight_1m == 6
    assert any("request weight 2200 of 2400" in r.getMessage() for r in caplog.records)


async def test_weight_below_the_threshold_does_not_wait(autojump_clock: trio.testing.MockClock) -> None:
    script = Script(ok(DEPTH, weight=2100), ok(DEPTH, weight=2110))
    async with client(script) as rest:
        await rest.depth("BTCUSDT")
        await rest.depth("BTCUSDT")
    assert script.times == [0, 0]


async def test_exchange_info_sets_the_weight_limit(autojump_clock: trio.testing.MockClock) -> None:
    info = {
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1200}],
        "symbols": [],
    }
    async with client(Script(ok(info))) as rest:
        await rest.exchange_info()
    assert rest.weight_limit == 1200


async def test_leverage_brackets_need_a_signature_on_real_venues(autojump_clock: trio.testing.MockClock) -> None:
    script = Script()
    async with client(script) as rest:
        with pytest.raises(EndpointNotPublic, match="signed"):
            await rest.leverage_brackets()
    assert script.requests == []


def test_the_public_client_cannot_write() -> None:
    """Its whole public surface: reads only (the wire side is checked against the fake exchange)."""
    public = {name for name in dir(PublicRestClient) if not name.startswith("_")}
    assert public == {
        "aclose",
        "ban_seconds_left",
        "book_ticker",
        "depth",
        "exchange_info",
        "exchange_info_raw",
        "leverage_brackets",
        "measure_clock_offset",
        "ping",
        "premium_index",
        "server_time",
        "weight_limit",
    }


async def test_depth_limit_is_validated() -> None:
    async with client(Script()) as rest:
        with pytest.raises(ValueError, match="depth limit"):
            await rest.depth("BTCUSDT", 7)
