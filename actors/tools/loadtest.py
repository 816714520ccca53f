"""``execd loadtest``: drive a running service with concurrent decisions, then check its books.

Two halves, both importable (the load tests and the crash-durability test use them):

* :func:`run_load` is an HTTP client: it creates (or reuses) accounts ``load-<n>``, then
  ``concurrency`` tasks submit random open/close decisions across them, bounded by a count and a
  duration. It re-submits some ids (the same body must answer the same stored result; a ``409``
  for the same body is a violation), probes a few ids with another body (must be ``409``), injects
  actor crashes through the test-only fault endpoint, throws kill switches (close-all, halt then
  resume), retries ``503`` honouring ``Retry-After`` with the *same* decision id and follows
  ``202`` result URLs. It returns a :class:`LoadReport` with every acknowledged decision.
* :func:`check_invariants` reads a service's SQLite file (one read transaction, so a consistent
  snapshot even while the service runs) and returns the problems it finds: decisions stored once
  and matching their fills and orders; no fill, order or position without its decision; positions
  and balances reproduced exactly by replaying the fills through the pure domain; per-account
  serialization (each decision's stored result agrees with the replayed state at its place in the
  account's timeline); cooldowns honoured. :func:`check_acknowledged` checks a client's
  acknowledged decisions against the same file.

The report is plain text; the exit status is non-zero when a client-side check or an invariant
fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sqlite3
import ssl
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, localcontext
from typing import Any

import httpx
import psycopg
import trio

from ..domain.positions import apply_close_fill, apply_open_fill, entry_side, new_position
from ..persistence.postgres import connect as pg_connect
from .cluster_nodes import owner_map, with_local_cluster

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
ACCEPTED = ("filled", "partially_filled")
#: Risk overrides of the accounts this tool creates: a short cooldown, so that a load run trades
#: (the shipped default of 30 s would reject nearly every open) while cooldowns are still hit.
DEFAULT_ACCOUNT_RISK: dict[str, Any] = {"cooldown_seconds": 0.5}


# ============================================================================ the load generator


@dataclass
class Ack:
    """A decision the service acknowledged (answered 200 or 422): it must be durable."""

    account_id: str
    decision_id: str
    body: bytes
    http_status: int
    result: dict[str, Any]


@dataclass
class LoadReport:
    url: str
    accounts: list[str] = field(default_factory=list)
    accounts_created: int = 0
    concurrency: int = 0
    elapsed: float = 0.0
    decisions: int = 0  # distinct decision ids submitted
    requests: int = 0  # HTTP requests of every kind
    latencies: list[float] = field(default_factory=list)  # per decision, retries included
    final_status: Counter[int] = field(default_factory=Counter)  # the answer each decision ended with
    responses: Counter[int] = field(default_factory=Counter)  # every decision POST/GET response
    rejection_codes: Counter[str] = field(default_factory=Counter)
    acks: dict[tuple[str, str], Ack] = field(default_factory=dict)
    unanswered: list[tuple[str, str]] = field(default_factory=list)  # gave up (service gone?)
    retries_503: int = 0
    followed_202: int = 0
    transport_errors: int = 0
    duplicates: int = 0
    duplicates_same: int = 0
    conflict_probes: int = 0
    conflicts_409: int = 0
    conflicts_via_202: int = 0  # conflict probes answered 202 whose result URL gave the first body's result
    crashes: int = 0
    close_alls: int = 0
    halts: int = 0
    resumes: int = 0
    operator_restarts: int = 0
    problems: list[str] = field(default_factory=list)  # client-side violations
    invariant_problems: list[str] | None = None  # filled when a database was checked
    db_path: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and not self.invariant_problems

    def problem(self, text: str) -> None:
        if len(self.problems) < 1000:
            self.problems.append(text)


class _Stop(Exception):
    pass


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms"


def _retry_after(response: Any) -> float:
    raw = response.headers.get("Retry-After", "1")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 1.0


class DecisionMaker:
    """Random but plausible decisions: opens (often increases of the same side, at the same
    leverage), closes (whole or partial, often of nothing), sometimes another side or leverage
    (refused), sometimes far take-profit / stop-loss orders (placed, moved and cancelled, never hit)."""

    def __init__(self, rng: random.Random, *, protection_rate: float = 0.3) -> None:
        self.rng = rng
        self.protection_rate = protection_rate  # share of opens with (far) TP/SL: 1 for live accounts
        self.sides: dict[tuple[str, str], str] = {}
        self.leverage: dict[tuple[str, str], int] = {}

    def body(self, account: str, decision_id: str) -> dict[str, Any]:
        rng = self.rng
        symbol = rng.choice(SYMBOLS)
        if rng.random() < 0.4:
            body: dict[str, Any] = {"decision_id": decision_id, "symbol": symbol, "action": "close"}
            if rng.random() < 0.3:
                body["quantity"] = rng.choice(("0.001", "0.01", "0.1", "1"))
            return body
        key = (account, symbol)
        side = self.sides.get(key)
        if side is None or rng.random() < 0.15:
            side = rng.choice(("long", "short"))
            self.sides[key] = side
        leverage = self.leverage.setdefault(key, rng.randint(1, 10))
        if rng.random() < 0.05:
            leverage = rng.randint(1, 25)  # sometimes another leverage: LEVERAGE_MISMATCH on an increase
        body = {"decision_id": decision_id, "symbol": symbol, "action": "open", "side": side,
                "notional": str(rng.choice((20, 50, 100, 150, 250, 400))), "leverage": leverage}
        if rng.random() < self.protection_rate:  # far protective orders: placed, moved, cancelled, never triggered
            body["stop_loss"] = "1" if side == "long" else "100000000"
            body["take_profit"] = "100000000" if side == "long" else "1"
        return body


class _Load:
    """The shared state of one run (one trio task tree; no locks needed)."""

    def __init__(self, report: LoadReport, *, accounts: list[str], decisions: int, deadline: float,
                 crash_rate: float, duplicate_rate: float, kill_switch_every: int, rng: random.Random,
                 run_tag: str, give_up_after: float, max_crashes_per_minute: int,
                 protection_rate: float = 0.3) -> None:
        self.report = report
        #: cluster, owner-aware clients: the node URL to send an account's decisions to ("" = any)
        self.node_of: Any = lambda account: ""
        self.accounts = accounts
        self.limit = decisions
        self.deadline = deadline
        self.crash_rate = crash_rate
        self.duplicate_rate = duplicate_rate
        self.kill_switch_every = kill_switch_every
        self.rng = rng
        self.run_tag = run_tag
        self.give_up_after = give_up_after
        self.max_crashes_per_minute = max_crashes_per_minute
        self.issued = 0
        self.answered = 0
        self.maker = DecisionMaker(rng, protection_rate=protection_rate)
        self.acked_list: list[Ack] = []
        self.crash_times: dict[str, list[float]] = defaultdict(list)
        self.halted: dict[str, int] = {}  # account -> decision count at which to resume

    # ---- decisions

    def make_body(self, account: str, n: int) -> dict[str, Any]:
        return self.maker.body(account, f"{self.run_tag}-{n}")

    async def submit(self, client: Any, account: str, body: bytes, decision_id: str,
                     info: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]] | None:
        """POST until answered (200/409/422/4xx); 503 honours Retry-After with the same id; 202 is
        followed (``info["via_202"]`` tells). None when the service stays unreachable for ``give_up_after``."""

        report = self.report
        path = f"{self.node_of(account)}/v1/accounts/{account}/decisions"
        start = time.monotonic()
        while True:
            try:
                response = await client.post(path, content=body,
                                                  headers={"Content-Type": "application/json"})
            except httpx.HTTPError:
                report.transport_errors += 1
                report.requests += 1
                if time.monotonic() - start > self.give_up_after:
                    return None
                await _sleep(0.2)
                continue
            report.requests += 1
            report.responses[response.status_code] += 1
            status = response.status_code
            if status == 503:
                report.retries_503 += 1
                if "failed" in response.text:
                    await self.operator_restart(client, account)
                await _sleep(_retry_after(response))
                continue
            if status == 202:
                report.followed_202 += 1
                answer = await self.follow(client, response.json()["result_url"])
                if answer is None:
                    continue  # not stored (yet, or the actor crashed with it): re-submit the same body
                if info is not None:
                    info["via_202"] = True
                return answer
            try:
                payload = response.json()
            except ValueError:
                payload = {"raw": response.text[:300]}
            return status, payload

    async def follow(self, client: Any, url: str) -> tuple[int, dict[str, Any]] | None:
        """Poll a 202's result URL; None if it stays unknown for a while (then the caller re-POSTs)."""

        delay = 0.05
        for _ in range(20):
            try:
                response = await client.get(url)
            except httpx.HTTPError:
                self.report.transport_errors += 1
                await _sleep(delay)
                continue
            self.report.requests += 1
            self.report.responses[response.status_code] += 1
            if response.status_code == 200:
                payload = response.json()
                return (422 if payload.get("status") == "rejected" else 200), payload
            await _sleep(delay)
            delay = min(delay * 1.5, 0.3)
        return None

    async def operator_restart(self, client: Any, account: str) -> None:
        """An operator's reset of an account that exceeded its restart intensity (``failed``)."""

        try:
            response = await client.post(f"/v1/accounts/{account}/restart")
        except httpx.HTTPError:
            self.report.transport_errors += 1
            return
        self.report.requests += 1
        if response.status_code == 200:
            self.report.operator_restarts += 1

    def record(self, account: str, decision_id: str, body: bytes, answer: tuple[int, dict[str, Any]] | None,
               latency: float) -> None:
        report = self.report
        if answer is None:
            report.unanswered.append((account, decision_id))
            return
        status, payload = answer
        report.final_status[status] += 1
        report.latencies.append(latency)
        if status in (200, 422):
            result = dict(payload)  # a rejection's answer is its stored result, error included
            if status == 422:
                code = (result.get("rejection") or {}).get("code", "?")
                report.rejection_codes[code] += 1
            if result.get("decision_id") != decision_id or result.get("account_id") != account:
                report.problem(f"{account}/{decision_id}: the answer is about another decision: {str(payload)[:200]}")
            ack = Ack(account, decision_id, body, status, result)
            report.acks[(account, decision_id)] = ack
            self.acked_list.append(ack)
        elif status == 409:
            report.problem(f"{account}/{decision_id}: 409 for a decision submitted once: {str(payload)[:200]}")
        else:
            report.problem(f"{account}/{decision_id}: unexpected HTTP {status}: {str(payload)[:200]}")

    # ---- duplicates and conflict probes

    async def duplicate(self, client: Any) -> None:
        if not self.acked_list:
            return
        ack = self.rng.choice(self.acked_list)
        report = self.report
        if self.rng.random() < 0.2:
            report.conflict_probes += 1
            other = json.loads(ack.body)
            other["meta"] = {"probe": "another body"}
            info: dict[str, Any] = {}
            answer = await self.submit(client, ack.account_id, json.dumps(other).encode(), ack.decision_id, info)
            if answer is None:
                return
            if answer[0] == 409:
                report.conflicts_409 += 1
            elif info.get("via_202") and answer[1].get("decision_id") == ack.decision_id:
                # answered 202, and its result URL names the decision id, whose stored result is the
                # first body's: the client cannot tell that its own body was refused
                report.conflicts_via_202 += 1
            else:
                report.problem(f"{ack.account_id}/{ack.decision_id}: the same id with another body answered "
                               f"{answer[0]}, not 409")
            return
        report.duplicates += 1
        answer = await self.submit(client, ack.account_id, ack.body, ack.decision_id)
        if answer is None:
            return
        status, payload = answer
        payload = dict(payload)
        if status == 409:
            report.problem(f"{ack.account_id}/{ack.decision_id}: 409 for a re-submission of the same body")
        elif status != ack.http_status or payload != ack.result:
            report.problem(f"{ack.account_id}/{ack.decision_id}: re-submission answered {status} "
                           f"{str(payload)[:200]}, first answer was {ack.http_status} {str(ack.result)[:200]}")
        else:
            report.duplicates_same += 1

    # ---- faults and kill switches

    async def maybe_crash(self, client: Any, account: str) -> None:

        if self.crash_rate <= 0 or self.rng.random() >= self.crash_rate:
            return
        now = time.monotonic()
        recent = [t for t in self.crash_times[account] if t > now - 60]
        if len(recent) >= self.max_crashes_per_minute:  # stay under the restart intensity
            return
        where = self.rng.choice(("now", "next_decision"))
        try:
            response = await client.post(f"/v1/accounts/{account}/_crash", params={"where": where})
        except httpx.HTTPError:
            self.report.transport_errors += 1
            return
        self.report.requests += 1
        if response.status_code == 202:
            recent.append(now)
            self.crash_times[account] = recent
            self.report.crashes += 1
        elif response.status_code == 404 and "UNKNOWN_ACCOUNT" not in response.text:
            self.report.problem("the fault endpoint is not mounted (start the service with EXECD_TEST_FAULTS=1)")
            self.crash_rate = 0.0

    async def kill_switch(self, client: Any, n: int) -> None:
        for account, resume_at in list(self.halted.items()):
            if n >= resume_at:
                del self.halted[account]
                await self.set_state(client, account, "active")
        if self.kill_switch_every <= 0 or n == 0 or n % self.kill_switch_every:
            return
        account = self.rng.choice(self.accounts)
        if self.rng.random() < 0.5 or account in self.halted:
            await self.control(client, "POST", f"/v1/accounts/{account}/close-all", None)
            self.report.close_alls += 1
        else:
            await self.set_state(client, account, "halted")
            self.halted[account] = n + self.kill_switch_every  # resumed after as many decisions

    async def set_state(self, client: Any, account: str, state: str) -> None:
        await self.control(client, "PUT", f"/v1/accounts/{account}/trading-state", {"state": state, "reason": "loadtest"})
        if state == "halted":
            self.report.halts += 1
        else:
            self.report.resumes += 1

    async def control(self, client: Any, method: str, path: str, body: Any) -> None:

        start = time.monotonic()
        while True:
            try:
                response = await client.request(method, path, json=body)
            except httpx.HTTPError:
                self.report.transport_errors += 1
                if time.monotonic() - start > self.give_up_after:
                    return
                await _sleep(0.2)
                continue
            self.report.requests += 1
            if response.status_code == 503:
                if "failed" in response.text:
                    await self.operator_restart(client, path.split("/")[3])
                await _sleep(_retry_after(response))
                continue
            if response.status_code != 200:
                self.report.problem(f"{method} {path} answered {response.status_code}: {response.text[:200]}")
            return

    # ---- the client tasks

    def take(self) -> int:
        if self.issued >= self.limit or time.monotonic() >= self.deadline:
            raise _Stop
        n = self.issued
        self.issued += 1
        return n

    async def worker(self, client_factory: Any) -> None:
        # one small pool per client task: httpcore's pool scans every connection for every
        # request, which costs more than the service itself with 64 tasks on one shared pool
        async with client_factory() as client:
            while True:
                try:
                    n = self.take()
                except _Stop:
                    return
                await self.kill_switch(client, n)
                if self.duplicate_rate > 0 and self.rng.random() < self.duplicate_rate:
                    await self.duplicate(client)
                account = self.rng.choice(self.accounts)
                await self.maybe_crash(client, account)
                data = self.make_body(account, n)
                body = json.dumps(data).encode()
                started = time.monotonic()
                answer = await self.submit(client, account, body, data["decision_id"])
                self.record(account, data["decision_id"], body, answer, time.monotonic() - started)
                self.report.decisions += 1
                self.answered += 1

    async def finish(self, client: Any) -> None:
        for account in list(self.halted):
            del self.halted[account]
            await self.set_state(client, account, "active")


