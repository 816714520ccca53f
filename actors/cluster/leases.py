"""Shard leases in PostgreSQL: who owns what, for how long, and the fence every commit passes.

A lease is a row of ``cluster_leases``: ``(name, owner, owner_url, epoch, expires_at)``, one per
shard (``shard/0007``) and one for the outbox relay (``relay``). The database's clock decides
expiry, so the nodes' clocks never need to agree.

* **Takeover** is one conditional ``UPDATE``: the row must be free or expired, and the new owner
  gets ``epoch + 1``. Two nodes racing for a row serialise on its row lock; the loser's
  re-checked condition fails.
* **Renewal** extends only the rows this node holds *at the epochs it took them at*; a row that
  is not renewed was taken over: the node stops that shard's accounts at once.
* **Fencing** (:func:`fence_check`, called by the PostgreSQL backend inside every round that
  carries claims, before any write): ``SELECT ... ORDER BY name FOR SHARE`` on the claimed rows,
  then each claim must still name this node at its epoch. ``FOR SHARE`` is the point: a takeover's
  ``UPDATE`` needs the row exclusively (``FOR NO KEY UPDATE``), which conflicts with ``FOR SHARE``,
  so a takeover waits for every commit that already passed the check, and a commit that checks
  after the takeover sees the new epoch and is refused. A plain ``SELECT`` would read the old row
  version while the takeover commits, and a deposed node's commit could land after the new owner
  loaded the account; ``FOR KEY SHARE`` does not conflict with a non-key update and fences nothing;
  a conditional ``UPDATE`` of the lease in every commit would fence too, at the price of a new row
  version (and WAL) per round. Expiry is deliberately *not* part of the check: as with Temporal's
  range id, a commit is valid as long as nobody took the shard (the epoch did not move), which keeps
  a node that was slow to renew but was never replaced correct, and a node that was replaced
  fenced. Every multi-row lock is taken in ``name`` order (renewal and fencing alike), so the two
  never deadlock.

Every function here is synchronous and runs in the lease manager's worker thread on its own
connection (renewal never waits behind the commit rounds).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import NamedTuple

import trio

from ..persistence import Claim, Fenced
from ..persistence.postgres import FenceCheck, PgConnection

SETUP_LOCK = 0x657865630003
RELAY_LEASE = "relay"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cluster_leases (name TEXT PRIMARY KEY, owner TEXT, owner_url TEXT,"
    " epoch BIGINT NOT NULL DEFAULT 0, expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity')",
    "CREATE TABLE IF NOT EXISTS cluster_nodes (node_id TEXT PRIMARY KEY, url TEXT, seen_at TIMESTAMPTZ NOT NULL,"
    " leaving BOOLEAN NOT NULL DEFAULT false)",
    "CREATE TABLE IF NOT EXISTS cluster_config (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


def shard_of(account_id: str, shards: int) -> int:
    """The shard of an account: a stable hash (the same in every process and release), mod the
    cluster's fixed shard count."""
    return zlib.crc32(account_id.encode()) % shards


def shard_lease(shard: int) -> str:
    """The lease row of a shard (zero-padded: rows lock in shard order)."""
    return f"shard/{shard:04d}"


def lease_shard(name: str) -> int | None:
    return int(name.removeprefix("shard/")) if name.startswith("shard/") else None


class LeaseRow(NamedTuple):
    name: str
    owner: str | None
    owner_url: str | None
    epoch: int
    live: bool  # not expired (database clock)


class ClusterView(NamedTuple):
    """One look at the cluster: the live nodes and every lease."""

    live_nodes: list[str]
    leases: dict[str, LeaseRow]


def setup(conn: PgConnection, shards: int) -> None:
    """Create the lease tables and rows (idempotent; nodes starting together take turns). A
    database set up with another shard count is refused: accounts would hash elsewhere."""
    raw = conn.raw
    with raw.transaction():
        raw.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK,))
        for statement in _SCHEMA:
            raw.execute(statement)  # type: ignore[arg-type]
        row = raw.execute("SELECT value FROM cluster_config WHERE key = 'shards'").fetchone()
        if row is None:
            raw.execute("INSERT INTO cluster_config (key, value) VALUES ('shards', %s)", (str(shards),))
        elif int(row[0]) != shards:
            raise RuntimeError(f"the database's cluster has {row[0]} shards, these settings say {shards}: "
                               "the shard count of a cluster is fixed")
        raw.execute("INSERT INTO cluster_leases (name) SELECT unnest(%s::text[]) ON CONFLICT (name) DO NOTHING",
                    ([shard_lease(s) for s in range(shards)] + [RELAY_LEASE],))


def heartbeat(conn: PgConnection, node_id: str, url: str, lease_seconds: float) -> ClusterView:
    """Say this node is alive; read the live nodes (seen within a lease, not leaving) and the leases."""
    raw = conn.raw
    raw.execute("INSERT INTO cluster_nodes (node_id, url, seen_at, leaving) VALUES (%s, %s, clock_timestamp(), false)"
                " ON CONFLICT (node_id) DO UPDATE SET url = excluded.url, seen_at = excluded.seen_at, leaving = false",
                (node_id, url))
    live = [node for (node,) in raw.execute(
        "SELECT node_id FROM cluster_nodes WHERE NOT leaving AND seen_at > clock_timestamp() - make_interval(secs => %s)"
        " ORDER BY node_id", (lease_seconds,))]
    leases = {row[0]: LeaseRow(*row) for row in raw.execute(
        "SELECT name, owner, owner_url, epoch, expires_at > clock_timestamp() FROM cluster_leases")}
    return ClusterView(live, leases)


