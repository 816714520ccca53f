"""Results and events out over Redis Streams: the outbox relayed in ``seq`` order, at least once.

The outbox (``events``, written in the same transaction as the state it describes) is read in
``seq`` order from the database; each event goes to ``execd:events`` and, for a decision's outcome
(``decision.accepted`` / ``decision.rejected``), the decision's stored result (as
``GET .../decisions/{id}`` answers it) to ``execd:results``. One relay runs in a cluster (the
holder of the ``relay`` lease; a single node is its own relay).

The Redis side is one Lua script per batch, so it is atomic and fenced on Redis itself: it refuses
a relay whose lease epoch is older than the newest one it has seen (a deposed relay that wakes up
cannot append anything), and it skips events at or below the last ``seq`` it appended, so the
streams hold each event once, in ``seq`` order, while Redis keeps its data. The last relayed
``seq`` is also committed to the database (``service_state``, fenced by the relay lease), so a
relay starting after a restart, or after Redis lost its data, resumes from there: at least once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import coredis
import msgspec
import trio

from ..persistence import Claim, CommittedEvent, Fenced, Statement
from ..settings import BrokerSettings

if TYPE_CHECKING:
    from ..service import Service

log = logging.getLogger("actors.broker")

_encode = msgspec.json.Encoder(decimal_format="string").encode
OUTCOME_EVENTS = ("decision.accepted", "decision.rejected")

# KEYS: epoch, last seq, events stream, results stream
# ARGV: epoch, maxlen, then (seq, event, result or "") per event
RELAY_SCRIPT = """
local epoch = tonumber(ARGV[1])
local newest = tonumber(redis.call('GET', KEYS[1]) or '0')
if epoch < newest then return -1 end
if epoch > newest then redis.call('SET', KEYS[1], ARGV[1]) end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
for i = 3, #ARGV, 3 do
  local seq = tonumber(ARGV[i])
  if seq > last then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'data', ARGV[i + 1])
    if ARGV[i + 2] ~= '' then
      redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], '*', 'data', ARGV[i + 2])
    end
    last = seq
  end
end
redis.call('SET', KEYS[2], tostring(last))
return last
"""


class RelayStats(msgspec.Struct, kw_only=True):
    events: int = 0
    results: int = 0
    batches: int = 0
    last_seq: int = 0
    fenced: int = 0


def state_key(settings: BrokerSettings) -> str:
    """The ``service_state`` key of the last relayed seq (one per events stream)."""
    return f"relay:{settings.events_stream}:last_seq"


def read_batch(conn: Any, after: int, limit: int) -> list[tuple[CommittedEvent, bytes | None]]:
    """Events after ``after`` in ``seq`` order, each with its decision's stored result (if it is
    a decision's outcome); runs on a read connection (SQLite or PostgreSQL, same SQL)."""
    rows = conn.execute("SELECT seq, type, account_id, is_paper, ts, payload FROM events WHERE seq > ?"
                        " ORDER BY seq LIMIT ?", (after, limit)).fetchall()
    events = [CommittedEvent(seq=seq, type=type_, account_id=account_id, is_paper=bool(is_paper), ts=ts,
                             payload_json=msgspec.Raw(payload.encode())) for seq, type_, account_id, is_paper, ts,
              payload in rows]
    wanted: dict[tuple[str, str], int] = {}
    for event in events:
        if event.type in OUTCOME_EVENTS and event.account_id is not None:
            decision_id = event.payload.get("decision_id")
            if isinstance(decision_id, str):
                wanted[(event.account_id, decision_id)] = event.seq
    results: dict[int, bytes] = {}
    if wanted:
        ids = sorted({decision_id for _, decision_id in wanted})
        marks = ", ".join("?" for _ in ids)
        for account_id, decision_id, status, result in conn.execute(
                f"SELECT account_id, decision_id, status, result FROM decisions WHERE decision_id IN ({marks})", ids):
            seq = wanted.get((account_id, decision_id))
            if seq is not None and status != "pending":  # a pending result is not an answer yet
                results[seq] = result.encode()
    return [(event, results.get(event.seq)) for event in events]


class Relay:
    """The outbox relay of this node (runs while it holds the relay lease, or always on one node)."""

    def __init__(self, service: Service, client: coredis.Redis[bytes]) -> None:
        assert service.settings.broker is not None
        self.service = service
        self.client = client
        self.settings: BrokerSettings = service.settings.broker
        self.script = client.register_script(RELAY_SCRIPT)
        self.stats = RelayStats()
        stream = self.settings.events_stream
        self.keys = [f"{stream}:relay:epoch", f"{stream}:relay:last-seq", stream, self.settings.results_stream]

    def _epoch(self) -> int | None:
        cluster = self.service.cluster
        return 1 if cluster is None else cluster.relay_epoch

    async def run(self) -> None:
        cluster = self.service.cluster
        while True:
            epoch = self._epoch()
            if epoch is None:  # another node relays
                assert cluster is not None
                await cluster.changed.wait()
                continue
            try:
                await self._relay(epoch)
            except Fenced:
                self.stats.fenced += 1
                log.warning("relay at epoch %d was fenced; another node relays now", epoch)
                if cluster is None:
                    raise
                with trio.move_on_after(cluster.settings.lease_seconds):
                    await cluster.changed.wait()

    async def _relay(self, epoch: int) -> None:
        claim = Claim("relay", epoch) if self.service.cluster is not None else None
        last = await self._resume_point()
        log.info("relaying the outbox from seq %d (epoch %d)", last, epoch)
        while self._epoch() == epoch:
            batch = await self.service.reader.run(read_batch, last, self.settings.relay_batch)
            if not batch:
                await trio.sleep(self.settings.relay_poll_seconds)
                continue
            appended = await self._append(epoch, batch)
            if appended < 0:
                raise Fenced("relay", epoch, "Redis has seen a newer relay epoch")
            last = max(last, appended)
            await self.service.persistence.commit([Statement(
                "INSERT INTO service_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (state_key(self.settings), str(last)))], claim=claim)
            self.stats.last_seq = last
            if len(batch) < self.settings.relay_batch:
                await trio.sleep(self.settings.relay_poll_seconds)

    async def _resume_point(self) -> int:
        rows = await self.service.reader.fetchall("SELECT value FROM service_state WHERE key = ?",
                                                  (state_key(self.settings),))
        stored = int(rows[0]["value"]) if rows else 0
        in_redis = await self.client.get(self.keys[1])
        return max(stored, int(in_redis) if in_redis else 0)

    async def _append(self, epoch: int, batch: Sequence[tuple[CommittedEvent, bytes | None]]) -> int:
        args: list[Any] = [epoch, self.settings.stream_maxlen]
        for event, result in batch:
            args += [event.seq, _encode(event), result or b""]
            self.stats.events += 1
            self.stats.results += result is not None
        self.stats.batches += 1
        return int(await self.script(keys=self.keys, args=args))