async def _sleep(seconds: float) -> None:

    await trio.sleep(seconds)


async def ensure_accounts(client: Any, count: int, *, prefix: str = "load-", balance: str = "10000",
                          risk: dict[str, Any] | None = None) -> tuple[list[str], int]:
    """Create ``prefix0..prefix{count-1}`` (or reuse the ones that exist); returns (ids, created)."""
    existing = set()
    response = await client.get("/v1/accounts")
    if response.status_code == 200:
        existing = {item["id"] for item in response.json()["items"]}
    ids = [f"{prefix}{n}" for n in range(count)]
    created = 0
    for account in ids:
        if account in existing:
            continue
        body: dict[str, Any] = {"id": account, "venue": "sim", "balance": balance}
        body["risk"] = DEFAULT_ACCOUNT_RISK if risk is None else risk
        answer = await client.post("/v1/accounts", json=body)
        if answer.status_code == 201:
            created += 1
        elif answer.status_code != 409:
            raise RuntimeError(f"cannot create account {account}: {answer.status_code} {answer.text[:300]}")
    return ids, created


async def run_load(
    url: str,
    *,
    accounts: int,
    decisions: int,
    concurrency: int,
    duration: float,
    crash_rate: float = 0.0,
    duplicate_rate: float = 0.05,
    kill_switch_every: int = 250,
    seed: int | None = None,
    progress: bool | None = None,
    account_prefix: str = "load-",
    account_risk: dict[str, Any] | None = None,
    give_up_after: float = 30.0,
    max_crashes_per_minute: int = 3,
    token: str | None = None,
    route: str = "any",
    protection_rate: float = 0.3,
) -> LoadReport:
    """Drive the service at ``url`` (several nodes of a cluster: comma-separated, the client tasks
    are spread over them; ``route="owner"`` sends each decision straight to its account's owner,
    as a client that knows the shard map would, instead of any node, which forwards it); returns
    when every client task has finished (count or duration)."""

    rng = random.Random(seed)
    urls = [u.strip().rstrip("/") for u in url.split(",") if u.strip()]
    next_url = iter(range(1 << 62))
    run_tag = f"lt{uuid.UUID(int=rng.getrandbits(128)).hex[:10]}"
    report = LoadReport(url=url, concurrency=concurrency)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    tls = ssl.create_default_context()  # one for all the clients (each would load the CA bundle)

    def client_factory(connections: int = len(urls) if route == "owner" else 1) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(base_url=urls[next(next_url) % len(urls)], limits=limits,
                                 timeout=httpx.Timeout(60.0), headers=headers, verify=tls)

    async with client_factory(4) as client:
        ids, created = await ensure_accounts(client, accounts, prefix=account_prefix, risk=account_risk)
        report.accounts, report.accounts_created = ids, created
        started = time.monotonic()
        load = _Load(report, accounts=ids, decisions=decisions, deadline=started + duration,
                     crash_rate=crash_rate, duplicate_rate=duplicate_rate, kill_switch_every=kill_switch_every,
                     rng=rng, run_tag=run_tag, give_up_after=give_up_after,
                     max_crashes_per_minute=max_crashes_per_minute, protection_rate=protection_rate)
        if route == "owner":
            load.node_of = await owner_map(client, urls)
        show = sys.stderr.isatty() if progress is None else progress
        async with trio.open_nursery() as nursery:
            if show:
                nursery.start_soon(_progress, load, started, duration)
            async with trio.open_nursery() as workers:
                for _ in range(concurrency):
                    workers.start_soon(load.worker, client_factory)
            await load.finish(client)
            nursery.cancel_scope.cancel()
        report.elapsed = time.monotonic() - started
    if show:
        _progress_line(load, started, duration, final=True)
    return report