def renew(conn: PgConnection, node_id: str, url: str, held: dict[str, int], lease_seconds: float) -> set[str]:
    """Extend the leases this node holds at their epochs; returns the ones still held."""
    if not held:
        return set()
    names = sorted(held)
    rows = conn.raw.execute(
        "WITH held AS (SELECT unnest(%s::text[]) AS name, unnest(%s::bigint[]) AS epoch),"
        " mine AS (SELECT l.name FROM cluster_leases l JOIN held h ON l.name = h.name AND l.epoch = h.epoch"
        "          WHERE l.owner = %s ORDER BY l.name FOR NO KEY UPDATE OF l)"
        " UPDATE cluster_leases l SET expires_at = clock_timestamp() + make_interval(secs => %s), owner_url = %s"
        " FROM mine WHERE l.name = mine.name RETURNING l.name",
        (names, [held[n] for n in names], node_id, lease_seconds, url)).fetchall()
    return {name for (name,) in rows}


def acquire(conn: PgConnection, name: str, node_id: str, url: str, lease_seconds: float) -> int | None:
    """Take a free or expired lease; returns the new epoch, or None if another node holds it."""
    row = conn.raw.execute(
        "UPDATE cluster_leases SET owner = %s, owner_url = %s, epoch = epoch + 1,"
        " expires_at = clock_timestamp() + make_interval(secs => %s)"
        " WHERE name = %s AND (owner IS NULL OR expires_at < clock_timestamp()) RETURNING epoch",
        (node_id, url, lease_seconds, name)).fetchone()
    return None if row is None else int(row[0])


def write_connection_name(node_id: str) -> str:
    """The ``application_name`` of a node's write connection (so that a takeover can find it)."""
    return f"execd-write-{node_id}"


def end_stuck_sessions(conn: PgConnection, node_id: str) -> int:
    """End the write sessions of a deposed node that are inside a transaction.

    A node frozen in the middle of a round (SIGSTOP, a VM pause, a half-open connection) keeps its
    lease rows share-locked, and a takeover would wait for it forever: a pipelined round that has
    not reached its sync point is "active", not "idle in transaction", so no server timeout ends
    it. Its lease has expired, so whatever that transaction was doing was never acknowledged;
    ending the session rolls it back and frees the rows. Needs the right to signal the node's
    backends (the same database role, or ``pg_signal_backend``)."""
    rows = conn.raw.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
        " AND state <> 'idle' AND pid <> pg_backend_pid()", (write_connection_name(node_id),)).fetchall()
    return len(rows)


def release(conn: PgConnection, node_id: str, held: dict[str, int]) -> None:
    """Hand leases back (graceful): free at once, so another node takes them at its next look."""
    if not held:
        return
    names = sorted(held)
    conn.raw.execute(
        "WITH held AS (SELECT unnest(%s::text[]) AS name, unnest(%s::bigint[]) AS epoch),"
        " mine AS (SELECT l.name FROM cluster_leases l JOIN held h ON l.name = h.name AND l.epoch = h.epoch"
        "          WHERE l.owner = %s ORDER BY l.name FOR NO KEY UPDATE OF l)"
        " UPDATE cluster_leases l SET owner = NULL, owner_url = NULL, expires_at = '-infinity'"
        " FROM mine WHERE l.name = mine.name",
        (names, [held[n] for n in names], node_id))


def leave(conn: PgConnection, node_id: str) -> None:
    """This node is stopping: the others stop counting it in their fair share at once."""
    conn.raw.execute("UPDATE cluster_nodes SET leaving = true WHERE node_id = %s", (node_id,))


def fence_check(node_id: str) -> FenceCheck:
    """The check the PostgreSQL backend runs in every round that carries claims (see the module)."""

    def check(conn: PgConnection, claims: set[Claim]) -> dict[Claim, Fenced]:
        names = sorted({claim.lease for claim in claims})
        rows = conn.raw.execute("SELECT name, owner, epoch FROM cluster_leases WHERE name = ANY(%s)"
                                " ORDER BY name FOR SHARE", (names,)).fetchall()
        current = {name: (owner, epoch) for name, owner, epoch in rows}
        refused: dict[Claim, Fenced] = {}
        for claim in claims:
            owner, epoch = current.get(claim.lease, (None, None))
            if owner != node_id or epoch != claim.epoch:
                refused[claim] = Fenced(claim.lease, claim.epoch, f"now {owner or 'nobody'} at epoch {epoch}")
        return refused

    return check


def may_send_orders(lease_valid_until: float | None, margin: float) -> bool:
    """Whether an adapter may still send a live order: its account's lease surely lasts longer than
    ``margin`` (None: not clustered). The live adapter calls this before every order it sends;
    after a takeover the new owner's adapter reconciles with the venue before any decision, as
    at every account start."""
    return lease_valid_until is None or trio.current_time() < lease_valid_until - margin


def fair_share(shards: int, live_nodes: Sequence[str]) -> int:
    """Shards each live node may hold (the first nodes to come get one more when it does not divide)."""
    return -(-shards // max(1, len(live_nodes)))
