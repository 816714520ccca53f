"""The user-data stream task on trio's virtual clock: websockets over in-memory streams, the
listen-key endpoints behind ``httpx.MockTransport``. Jitter is 0: reconnect times are exact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
import trio
import trio.testing
from trio_websocket import WebSocketConnection, wrap_client_stream, wrap_server_stream

from actors.venues.credentials import HmacCredentials
from actors.venues.profiles import get_profile
from actors.venues.signed_http import CredentialsRejected, TradingSettings
from actors.venues.trading import TradingClient
from actors.venues.user_events import (
    AccountUpdate,
    ListenKeyExpired,
    OrderTradeUpdate,
    StreamConnected,
    StreamDisconnected,
    UserStreamMessage,
)
from actors.venues.user_stream import UserStreamSettings, user_stream

PAYLOADS = Path(__file__).parent / "payloads" / "account"
PROFILE = get_profile("binance-usdm", rest_url="https://fapi.test", ws_url="wss://fstream.test")
SETTINGS = UserStreamSettings(reconnect_initial_seconds=0.5, reconnect_max_seconds=4.0, reconnect_jitter=0.0)


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


class ListenKeys:
    """``/fapi/v1/listenKey`` behind a MockTransport: POST hands out key-1, key-2...; PUT answers
    from ``keepalive_answers`` (then 200)."""

    def __init__(self, *keepalive_answers: httpx.Response) -> None:
        self.created: list[float] = []
        self.kept_alive: list[float] = []
        self.keepalive_answers = list(keepalive_answers)
        self.refuse_credentials = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/fapi/v1/listenKey"
        if self.refuse_credentials:
            return httpx.Response(401, json={"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})
        if request.method == "POST":
            self.created.append(trio.current_time())
            return httpx.Response(200, json={"listenKey": f"key-{len(self.created)}"})
        self.kept_alive.append(trio.current_time())
        return self.keepalive_answers.pop(0) if self.keepalive_answers else httpx.Response(200, json={})


class Exchange:
    """The venue's websocket side: accepts connections over in-memory streams."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.urls: list[tuple[float, str]] = []
        self.refusals = 0
        self._accepted_tx, self.accepted = trio.open_memory_channel[WebSocketConnection](8)

    @asynccontextmanager
    async def connect(self, url: str) -> AsyncIterator[WebSocketConnection]:
        if self.refusals:
            self.refusals -= 1
            raise OSError("connection refused")
        self.urls.append((trio.current_time(), url))
        client_stream, server_stream = trio.testing.memory_stream_pair()

        async def accept() -> None:
            request = await wrap_server_stream(self.nursery, server_stream)
            await self._accepted_tx.send(await request.accept())

        self.nursery.start_soon(accept)
        ws = await wrap_client_stream(self.nursery, client_stream, "fstream.test", url.split("fstream.test", 1)[1])
        try:
            yield ws
        finally:
            await ws.aclose()


def trading_client(keys: ListenKeys) -> TradingClient:
    return TradingClient(
        PROFILE,
        HmacCredentials("k" * 64, "s" * 64),
        account_id="acct-1",
        clock=lambda: 1_699_999_995.0 + trio.current_time(),
        settings=TradingSettings(jitter=0.0),
        transport=httpx.MockTransport(keys),
    )


async def test_events_are_delivered_typed_and_the_key_kept_alive(autojump_clock: trio.testing.MockClock) -> None:
    keys = ListenKeys()
    send, receive = trio.open_memory_channel[UserStreamMessage](16)
    async with trio.open_nursery() as nursery:
        exchange = Exchange(nursery)
        status = await nursery.start(
            lambda task_status: user_stream(trading_client(keys), PROFILE, send, settings=SETTINGS,
                                            connect=exchange.connect, task_status=task_status)
        )
        assert await receive.receive() == StreamConnected(reconnect=False)
        assert exchange.urls == [(0.0, "wss://fstream.test/ws/key-1")]
        server = await exchange.accepted.receive()
        for message in (payload("binance_ws_ORDER_TRADE_UPDATE.json"), b"not json",
                        payload("binance_ws_TRADE_LITE.json"), payload("binance_ws_ACCOUNT_UPDATE.json")):
            await server.send_message(message.decode())
        assert isinstance(await receive.receive(), OrderTradeUpdate)
        assert isinstance(await receive.receive(), AccountUpdate)
        await trio.sleep(3600.5)
        assert keys.kept_alive == [1800.0, 3600.0] and keys.created == [0.0]
        assert (status.events, status.malformed, status.ignored, status.keepalives) == (2, 1, 1, 2)
        assert status.connected and status.connections == 1
        nursery.cancel_scope.cancel()