async def _progress(load: _Load, started: float, duration: float) -> None:

    tty = sys.stderr.isatty()
    last_decile = -1
    while True:
        if tty:
            _progress_line(load, started, duration)
        else:  # a simple form for logs: one line per 10 %
            decile = int(10 * min(1.0, _fraction(load, started, duration)))
            if decile != last_decile:
                last_decile = decile
                _progress_line(load, started, duration, final=True)
        await trio.sleep(0.2 if tty else 1.0)


def _fraction(load: _Load, started: float, duration: float) -> float:
    by_count = load.answered / max(1, load.limit)
    by_time = (time.monotonic() - started) / duration if duration > 0 else 0.0
    return min(1.0, max(by_count, by_time))


def _progress_line(load: _Load, started: float, duration: float, *, final: bool = False) -> None:
    elapsed = max(1e-9, time.monotonic() - started)
    fraction = _fraction(load, started, duration)
    width = 30
    filled = int(width * fraction)
    bar = "#" * filled + "." * (width - filled)
    report = load.report
    line = (f"[{bar}] {load.answered}/{load.limit} decisions  {load.answered / elapsed:7.1f}/s  "
            f"503 retries {report.retries_503}  crashes {report.crashes}  problems {len(report.problems)}")
    if sys.stderr.isatty() and not final:
        sys.stderr.write("\r" + line)
    else:
        sys.stderr.write(("\r" if sys.stderr.isatty() else "") + line + "\n")
    sys.stderr.flush()


