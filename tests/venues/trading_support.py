"""A small signing client for the fake exchange's trading side, written for the tests.

Deliberately independent of the service's own signing code (and of the fake's verifier): HMAC
requests are signed the way Binance's docs show, Aster V3 requests with eth-account's EIP-712
typed data as Aster's demo does. Everything goes over real loopback HTTP (httpx) and websockets
(trio-websocket).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import msgspec
from eth_account import Account as EthAccount
from eth_account.messages import encode_typed_data
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.fake_exchange import DEFAULT_SYMBOLS, Account, FakeExchange, SymbolSpec, open_fake_exchange

TIMEOUT = 10

#: Binance's published HMAC example (USDⓈ-M "SIGNED Endpoint Examples for POST /fapi/v1/order")
DOC_API_KEY = "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83"
DOC_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
DOC_QUERY = (
    "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943"
)
DOC_SIGNATURE = "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"


def hmac_hex(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def aster_typed_data(msg: str, chain_id: int) -> dict[str, Any]:
    """Aster V3's EIP-712 message, as in Aster's own order demo."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Message": [{"name": "msg", "type": "string"}],
        },
        "primaryType": "Message",
        "domain": {
            "name": "AsterSignTransaction",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": "0x0000000000000000000000000000000000000000",
        },
        "message": {"msg": msg},
    }


def eip712_sign(msg: str, private_key: bytes, chain_id: int = 1666) -> str:
    signed = EthAccount.sign_message(
        encode_typed_data(full_message=aster_typed_data(msg, chain_id)), private_key=private_key
    )
    return "0x" + signed.signature.hex().removeprefix("0x")


@dataclass
class Client:
    """Signed requests for one account: HMAC (``api="v1"``) or Aster V3 API wallet (``api="v3"``)."""

    fake: FakeExchange
    http: httpx.AsyncClient
    api: Literal["v1", "v3"] = "v1"
    api_key: str = ""
    secret: str = ""
    user: str = ""
    signer: str = ""
    private_key: bytes = b""
    #: how far this client's clock is off the fake's wall clock
    skew_ms: int = 0
    chain_id: int = 1666
    _last_nonce: int = field(default=0, repr=False)

    def now_ms(self) -> int:
        return int(self.fake.clock() * 1000) + self.skew_ms

    def signed_query(self, params: dict[str, Any]) -> str:
        """``params`` with the auth parameters and the signature, urlencoded, signature last."""
        params = {k: str(v) for k, v in params.items()}
        if self.api == "v1":
            text = urlencode({**params, "timestamp": str(self.now_ms())})
            return f"{text}&signature={hmac_hex(self.secret, text)}"
        nonce = max(self.now_ms() * 1000, self._last_nonce + 1)
        self._last_nonce = nonce
        text = urlencode({**params, "nonce": str(nonce), "user": self.user, "signer": self.signer})
        return f"{text}&signature={eip712_sign(text, self.private_key, self.chain_id)}"

    def path(self, name: str) -> str:
        """``order`` -> ``/fapi/v1/order`` or ``/fapi/v3/order`` (a full path is kept as is)."""
        return name if name.startswith("/") else f"/fapi/{self.api}/{name}"

    async def call(
        self, method: str, name: str, params: dict[str, Any] | None = None, *, in_body: bool = True
    ) -> httpx.Response:
        """A signed request; POST/PUT/DELETE send the parameters as a form body unless ``in_body=False``."""
        text = self.signed_query(params or {})
        return await self.send_raw(method, self.path(name), text, in_body=in_body)

    async def send_raw(self, method: str, path: str, text: str, *, in_body: bool = True) -> httpx.Response:
        headers = {"X-MBX-APIKEY": self.api_key} if self.api_key else {}
        if method == "GET" or not in_body:
            return await self.http.request(method, f"{path}?{text}", headers=headers)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return await self.http.request(method, path, content=text.encode(), headers=headers)

    async def ok(self, method: str, name: str, params: dict[str, Any] | None = None) -> Any:
        """A signed request that must succeed; its JSON body."""
        response = await self.call(method, name, params)
        assert response.status_code == 200, response.text
        return response.json()

    async def listen_key(self) -> str:
        """``POST listenKey``: API key only on HMAC APIs, signed on Aster V3."""
        if self.api == "v3":
            return str((await self.ok("POST", "listenKey"))["listenKey"])
        response = await self.http.post(self.path("listenKey"), headers={"X-MBX-APIKEY": self.api_key})
        assert response.status_code == 200, response.text
        return str(response.json()["listenKey"])


def hmac_client(fake: FakeExchange, http: httpx.AsyncClient, account: Account) -> Client:
    assert account.api_key and account.api_secret
    return Client(fake, http, "v1", api_key=account.api_key, secret=account.api_secret)


@dataclass
class Venue:
    """A fake exchange with one funded account and a client signed for it."""

    fake: FakeExchange
    account: Account
    client: Client
    http: httpx.AsyncClient


@asynccontextmanager
async def open_venue(
    flavour: Literal["aster", "binance"] = "aster",
    *,
    api: Literal["v1", "v3"] = "v1",
    wallet: str = "10000",
    symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS,
) -> AsyncIterator[Venue]:
    """A fake of ``flavour`` with an account (HMAC, or an Aster V3 API wallet) and its client."""
    async with (
        open_fake_exchange(flavour=flavour, symbols=symbols) as fake,
        httpx.AsyncClient(base_url=fake.rest_url, timeout=5) as http,
    ):
        if api == "v3":
            main, wallet_key = EthAccount.create(), EthAccount.create()
            account = fake.add_account("trader", user=main.address, signer=wallet_key.address, wallet=wallet)
            client = Client(
                fake, http, "v3", user=main.address, signer=wallet_key.address, private_key=bytes(wallet_key.key)
            )
        else:
            account = fake.add_account("trader", wallet=wallet)
            client = hmac_client(fake, http, account)
        yield Venue(fake, account, client, http)


@asynccontextmanager
async def user_stream(venue: Venue, key: str | None = None) -> AsyncIterator[UserStream]:
    """A websocket on the account's listen key (created if not given)."""
    key = key or await venue.client.listen_key()
    async with open_websocket_url(f"{venue.fake.ws_url}/ws/{key}") as ws:
        await venue.fake.wait_until(lambda: any(s.key == key for s in venue.fake.user_sessions.values()))
        yield UserStream(ws, key)


@dataclass
class UserStream:
    ws: WebSocketConnection
    key: str
    received: list[dict[str, Any]] = field(default_factory=list)

    async def next(self) -> dict[str, Any]:
        event = msgspec.json.decode(await self.ws.get_message())
        self.received.append(event)
        return event

    async def until(self, event_type: str, **fields: Any) -> dict[str, Any]:
        """The next event of ``event_type`` (whose ``o`` matches ``fields``, if given)."""
        while True:
            event = await self.next()
            if event.get("e") == event_type and all(event.get("o", {}).get(k) == v for k, v in fields.items()):
                return event

    async def take(self, n: int) -> list[dict[str, Any]]:
        return [await self.next() for _ in range(n)]

