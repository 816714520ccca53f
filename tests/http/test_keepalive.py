"""Keep-alive connections keep answering after an error given before the request's body was read.

The front door answers some requests without reading their bodies: 405 for an unknown method
(``PATCH``, ``QUERY``, ``TRACE``), 404 for an unknown account, 413 from ``Content-Length``.
When such an answer left before the body had reached the server, the next request on the same
connection used to get no answer at all (see ``actors/http/keepalive.py``). These tests talk
raw HTTP/1.1 over real loopback sockets to the real service and make that ordering certain
rather than lucky: they send the headers, wait for the answer, and only then send the body
(in pieces, alone or pipelined with the next request). Every request must be answered, within a
bound, while a second connection keeps polling.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from actors.service import Service, run_service
from tests.conftest import TEST_SETTINGS, make_settings

pytestmark = pytest.mark.slow

BOUND = 60  # the whole test; each answer has its own, shorter bound
ANSWER_SECONDS = 5
ROUNDS = 15
FOLLOW_UP = ("GET", "/v1/accounts")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error_code(self) -> str:
        payload = json.loads(self.body)
        assert set(payload["error"]) == {"code", "message", "field"}, payload
        return str(payload["error"]["code"])


@dataclass
class Early:
    """A request the front door answers before reading its body, and the answer it must get."""

    method: str
    path: str
    body: bytes
    status: int
    code: str
    content_length: int | None = None  # declared length when not the body's own

    def head(self) -> bytes:
        length = len(self.body) if self.content_length is None else self.content_length
        return head(self.method, self.path, length)


@dataclass
class Conn:
    """One HTTP/1.1 client connection: raw writes, responses parsed by ``Content-Length``."""

    stream: trio.SocketStream
    label: str
    buffer: bytearray = field(default_factory=bytearray)

    @classmethod
    async def open(cls, port: int, label: str) -> Conn:
        return cls(await trio.open_tcp_stream("127.0.0.1", port), label)  # TCP_NODELAY is trio's default

    async def send(self, *pieces: bytes) -> None:
        """Write ``pieces`` one write each (small segments: the body arrives piece by piece)."""
        for piece in pieces:
            await self.stream.send_all(piece)

    async def _fill(self, what: str) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise AssertionError(f"{self.label}: connection closed while waiting for {what}")
        self.buffer += data

    async def answer(self, what: str) -> Answer:
        """The next response, or an assertion naming the request that got none in time."""
        with trio.move_on_after(ANSWER_SECONDS):
            while b"\r\n\r\n" not in self.buffer:
                await self._fill(what)
            end = self.buffer.index(b"\r\n\r\n")
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers["content-length"])
            while len(self.buffer) < end + 4 + length:
                await self._fill(what)
            body = bytes(self.buffer[end + 4:end + 4 + length])
            del self.buffer[:end + 4 + length]
            return Answer(int(lines[0].split()[1]), headers, body)
        raise AssertionError(f"{self.label}: no answer to {what} within {ANSWER_SECONDS} s")

    async def closed_by_server(self, what: str) -> None:
        """Wait until the server closes (end of stream), which must not take long."""
        with trio.move_on_after(ANSWER_SECONDS):
            while True:
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return
                if not data:
                    return
        raise AssertionError(f"{self.label}: connection neither answered nor closed after {what}")

    async def aclose(self) -> None:
        await self.stream.aclose()


def head(method: str, path: str, length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: keep-alive"]
    if length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def pieces(body: bytes, count: int = 3) -> Iterator[bytes]:
    step = max(1, -(-len(body) // count))
    for start in range(0, len(body), step):
        yield body[start:start + step]


EARLY = [
    Early("PATCH", "/v1/accounts", b'{"id": null}', 405, "METHOD_NOT_ALLOWED"),
    Early("QUERY", "/v1/accounts/paper-1", b'{"symbol": "BTCUSDT"}', 405, "METHOD_NOT_ALLOWED"),
    Early("TRACE", "/v1/accounts", b'{"id": "x"}', 405, "METHOD_NOT_ALLOWED"),
    Early("PUT", "/v1/accounts/nobody/positions/BTCUSDT/protection", b'{"take_profit": "1"}', 404,
          "UNKNOWN_ACCOUNT"),
    Early("POST", "/v1/accounts/nobody/decisions", b'{"decision_id": "k-1", "symbol": "BTCUSDT"}', 404,
          "UNKNOWN_ACCOUNT"),
]


async def expect(conn: Conn, request: Early, how: str) -> Answer:
    answer = await conn.answer(f"{request.method} {request.path} ({how})")
    assert answer.status == request.status, (how, answer)
    assert answer.error_code() == request.code, (how, answer)
    return answer


async def expect_follow_up(conn: Conn, after: Early, how: str) -> None:
    answer = await conn.answer(f"{FOLLOW_UP[0]} {FOLLOW_UP[1]} after {after.method} {after.path} ({how})")
    assert answer.status == 200, (how, answer)
    assert "items" in json.loads(answer.body)


async def early_then_follow_up(conn: Conn, request: Early) -> None:
    """The four orderings of one early-answered request and the next one, on one connection."""
    follow_up = head(*FOLLOW_UP)

    # body with the headers (the usual case, and the one that always worked)
    await conn.send(request.head() + request.body)
    await expect(conn, request, "body with headers")
    await conn.send(follow_up)
    await expect_follow_up(conn, request, "body with headers")

    # the answer first, then the body in pieces, then the next request: the reported stall
    await conn.send(request.head())
    answer = await expect(conn, request, "body after the answer")
    assert answer.headers.get("connection") != "close", "a small unread body must not cost the connection"
    await conn.send(*pieces(request.body))
    await conn.send(follow_up)
    await expect_follow_up(conn, request, "body after the answer")

    # the answer first, then the body and the next request pipelined in one write
    await conn.send(request.head())
    await expect(conn, request, "body after the answer, pipelined")
    await conn.send(request.body + follow_up)
    await expect_follow_up(conn, request, "body after the answer, pipelined")

    # everything pipelined in one write
    await conn.send(request.head() + request.body + follow_up)
    await expect(conn, request, "pipelined")
    await expect_follow_up(conn, request, "pipelined")


async def too_large_then_follow_up(port: int, max_body: int) -> None:
    """413 from ``Content-Length``: announced close, a real close once the body is in, no stall."""
    body = b"x" * (max_body + 1)
    request = Early("POST", "/v1/accounts", body, 413, "BODY_TOO_LARGE")
    conn = await Conn.open(port, "413 connection")
    try:
        await conn.send(request.head())
        answer = await expect(conn, request, "body after the answer")
        assert answer.headers.get("connection") == "close"
        await conn.send(*pieces(body, 4))
        await conn.closed_by_server("413")
    finally:
        await conn.aclose()
    fresh = await Conn.open(port, "after 413")
    try:
        await fresh.send(head(*FOLLOW_UP))
        await expect_follow_up(fresh, request, "new connection after 413")
    finally:
        await fresh.aclose()


async def slow_body_read_in_full(conn: Conn) -> None:
    """A 400 given after reading a body that came in pieces after a pause: the control case."""
    body = b'{"decision_id": "k-2", "symbol": '
    request = Early("POST", "/v1/accounts/paper-1/decisions", body, 400, "MALFORMED_JSON")
    await conn.send(request.head(), *pieces(body, 5))
    await expect(conn, request, "body read in full")
    await conn.send(head(*FOLLOW_UP))
    await expect_follow_up(conn, request, "body read in full")


async def test_every_request_after_an_early_answer_is_answered(service: Service) -> None:
    assert service.port is not None
    port = service.port
    done = trio.Event()
    polled = 0

    async def poll() -> None:
        """A second connection asking all along; it must never wait either."""
        nonlocal polled
        while not done.is_set():
            conn = await Conn.open(port, "poller")
            try:
                while not done.is_set():
                    await conn.send(head("GET", "/v1/accounts/paper-1"))
                    answer = await conn.answer("GET /v1/accounts/paper-1 (poller)")
                    assert answer.status == 200
                    polled += 1
                    if answer.headers.get("connection") == "close":  # hypercorn's keep_alive_max_requests
                        break
            finally:
                await conn.aclose()

    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            try:
                for round_ in range(ROUNDS):
                    # one connection a round: well below hypercorn's 1000 requests a connection
                    conn = await Conn.open(port, f"main connection, round {round_}")
                    try:
                        for request in EARLY:
                            await early_then_follow_up(conn, request)
                        await slow_body_read_in_full(conn)
                    finally:
                        await conn.aclose()
                await too_large_then_follow_up(port, service.settings.server.max_body_bytes)
            finally:
                done.set()
    assert polled > 0


async def test_a_body_that_never_comes_costs_the_connection_not_the_answer(tmp_path: Path) -> None:
    """The wait for an unread body is bounded (by the request timeout): then the server closes."""
    text = TEST_SETTINGS.replace("request_timeout_seconds: 5", "request_timeout_seconds: 0.5")
    request = EARLY[0]
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            service: Service = await nursery.start(run_service, make_settings(tmp_path, text))
            assert service.port is not None
            conn = await Conn.open(service.port, "stalled body")
            try:
                await conn.send(request.head())
                await expect(conn, request, "body never sent")
                await conn.closed_by_server("a body that never came")
            finally:
                await conn.aclose()
            service.request_stop()
