"""A node of a cluster: which shards it owns, the accounts it runs, and what the others own.

Two loops, so that renewal never waits behind a shard's accounts starting or stopping:

* **renew** (every ``renew_interval``): heartbeat, renew the held leases, refresh the view of who
  owns what (the routing table). A lease that was not renewed was taken over: its accounts are
  stopped at once (their commits would be refused anyway). The lease's local deadline is the time
  the renewal was *sent* plus the lease length, which can only be earlier than the database's.
* **balance** (after each renewal): with ``N`` live nodes, a node holds at most
  ``ceil(shards / N)``: above it, it hands shards over (stops their accounts gracefully, then frees
  the leases); below it, it takes free or expired shards, then starts their accounts, read from
  the ``accounts`` table. A shard is ``ready`` (decisions and stream intake) only once every one of
  its accounts has loaded: a live adapter reconciles with the venue as part of that start.

The node also owns the relay lease when a broker is configured (one relay in the cluster). Every
field here is written by this node's own tasks; readers (the front door, the broker) read.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import psycopg
import trio

from ..domain.book import AccountBook, AccountConfig, Changes
from ..domain.events import AccountCreated
from ..domain.money import fmt
from ..messages import AccountUnavailable
from ..persistence import Claim, upsert
from ..persistence.postgres import PgConnection, connect
from ..persistence.queries import account_row, event_record
from ..settings import AccountSettings, ClusterSettings, Settings
from . import leases
from .leases import RELAY_LEASE, ClusterView, LeaseRow, fair_share, shard_lease, shard_of

if TYPE_CHECKING:
    from ..service import Service

log = logging.getLogger("actors.cluster")

ShardStatus = Literal["starting", "ready", "leaving"]


class HeldShard:
    """A shard this node holds: its epoch, its state, and until when the lease surely lasts."""

    def __init__(self, shard: int, epoch: int, valid_until: float) -> None:
        self.shard = shard
        self.epoch = epoch
        self.valid_until = valid_until
        self.status: ShardStatus = "starting"

    @property
    def claim(self) -> Claim:
        return Claim(shard_lease(self.shard), self.epoch)


class ClusterStats(msgspec.Struct, kw_only=True):
    acquired: int = 0
    lost: int = 0
    fenced: int = 0  # accounts stopped because a commit of theirs was refused
    handed_over: int = 0
    renewals: int = 0
    renewal_failures: int = 0
    last_renewal_seconds: float = 0.0


class ClusterNode:
    def __init__(self, service: Service) -> None:
        settings = service.settings
        assert settings.cluster is not None and settings.database.url is not None
        self.service = service
        self.settings: ClusterSettings = settings.cluster
        self.node_id = self.settings.node_id
        self.url = self.settings.advertise_url or ""
        self.shards = self.settings.shards
        self.held: dict[int, HeldShard] = {}
        self.view = ClusterView([], {})
        self.relay_epoch: int | None = None  # the relay lease, when this node holds it
        self.relay_valid_until = 0.0
        self.stats = ClusterStats()
        self.leaving = False
        #: test-only fault (``EXECD_TEST_FAULTS=1``): the lease loop stands still, as in a node whose
        #: renewals stall while its accounts keep working: the case fencing exists for
        self.renewal_held = False
        self.ready = trio.Event()  # the first renewal and balance are done
        self.changed = trio.Event()  # the set of ready shards (or the relay lease) changed
        self._wake = trio.Event()
        self._balance_due = trio.Event()
        self._stopping: set[int] = set()  # shards whose accounts are being stopped
        self._conn: PgConnection | None = None
        self._db = trio.CapacityLimiter(1)
        self._database_url = settings.database.url
        self._rng = random.Random()
        self._nursery: trio.Nursery | None = None
        supervisor = service.supervisor
        supervisor.lease_deadline = self.lease_deadline
        supervisor.on_fenced = self.on_fenced
        supervisor.claim_for = self.claim_for

    # ------------------------------------------------------------------ what others read

    def shard_of(self, account_id: str) -> int:
        return shard_of(account_id, self.shards)

    def local_status(self, shard: int) -> ShardStatus | None:
        held = self.held.get(shard)
        return None if held is None else held.status

    def owner(self, shard: int) -> LeaseRow | None:
        """The shard's live owner as last seen (None: nobody holds it right now)."""
        row = self.view.leases.get(shard_lease(shard))
        return row if row is not None and row.live and row.owner is not None else None

    def ready_shards(self) -> list[tuple[int, int]]:
        """(shard, epoch) of every shard this node serves now."""
        return [(s, h.epoch) for s, h in self.held.items() if h.status == "ready"]

    def lease_deadline(self, account_id: str) -> float:
        held = self.held.get(self.shard_of(account_id))
        return held.valid_until if held is not None else 0.0

    def claim_for(self, account_id: str) -> Claim:
        """The claim a new account (created over the API) starts under; only on a ready shard."""
        held = self.held.get(self.shard_of(account_id))
        if held is None or held.status != "ready":
            raise AccountUnavailable(account_id, "the account's shard is not served by this node right now",
                                     retry_after=1)
        return held.claim

    def on_fenced(self, account_id: str) -> None:
        """An account's commit was refused: look at the leases now (its shard was taken over)."""
        self.stats.fenced += 1
        log.warning("account %s was fenced; checking the leases", account_id)
        self._wake.set()

    def readiness_problems(self) -> list[str]:
        return [] if self.ready.is_set() else ["cluster: first lease round not done"]

    def describe(self) -> dict[str, Any]:
        owners: dict[str, list[int]] = {}
        for name, row in self.view.leases.items():
            shard = leases.lease_shard(name)
            if shard is not None and row.live and row.owner:
                owners.setdefault(row.owner, []).append(shard)
        return {"node_id": self.node_id, "url": self.url, "shards": self.shards,
                "live_nodes": self.view.live_nodes,
                "held": sorted(s for s, h in self.held.items() if h.status == "ready"),
                "starting": sorted(s for s, h in self.held.items() if h.status == "starting"),
                "owners": {node: sorted(shards) for node, shards in sorted(owners.items())},
                "relay": self.relay_epoch is not None, "stats": msgspec.to_builtins(self.stats)}

    # ------------------------------------------------------------------ the node's tasks

    async def run(self, *, task_status: trio.TaskStatus[ClusterNode] = trio.TASK_STATUS_IGNORED) -> None:
        self.url = self.settings.advertise_url or self.service.url or ""
        self._conn = await trio.to_thread.run_sync(partial(connect, self._database_url,
                                                           application_name=f"execd-leases-{self.node_id}"))
        # a takeover waits for a commit that holds the lease row; never longer than half a lease
        await self._db_call(lambda conn: conn.raw.execute(
            f"SET lock_timeout = '{int(self.settings.lease_seconds * 500)}ms'"))
        try:
            await self._db_call(leases.setup, self.shards)
            await self._register_settings_accounts()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._renew_once()
                # let nodes that start together see each other before anyone takes shards
                await trio.sleep(self.settings.renew_interval)
                await self._renew_once()
                await self._balance()
                self.ready.set()
                task_status.started(self)
                nursery.start_soon(self._renew_loop)
                await self._balance_loop()
        finally:
            with trio.CancelScope(shield=True):
                if self._conn is not None:
                    await trio.to_thread.run_sync(self._conn.close, limiter=self._db)

    async def _db_call(self, fn: Any, *args: Any) -> Any:
        assert self._conn is not None
        return await trio.to_thread.run_sync(fn, self._conn, *args, limiter=self._db)

    async def _renew_loop(self) -> None:
        while True:
            with trio.move_on_after(self.settings.renew_interval):
                await self._wake.wait()
            self._wake = trio.Event()
            if not self.renewal_held:
                await self._renew_once()

    async def _renew_once(self) -> None:
        sent = trio.current_time()
        try:
            view = await self._db_call(leases.heartbeat, self.node_id, self.url, self.settings.lease_seconds)
            held = {shard_lease(s): h.epoch for s, h in self.held.items()}
            if self.relay_epoch is not None:
                held[RELAY_LEASE] = self.relay_epoch
            renewed = await self._db_call(leases.renew, self.node_id, self.url, held, self.settings.lease_seconds)
        except Exception as exc:  # the database is unreachable: leases run out on their own
            self.stats.renewal_failures += 1
            log.warning("lease renewal failed: %s", exc)
            return
        self.stats.renewals += 1
        self.stats.last_renewal_seconds = trio.current_time() - sent
        self.view = view
        valid_until = sent + self.settings.lease_seconds
        for shard, held_shard in list(self.held.items()):
            if shard_lease(shard) in renewed:
                held_shard.valid_until = valid_until
            else:
                self._lose(shard)
        if self.relay_epoch is not None:
            if RELAY_LEASE in renewed:
                self.relay_valid_until = valid_until
            else:
                log.warning("relay lease lost")
                self.relay_epoch = None
                self._changed()
        if self.service.settings.broker is not None and self.relay_epoch is None and not self.leaving:
            relay_row = view.leases.get(RELAY_LEASE)
            if relay_row is None or not relay_row.live:
                try:
                    epoch = await self._db_call(leases.acquire, RELAY_LEASE, self.node_id, self.url,
                                                self.settings.lease_seconds)
                except psycopg.Error as exc:
                    log.warning("could not take the relay lease: %s", exc)
                    epoch = None
                if epoch is not None:
                    log.info("relay lease taken at epoch %d", epoch)
                    self.relay_epoch, self.relay_valid_until = epoch, sent + self.settings.lease_seconds
                    self._changed()
        self._balance_due.set()

    def _lose(self, shard: int) -> None:
        """The lease was taken over (or ran out): stop the shard's accounts now, never commit again."""
        held = self.held.pop(shard)
        self.stats.lost += 1
        log.warning("shard %d lost (epoch %d): stopping its accounts", shard, held.epoch)
        self._changed()
        assert self._nursery is not None
        self._stopping.add(shard)
        self._nursery.start_soon(self._stop_accounts, shard, False)

    async def _balance_loop(self) -> None:
        while True:
            await self._balance_due.wait()
            self._balance_due = trio.Event()
            if self.leaving:
                continue
            try:
                await self._balance()
            except psycopg.Error as exc:  # the database is unreachable or a lock wait timed out: next time
                log.warning("shard balancing failed: %s", exc)

    async def _balance(self) -> None:
        live = self.view.live_nodes
        if self.node_id not in live:
            return  # our own heartbeat is not visible yet
        fair = fair_share(self.shards, live)
        if len(self.held) > fair:
            extra = sorted(self.held, reverse=True)[:len(self.held) - fair]
            await self.hand_over(extra)
            return
        wanted = fair - len(self.held)
        if wanted <= 0:
            return
        free = [s for s in range(self.shards) if s not in self.held and s not in self._stopping
                and not self.view.leases.get(shard_lease(s), LeaseRow("", None, None, 0, False)).live]
        self._rng.shuffle(free)
        taken: list[HeldShard] = []
        for shard in free[:wanted]:
            sent = trio.current_time()
            try:
                epoch = await self._db_call(leases.acquire, shard_lease(shard), self.node_id, self.url,
                                            self.settings.lease_seconds)
            except psycopg.errors.LockNotAvailable:  # the deposed owner is stuck inside a commit
                await self._end_stuck_sessions(shard)
                continue
            if epoch is None:
                continue
            held = HeldShard(shard, epoch, sent + self.settings.lease_seconds)
            self.held[shard] = held
            self.stats.acquired += 1
            taken.append(held)
        if taken:
            log.info("took shards %s", ", ".join(f"{h.shard}@{h.epoch}" for h in taken))
            await self._start_accounts(taken)

    async def _end_stuck_sessions(self, shard: int) -> None:
        row = self.view.leases.get(shard_lease(shard))
        if row is None or row.owner is None or row.owner == self.node_id:
            return
        ended = await self._db_call(leases.end_stuck_sessions, row.owner)
        log.warning("shard %d: its expired owner %s holds its lease row inside a commit; ended %d of its "
                    "sessions", shard, row.owner, ended)

    # ------------------------------------------------------------------ accounts of shards

    async def _start_accounts(self, taken: list[HeldShard]) -> None:
        """Start every account of the shards just taken (read from the database), then serve them."""
        by_shard = {h.shard: h for h in taken}
        rows = await self.service.reader.fetchall("SELECT id, mode, venue, initial_balance, settings FROM accounts")
        wanted = [(row, by_shard[s]) for row in rows if (s := self.shard_of(row["id"])) in by_shard]
        supervisor = self.service.supervisor
        settings = self.service.settings

        async def start(row: dict[str, Any], held: HeldShard) -> None:
            if row["id"] in supervisor.slots or self.held.get(held.shard) is not held:
                return
            account = account_settings(settings, row)
            if account.venue not in supervisor.markets:
                log.error("account %s: venue %s is not running on this node", account.id, account.venue)
                return
            await supervisor.start_account(account, settings.account_limits(account), claim=held.claim)

        async with trio.open_nursery() as starting:
            for row, held in wanted:
                starting.start_soon(start, row, held)
        for held in taken:
            if self.held.get(held.shard) is held:
                held.status = "ready"
        self._changed()

    async def _stop_accounts(self, shard: int, graceful: bool) -> None:
        supervisor = self.service.supervisor
        reason = "the account's shard is moving to another node"
        try:
            async with trio.open_nursery() as stopping:
                for account_id in [a for a in supervisor.slots if self.shard_of(a) == shard]:
                    stopping.start_soon(partial(supervisor.stop_account, account_id, graceful=graceful, reason=reason))
        finally:
            self._stopping.discard(shard)

    async def hand_over(self, shards: Iterable[int]) -> None:
        """Hand shards over cleanly: refuse new work, let the accounts finish what they hold (the
        lease is still ours), then free the leases for the others to take at once."""
        handing = [self.held[s] for s in shards if s in self.held]
        if not handing:
            return
        for held in handing:
            held.status = "leaving"
            self._stopping.add(held.shard)
        self._changed()
        async with trio.open_nursery() as stopping:
            for held in handing:
                stopping.start_soon(self._stop_accounts, held.shard, True)
        still = {shard_lease(h.shard): h.epoch for h in handing if self.held.get(h.shard) is h}
        await self._db_call(leases.release, self.node_id, still)
        for held in handing:
            if self.held.get(held.shard) is held:
                del self.held[held.shard]
        self.stats.handed_over += len(still)
        log.info("handed over shards %s", ", ".join(str(h.shard) for h in handing))
        self._changed()

    async def leave(self) -> None:
        """Graceful stop of the node: tell the others, hand every shard (and the relay) over."""
        self.leaving = True
        try:
            await self._db_call(leases.leave, self.node_id)
            await self.hand_over(list(self.held))
            if self.relay_epoch is not None:
                await self._db_call(leases.release, self.node_id, {RELAY_LEASE: self.relay_epoch})
                self.relay_epoch = None
        except Exception as exc:  # the database is gone: the leases run out on their own
            log.error("could not hand the shards over: %s", exc)

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    # ------------------------------------------------------------------ the accounts table

    async def _register_settings_accounts(self) -> None:
        """Accounts of the settings file go into the ``accounts`` table on first start (with their
        ``account.created`` event); from then on the table is the list every node reads."""
        settings = self.service.settings
        if not settings.accounts:
            return
        existing = {row["id"] for row in await self.service.reader.fetchall("SELECT id FROM accounts")}
        now = self.service.clock.now()
        for account in settings.accounts:
            if account.id in existing:
                continue
            statement, event = initial_account(account, settings, now)
            # two nodes starting together may both insert: the row is the same, the event twice
            await self.service.persistence.commit([statement], [event])


