"""Decisions in over Redis Streams: read with a consumer group, acknowledged after their commit.

Each entry of the intake stream has one field, ``data``: ``{"account_id": ..., "decision": {...}}``
(the body of ``POST /v1/accounts/{id}/decisions``). An entry is submitted to its account exactly as
an HTTP decision is, and ``XACK``\\ ed only once the account answered, i.e. once the result is
committed. A node that dies before its ``XACK`` leaves the entry pending; whoever reads the stream
next claims it (``XAUTOCLAIM``) and submits it again, and the account answers it from its stored
result (``decision_id`` is the idempotency key): delivered at least once, executed once.

On a single node the service reads the intake stream itself. In a cluster the intake is routed
per shard: every node runs a **router** on ``execd:decisions`` (its own consumer group) that moves
each entry to ``execd:decisions:shard:<n>`` and acknowledges it in one ``MULTI``; the **owner** of
shard ``n`` alone reads that stream, and on takeover first claims whatever the previous owner left
pending. A router that dies leaves its entries pending in the router group, where the other routers
claim them once they have been idle for two leases.

Entries that cannot be executed (not JSON, unknown account, the same id with another body) are
answered on the results stream with an error (nothing is stored for them) and acknowledged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import coredis
import msgspec
import trio

from ..domain.decisions import DecisionIn, InvalidDecision, request_fingerprint, validate_decision
from ..http.decisions import _check_amount_range as check_amount_range
from ..messages import (
    AccountUnavailable, ActorCrashed, CommandRefused, DecisionConflict, Reply, SubmitDecision, UnknownAccount,
)
from ..settings import BrokerSettings

if TYPE_CHECKING:
    from ..service import Service

log = logging.getLogger("actors.broker")

_decision_decoder = msgspec.json.Decoder(DecisionIn)
_encode = msgspec.json.Encoder(decimal_format="string").encode


class IntakeEntry(msgspec.Struct):
    account_id: str
    decision: msgspec.Raw


class IntakeStats(msgspec.Struct, kw_only=True):
    read: int = 0
    acknowledged: int = 0
    claimed: int = 0
    routed: int = 0
    refused: int = 0
    resubmitted: int = 0


def shard_stream(settings: BrokerSettings, shard: int) -> str:
    return f"{settings.decisions_stream}:shard:{shard}"


async def ensure_group(client: coredis.Redis[bytes], stream: str, group: str) -> None:
    """Create the consumer group (and the stream) unless it exists."""
    try:
        await client.xgroup_create(stream, group, identifier="0", mkstream=True)
    except coredis.exceptions.StreamDuplicateConsumerGroupError:
        pass


def entry_data(entry: Any) -> bytes | None:
    value = entry.field_values.get(b"data")
    return value if isinstance(value, bytes) else None


class Intake:
    """The service's side of the intake streams (one per node)."""

    def __init__(self, service: Service, client: coredis.Redis[bytes]) -> None:
        assert service.settings.broker is not None
        self.service = service
        self.client = client
        self.settings: BrokerSettings = service.settings.broker
        self.node_id = service.settings.cluster.node_id if service.settings.cluster is not None else "execd"
        self.stats = IntakeStats()
        self.reading = True
        self.in_flight = trio.Semaphore(self.settings.max_in_flight)
        self._waiters: trio.Nursery | None = None

    # ------------------------------------------------------------------ the loops

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read until :meth:`stop` is called, then let the decisions in flight be acknowledged."""
        async with trio.open_nursery() as waiters:
            self._waiters = waiters
            async with trio.open_nursery() as readers:
                self._readers = readers
                if self.service.cluster is None:
                    await ensure_group(self.client, self.settings.decisions_stream, self.settings.group)
                    readers.start_soon(self._single_node_loop)
                else:
                    await ensure_group(self.client, self.settings.decisions_stream, self.router_group)
                    readers.start_soon(self._router_loop)
                    readers.start_soon(self._shard_loop)
                task_status.started()

    def stop(self) -> None:
        """No more reads; what is in flight is still acknowledged once committed."""
        self.reading = False
        self._readers.cancel_scope.cancel()

    @property
    def router_group(self) -> str:
        return f"{self.settings.group}-router"

    async def _single_node_loop(self) -> None:
        stream, group = self.settings.decisions_stream, self.settings.group
        await self._claim_all(stream, group, min_idle_ms=0, shard=None)  # left pending by our last run
        while True:
            read = await self.client.xreadgroup(group, self.node_id, streams={stream: ">"},
                                                count=self.settings.read_count, block=1000)
            for entry in (read or {}).get(stream.encode(), ()):
                await self._submit_entry(stream, group, entry, None)

    async def _router_loop(self) -> None:
        """Move each intake entry to its shard's stream (any node; claims what dead routers left)."""
        stream, group = self.settings.decisions_stream, self.router_group
        idle_ms = int(2000 * self.service.settings.cluster.lease_seconds)  # type: ignore[union-attr]
        next_claim = trio.current_time()
        while True:
            if trio.current_time() >= next_claim:
                next_claim = trio.current_time() + idle_ms / 2000
                cursor = b"0-0"
                while True:
                    cursor, entries, *_ = await self.client.xautoclaim(stream, group, self.node_id, idle_ms, cursor,
                                                                        count=self.settings.read_count)
                    self.stats.claimed += len(entries)
                    await self._route(stream, group, entries)
                    if cursor in (b"0-0", "0-0"):
                        break
            read = await self.client.xreadgroup(group, self.node_id, streams={stream: ">"},
                                                count=self.settings.read_count, block=500)
            await self._route(stream, group, (read or {}).get(stream.encode(), ()))

    async def _route(self, stream: str, group: str, entries: Any) -> None:
        cluster = self.service.cluster
        assert cluster is not None
        for entry in entries:
            self.stats.read += 1
            data = entry_data(entry)
            try:
                parsed = msgspec.json.decode(data or b"", type=IntakeEntry)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await self._refuse(None, None, "MALFORMED_ENTRY", f"intake entry {entry.identifier!r}: {exc}")
                await self.client.xack(stream, group, [entry.identifier])
                continue
            target = shard_stream(self.settings, cluster.shard_of(parsed.account_id))
            async with self.client.pipeline(transaction=True) as pipe:  # moved and acknowledged together
                pipe.xadd(target, {"data": data or b""})
                pipe.xack(stream, group, [entry.identifier])
            self.stats.routed += 1

    async def _shard_loop(self) -> None:
        """Read the streams of the shards this node serves; claim a shard's pending entries first."""
        cluster = self.service.cluster
        assert cluster is not None
        group = self.settings.group
        active: dict[int, int] = {}
        while True:
            ready = dict(cluster.ready_shards())
            for shard, epoch in ready.items():
                if active.get(shard) != epoch:  # taken (again): what the last owner left is ours now
                    stream = shard_stream(self.settings, shard)
                    await ensure_group(self.client, stream, group)
                    await self._claim_all(stream, group, min_idle_ms=0, shard=(shard, epoch))
            active = ready
            if not active:
                with trio.move_on_after(1):
                    await cluster.changed.wait()
                continue
            streams = {shard_stream(self.settings, s): ">" for s in sorted(active)}
            read = await self.client.xreadgroup(group, self.node_id, streams=streams,
                                                count=self.settings.read_count, block=250)
            for name, entries in (read or {}).items():
                shard = int(name.decode().rsplit(":", 1)[1])
                for entry in entries:
                    await self._submit_entry(name.decode(), group, entry, (shard, active[shard]))

    async def _claim_all(self, stream: str, group: str, *, min_idle_ms: int, shard: tuple[int, int] | None) -> None:
        cursor: Any = b"0-0"
        while True:
            cursor, entries, *_ = await self.client.xautoclaim(stream, group, self.node_id, min_idle_ms, cursor,
                                                                count=self.settings.read_count)
            self.stats.claimed += len(entries)
            for entry in entries:
                await self._submit_entry(stream, group, entry, shard)
            if cursor in (b"0-0", "0-0") or not entries:
                return

    # ------------------------------------------------------------------ one entry

    def _serving(self, shard: tuple[int, int] | None) -> bool:
        """Whether this node still takes the entry's decision (not stopping, and, in a cluster,
        still serving its shard at the epoch it was read under)."""
        cluster = self.service.cluster
        if self.service.supervisor.draining:
            return False
        if shard is None or cluster is None:
            return True
        held = cluster.held.get(shard[0])
        return held is not None and held.epoch == shard[1] and held.status == "ready"

    async def _submit_entry(self, stream: str, group: str, entry: Any, shard: tuple[int, int] | None) -> None:
        """Submit in the order read (per account, the mailbox keeps it); wait for the commit in a
        task of its own. Blocks (backpressure) while too many are in flight or an inbox is full."""
        self.stats.read += 1
        data = entry_data(entry) or b""
        try:
            parsed = msgspec.json.decode(data, type=IntakeEntry)
            body = bytes(parsed.decision)
            decision = validate_decision(_decision_decoder.decode(body))
            check_amount_range(decision)  # the same checks as the HTTP route
        except (msgspec.DecodeError, msgspec.ValidationError, InvalidDecision) as exc:
            account_id = _field(data, "account_id")
            await self._refuse(account_id, _decision_id(data), "INVALID_DECISION", str(exc))
            await self._ack(stream, group, entry.identifier)
            return
        message = SubmitDecision(decision=decision, fingerprint=request_fingerprint(body),
                                 request_json=body.decode("utf-8", "replace"))
        await self.in_flight.acquire()
        try:
            reply = await self._offer(parsed.account_id, message, shard)
        except BaseException:
            self.in_flight.release()
            raise
        if reply is None:
            self.in_flight.release()
            if self._serving(shard):  # answered with an error: acknowledged
                await self._ack(stream, group, entry.identifier)
            return
        assert self._waiters is not None
        self._waiters.start_soon(self._await_commit, stream, group, entry.identifier, parsed.account_id, message,
                                 reply, shard)

    async def _offer(self, account_id: str, message: SubmitDecision,
                     shard: tuple[int, int] | None) -> Reply[Any] | None:
        """Queue the decision; None when it was refused for good (answered on the results stream)
        or when this node stopped serving its shard (left pending for the new owner)."""
        supervisor = self.service.supervisor
        decision_id = message.decision.decision_id
        while self._serving(shard):
            try:
                return supervisor.submit(account_id, message)
            except UnknownAccount:
                await self._refuse(account_id, decision_id, "UNKNOWN_ACCOUNT", f"no account {account_id!r}")
                return None
            except DecisionConflict as exc:
                await self._refuse(account_id, decision_id, "IDEMPOTENCY_CONFLICT", str(exc))
                return None
            except AccountUnavailable as exc:  # inbox full, restarting: wait and offer again
                await trio.sleep(min(exc.retry_after, 0.05))
        return None

    async def _await_commit(self, stream: str, group: str, entry_id: bytes, account_id: str,
                            message: SubmitDecision, reply: Reply[Any], shard: tuple[int, int] | None) -> None:
        try:
            while True:
                try:
                    await reply.wait()  # the result is committed (the relay publishes it)
                except DecisionConflict as exc:
                    await self._refuse(account_id, message.decision.decision_id, "IDEMPOTENCY_CONFLICT", str(exc))
                except CommandRefused as exc:  # e.g. a live account's paper twin, which takes no decisions
                    await self._refuse(account_id, message.decision.decision_id, exc.code, exc.message)
                except (AccountUnavailable, ActorCrashed):
                    if not self._serving(shard):
                        return  # the shard moved: left pending, the new owner claims it
                    self.stats.resubmitted += 1
                    next_reply = await self._offer(account_id, message, shard)
                    if next_reply is None:
                        return
                    reply = next_reply
                    continue
                await self._ack(stream, group, entry_id)
                return
        finally:
            self.in_flight.release()

    async def _ack(self, stream: str, group: str, entry_id: bytes) -> None:
        await self.client.xack(stream, group, [entry_id])
        if stream != self.settings.decisions_stream:  # our own per-shard stream: nothing else reads it
            await self.client.xdel(stream, [entry_id])
        self.stats.acknowledged += 1

    async def _refuse(self, account_id: str | None, decision_id: str | None, code: str, message: str) -> None:
        self.stats.refused += 1
        log.info("stream decision %s/%s refused: %s %s", account_id, decision_id, code, message)
        error = {"account_id": account_id, "decision_id": decision_id, "status": "error",
                 "error": {"code": code, "message": message, "field": None}}
        await self.client.xadd(self.settings.results_stream, {"data": _encode(error)})


def _field(data: bytes, name: str) -> str | None:
    try:
        value = msgspec.json.decode(data).get(name)
    except (msgspec.DecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _decision_id(data: bytes) -> str | None:
    try:
        value = msgspec.json.decode(data).get("decision", {}).get("decision_id")
    except (msgspec.DecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None
