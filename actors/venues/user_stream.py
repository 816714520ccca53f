"""The user-data stream of one account: orders, fills, balances and positions as they change.

:func:`user_stream` is a long-lived task. It creates a listen key with the account's
:class:`~actors.venues.trading.TradingClient`, connects ``{ws_url}/ws/{listenKey}``, keeps the key
alive (``PUT`` every ``keepalive_interval_seconds``, 30 min by default; the venues drop a key
after 60 min), recreates it on ``listenKeyExpired`` or ``-1125``, and reconnects with exponential
backoff and jitter whenever the connection is lost. It delivers, in order:

* :class:`~actors.venues.user_events.StreamConnected` on every (re)connection -- after
  ``reconnect=True`` events may have been missed, so the caller reconciles over REST;
* the parsed events (:data:`~actors.venues.user_events.UserEvent`);
* :class:`~actors.venues.user_events.StreamDisconnected` when a connection is lost.

``deliver`` is a synchronous callable (it must not block) or a bounded
``trio.MemorySendChannel`` (the stream waits for room: events are never dropped; a consumer that
closes its end stops the stream). Rejected credentials end the task with
:class:`~actors.venues.signed_http.CredentialsRejected`; every other failure is retried. The key
is not closed on exit: a venue hands the same active key to every stream of the account.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Final

import msgspec
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from actors.venues.parsing import ParseError
from actors.venues.profiles import VenueProfile
from actors.venues.rest import VenueIOError
from actors.venues.signed_http import CredentialsRejected, ListenKeyInvalid
from actors.venues.trading import TradingClient
from actors.venues.user_events import (
    ListenKeyExpired,
    StreamConnected,
    StreamDisconnected,
    UserStreamMessage,
    parse_user_event,
)

__all__ = ["Connect", "Deliver", "UserStreamSettings", "UserStreamStatus", "user_stream"]

log = logging.getLogger("actors.venues.user_stream")

Deliver = Callable[[UserStreamMessage], None] | trio.MemorySendChannel[UserStreamMessage]
#: opens a websocket to a URL (injectable: tests connect over in-memory streams)
Connect = Callable[[str], AbstractAsyncContextManager[WebSocketConnection]]

_CONNECTION_ERRORS: Final = (HandshakeError, ConnectionClosed, OSError, trio.BrokenResourceError)


class UserStreamSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Timings of the user-data stream. Defaults suit production; tests shrink them."""

    keepalive_interval_seconds: float = 1800.0
    #: after a failed keepalive, try again this soon
    keepalive_retry_seconds: float = 60.0
    reconnect_initial_seconds: float = 0.5
    reconnect_max_seconds: float = 30.0
    #: each reconnect delay is multiplied by a random factor in [1, 1 + jitter)
    reconnect_jitter: float = 0.25
    ping_interval_seconds: float = 30.0
    pong_timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 10.0
    disconnect_timeout_seconds: float = 2.0
    message_queue_size: int = 64
    max_message_size: int = 1024 * 1024

    def __post_init__(self) -> None:
        if self.keepalive_interval_seconds <= 0 or self.keepalive_retry_seconds <= 0:
            raise ValueError("keepalive intervals must be positive")
        if self.keepalive_interval_seconds >= 3600:
            raise ValueError("keepalive_interval_seconds must be below the key's 60 min lifetime")
        if not 0 <= self.reconnect_initial_seconds <= self.reconnect_max_seconds:
            raise ValueError("reconnect backoff must satisfy 0 <= initial <= max")


