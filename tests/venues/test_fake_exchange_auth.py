"""The fake exchange's request authentication over real loopback sockets: HMAC and Aster V3 EIP-712.

Real clock: each test is bounded by ``trio.fail_after``; clock skew and the passing of time are
scripted with ``fake.clock_offset_ms`` (the venue's clock), never waited for.
"""

from __future__ import annotations

import pytest
import trio
from eth_account import Account as EthAccount

from tests.venues.trading_support import (
    DOC_API_KEY,
    DOC_QUERY,
    DOC_SECRET,
    DOC_SIGNATURE,
    TIMEOUT,
    Client,
    eip712_sign,
    hmac_hex,
    open_venue,
)

BTC_LIMIT = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.001",
    "price": "59000",
}


def test_binance_published_hmac_example() -> None:
    assert hmac_hex(DOC_SECRET, DOC_QUERY) == DOC_SIGNATURE


async def test_binance_published_example_is_accepted_at_its_timestamp() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue:
            fake = venue.fake
            fake.add_account("doc", api_key=DOC_API_KEY, api_secret=DOC_SECRET, wallet="100000")
            fake.set_mark("BTCUSDT", "9000")
            fake.set_book("BTCUSDT", bids=[("8999", "5")], asks=[("9001", "5")])
            fake.clock_offset_ms = 1591702613943 + 100 - fake.server_ms()  # the venue's clock at the example's time
            client = Client(fake, venue.http, "v1", api_key=DOC_API_KEY, secret=DOC_SECRET)
            response = await client.send_raw("POST", "/fapi/v1/order", f"{DOC_QUERY}&signature={DOC_SIGNATURE}")
            upper_case = await client.send_raw(
                "POST", "/fapi/v1/order", f"{DOC_QUERY}&signature={DOC_SIGNATURE.upper()}"
            )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "NEW" and response.json()["price"] == "9000.00"
    assert upper_case.status_code == 200  # "The signature is not case sensitive."
    assert [r.account for r in fake.requests] == ["doc", "doc"]


async def test_hmac_signature_over_query_and_body_concatenated() -> None:
    """Binance's example 3: query string + body with no '&' between them."""
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue:
            client, fake = venue.client, venue.fake
            query = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
            body = f"quantity=0.001&price=59000&recvWindow=5000&timestamp={client.now_ms()}"
            signature = hmac_hex(client.secret, query + body)
            response = await venue.http.post(
                f"/fapi/v1/order?{query}",
                content=f"{body}&signature={signature}".encode(),
                headers={"X-MBX-APIKEY": client.api_key, "Content-Type": "application/x-www-form-urlencoded"},
            )
            wrong = hmac_hex(client.secret, query + "&" + body)
            refused = await venue.http.post(
                f"/fapi/v1/order?{query}",
                content=f"{body}&signature={wrong}".encode(),
                headers={"X-MBX-APIKEY": client.api_key, "Content-Type": "application/x-www-form-urlencoded"},
            )
    assert response.status_code == 200, response.text
    assert (refused.status_code, refused.json()) == (
        400,
        {"code": -1022, "msg": "Signature for this request is not valid."},
    )
    assert fake.requests[0].body["quantity"] == "0.001" and fake.requests[0].api_key