# ============================================================================ the invariants


_DOMAIN = Context(prec=28, rounding=ROUND_HALF_EVEN)  # what the service computes with (decimal's default)
_EXACT = Context(prec=400, rounding=ROUND_HALF_EVEN, traps=[Inexact])  # sums that must not round
_TOLERANCE = Decimal("1e-9")  # for values the service rounded through fmt()/28 digits on the wire
_ROUNDING = Decimal("1e-12")
#: Prefix of a problem that is only a rounding difference (an account's books off by less than
#: 1e-12, i.e. 28-significant-digit arithmetic on amounts that need more digits): still a
#: problem (the books must balance exactly), but one that callers may want to tell apart.
ROUNDING_TAG = "[rounding] "


def _d(value: Any) -> Decimal:
    if value is None:
        return Decimal(0)
    return Decimal(str(value))


def _rows(conn: sqlite3.Connection, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, tuple(params))
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _open_snapshot(db: str) -> Any:
    """A read-only connection in one transaction (a consistent snapshot, also while the service
    runs) on a SQLite file or a PostgreSQL URL (a cluster's database); same SQL on both."""
    if db.startswith(("postgresql://", "postgres://")):
        conn = pg_connect(db, application_name="execd-loadtest")
        conn.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return conn
    conn = sqlite3.connect(db, timeout=30.0)
    conn.execute("PRAGMA query_only=ON")
    conn.execute("BEGIN")
    return conn


def _close_snapshot(conn: Any) -> None:
    try:
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def check_invariants(db_path: str, *, limit: int = 200) -> list[str]:
    """Check a service database (SQLite file or PostgreSQL URL); return the problems (empty:
    every invariant holds).

    Reads in one transaction: a consistent snapshot, also while the service is running.
    """
    conn = _open_snapshot(db_path)
    try:
        return _check(conn, limit)
    finally:
        _close_snapshot(conn)