class UserStreamStatus:
    """The live state of one user stream. Mutated by the stream only; read it freely."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.connected = False
        self.connections = 0
        self.listen_keys_created = 0
        self.keepalives = 0
        self.keepalive_failures = 0
        self.messages = 0
        self.events = 0
        self.ignored = 0
        self.malformed = 0
        self.last_message_at: float | None = None  # trio time
        self.last_disconnect_reason = ""

    def __repr__(self) -> str:
        return f"<UserStreamStatus {self.account_id} connected={self.connected} connections={self.connections}>"


class _ConsumerGone(Exception):
    """The consumer closed its end of the delivery channel."""


def _sender(deliver: Deliver) -> Callable[[UserStreamMessage], Awaitable[None]]:
    if isinstance(deliver, trio.MemorySendChannel):
        channel = deliver

        async def send(message: UserStreamMessage) -> None:
            try:
                await channel.send(message)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise _ConsumerGone from exc

        return send

    async def call(message: UserStreamMessage) -> None:
        deliver(message)

    return call


async def user_stream(
    client: TradingClient,
    profile: VenueProfile,
    deliver: Deliver,
    *,
    settings: UserStreamSettings | None = None,
    connect: Connect | None = None,
    rng: random.Random | None = None,
    task_status: trio.TaskStatus[UserStreamStatus] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the account's user-data stream until cancelled (or its consumer goes away).

    Reports started with its :class:`UserStreamStatus` once the first connection is up.

    Raises:
        CredentialsRejected: the venue refused the account's credentials.
    """
    settings = settings or UserStreamSettings()
    connect = connect or functools.partial(
        open_websocket_url,
        connect_timeout=settings.connect_timeout_seconds,
        disconnect_timeout=settings.disconnect_timeout_seconds,
        message_queue_size=settings.message_queue_size,
        max_message_size=settings.max_message_size,
    )
    rng = rng or random.Random()
    status = UserStreamStatus(client.account_id)
    send = _sender(deliver)
    label = f"{profile.name} user stream of {client.account_id}"
    attempt = 0
    started = False
    while True:
        listen_key = ""
        recreate = False
        try:
            listen_key = await client.new_listen_key()
            status.listen_keys_created += 1
            async with connect(f"{profile.ws_url}{profile.paths.ws_raw}/{listen_key}") as ws:
                status.connected = True
                status.connections += 1
                log.info("%s: connected%s", label, " again" if started else "")
                await send(StreamConnected(reconnect=started))
                if not started:
                    started = True
                    task_status.started(status)
                attempt = 0
                reason, recreate = await _serve(ws, client, send, status, settings, label)
        except _ConsumerGone:
            log.info("%s: the consumer closed its channel; stopping", label)
            return
        except CredentialsRejected:
            raise
        except (VenueIOError, *_CONNECTION_ERRORS) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        if listen_key:
            reason = reason.replace(listen_key, "<listenKey>")
        status.last_disconnect_reason = reason
        if status.connected:
            status.connected = False
            log.warning("%s: disconnected: %s", label, reason)
            try:
                await send(StreamDisconnected(reason=reason))
            except _ConsumerGone:
                return
        else:
            log.warning("%s: cannot connect: %s", label, reason)
        if recreate:
            continue  # the key is gone: a new one at once
        base = min(settings.reconnect_max_seconds, settings.reconnect_initial_seconds * 2**attempt)
        attempt += 1
        await trio.sleep(base * (1.0 + settings.reconnect_jitter * rng.random()))


async def _serve(
    ws: WebSocketConnection,
    client: TradingClient,
    send: Callable[[UserStreamMessage], Awaitable[None]],
    status: UserStreamStatus,
    settings: UserStreamSettings,
    label: str,
) -> tuple[str, bool]:
    """Serve one connection; returns why it ended and whether the key must be recreated.

    Nothing but cancellation escapes the nursery (so nothing comes back wrapped in an
    ExceptionGroup): every task records how the connection ended and cancels the others; a
    fatal error (rejected credentials, a consumer gone) is re-raised afterwards.

    Just over the house rule on purpose: the keep-alive and heartbeat tasks are closures sharing
    ``end`` / ``fatal`` (and the nursery's cancel scope) with the receive loop, so the three
    ways a connection ends are read in one place.
    """
    ended: list[tuple[str, bool]] = []
    fatal: list[Exception] = []

    async with trio.open_nursery() as nursery:

        def end(reason: str, recreate: bool) -> None:
            if not ended:
                ended.append((reason, recreate))
            nursery.cancel_scope.cancel()

        async def keep_alive() -> None:
            while True:
                await trio.sleep(settings.keepalive_interval_seconds)
                while True:
                    try:
                        await client.keepalive_listen_key()
                    except ListenKeyInvalid:
                        return end("listen key no longer valid (-1125)", True)
                    except CredentialsRejected as exc:
                        fatal.append(exc)
                        return end("credentials rejected", False)
                    except VenueIOError as exc:
                        status.keepalive_failures += 1
                        log.warning("%s: keepalive failed (%s); retrying in %g s", label, exc, settings.keepalive_retry_seconds)
                        await trio.sleep(settings.keepalive_retry_seconds)
                    else:
                        status.keepalives += 1
                        break

        async def heartbeat() -> None:
            try:
                while True:
                    await trio.sleep(settings.ping_interval_seconds)
                    with trio.move_on_after(settings.pong_timeout_seconds) as wait:
                        await ws.ping()
                    if wait.cancelled_caught:
                        return end(f"no pong within {settings.pong_timeout_seconds:g} s", False)
            except ConnectionClosed:
                return end("connection closed", False)

        nursery.start_soon(keep_alive)
        nursery.start_soon(heartbeat)
        try:
            while True:
                raw = await ws.get_message()
                status.messages += 1
                status.last_message_at = trio.current_time()
                try:
                    event = parse_user_event(raw)
                except ParseError as exc:
                    status.malformed += 1
                    log.warning("%s: skipping a malformed message: %s", label, exc)
                    continue
                if event is None:
                    status.ignored += 1
                    continue
                status.events += 1
                await send(event)
                if isinstance(event, ListenKeyExpired):
                    end("listen key expired", True)
        except ConnectionClosed as exc:
            close = exc.reason
            end("connection closed" if close is None else f"closed with code {close.code}: {close.reason or close.name}", False)
        except _ConsumerGone as exc:
            fatal.append(exc)
            end("consumer gone", False)
    if fatal:
        raise fatal[0]
    return ended[0] if ended else ("connection ended", False)
