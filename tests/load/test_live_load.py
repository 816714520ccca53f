"""The load test on live accounts: the real service in-process on a loopback port, live accounts on
the fake exchange in each venue's dialect (signed REST, user-data streams; Binance's protective
orders on its Algo Order API, AsterDEX's among the ordinary orders), concurrent
HTTP clients, injected actor crashes (each restart reconciles with the venue before its next
decision), kill switches and duplicates. Besides the database invariants of the paper load test:

* no entry twice on the venue: every order the venue accepted has a client id of its own, and the
  venue accepted exactly the entries the database holds as placed;
* no position without a stop-loss for longer than the protection deadline, read from the venue's
  own records (its trades and its stop orders, on its clock);
* the book agrees with the venue: the same positions, at the end.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from actors.service import Service, run_service
from actors.tools.loadtest import Ack, check_acknowledged, check_invariants, format_report, run_load
from tests.conftest import make_settings
from tests.fake_exchange import FakeExchange, open_fake_exchange

#: the run's random draws; ``EXECD_LOAD_SEED`` runs the same load with others (a soak)
SEED = int(os.environ.get("EXECD_LOAD_SEED", "20261201"))
#: the venues' dialects (``EXECD_LOAD_FLAVOUR`` runs one of them only)
FLAVOURS = [os.environ["EXECD_LOAD_FLAVOUR"]] if os.environ.get("EXECD_LOAD_FLAVOUR") else ["binance", "aster"]
VENUES = {"binance": "binance-usdm", "aster": "asterdex"}
ACCOUNTS = 8
DECISIONS = 500
DEADLINE = 5.0  # protection_deadline_seconds
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def settings_text(fake: FakeExchange) -> str:
    venue = VENUES[fake.flavour]
    accounts = "\n".join(
        f"  - {{id: live-{n}, mode: live, venue: {venue}, protection_deadline_seconds: {DEADLINE},"
        f" credentials: {{api_key_env: LL{n}_KEY, api_secret_env: LL{n}_SECRET}}}}" for n in range(ACCOUNTS))
    return f"""
server: {{host: 127.0.0.1, port: 0, request_timeout_seconds: 2, shutdown_grace_seconds: 5}}
database: {{path: unused.sqlite3}}
venues:
  {venue}: {{rest_url: "{fake.rest_url}", ws_url: "{fake.ws_url}", symbols: [{", ".join(SYMBOLS)}],
                 stale_after_seconds: 5, poll_interval_seconds: 0.5, request_timeout_seconds: 2,
                 recv_window_ms: 2000, settle_margin_seconds: 0.3, user_stream_reconnect_seconds: 0.05,
                 reconcile_interval_seconds: 10}}
risk: {{max_leverage: 25, cooldown_seconds: 0, require_stop_loss: true}}
supervisor: {{inbox_size: 32, restart_backoff_initial_seconds: 0.05, restart_backoff_max_seconds: 0.5,
             max_restarts: 20, restart_window_seconds: 60}}