@pytest.mark.parametrize("flavour", ["aster", "binance"])
async def test_hmac_key_and_signature_errors(flavour: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue(flavour) as venue:  # type: ignore[arg-type]
            client = venue.client
            no_key = await venue.http.get(
                "/fapi/v1/openOrders", params={"timestamp": client.now_ms(), "signature": "00"}
            )
            malformed = await venue.http.get("/fapi/v1/openOrders", headers={"X-MBX-APIKEY": "short-key"})
            unknown = Client(venue.fake, venue.http, "v1", api_key="A" * 64, secret="x")
            unknown_key = await unknown.call("GET", "openOrders")
            bad_secret = Client(venue.fake, venue.http, "v1", api_key=client.api_key, secret="not-the-secret")
            bad_signature = await bad_secret.call("GET", "openOrders")
            no_signature = await venue.http.get(
                "/fapi/v1/openOrders", params={"timestamp": client.now_ms()}, headers={"X-MBX-APIKEY": client.api_key}
            )
            no_timestamp = await client.send_raw(
                "GET", "/fapi/v1/openOrders", f"signature={hmac_hex(client.secret, '')}"
            )
            huge_window = await client.call("GET", "openOrders", {"recvWindow": 60001})
            fine = await client.call("GET", "openOrders", {"recvWindow": 60000})
    assert (no_key.status_code, no_key.json()["code"]) == (401, -2014)
    assert (malformed.status_code, malformed.json()) == (401, {"code": -2014, "msg": "API-key format invalid."})
    assert unknown_key.status_code == 401
    assert unknown_key.json() == {
        "code": -2015,
        "msg": "Invalid API-key, IP, or permissions for action, request ip: 127.0.0.1",
    }
    assert (bad_signature.status_code, bad_signature.json()["code"]) == (400, -1022)
    assert (no_signature.status_code, no_signature.json()["code"]) == (400, -1102)
    assert "'signature'" in no_signature.json()["msg"]
    assert (no_timestamp.status_code, no_timestamp.json()["code"]) == (400, -1102)
    assert (huge_window.status_code, huge_window.json()["code"]) == (400, -1130)
    assert fine.status_code == 200 and fine.json() == []


async def test_timestamp_outside_the_window_until_the_client_resyncs() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("binance") as venue:
            fake, client = venue.fake, venue.client
            fake.clock_offset_ms = 7_000  # the venue runs 7 s ahead of the client's clock
            behind = await client.call("GET", "openOrders")
            wide = await client.call("GET", "openOrders", {"recvWindow": 8000})
            fake.clock_offset_ms = -3_000  # now the client is 3 s ahead
            ahead = await client.call("GET", "openOrders")
            server_time = (await venue.http.get("/fapi/v1/time")).json()["serverTime"]
            client.skew_ms = server_time - client.now_ms()  # resync from GET /fapi/v1/time
            resynced = await client.call("GET", "openOrders")
    assert (behind.status_code, behind.json()) == (
        400,
        {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."},
    )
    assert wide.status_code == 200
    assert ahead.json() == {"code": -1021, "msg": "Timestamp for this request was 1000ms ahead of the server's time."}
    assert resynced.status_code == 200


async def test_user_stream_endpoints_need_the_key_only_on_hmac_apis() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster") as venue:
            key = await venue.client.listen_key()
            unsigned = await venue.http.put("/fapi/v1/listenKey", headers={"X-MBX-APIKEY": venue.client.api_key})
            keyless = await venue.http.post("/fapi/v1/listenKey")
            v3_unsigned = await venue.http.post("/fapi/v3/listenKey")
    assert len(key) == 64 and key.isalnum()
    assert unsigned.status_code == 200 and unsigned.json() == {}
    assert keyless.json()["code"] == -2014
    assert (v3_unsigned.status_code, v3_unsigned.json()["code"]) == (400, -1102)  # V3 needs nonce/signer/signature


# -- Aster V3 -------------------------------------------------------------------------------------


async def test_v3_signature_made_with_eth_account_is_accepted() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster", api="v3") as venue:
            client, fake = venue.client, venue.fake
            placed = await client.ok("POST", "order", BTC_LIMIT)
            queried = await client.ok("GET", "order", {"symbol": "BTCUSDT", "orderId": placed["orderId"]})
            in_query = await client.call(
                "DELETE", "order", {"symbol": "BTCUSDT", "orderId": placed["orderId"]}, in_body=False
            )
            key = await client.listen_key()
    assert queried["status"] == "NEW" and queried["clientOrderId"] == placed["clientOrderId"]
    assert in_query.status_code == 200 and in_query.json()["status"] == "CANCELED"
    assert len(key) == 64
    assert {r.account for r in fake.requests} == {"trader"}


async def test_v3_without_user_like_asters_order_demo() -> None:
    """Aster's order demo sends nonce and signer only: the signer names the account."""
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster", api="v3") as venue:
            client = venue.client
            from urllib.parse import urlencode

            text = urlencode({**BTC_LIMIT, "nonce": client.now_ms() * 1000, "signer": client.signer})
            response = await client.send_raw(
                "POST", "/fapi/v3/order", f"{text}&signature={eip712_sign(text, client.private_key)}"
            )
    assert response.status_code == 200, response.text


async def test_v3_refusals() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster", api="v3") as venue:
            client, fake = venue.client, venue.fake
            stranger = EthAccount.create()
            forged = Client(
                fake, venue.http, "v3", user=client.user, signer=client.signer, private_key=bytes(stranger.key)
            )
            unknown_signer = Client(
                fake, venue.http, "v3", user=client.user, signer=stranger.address, private_key=bytes(stranger.key)
            )
            other_user = Client(
                fake, venue.http, "v3", user=stranger.address, signer=client.signer, private_key=client.private_key
            )
            testnet_signature = Client(
                fake,
                venue.http,
                "v3",
                user=client.user,
                signer=client.signer,
                private_key=client.private_key,
                chain_id=714,
            )
            results = {
                "forged": await forged.call("GET", "openOrders"),
                "unknown signer": await unknown_signer.call("GET", "openOrders"),
                "other user": await other_user.call("GET", "openOrders"),
                "testnet chain": await testnet_signature.call("GET", "openOrders"),
                "garbage": await client.send_raw(
                    "GET", "/fapi/v3/openOrders", f"nonce=1&signer={client.signer}&signature=0xzz"
                ),
            }
            fake.chain_id = 714
            on_testnet = await testnet_signature.call("GET", "openOrders")
    codes = {name: (r.status_code, r.json()["code"]) for name, r in results.items()}
    assert codes == {
        "forged": (400, -1022),
        "unknown signer": (401, -2015),
        "other user": (401, -2015),
        "testnet chain": (400, -1022),
        "garbage": (400, -1022),
    }
    assert on_testnet.status_code == 200


async def test_v3_nonce_window_duplicates_and_expiry() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_venue("aster", api="v3") as venue:
            client, fake = venue.client, venue.fake
            first = client.signed_query({})
            accepted = await client.send_raw("GET", "/fapi/v3/openOrders", first)
            replayed = await client.send_raw("GET", "/fapi/v3/openOrders", first)
            # fill the memory of 100 nonces, all newer than a nonce we keep for later
            old = client.signed_query({})
            for _ in range(100):
                assert (await client.send_raw("GET", "/fapi/v3/openOrders", client.signed_query({}))).status_code == 200
            too_old = await client.send_raw("GET", "/fapi/v3/openOrders", old)
            fake.clock_offset_ms = 11_000  # the client's clock is now 11 s behind the venue's
            stale = await client.call("GET", "openOrders")
            server_ms = (await venue.http.get("/fapi/v3/time")).json()["serverTime"]
            client.skew_ms = server_ms - int(fake.clock() * 1000)
            resynced = await client.call("GET", "openOrders")
    assert accepted.status_code == 200
    assert (replayed.status_code, replayed.json()) == (400, {"code": -4225, "msg": "Nonce Expired"})
    assert too_old.json() == {"code": -4225, "msg": "Nonce Expired"}
    assert (stale.status_code, stale.json()["code"]) == (400, -1021)
    assert resynced.status_code == 200
