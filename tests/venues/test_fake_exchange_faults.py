"""Faults on the fake exchange's trading writes, order-rate limits and request weights, over real sockets.

The point of most faults is an ambiguous outcome: the tests check both what the client saw and
whether the order really reached the venue (``fake.order_requests`` / ``fake.orders``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from tests.venues.trading_support import TIMEOUT, Venue, hmac_client, open_venue


def market(client_id: str, qty: str = "0.001") -> dict[str, Any]:
    return {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": qty, "newClientOrderId": client_id}


def placed(venue: Venue, client_id: str) -> int:
    return len(venue.fake.orders(venue.account, client_id=client_id))


async def test_accept_then_timeout_the_order_exists_but_no_answer_comes() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue:
            fake, client = venue.fake, venue.client
            fake.fault_next("timeout", path="/fapi/v1/order")
            client.http.timeout = httpx.Timeout(5, read=0.2)
            with pytest.raises(httpx.ReadTimeout):
                await client.call("POST", "order", market("t-1"))
            client.http.timeout = httpx.Timeout(5)
            found = await client.ok("GET", "order", {"symbol": "BTCUSDT", "origClientOrderId": "t-1"})
    assert found["status"] == "FILLED"
    (request,) = fake.order_requests("t-1")
    assert (request.status, request.fault, request.account) == (0, "timeout", "trader")


async def test_accept_then_drop_the_connection() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            venue.fake.fault_next("drop")
            with pytest.raises(httpx.RemoteProtocolError):
                await venue.client.call("POST", "order", market("d-1"))
            venue.fake.fault_next("drop", placed=False)
            with pytest.raises(httpx.RemoteProtocolError):
                await venue.client.call("POST", "order", market("d-2"))
    assert placed(venue, "d-1") == 1 and placed(venue, "d-2") == 0
    assert [r.status for r in venue.fake.order_requests()] == [0, 0]


@pytest.mark.parametrize("order_placed", [True, False])
async def test_503_unknown_error_with_and_without_the_order(order_placed: bool) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue:
            venue.fake.fault_next("503", placed=order_placed)
            response = await venue.client.call("POST", "order", market("u-1"))
    assert response.status_code == 503
    assert response.json() == {"code": -1000, "msg": "Unknown error, please check your request or try again later."}
    assert placed(venue, "u-1") == int(order_placed)
    assert len(venue.fake.order_requests("u-1")) == 1


async def test_failures_that_place_nothing() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            fake, client = venue.fake, venue.client
            fake.fault_next("unavailable")
            fake.fault_next("5xx", status=502)
            fake.fault_next("429", retry_after=2)
            fake.fault_next("418", retry_after=120)
            responses = [await client.call("POST", "order", market(f"f-{i}")) for i in range(4)]
            fine = await client.call("POST", "order", market("f-4"))
    unavailable, bad_gateway, limited, banned = responses
    assert fine.status_code == 200
    assert (unavailable.status_code, unavailable.json()) == (503, {"code": -1001, "msg": "Service Unavailable."})
    assert (bad_gateway.status_code, bad_gateway.json()["msg"]) == (502, "Request occur unknown error.")
    assert (limited.status_code, limited.headers["retry-after"], limited.json()["code"]) == (429, "2", -1003)
    assert (banned.status_code, banned.headers["retry-after"], banned.json()["code"]) == (418, "120", -1003)
    assert "banned until" in banned.json()["msg"]
    assert [placed(venue, f"f-{i}") for i in range(5)] == [0, 0, 0, 0, 1]
    assert [r.fault for r in fake.order_requests()] == ["unavailable", "5xx", "429", "418", None]


FORCED = [
    (-2021, 400, "Order would immediately trigger."),
    (-2019, 400, "Margin is insufficient."),
    (-4164, 400, "Order's notional must be no smaller than 5 (unless you choose reduce only)"),
    (-1001, 503, "Internal error; unable to process your request. Please try again."),
    (-1007, 408, "Timeout waiting for response from backend server. Send status unknown; execution status unknown."),
    (-1021, 400, "Timestamp for this request is outside of the recvWindow."),
]


@pytest.mark.parametrize(("code", "status", "msg"), FORCED, ids=[str(c[0]) for c in FORCED])
async def test_forced_venue_errors(code: int, status: int, msg: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue:
            venue.fake.fault_next(code, path="/fapi/v1/order")
            response = await venue.client.call("POST", "order", market("e-1"))
    assert (response.status_code, response.json()) == (status, {"code": code, "msg": msg})
    assert placed(venue, "e-1") == 0 and venue.fake.order_requests("e-1")[0].code == code


async def test_a_timeout_error_can_hide_a_placed_order() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            venue.fake.fault_next(-1007, placed=True)
            response = await venue.client.call("POST", "order", market("amb-1"))
    assert (response.status_code, response.json()["code"]) == (408, -1007)
    assert placed(venue, "amb-1") == 1


async def test_faults_hit_writes_unless_told_otherwise() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            fake, client = venue.fake, venue.client
            fake.fault_next("503")
            read = await client.call("GET", "openOrders")
            write = await client.call("POST", "order", market("w-1"))
            fake.fault_next("unavailable", method="GET", path="/fapi/v1/openOrders")
            faulted_read = await client.call("GET", "openOrders")
    assert (read.status_code, write.status_code, faulted_read.status_code) == (200, 503, 503)


# -- order-rate limits and weights ---------------------------------------------------------------


async def test_order_count_headers_and_limit_per_account() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue:
            fake, client = venue.fake, venue.client
            fake.order_limits["10s"] = 2
            first = await client.call("POST", "order", market("c-1"))
            second = await client.call("POST", "order", market("c-2"))
            third = await client.call("POST", "order", market("c-3"))
            other = fake.add_account("other")
            other_ok = await hmac_client(fake, venue.http, other).call("POST", "order", market("o-1"))
            fake.clock_offset_ms = 10_500
            client.skew_ms = fake.clock_offset_ms
            later = await client.call("POST", "order", market("c-4"))
    assert (first.headers["x-mbx-order-count-10s"], first.headers["x-mbx-order-count-1m"]) == ("1", "1")
    assert (second.headers["x-mbx-order-count-10s"], second.headers["x-mbx-order-count-1m"]) == ("2", "2")
    assert (third.status_code, third.json()) == (
        429,
        {"code": -1015, "msg": "Too many new orders; current limit is 2 orders per 10 SECOND."},
    )
    assert "retry-after" not in third.headers
    assert other_ok.status_code == 200 and other_ok.headers["x-mbx-order-count-10s"] == "1"
    assert (later.status_code, later.headers["x-mbx-order-count-10s"], later.headers["x-mbx-order-count-1m"]) == (
        200,
        "1",
        "3",
    )
    assert placed(venue, "c-3") == 0


async def test_aster_counts_orders_per_minute_only() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            response = await venue.client.call("POST", "order", market("a-1"))
    assert response.headers["x-mbx-order-count-1m"] == "1" and "x-mbx-order-count-10s" not in response.headers


@pytest.mark.parametrize(
    ("flavour", "method", "path", "params", "weight"),
    [
        ("binance", "POST", "/fapi/v1/order", market("w"), 0),
        ("aster", "POST", "/fapi/v1/order", market("w"), 1),
        ("binance", "GET", "/fapi/v3/positionRisk", {}, 5),
        ("aster", "GET", "/fapi/v2/positionRisk", {}, 5),
        ("binance", "GET", "/fapi/v1/openOrders", {}, 40),
        ("binance", "GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"}, 1),
        ("aster", "GET", "/fapi/v1/income", {}, 30),
        ("binance", "GET", "/fapi/v1/commissionRate", {"symbol": "BTCUSDT"}, 20),
        (
            "binance",
            "POST",
            "/fapi/v1/algoOrder",
            {
                "algoType": "CONDITIONAL",
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "STOP_MARKET",
                "triggerPrice": "70000",
                "quantity": "0.001",
            },
            0,
        ),
    ],
)
async def test_request_weights(flavour: str, method: str, path: str, params: dict[str, Any], weight: int) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue(flavour) as venue:  # type: ignore[arg-type]
            before = int((await venue.http.get("/fapi/v1/ping")).headers["x-mbx-used-weight-1m"])
            response = await venue.client.call(method, path, params)
    assert response.status_code == 200, response.text
    assert int(response.headers["x-mbx-used-weight-1m"]) - before == weight