def _check(conn: sqlite3.Connection, limit: int) -> list[str]:
    problems: list[str] = []

    def problem(text: str) -> None:
        if len(problems) < limit:
            problems.append(text)

    accounts = {r["id"]: r for r in _rows(conn, "SELECT * FROM accounts")}
    decisions = _rows(conn, "SELECT seq, account_id, decision_id, fingerprint, status, result, created_at, "
                            "COALESCE(updated_at, created_at) AS answered_at FROM decisions ORDER BY seq")
    fills = _rows(conn, "SELECT * FROM fills ORDER BY seq")
    orders = {r["id"]: r for r in _rows(conn, "SELECT * FROM orders")}
    positions = {r["id"]: r for r in _rows(conn, "SELECT * FROM positions")}
    funding = _rows(conn, "SELECT * FROM funding_payments ORDER BY seq")

    # ---- decisions: stored once, each consistent with its own fills and order
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    fills_by_decision: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    fills_by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen_fill_ids: set[str] = set()
    for fill in fills:
        if fill["id"] in seen_fill_ids:
            problem(f"fill {fill['id']} is stored twice")
        seen_fill_ids.add(fill["id"])
        if fill["decision_id"] is not None:
            fills_by_decision[(fill["account_id"], fill["decision_id"])].append(fill)
        fills_by_order[fill["order_id"]].append(fill)
        if fill["order_id"] not in orders:
            problem(f"fill {fill['id']} has no order {fill['order_id']}")
        if fill["position_id"] not in positions:
            problem(f"fill {fill['id']} has no position {fill['position_id']}")
        if fill["account_id"] not in accounts:
            problem(f"fill {fill['id']} belongs to an unknown account {fill['account_id']}")
    for row in decisions:
        key = (row["account_id"], row["decision_id"])
        if key in by_key:
            problem(f"decision {key[0]}/{key[1]} is stored more than once (seq {by_key[key]['seq']} and {row['seq']})")
            continue
        by_key[key] = row
        try:
            result = json.loads(row["result"])
        except (TypeError, ValueError):
            problem(f"decision {key[0]}/{key[1]}: the stored result is not JSON")
            continue
        row["parsed"] = result
        where = f"decision {key[0]}/{key[1]}"
        if result.get("status") != row["status"]:
            problem(f"{where}: status column {row['status']!r} but result says {result.get('status')!r}")
        if result.get("decision_id") != key[1] or result.get("account_id") != key[0]:
            problem(f"{where}: the stored result names another decision")
        if result.get("created_at") != row["answered_at"]:
            problem(f"{where}: answered at {row['answered_at']} but result says {result.get('created_at')}")
        # the fills made while the decision was handled carry a time between its start and its answer
        # (one and the same time on the paper venue; a live venue's fills arrive while it waits); a
        # resting limit order of the decision may fill later (its own, later, time); none may come before
        stored, later = {}, {}
        for fill in fills_by_decision.get(key, []):
            if row["created_at"] <= fill["ts"] <= row["answered_at"]:
                stored[fill["id"]] = fill
            elif fill["ts"] > row["answered_at"]:
                later[fill["id"]] = fill
                if (orders.get(fill["order_id"]) or {}).get("type") != "LIMIT":
                    problem(f"{where}: fill {fill['id']} of its {fill['order_id']} (not a resting limit order) "
                            f"came after the decision was answered")
            else:
                problem(f"{where}: fill {fill['id']} is stamped before the decision was handled")
        claimed = {f["id"]: f for f in result.get("fills") or []}
        if set(stored) != set(claimed):
            problem(f"{where}: its result lists fills {sorted(claimed)} but the fills table has {sorted(stored)}")
        for fill_id in set(stored) & set(claimed):
            a, b = stored[fill_id], claimed[fill_id]
            for name in ("quantity", "price", "fee", "realized_pnl"):
                if _d(a[name]) != _d(b[name]):
                    problem(f"{where}: fill {fill_id} {name} is {a[name]} in the table, {b[name]} in the result")
        if row["status"] in ACCEPTED and not stored:
            problem(f"{where}: {row['status']} without any fill")
        if row["status"] == "rejected" and stored:
            problem(f"{where}: rejected but has fills {sorted(stored)}")
        order = result.get("order")
        if order is not None:
            stored_order = orders.get(order["id"])
            if stored_order is None:
                problem(f"{where}: its order {order['id']} is not stored")
            else:
                filled = sum((_d(f["quantity"]) for f in fills_by_order.get(order["id"], [])), Decimal(0))
                if _d(stored_order["filled_quantity"]) != filled:
                    problem(f"{where}: order {order['id']} filled_quantity {stored_order['filled_quantity']} "
                            f"but its fills sum to {filled}")
                if stored_order["decision_id"] != key[1]:
                    problem(f"{where}: order {order['id']} belongs to decision {stored_order['decision_id']}")

    # ---- the outbox: each stored decision has its one decision.accepted / decision.rejected event,
    # written in the same transaction (DESIGN.md section 9)
    outcome_events: Counter[tuple[str, str, str]] = Counter()
    for event in _rows(conn, "SELECT type, account_id, payload FROM events "
                             "WHERE type IN ('decision.accepted', 'decision.rejected')"):
        try:
            decision_id = json.loads(event["payload"]).get("decision_id")
        except (TypeError, ValueError, AttributeError):
            decision_id = None
        outcome_events[(event["account_id"], str(decision_id), event["type"])] += 1
    for (account_id, decision_id), row in by_key.items():
        wanted = "decision.rejected" if row["status"] == "rejected" else "decision.accepted"
        other = "decision.accepted" if wanted == "decision.rejected" else "decision.rejected"
        if outcome_events[(account_id, decision_id, wanted)] != 1 or outcome_events[(account_id, decision_id, other)]:
            problem(f"decision {account_id}/{decision_id} ({row['status']}): {outcome_events[(account_id, decision_id, wanted)]}"
                    f" {wanted} and {outcome_events[(account_id, decision_id, other)]} {other} events in the outbox")

    # ---- nothing traded without its decision
    for fill in fills:
        if fill["decision_id"] is not None and (fill["account_id"], fill["decision_id"]) not in by_key:
            problem(f"fill {fill['id']} names decision {fill['account_id']}/{fill['decision_id']}, which is not stored")
    for order in orders.values():
        if order["decision_id"] is not None and (order["account_id"], order["decision_id"]) not in by_key:
            problem(f"order {order['id']} names decision {order['account_id']}/{order['decision_id']}, "
                    f"which is not stored")
    for position in positions.values():
        if position["opened_by"] and (position["account_id"], position["opened_by"]) not in by_key:
            problem(f"position {position['id']} was opened by decision {position['opened_by']}, which is not stored")

    # ---- replay every position's fills through the pure domain

    fills_by_position: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for fill in fills:
        fills_by_position[fill["position_id"]].append(fill)
    funding_by_position: dict[str, Decimal] = defaultdict(Decimal)
    with localcontext(_EXACT):
        for payment in funding:
            funding_by_position[payment["position_id"]] += _d(payment["amount"])
    replayed_realized: dict[str, Decimal] = {}  # fill id -> realized pnl by the replay
    for position_id, row in positions.items():
        with localcontext(_DOMAIN):
            position = new_position(position_id=position_id, account_id=row["account_id"], symbol=row["symbol"],
                                    side=row["side"], leverage=row["leverage"], now=row["opened_at"],
                                    opened_by=row["opened_by"] or "")
            try:
                for fill in fills_by_position.get(position_id, []):
                    qty, price, fee = _d(fill["quantity"]), _d(fill["price"]), _d(fill["fee"])
                    if fill["side"] == entry_side(position.side):
                        effect = apply_open_fill(position, qty, price, fee, fill["ts"])
                    else:
                        effect = apply_close_fill(position, qty, price, fee, fill["ts"])
                    position = effect.position
                    replayed_realized[fill["id"]] = effect.realized_pnl
            except Exception as exc:  # an impossible fill sequence
                problem(f"position {position_id}: its fills cannot be replayed: {exc}")
                continue
        if not fills_by_position.get(position_id) and row["status"] != "failed":
            problem(f"position {position_id} ({row['status']}) has no fills")
            continue
        for name in ("quantity", "entry_price", "cost", "margin", "realized_pnl", "fees", "closed_quantity",
                     "exit_notional"):
            if name not in row or not hasattr(position, name):
                continue
            if _d(row[name]) != getattr(position, name):
                problem(f"position {position_id}: {name} is {row[name]}, replaying its fills gives "
                        f"{getattr(position, name)}")
        if _d(row["funding"]) != funding_by_position.get(position_id, Decimal(0)):
            problem(f"position {position_id}: funding {row['funding']} but its payments sum to "
                    f"{funding_by_position.get(position_id, Decimal(0))}")
        is_open = row["status"] in ("open", "closing")
        if is_open != position.is_open:
            problem(f"position {position_id} is {row['status']} with quantity {row['quantity']}, replay says "
                    f"{'open' if position.is_open else 'closed'}")
    for fill in fills:
        expected = replayed_realized.get(fill["id"])
        if expected is not None and _d(fill["realized_pnl"]) != expected:
            problem(f"fill {fill['id']}: realized_pnl {fill['realized_pnl']}, replay gives {expected}")
    open_per_symbol: Counter[tuple[str, str]] = Counter(
        (r["account_id"], r["symbol"]) for r in positions.values() if r["status"] in ("open", "closing"))
    for (account_id, symbol), count in open_per_symbol.items():
        if count > 1:
            problem(f"account {account_id} has {count} open {symbol} positions (one-way mode allows one)")

    # ---- the books of every account balance, exactly
    fills_by_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for fill in fills:
        fills_by_account[fill["account_id"]].append(fill)
    funding_by_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for payment in funding:
        funding_by_account[payment["account_id"]].append(payment)
    decisions_by_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in by_key.values():
        decisions_by_account[row["account_id"]].append(row)
    for account_id, account in accounts.items():
        with localcontext(_EXACT):
            realized = sum((_d(f["realized_pnl"]) for f in fills_by_account[account_id]), Decimal(0))
            fees = sum((_d(f["fee"]) for f in fills_by_account[account_id]), Decimal(0))
            paid = sum((_d(p["amount"]) for p in funding_by_account[account_id]), Decimal(0))
            expected = _d(account["initial_balance"]) + realized - fees + paid
            for name, value in (("realized_pnl", realized), ("fees", fees), ("funding", paid)):
                if _d(account[name]) != value:
                    tag = ROUNDING_TAG if abs(_d(account[name]) - value) < _ROUNDING else ""
                    problem(f"{tag}account {account_id}: {name} is {account[name]} but its "
                            f"{'fills' if name != 'funding' else 'funding payments'} sum to {value} "
                            f"(off by {_d(account[name]) - value})")
            if _d(account["balance"]) != expected:
                off = _d(account["balance"]) - expected
                tag = ROUNDING_TAG if abs(off) < _ROUNDING else ""
                problem(f"{tag}account {account_id}: balance {account['balance']} != initial "
                        f"{account['initial_balance']} + realized {realized} - fees {fees} + funding {paid} = "
                        f"{expected} (off by {off})")
        problems_before = len(problems)
        _check_timeline(account_id, account, decisions_by_account[account_id], fills_by_account[account_id],
                        funding_by_account[account_id], problem)
        if len(problems) - problems_before > 5:  # one broken account should not hide the others
            del problems[problems_before + 5:]
    for account_id in set(fills_by_account) | set(decisions_by_account):
        if account_id not in accounts:
            problem(f"account {account_id} has decisions or fills but no accounts row")
    return problems


