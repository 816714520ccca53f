"""User-data streams: listen keys and the ``/ws/<listenKey>`` websockets that carry account events.

Listen keys follow the venues' rules: valid 60 minutes of the server clock; ``POST`` on an account
with an active key returns that key and extends it; ``PUT`` extends it, or answers -1125 "This
listenKey does not exist." when the account has none (expired, closed or never created);
``DELETE`` invalidates it and closes its websockets. At expiry every websocket of the key gets
``listenKeyExpired`` and then nothing more (the connection stays open, as Binance documents).

Several websockets may share a key; each gets every event of the account, in production order,
with strictly increasing ``E``. A handshake on a key that is not active is refused with HTTP 400
and -1125 (the venues' behaviour there is undocumented). Each session has an unbounded queue:
fine for a test double, which must never drop or block on an event.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import trio
import wsproto
from wsproto.events import CloseConnection, Ping, TextMessage

from . import _payloads as payloads
from ._accounts import Account, ListenKey
from ._errors import VenueError
from actors.tools.loopback import HttpResponse, WebSocketUpgrade
from actors.tools.venue_market import Flavour
from ._timers import Timers

log = logging.getLogger("tests.fake_exchange")

LISTEN_KEY_MS: Final = 60 * 60 * 1000
_encode = msgspec.json.Encoder().encode
_KEY_CHARS: Final = string.ascii_letters + string.digits


@dataclass(eq=False)
class UserSession:
    """One websocket on a listen key."""

    id: int
    key: str
    account: Account
    stream: trio.abc.Stream
    ws: wsproto.connection.Connection
    send: trio.MemorySendChannel[str]
    receive: trio.MemoryReceiveChannel[str]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    lock: trio.StrictFIFOLock = field(default_factory=trio.StrictFIFOLock)
    events_sent: int = 0

    async def send_bytes(self, data: bytes) -> None:
        async with self.lock:
            await self.stream.send_all(data)


class UserStreams:
    """Every listen key and user-data websocket of one fake venue."""

    def __init__(
        self,
        flavour: Flavour,
        server_ms: Callable[[], int],
        event_ms: Callable[[], int],
        timers: Timers,
        notify: Callable[[], None],
    ) -> None:
        self.flavour: Flavour = flavour
        self.server_ms = server_ms
        self.event_ms = event_ms
        self.timers = timers
        self.notify = notify
        self.sessions: dict[int, UserSession] = {}
        self.keys: dict[str, Account] = {}
        self._session_ids = itertools.count(1)
        self._random = random.Random(714)

    # -- listen keys ---------------------------------------------------------------------------

    def start(self, account: Account) -> str:
        """``POST listenKey``: the active key (extended) or a new one."""
        current = account.listen_key
        if current is not None and current.active:
            return self._extend(account, current)
        key = "".join(self._random.choice(_KEY_CHARS) for _ in range(64))
        account.listen_key = ListenKey(key, 0)
        self.keys[key] = account
        return self._extend(account, account.listen_key)

    def keepalive(self, account: Account, key: str | None) -> None:
        """``PUT listenKey``: -1125 unless the account has an active key (and it is ``key``, if given)."""
        current = account.listen_key
        if current is None or not current.active or (key and key != current.key):
            raise VenueError(-1125)
        self._extend(account, current)

    def close(self, account: Account, key: str | None) -> None:
        """``DELETE listenKey``: invalidate the key and close its websockets."""
        current = account.listen_key
        if current is None or not current.active or (key and key != current.key):
            raise VenueError(-1125)
        current.active = False
        self.timers.cancel(("listenKey", current.key))
        for session in self.sessions_of(current.key):
            session.scope.cancel()

    def expire(self, account: Account) -> None:
        """The account's key expires now: ``listenKeyExpired``, then silence; -1125 afterwards."""
        current = account.listen_key
        if current is None or not current.active:
            return
        self.timers.cancel(("listenKey", current.key))
        event = payloads.listen_key_expired_event(self.flavour, current.key, self.server_ms())
        self.emit(account, event)
        current.active = False
        current.expires_ms = min(current.expires_ms, self.server_ms())
        self.notify()

    def _extend(self, account: Account, key: ListenKey) -> str:
        key.expires_ms = self.server_ms() + LISTEN_KEY_MS
        self.timers.schedule(("listenKey", key.key), key.expires_ms, lambda: self.expire(account))
        return key.key

    def active_key(self, key: str) -> Account | None:
        account = self.keys.get(key)
        if (
            account is None
            or account.listen_key is None
            or account.listen_key.key != key
            or not account.listen_key.active
        ):
            return None
        return account

    def sessions_of(self, key: str) -> list[UserSession]:
        return [s for s in self.sessions.values() if s.key == key]

    # -- events --------------------------------------------------------------------------------

    def emit(self, account: Account, event: dict[str, Any]) -> None:
        """Stamp ``E`` and deliver ``event`` to every websocket on the account's active key."""
        stamp = self.event_ms()
        event["E"] = str(stamp) if event.get("E") == "" else stamp
        account.events.append(event)
        current = account.listen_key
        if current is not None and current.active:
            text = _encode(event).decode()
            for session in self.sessions_of(current.key):
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    session.send.send_nowait(text)
        self.notify()

    def drop_all(self) -> int:
        """Abort every user-data websocket (TCP closed, no closing handshake)."""
        for session in self.sessions.values():
            session.scope.cancel()
        return len(self.sessions)

    # -- websockets ------------------------------------------------------------------------------

    def refusal(self, key: str) -> HttpResponse | None:
        """None to accept a handshake on ``key``, else the -1125 refusal."""
        return None if self.active_key(key) is not None else VenueError(-1125).response()

    async def serve(self, upgrade: WebSocketUpgrade, key: str) -> None:
        account = self.active_key(key)
        if account is None:
            return
        send, receive = trio.open_memory_channel[str](math.inf)
        session = UserSession(next(self._session_ids), key, account, upgrade.stream, upgrade.ws, send, receive)
        self.sessions[session.id] = session
        self.notify()
        try:
            with session.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write, session)
                    await self._read(session)
                    nursery.cancel_scope.cancel()
        finally:
            del self.sessions[session.id]
            self.notify()

    async def _write(self, session: UserSession) -> None:
        async for text in session.receive:
            if session.ws.state is not wsproto.ConnectionState.OPEN:
                return
            try:
                await session.send_bytes(session.ws.send(TextMessage(data=text)))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                session.scope.cancel()
                return
            session.events_sent += 1

    async def _read(self, session: UserSession) -> None:
        """Answer pings and the closing handshake; client text frames are ignored."""
        ws = session.ws
        while True:
            for event in ws.events():
                if isinstance(event, Ping) and ws.state is wsproto.ConnectionState.OPEN:
                    await session.send_bytes(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if ws.state is wsproto.ConnectionState.REMOTE_CLOSING:
                        await session.send_bytes(ws.send(event.response()))
                    return
            try:
                data = await session.stream.receive_some(65_536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the client's process died (a connection reset): its session ends
            ws.receive_data(bytes(data) if data else None)
            if not data:
                for _event in ws.events():
                    pass
                return