accounts:
{accounts}
"""


def accepted(fake: FakeExchange) -> Counter[str]:
    """Client ids of the orders the venue accepted (classic and algo), with how many times."""
    counted: Counter[str] = Counter()
    for r in fake.requests:
        if r.method == "POST" and r.path in ("/fapi/v1/order", "/fapi/v1/algoOrder") and r.status == 200:
            counted[r.query.get("newClientOrderId") or r.query.get("clientAlgoId") or "?"] += 1
    return counted


def unprotected_spells(fake: FakeExchange, account: str, symbol: str, end_ms: int) -> list[tuple[int, int]]:
    """Spans (venue ms) during which the account held a position on ``symbol`` and no stop-loss
    was working on the venue."""
    events: list[tuple[int, int, str, object]] = []
    for trade in fake.trades(account, symbol):
        events.append((trade.time_ms, 1, "trade", trade.qty if trade.side == "BUY" else -trade.qty))
    if fake.flavour == "binance":  # stop-losses are algo orders
        for algo in fake.algo_orders(account):
            if algo.symbol == symbol and algo.order_type == "STOP_MARKET":
                events.append((algo.create_ms, 0, "on", algo.algo_id))
                if algo.status != "NEW":
                    events.append((algo.update_ms, 2, "off", algo.algo_id))
    else:  # AsterDEX keeps them among the ordinary orders
        for order in fake.orders(account, symbol=symbol):
            if order.orig_type == "STOP_MARKET":
                events.append((order.time_ms, 0, "on", order.order_id))
                if order.status != "NEW":
                    events.append((order.update_ms, 2, "off", order.order_id))
    events.sort(key=lambda e: (e[0], e[1]))
    net, working, spells, since = Decimal(0), set(), [], None
    for at, _, kind, value in events:
        if kind == "trade":
            net += value  # type: ignore[operator]
        elif kind == "on":
            working.add(value)
        else:
            working.discard(value)
        exposed = net != 0 and not working
        if exposed and since is None:
            since = at
        elif not exposed and since is not None:
            spells.append((since, at))
            since = None
    if since is not None:
        spells.append((since, end_ms))
    return spells


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_live_load_with_crashes_kill_switches_and_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  flavour: str) -> None:
    monkeypatch.setenv("EXECD_TEST_FAULTS", "1")  # mounts the actor-crash endpoint
    async with open_fake_exchange(flavour=flavour) as fake:
        for n in range(ACCOUNTS):
            account = fake.add_account(f"live-{n}", wallet="1000000")
            monkeypatch.setenv(f"LL{n}_KEY", account.api_key)
            monkeypatch.setenv(f"LL{n}_SECRET", account.api_secret)
        fake.start_ticker(0.25)  # market data on the websockets: no REST polling eats the weight budget
        # eight accounts' restarts, close-alls and passes on one IP: a budget the size of a busier
        # IP's (the test waits for two passes per account at the end; the budget has its own tests)
        fake.weight_limit = 12000
        settings = make_settings(tmp_path, settings_text(fake))
        db = settings.database.path
        with trio.fail_after(150):
            async with trio.open_nursery() as nursery:
                service: Service = await nursery.start(run_service, settings)
                assert service.url is not None
                while any(s.status == "starting" for s in service.supervisor.slots.values()):
                    await trio.sleep(0.05)
                report = await run_load(
                    service.url, accounts=ACCOUNTS, decisions=DECISIONS, concurrency=16, duration=90,
                    crash_rate=0.02, duplicate_rate=0.05, kill_switch_every=80, seed=SEED, progress=False,
                    account_prefix="live-", max_crashes_per_minute=6, protection_rate=1.0,
                )
                print(format_report(report))
                restarts = sum(slot.restarts for slot in service.supervisor.slots.values())
                # let the last passes settle what the crashes left in flight, then compare books
                for slot in service.supervisor.slots.values():
                    while slot.actor is None or slot.actor.reconciliation is None or \
                            slot.actor.reconciliation.passes < 2:
                        await trio.sleep(0.05)
                books = {s.account_id: s.snapshot() for s in service.supervisor.slots.values()}
                end_ms = fake.server_ms()
                service.request_stop()
                with trio.fail_after(20):
                    await service.stopped.wait()

        print("venue requests by endpoint:", Counter((r.method, r.path) for r in fake.requests).most_common())
        # ---- the run did what it claims
        assert report.decisions >= DECISIONS, "the run was cut by its duration"
        assert not report.unanswered, report.unanswered[:10]
        assert report.crashes >= 5 and restarts >= 5, (report.crashes, restarts)
        assert report.close_alls > 0 and report.duplicates > 10
        assert report.final_status[200] > 100
        assert not report.problems, "\n".join(report.problems[:20])

        # ---- no entry twice on the venue
        counted = accepted(fake)
        assert [cid for cid, n in counted.items() if n > 1] == []
        conn = sqlite3.connect(db)
        try:
            placed = {cid for (cid,) in conn.execute(
                "SELECT client_order_id FROM orders WHERE purpose = 'entry' AND venue_order_id IS NOT NULL")}
            # ---- no answer left pending once the venue has decided its order and every fill is in
            stuck = conn.execute(
                "SELECT d.account_id, d.decision_id, o.status, o.filled_quantity FROM decisions d "
                "JOIN orders o ON o.account_id = d.account_id AND o.decision_id = d.decision_id "
                "WHERE d.status = 'pending' AND o.status IN ('FILLED', 'CANCELED', 'EXPIRED', 'REJECTED') "
                "AND CAST(o.filled_quantity AS REAL) >= CAST(COALESCE(o.venue_filled, '0') AS REAL)").fetchall()
        finally:
            conn.close()
        assert placed == {cid for cid in counted if cid.startswith("en-")}
        assert stuck == [], stuck

        # ---- no position without a stop-loss for longer than the deadline
        longest, worst = 0, ""
        for n in range(ACCOUNTS):
            for symbol in SYMBOLS:
                for start, end in unprotected_spells(fake, f"live-{n}", symbol, end_ms):
                    if end - start > longest:
                        longest, worst = end - start, f"live-{n} {symbol} from {start} to {end}"
        assert longest <= DEADLINE * 1000, f"a position went {longest} ms without a stop-loss: {worst}"
        print(f"longest spell without a stop-loss on the venue: {longest} ms")

        # ---- the book agrees with the venue
        for account_id, snapshot in books.items():
            assert snapshot is not None
            ours = {p.symbol: (p.side, p.quantity) for p in snapshot.positions}
            theirs = {s: ("long" if p.amount > 0 else "short", abs(p.amount))
                      for s in SYMBOLS if (p := fake.position(account_id, s)).amount != 0}
            assert ours == theirs, account_id

        # ---- the database invariants of every load test
        assert check_acknowledged(db, report.acks.values()) == []
        problems = check_invariants(db)
        assert problems == [], "\n".join(problems[:30])


def test_a_pending_answer_is_settled_only_by_a_result_about_the_same_order() -> None:
    """The load checkers accept that a live decision answered ``pending`` is later stored (and
    answered again) with the venue's truth, but only about that decision's own order."""
    pending = {"decision_id": "d-1", "account_id": "live-0", "symbol": "ETHUSDT", "action": "close",
               "status": "pending", "order": {"id": "d-1.exit", "status": "PENDING_NEW"}}
    filled = {**pending, "status": "filled", "order": {"id": "d-1.exit", "status": "FILLED"}}
    ack = Ack("live-0", "d-1", b"{}", 200, pending)
    assert ack.settled_by(filled)
    assert not ack.settled_by({**filled, "order": {"id": "d-2.exit", "status": "FILLED"}})  # another order
    assert not ack.settled_by({**filled, "decision_id": "d-2"})
    assert not ack.settled_by({**filled, "symbol": "BTCUSDT"})
    assert not Ack("live-0", "d-1", b"{}", 200, filled).settled_by(pending)  # a final answer never moves