def _check_timeline(account_id: str, account: dict[str, Any], decisions: list[dict[str, Any]],
                    fills: list[dict[str, Any]], funding: list[dict[str, Any]], problem: Any) -> None:
    """Per-account serialization and cooldowns.

    One actor per account handles one message at a time, takes ``now`` when it starts and commits
    before it takes the next, so for one account: commit order (``seq``) and ``created_at`` agree,
    and the state each stored result reports (balance after it, position after it) is exactly the
    replay of every earlier fill and funding payment of the account plus its own fills. Two
    decisions that overlapped would both have planned from the same state: at least one of them
    reports a balance the replay contradicts (every fill pays a fee).
    """
    # commit order agrees with time
    ordered = sorted(decisions, key=lambda r: r["seq"])
    for earlier, later in zip(ordered, ordered[1:]):
        if later["created_at"] < earlier["created_at"]:
            problem(f"account {account_id}: decision {later['decision_id']} (seq {later['seq']}) was committed "
                    f"after {earlier['decision_id']} but planned before it ({later['created_at']} < "
                    f"{earlier['created_at']})")
    for earlier, later in zip(fills, fills[1:]):
        if later["ts"] < earlier["ts"]:
            problem(f"account {account_id}: fill {later['id']} was committed after {earlier['id']} but stamped "
                    f"before it")

    # the timeline, in time order (one actor's clock): decisions with the fills made while they were
    # handled, other fills grouped by order and time, funding payments
    handled = {row["decision_id"]: (row["created_at"], row["answered_at"]) for row in decisions}
    fills_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    others: dict[tuple[float, str], list[dict[str, Any]]] = defaultdict(list)
    for fill in fills:
        window = handled.get(fill["decision_id"]) if fill["decision_id"] is not None else None
        if window is not None and window[0] <= fill["ts"] <= window[1]:
            fills_of[fill["decision_id"]].append(fill)
        else:  # close-all, triggers, liquidations, later fills of resting limit orders
            others[(fill["ts"], fill["order_id"])].append(fill)
    items: list[tuple[float, int, int, Any]] = []
    for row in decisions:  # the state a result reports is the state when it was answered
        items.append((row["answered_at"], 1, row["seq"], ("decision", row)))
    for (ts, _order), group in others.items():
        items.append((ts, 1, group[0]["seq"], ("fills", group)))
    for payment in funding:
        items.append((payment["ts"], 0, payment["seq"], ("funding", payment)))
    items.sort(key=lambda item: item[:3])

    balance = _d(account["initial_balance"])
    quantity: dict[str, Decimal] = defaultdict(Decimal)  # symbol -> signed open quantity
    limits = {}
    try:
        limits = json.loads(account["risk_overrides"] or "{}")
    except ValueError:
        pass
    cooldown = float(limits.get("cooldown_seconds") or 0.0)
    last_accepted: float | None = None
    with localcontext(_EXACT):
        for _ts, _prio, _seq, (kind, value) in items:
            if kind == "funding":
                balance += _d(value["amount"])
                continue
            if kind == "fills":
                for fill in value:
                    balance += _d(fill["realized_pnl"]) - _d(fill["fee"])
                    quantity[fill["symbol"]] += (1 if fill["side"] == "BUY" else -1) * _d(fill["quantity"])
                continue
            row = value
            result = row.get("parsed")
            if result is None:
                continue
            where = f"account {account_id}: decision {row['decision_id']}"
            status = row["status"]
            rejection = (result.get("rejection") or {}).get("code")
            now = row["created_at"]  # when the gate judged it
            # cooldowns: an accepted open only after the cooldown of the previous accepted decision;
            # a COOLDOWN_ACTIVE rejection only inside one
            if cooldown > 0 and result.get("action") == "open":
                if status in ACCEPTED and last_accepted is not None and now - last_accepted < cooldown - 1e-6:
                    problem(f"{where}: an open accepted {now - last_accepted:.3f} s after the previous accepted "
                            f"decision, inside the {cooldown} s cooldown")
                if rejection == "COOLDOWN_ACTIVE" and (last_accepted is None or now - last_accepted >= cooldown + 1e-6):
                    problem(f"{where}: rejected COOLDOWN_ACTIVE although the last accepted decision was "
                            f"{'never' if last_accepted is None else f'{now - last_accepted:.3f} s before'}")
            if status in ACCEPTED:
                last_accepted = row["answered_at"]  # a cooldown starts with the answer
            for fill in fills_of.get(row["decision_id"], []):
                balance += _d(fill["realized_pnl"]) - _d(fill["fee"])
                quantity[fill["symbol"]] += (1 if fill["side"] == "BUY" else -1) * _d(fill["quantity"])
            reported = result.get("balance")
            if reported is not None and abs(_d(reported) - balance) > _TOLERANCE:
                problem(f"{where}: its result reports balance {reported} but the account's fills before and "
                        f"with it give {balance} (decisions overlapped?)")
            position = result.get("position")
            if status in ACCEPTED and position is not None:
                symbol = result.get("symbol")
                held = abs(quantity[symbol])
                if _d(position.get("quantity")) != held:
                    problem(f"{where}: its result reports a {symbol} position of {position.get('quantity')} but "
                            f"the account's fills give {held} (decisions overlapped?)")


