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
  acknowledged decisions against the same file. Both live in :mod:`actors.tools.loadtest_checks`
  (one named step per invariant there) and are importable from here as before.

The report is plain text (:mod:`actors.tools.loadtest_report`, with :class:`Ack` and
:class:`LoadReport`, importable from here too); the exit status is non-zero when a client-side
check or an invariant fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import ssl
import sys
import time
import uuid
from collections import defaultdict
from functools import partial
from typing import Any

import httpx
import psycopg
import trio

from .cluster_nodes import owner_map, with_local_cluster
from .loadtest_checks import ACCEPTED as ACCEPTED
from .loadtest_checks import ROUNDING_TAG as ROUNDING_TAG
from .loadtest_checks import check_acknowledged, check_invariants
from .loadtest_report import Ack, LoadReport, format_report

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
#: protective levels that never trigger, within the venues' price filters: (below, above) the market
FAR_LEVELS = {"BTCUSDT": ("300", "900000"), "ETHUSDT": ("40", "900000"), "SOLUSDT": ("0.5", "900000")}
#: Risk overrides of the accounts this tool creates: a short cooldown, so that a load run trades
#: (the shipped default of 30 s would reject nearly every open) while cooldowns are still hit.
DEFAULT_ACCOUNT_RISK: dict[str, Any] = {"cooldown_seconds": 0.5}


# ============================================================================ the load generator


class _Stop(Exception):
    pass


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
            # (within each symbol's price filter on the venues: BTC's minimum price is 261.10)
            low, high = FAR_LEVELS[symbol]
            body["stop_loss"] = low if side == "long" else high
            body["take_profit"] = high if side == "long" else low
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
        self.kill_switches = 0
        self.crash_credit = 0.0

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
        elif status in (200, 422) and payload != ack.result and ack.settled_by(payload):
            report.duplicates_settled += 1  # the pending answer's settlement: compare with it from now on
            ack.http_status, ack.result = status, payload
        elif status != ack.http_status or payload != ack.result:
            report.problem(f"{ack.account_id}/{ack.decision_id}: re-submission answered {status} "
                           f"{str(payload)[:200]}, first answer was {ack.http_status} {str(ack.result)[:200]}")
        else:
            report.duplicates_same += 1

    # ---- faults and kill switches

    async def maybe_crash(self, client: Any, account: str) -> None:
        # as many crashes as the rate says, evenly spread: a short run throws them whatever the
        # interleaving of the client tasks does to the random draws (which account stays random)
        self.crash_credit += self.crash_rate
        if self.crash_rate <= 0 or self.crash_credit < 1:
            return
        self.crash_credit -= 1
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
            # another client task may have resumed it while this one awaited: pop, do not del
            if n >= resume_at and self.halted.pop(account, None) is not None:
                await self.set_state(client, account, "active")
        if self.kill_switch_every <= 0 or n == 0 or n % self.kill_switch_every:
            return
        account = self.rng.choice(self.accounts)
        self.kill_switches += 1
        # close-all and halt take turns (close-all first): a short run throws both, whatever the
        # interleaving of the client tasks does to the random draws
        if self.kill_switches % 2 == 1 or account in self.halted:
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


# ============================================================================ the command


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

