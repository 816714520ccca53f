"""The decision stream: ``/v1/decisions/stream``, a websocket that carries decisions in and their
results out, several in flight, for a decision engine that keeps one connection.

Each text frame in is one decision for one account::

    {"account_id": "paper-1", "decision": {<the body POST /v1/accounts/{id}/decisions takes>}}

Each frame out answers one decision as ``POST /v1/accounts/{account_id}/decisions`` would::

    {"decision_id": "d-1", "account_id": "paper-1", "status": 200, "body": {<the HTTP answer's body>}}

``status`` is the HTTP status and ``body`` the HTTP body: the stored result as it was committed
(``200``; ``422`` rejected), or the error body (``400`` naming what is wrong, ``403`` outside the
token's accounts, ``404`` no such account, ``409`` the id holds another body or the account is a
paper twin, ``503`` unavailable, with ``retry_after`` seconds beside it). A decision still running
after ``server.request_timeout_seconds`` gets the ``202`` body HTTP answers (with its
``result_url``) and, once it commits, its result in a second frame. A frame that is not a decision
at all (not JSON, no ``account_id``) is answered ``400`` with ``decision_id`` null when there is
none to name; the connection stays open.

The same checks as HTTP, in the same order: the token's role at the handshake (``401``/``403``
there), then per frame its account scope, the paper-twin guard, the account, the decision's
validation (a malformed one is audited), the idempotency by ``decision_id`` and body fingerprint.
The fingerprint is the canonical JSON of ``decision``, so a decision sent over HTTP and then over
the stream (or the other way) is the same decision.

Backpressure: at most ``server.stream_max_in_flight`` decisions per connection are submitted and
not yet answered; when that many are, the server does not read the socket until one is answered
(the client's sends then block on TCP; nothing is dropped). Results go out as they commit, not
necessarily in the order sent. A connection closed mid-flight leaves its submitted decisions to
commit (as a closed HTTP request does); send them again (same id, same body) to read the results.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import trio
from quart import Blueprint, Response, websocket

from .auth import accept_websocket, current_principal
from .decisions import DecisionDesk, decision_id_of, parse_decision, pending_body, stored_result_body, _status_decoder
from .errors import APIError, from_validation_error, refusal_error
from .twin import check_not_a_twin

log = logging.getLogger("actors.http.stream")
_encode = msgspec.json.encode


class StreamIn(msgspec.Struct, forbid_unknown_fields=True):
    """A frame of the decision stream: a decision and its account."""

    account_id: str
    decision: msgspec.Raw


_in_decoder = msgspec.json.Decoder(StreamIn)


def answer_frame(decision_id: str | None, account_id: str | None, status: int, body: bytes,
                 retry_after: str | None = None) -> str:
    """One answer, ``body`` spliced in as it is (a stored result is sent as committed)."""
    head = b'{"decision_id":' + _encode(decision_id) + b',"account_id":' + _encode(account_id)
    tail = b',"retry_after":' + retry_after.encode() if retry_after is not None else b""
    return (head + b',"status":' + str(status).encode() + tail + b',"body":' + body + b"}").decode()


def error_frame(decision_id: str | None, account_id: str | None, error: APIError) -> str:
    return answer_frame(decision_id, account_id, error.status, _encode(error.payload()),
                        error.headers.get("Retry-After"))


class _Connection:
    """One decision-stream websocket: a reader that holds at most ``bound`` decisions in flight,
    a task per decision awaiting its commit, one writer."""

    def __init__(self, service: Any, desk: DecisionDesk, sees: Any, bound: int) -> None:
        self.service = service
        self.supervisor = service.supervisor
        self.metrics = service.metrics
        self.desk = desk
        self.sees = sees
        self.timeout = service.settings.server.request_timeout_seconds
        self.max_frame = service.settings.server.max_body_bytes
        self.slots = trio.Semaphore(bound)
        self.in_flight = 0
        self.out_send, self.out_receive = trio.open_memory_channel[str](bound)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer)
            while True:
                await self.slots.acquire()  # full: the socket is not read until a decision is answered
                data = await websocket.receive()
                await self._take(data.encode() if isinstance(data, str) else data, nursery)

    async def _writer(self) -> None:
        async for text in self.out_receive:
            await websocket.send(text)

    async def _take(self, data: bytes, nursery: trio.Nursery) -> None:
        """Submit one frame's decision (its answer awaited by a task of its own), or answer at
        once why it cannot be submitted."""
        account_id: str | None = None
        decision_id: str | None = None
        body: bytes | None = None
        try:
            if len(data) > self.max_frame:  # as HTTP's body limit (413)
                raise APIError(413, "BODY_TOO_LARGE", f"the frame is larger than {self.max_frame} bytes")
            try:
                frame = _in_decoder.decode(data)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                account_id, decision_id = _names_of(data)
                raise _frame_error(exc) from None
            account_id, body = frame.account_id, bytes(frame.decision)
            if not self.sees(account_id):
                raise APIError(403, "FORBIDDEN", f"account {account_id!r} is outside this token's accounts")
            check_not_a_twin(self.service, account_id)
            if self.service.cluster is not None:
                _check_served_here(self.service.cluster, account_id)
            self.supervisor.slot(account_id)  # 404 before the body is judged
            try:
                message = parse_decision(body)
            except APIError as error:
                await self.desk.audit_malformed(account_id, body, error)
                raise
            reply = self.supervisor.submit(account_id, message)
        except Exception as exc:  # noqa: BLE001 - every refusal is answered, the connection lives on
            error = refusal_error(exc)
            if error is None:
                log.exception("a decision-stream frame on %s", account_id)
                error = APIError(500, "INTERNAL", "internal error; see the service log")
            if body is not None:  # the decision the answer is about, if it names itself
                decision_id = decision_id_of(body)
            self.slots.release()
            await self.out_send.send(error_frame(decision_id, account_id, error))
            return
        self.in_flight += 1
        self.metrics.stream_in_flight += 1
        self.metrics.stream_peak_in_flight = max(self.metrics.stream_peak_in_flight, self.in_flight)
        nursery.start_soon(self._answer, account_id, message, reply)

    async def _answer(self, account_id: str, message: Any, reply: Any) -> None:
        decision_id = message.decision.decision_id
        started = trio.current_time()
        try:
            encoded = None
            with trio.move_on_after(self.timeout):
                encoded = await reply.wait()
            if encoded is None:  # as HTTP: 202 with the result_url; here the result follows when it commits
                _, pending = pending_body(account_id, message)
                await self.out_send.send(answer_frame(decision_id, account_id, 202, _encode(pending)))
                encoded = await reply.wait()
            summary = _status_decoder.decode(encoded)
            self.desk.observe(account_id, decision_id, summary, trio.current_time() - started)
            status, body = stored_result_body(encoded, rejected_status=422, summary=summary)
            text = answer_frame(decision_id, account_id, status, body)
        except Exception as exc:  # noqa: BLE001 - the account's refusal (crashed, stopping, conflict)
            error = refusal_error(exc)
            if error is None:
                log.exception("decision %s on %s over the stream", decision_id, account_id)
                error = APIError(500, "INTERNAL", "internal error; see the service log")
            text = error_frame(decision_id, account_id, error)
        finally:
            self.in_flight -= 1
            self.metrics.stream_in_flight -= 1
        try:
            await self.out_send.send(text)
        finally:
            self.slots.release()


def _check_served_here(node: Any, account_id: str) -> None:
    """Cluster mode: the stream takes the decisions of this node's accounts only (HTTP forwards
    the others; a stream would have to hold a connection to every node): ``421`` names the owner."""
    shard = node.shard_of(account_id)
    if node.local_status(shard) == "ready":
        return
    owner = node.owner(shard)
    if owner is None or owner.owner_url is None:
        raise APIError(503, "SHARD_UNAVAILABLE", f"account {account_id!r}: nobody serves its shard right now; retry",
                       headers={"Retry-After": "1"})
    raise APIError(421, "ACCOUNT_ON_ANOTHER_NODE", f"account {account_id!r} is served by {owner.owner_url}: "
                   "open the decision stream there", body={"owner_url": owner.owner_url})


def _names_of(data: bytes) -> tuple[str | None, str | None]:
    """The account and decision a frame that is not quite right names, if it names them (so its
    answer can say which decision it refuses)."""
    try:
        frame = msgspec.json.decode(data)
        account_id, decision = frame.get("account_id"), frame.get("decision")
        decision_id = decision.get("decision_id") if isinstance(decision, dict) else None
    except (msgspec.DecodeError, AttributeError):
        return None, None
    return (account_id if isinstance(account_id, str) else None,
            decision_id if isinstance(decision_id, str) else None)


def _frame_error(exc: msgspec.ValidationError | msgspec.DecodeError) -> APIError:
    """A frame that is no ``{"account_id", "decision"}``: what is wrong with it, named."""
    if not isinstance(exc, msgspec.ValidationError):
        return APIError(400, "MALFORMED_JSON", f"the frame is not valid JSON: {exc}")
    error = from_validation_error(exc)
    if error.code == "INVALID_FIELD" and error.field is None:  # "Expected `object`, got ..."
        return APIError(400, "INVALID_FIELD", f"a frame is {{\"account_id\": ..., \"decision\": {{...}}}}: "
                        f"{error.message}")
    return error


def stream_blueprint(service: Any) -> Blueprint:
    bp = Blueprint("stream", __name__)
    desk = DecisionDesk(service)
    bound = service.settings.server.stream_max_in_flight

    @bp.websocket("/v1/decisions/stream")
    async def decision_stream() -> None:
        sees = current_principal().sees  # a trader's accounts only: checked per frame
        await accept_websocket()
        service.metrics.stream_connections += 1
        try:
            await _Connection(service, desk, sees, bound).run()
        finally:
            service.metrics.stream_connections -= 1

    @bp.get("/v1/decisions/stream")
    async def decision_stream_without_upgrade() -> Response:
        """The decision stream is a websocket: a plain GET is told so (RFC 9110 §15.5.22)."""
        raise APIError(426, "UPGRADE_REQUIRED", "GET /v1/decisions/stream is a websocket: send Upgrade: websocket",
                       headers={"Upgrade": "websocket", "Connection": "Upgrade"})

    return bp