def check_acknowledged(db_path: str, acks: Iterable[Ack], *, limit: int = 200) -> list[str]:
    """Every acknowledged decision is stored exactly once, with the status and result it was answered."""
    problems: list[str] = []
    conn = _open_snapshot(db_path)
    try:
        stored: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for account_id, decision_id, status, result in conn.execute(
                "SELECT account_id, decision_id, status, result FROM decisions"):
            stored[(account_id, decision_id)].append((status, result))
    finally:
        _close_snapshot(conn)
    for ack in acks:
        rows = stored.get((ack.account_id, ack.decision_id), [])
        where = f"acknowledged decision {ack.account_id}/{ack.decision_id} ({ack.http_status})"
        if len(rows) != 1:
            problems.append(f"{where} is stored {len(rows)} times")
        else:
            status, result = rows[0]
            if status != ack.result.get("status"):
                problems.append(f"{where}: answered {ack.result.get('status')!r}, stored {status!r}")
            elif json.loads(result) != ack.result:
                problems.append(f"{where}: the stored result differs from the answer")
        if len(problems) >= limit:
            break
    return problems


# ============================================================================ the report


def format_report(report: LoadReport) -> str:
    lat = sorted(report.latencies)
    elapsed = max(report.elapsed, 1e-9)
    lines = [
        f"execd loadtest against {report.url}",
        f"  accounts     {len(report.accounts)} ({report.accounts_created} created, "
        f"{len(report.accounts) - report.accounts_created} reused), {report.concurrency} concurrent clients",
        f"  decisions    {report.decisions} in {report.elapsed:.1f} s: {report.decisions / elapsed:.1f} decisions/s"
        f"  ({report.requests} HTTP requests, {report.requests / elapsed:.1f} req/s)",
        f"  latency      p50 {_ms(_percentile(lat, 0.50))}  p90 {_ms(_percentile(lat, 0.90))}  "
        f"p99 {_ms(_percentile(lat, 0.99))}  max {_ms(lat[-1] if lat else math.nan)}  (per decision, retries included)",
        "  answers      " + (", ".join(f"{code}: {n}" for code, n in sorted(report.final_status.items())) or "none")
        + "  (final answer per decision)",
        "  responses    " + (", ".join(f"{code}: {n}" for code, n in sorted(report.responses.items())) or "none")
        + f"  (every decision request; {report.retries_503} retried after 503, {report.followed_202} followed 202)",
        "  rejections   " + (", ".join(f"{code} {n}" for code, n in report.rejection_codes.most_common()) or "none"),
        f"  idempotency  {report.duplicates} re-submitted, {report.duplicates_same} answered the same result; "
        f"{report.conflict_probes} conflict probes, {report.conflicts_409} answered 409"
        + (f", {report.conflicts_via_202} answered 202 and their result URL the first body's result"
           if report.conflicts_via_202 else ""),
        f"  faults       {report.crashes} actor crashes injected, {report.close_alls} close-all, "
        f"{report.halts} halt / {report.resumes} resume, {report.operator_restarts} operator restarts, "
        f"{report.transport_errors} transport errors, {len(report.unanswered)} unanswered",
    ]
    if report.problems:
        lines.append(f"  client-side  {len(report.problems)} PROBLEMS:")
        lines += [f"    - {p}" for p in report.problems[:30]]
    else:
        lines.append("  client-side  ok (no 409 for a same body, duplicates answered their stored result)")
    if report.invariant_problems is not None:
        if report.invariant_problems:
            lines.append(f"  invariants   {len(report.invariant_problems)} PROBLEMS in {report.db_path}:")
            lines += [f"    - {p}" for p in report.invariant_problems[:50]]
        else:
            lines.append(f"  invariants   ok ({report.db_path}: acknowledged decisions stored once, fills, positions "
                         f"and balances replay exactly, serialized per account, cooldowns honoured)")
    lines.append("RESULT: " + ("OK" if report.ok else "FAILED"))
    return "\n".join(lines)