def initial_account(account: AccountSettings, settings: Settings, now: float) -> tuple[Any, Any]:
    """The first row of an account and its ``account.created`` event (as its first start writes them)."""
    config = AccountConfig(account_id=account.id, venue=account.venue, mode=account.mode,
                           default_leverage=account.default_leverage, trigger_price=account.trigger_price,
                           max_slippage_bps=account.max_slippage_bps)
    book = AccountBook(config, account.balance, settings.account_limits(account))
    row = account_row(book, Changes(book, now))
    row["created_at"] = now
    statement = upsert("accounts", row)
    statement = statement._replace(sql=statement.sql.split(" ON CONFLICT")[0] + " ON CONFLICT(id) DO NOTHING")
    event = event_record(account.id, book.is_paper, now,
                         AccountCreated(venue=account.venue, mode=account.mode, balance=fmt(account.balance)))
    return statement, event


def account_settings(settings: Settings, row: dict[str, Any]) -> AccountSettings:
    """An account's settings: the settings file's when it names the account, else its row's."""
    for account in settings.accounts:
        if account.id == row["id"]:
            return account
    config = msgspec.json.decode(row["settings"]) if row.get("settings") else {}
    values = {"id": row["id"], "mode": row["mode"], "venue": row["venue"], "balance": row["initial_balance"]}
    for name in ("default_leverage", "trigger_price", "max_slippage_bps"):
        if name in config:
            values[name] = config[name]
    return msgspec.convert(values, AccountSettings, strict=False)
