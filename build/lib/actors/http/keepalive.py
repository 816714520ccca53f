"""Keep HTTP/1.1 keep-alive connections answering when the app replies before reading the body.

The defect (hypercorn 0.18 with quart-trio 0.12, on trio). When the app answers a request before
hypercorn has received the request's body -- a 405 for an unknown method, a 404 for an unknown
account, a 413 from ``Content-Length`` -- the last ``send`` of the response runs, in the app's
own task, hypercorn's end-of-stream bookkeeping (``H11Protocol._maybe_recycle``):

1. it delivers ``http.disconnect`` to the app (a memory-channel send, a checkpoint);
2. quart-trio's ``handle_messages`` task wakes on that disconnect and cancels the app's nursery --
   which holds the very task that is still inside ``send``;
3. since the client has not finished its body, h11 is not in DONE/DONE, so hypercorn means to
   close the connection; the close (``TCPServer._close`` → ``send_eof``) checkpoints first and
   dies of that cancellation. The socket is neither closed nor recycled, and the stream is gone.

The client, told nothing (the response had no ``Connection: close``), sends the rest of its body
and its next request on the same connection. hypercorn's reader drops the body events (no
stream), h11 reaches DONE for the old request and PAUSEs on the new one, and nothing ever calls
``start_next_cycle`` again: the next request is never answered, and the idle timer is not armed
either, so the connection stays open until the client gives up. Whether it happens depends on
whether the body's bytes reach hypercorn before or after the app's answer (the client sends
headers and body in separate segments): it is timing-dependent, and only that connection stalls.
The same cancellation also hits the healthy path after ``start_next_cycle``: hypercorn's
``Updated(idle=True)`` never re-arms the keep-alive timeout, so a connection that has served one
request is never closed for idleness.

The fix, at the ASGI boundary (no library patch):

* every ``send`` of an HTTP response runs shielded from cancellation, so hypercorn's bookkeeping
  inside it always completes (hypercorn already shields the socket write itself);
* when the response starts before the request body has arrived, the guard either keeps the
  connection (the unread rest is at most ``drain_limit`` bytes: the final, empty body message is
  held back until the body has arrived, so h11 is DONE/DONE and hypercorn recycles the connection;
  the client has the whole answer meanwhile, as the bytes before that message are already sent)
  or gives it up honestly (larger or chunked bodies: ``Connection: close`` on the response, and
  the same wait lets the rest of the body arrive before the close, so the close is a FIN and not
  a reset that could destroy the answer in the client's buffer). Either wait is bounded by
  ``drain_seconds`` (and ended by a shutdown); a client that stalls longer gets its answer and
  then a closed connection.

This relies on the framework reading ``receive`` in a task of its own while it responds, as
Quart does; otherwise the wait simply runs to its bound.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _declared_body(scope: Scope) -> int | None:
    """The request body's declared length: 0 for none, ``None`` when unknown (chunked)."""
    length = 0
    for name, value in scope.get("headers", ()):
        name = name.lower()
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return None
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None
    return length


class _Exchange:
    """One request/response: what the app has received of the body, and the guarded send."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, drain_limit: int,
                 drain_seconds: float) -> None:
        self._receive = receive
        self._send = send
        self._drain_limit = drain_limit
        self._drain_seconds = drain_seconds
        self.declared = _declared_body(scope)
        self.received = 0
        self.body_done = trio.Event()
        if self.declared == 0:
            self.body_done.set()

    async def receive(self) -> Message:
        """The server's next message, noting how much of the body has arrived and when it ends."""
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.body_done.set()
        elif message["type"] == "http.disconnect":
            self.body_done.set()
        return message

    async def send(self, message: Message) -> None:
        """Forward ``message``, shielded; hold the response's end until the body has arrived.

        The wait for the body is not shielded (a shutdown ends it early); the forward always is,
        even after a cancellation, so hypercorn ends the stream and recycles or closes.
        """
        try:
            if message["type"] == "http.response.start" and not self.body_done.is_set():
                unread = None if self.declared is None else self.declared - self.received
                if unread is None or unread > self._drain_limit:
                    message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            elif (message["type"] == "http.response.body" and not message.get("more_body", False)
                  and not self.body_done.is_set()):
                with trio.move_on_after(self._drain_seconds):
                    await self.body_done.wait()
        finally:
            with trio.CancelScope(shield=True):
                await self._send(message)


class KeepAliveGuard:
    """ASGI wrapper around the front door; see the module docstring for the defect it avoids."""

    def __init__(self, app: ASGIApp, *, drain_limit: int, drain_seconds: float) -> None:
        self.app = app
        self.drain_limit = drain_limit
        self.drain_seconds = drain_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, receive, send, self.drain_limit, self.drain_seconds)
        await self.app(scope, exchange.receive, exchange.send)