async def test_an_expired_key_is_recreated_at_once(autojump_clock: trio.testing.MockClock) -> None:
    keys = ListenKeys()
    send, receive = trio.open_memory_channel[UserStreamMessage](16)
    async with trio.open_nursery() as nursery:
        exchange = Exchange(nursery)
        await nursery.start(
            lambda task_status: user_stream(trading_client(keys), PROFILE, send, settings=SETTINGS,
                                            connect=exchange.connect, task_status=task_status)
        )
        assert await receive.receive() == StreamConnected(reconnect=False)
        server = await exchange.accepted.receive()
        await trio.sleep(100)
        await server.send_message(payload("binance_ws_listenKeyExpired.json").decode())
        assert await receive.receive() == ListenKeyExpired(event_time=1736996475556)
        assert await receive.receive() == StreamDisconnected(reason="listen key expired")
        assert await receive.receive() == StreamConnected(reconnect=True)
        assert keys.created == [0.0, 100.0]
        assert exchange.urls == [(0.0, "wss://fstream.test/ws/key-1"), (100.0, "wss://fstream.test/ws/key-2")]
        nursery.cancel_scope.cancel()


async def test_a_key_the_venue_forgot_is_recreated(autojump_clock: trio.testing.MockClock) -> None:
    keys = ListenKeys(httpx.Response(400, json={"code": -1125, "msg": "This listenKey does not exist."}))
    send, receive = trio.open_memory_channel[UserStreamMessage](16)
    async with trio.open_nursery() as nursery:
        exchange = Exchange(nursery)
        await nursery.start(
            lambda task_status: user_stream(trading_client(keys), PROFILE, send, settings=SETTINGS,
                                            connect=exchange.connect, task_status=task_status)
        )
        assert await receive.receive() == StreamConnected(reconnect=False)
        assert await receive.receive() == StreamDisconnected(reason="listen key no longer valid (-1125)")
        assert await receive.receive() == StreamConnected(reconnect=True)
        assert (keys.kept_alive, keys.created) == ([1800.0], [0.0, 1800.0])
        nursery.cancel_scope.cancel()


async def test_a_lost_connection_is_reopened_with_backoff(autojump_clock: trio.testing.MockClock) -> None:
    keys = ListenKeys()
    delivered: list[UserStreamMessage] = []
    async with trio.open_nursery() as nursery:
        exchange = Exchange(nursery)
        status = await nursery.start(
            lambda task_status: user_stream(trading_client(keys), PROFILE, delivered.append, settings=SETTINGS,
                                            connect=exchange.connect, task_status=task_status)
        )
        server = await exchange.accepted.receive()
        await trio.sleep(10)
        exchange.refusals = 2
        await server.aclose(code=1001, reason="going away")
        await exchange.accepted.receive()
        await trio.testing.wait_all_tasks_blocked()
        assert [t for t, _ in exchange.urls] == [0.0, 13.5]  # 0.5 s, refused, 1 s, refused, 2 s
        assert keys.created == [0.0, 10.5, 11.5, 13.5]
        assert delivered == [
            StreamConnected(reconnect=False),
            StreamDisconnected(reason="closed with code 1001: going away"),
            StreamConnected(reconnect=True),
        ]
        assert status.connections == 2 and status.connected
        nursery.cancel_scope.cancel()


async def test_rejected_credentials_end_the_stream(autojump_clock: trio.testing.MockClock) -> None:
    keys = ListenKeys()
    keys.refuse_credentials = True
    async with trio.open_nursery() as nursery:
        exchange = Exchange(nursery)
        with pytest.raises(CredentialsRejected):
            await nursery.start(
                lambda task_status: user_stream(trading_client(keys), PROFILE, lambda m: None, settings=SETTINGS,
                                                connect=exchange.connect, task_status=task_status)
            )
    assert exchange.urls == []


async def test_a_consumer_that_closes_its_channel_stops_the_stream(autojump_clock: trio.testing.MockClock) -> None:
    keys = ListenKeys()
    send, receive = trio.open_memory_channel[UserStreamMessage](0)
    async with trio.open_nursery() as nursery:
        exchange = Exchange(nursery)
        done = trio.Event()

        async def run() -> None:
            await user_stream(trading_client(keys), PROFILE, send, settings=SETTINGS, connect=exchange.connect)
            done.set()

        nursery.start_soon(run)
        assert await receive.receive() == StreamConnected(reconnect=False)
        server = await exchange.accepted.receive()
        await receive.aclose()
        await server.send_message(msgspec.json.encode({"e": "listenKeyExpired", "E": 1}).decode())
        with trio.fail_after(5):
            await done.wait()
        nursery.cancel_scope.cancel()