def run_loadtest_cli(args: argparse.Namespace) -> int:
    duplicate_rate = getattr(args, "duplicate_rate", None)
    kill_switch_every = getattr(args, "kill_switch_every", None)
    seed = getattr(args, "seed", None)
    nodes = getattr(args, "nodes", None)

    async def load(url: str) -> LoadReport:
        return await run_load(
            url, accounts=args.accounts, decisions=args.decisions, concurrency=args.concurrency,
            duration=args.duration, crash_rate=args.crash_rate,
            duplicate_rate=0.05 if duplicate_rate is None else duplicate_rate,
            kill_switch_every=250 if kill_switch_every is None else kill_switch_every, seed=seed,
            token=os.environ.get("EXECD_API_TOKEN"), progress=True, route=getattr(args, "route", "any"),
        )

    try:
        if nodes:
            if not args.database_url:
                print("execd loadtest: --nodes needs --database-url (or EXECD_DATABASE_URL)", file=sys.stderr)
                return 2
            report = trio.run(partial(with_local_cluster, args.nodes, args.database_url, load, shards=args.shards,
                                      lease=args.lease))
            args.db = args.db or args.database_url
        else:
            report = trio.run(load, args.url)
    except Exception as exc:  # the service is unreachable or refused to create the accounts
        print(f"execd loadtest: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.db:
        report.db_path = args.db
        try:
            report.invariant_problems = (check_acknowledged(args.db, report.acks.values())
                                         + check_invariants(args.db))
        except (sqlite3.Error, psycopg.Error) as exc:
            report.invariant_problems = [f"cannot read {args.db}: {exc}"]
    print(format_report(report))
    return 0 if report.ok else 1

