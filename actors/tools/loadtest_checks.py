"""The invariants ``execd loadtest`` checks on a service's books (split out of
:mod:`actors.tools.loadtest`, which re-exports the public names here).

:func:`check_invariants` reads a service's SQLite file or PostgreSQL database (one read
transaction, so a consistent snapshot even while the service runs) and returns the problems it
finds, one named step per invariant:

* :func:`_check_fills`: every fill stored once, with its order, position and account;
* :func:`_check_decisions`: decisions stored once, each matching its own fills and order;
* :func:`_check_outbox`: each stored decision has its one outcome event in the outbox;
* :func:`_check_provenance`: no fill, order or position without its decision;
* :func:`_check_positions`: positions reproduced exactly by replaying their fills through the
  pure domain, one open position per symbol;
* :func:`_check_books`: every account's totals and balance reproduced exactly, and its timeline
  (:func:`_check_timeline`: per-account serialization, cooldowns honoured).

:func:`check_acknowledged` checks a client's acknowledged decisions against the same database.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, localcontext
from typing import Any, NamedTuple

from ..domain.positions import apply_close_fill, apply_open_fill, entry_side, new_position
from ..persistence.postgres import connect as pg_connect
from .loadtest_report import Ack

__all__ = ["ACCEPTED", "ROUNDING_TAG", "check_acknowledged", "check_invariants"]

ACCEPTED = ("filled", "partially_filled")

_DOMAIN = Context(prec=28, rounding=ROUND_HALF_EVEN)  # what the service computes with (decimal's default)
_EXACT = Context(prec=400, rounding=ROUND_HALF_EVEN, traps=[Inexact])  # sums that must not round
_TOLERANCE = Decimal("1e-9")  # for values the service rounded through fmt()/28 digits on the wire
_ROUNDING = Decimal("1e-12")
#: Prefix of a problem that is only a rounding difference (an account's books off by less than
#: 1e-12, i.e. 28-significant-digit arithmetic on amounts that need more digits): still a
#: problem (the books must balance exactly), but one that callers may want to tell apart.
ROUNDING_TAG = "[rounding] "

Row = dict[str, Any]
Problem = Callable[[str], None]


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


class _Tables(NamedTuple):
    """The rows the checks read, as of one snapshot."""

    accounts: dict[str, Row]
    decisions: list[Row]  # in commit order
    fills: list[Row]  # in commit order
    orders: dict[str, Row]
    positions: dict[str, Row]
    funding: list[Row]  # in commit order


def _load_tables(conn: sqlite3.Connection) -> _Tables:
    return _Tables(
        accounts={r["id"]: r for r in _rows(conn, "SELECT * FROM accounts")},
        decisions=_rows(conn, "SELECT seq, account_id, decision_id, fingerprint, status, result, created_at, "
                              "COALESCE(updated_at, created_at) AS answered_at FROM decisions ORDER BY seq"),
        fills=_rows(conn, "SELECT * FROM fills ORDER BY seq"),
        orders={r["id"]: r for r in _rows(conn, "SELECT * FROM orders")},
        positions={r["id"]: r for r in _rows(conn, "SELECT * FROM positions")},
        funding=_rows(conn, "SELECT * FROM funding_payments ORDER BY seq"),
    )


def _check(conn: sqlite3.Connection, limit: int) -> list[str]:
    """Every invariant, in this order (the problems are listed in it), at most ``limit`` problems."""
    problems: list[str] = []

    def problem(text: str) -> None:
        if len(problems) < limit:
            problems.append(text)

    t = _load_tables(conn)
    fills_by_decision, fills_by_order = _check_fills(t, problem)
    by_key = _check_decisions(t, fills_by_decision, fills_by_order, problem)
    _check_outbox(conn, by_key, problem)
    _check_provenance(t, by_key, problem)
    _check_positions(t, problem)
    _check_books(t, by_key, problems, problem)
    return problems


def _check_fills(t: _Tables, problem: Problem) -> tuple[dict[tuple[str, str], list[Row]], dict[str, list[Row]]]:
    """Every fill stored once, with its order, position and account; the fills by decision and by order."""
    fills_by_decision: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    fills_by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen_fill_ids: set[str] = set()
    for fill in t.fills:
        if fill["id"] in seen_fill_ids:
            problem(f"fill {fill['id']} is stored twice")
        seen_fill_ids.add(fill["id"])
        if fill["decision_id"] is not None:
            fills_by_decision[(fill["account_id"], fill["decision_id"])].append(fill)
        fills_by_order[fill["order_id"]].append(fill)
        if fill["order_id"] not in t.orders:
            problem(f"fill {fill['id']} has no order {fill['order_id']}")
        if fill["position_id"] not in t.positions:
            problem(f"fill {fill['id']} has no position {fill['position_id']}")
        if fill["account_id"] not in t.accounts:
            problem(f"fill {fill['id']} belongs to an unknown account {fill['account_id']}")
    return fills_by_decision, fills_by_order


def _check_decisions(t: _Tables, fills_by_decision: dict[tuple[str, str], list[Row]],
                     fills_by_order: dict[str, list[Row]], problem: Problem) -> dict[tuple[str, str], Row]:
    """Decisions stored once, each consistent with its own fills and order; the stored decisions
    by (account, decision id), each with its parsed result under ``"parsed"``."""
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for row in t.decisions:
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
        stored = _check_decision_fills(where, row, result, fills_by_decision.get(key, []), t.orders, problem)
        if row["status"] in ACCEPTED and not stored:
            problem(f"{where}: {row['status']} without any fill")
        if row["status"] == "rejected" and stored:
            problem(f"{where}: rejected but has fills {sorted(stored)}")
        order = result.get("order")
        if order is not None:
            _check_decision_order(where, key, order, t.orders, fills_by_order, problem)
    return by_key


def _check_decision_fills(where: str, row: Row, result: dict[str, Any], fills: list[Row], orders: dict[str, Row],
                          problem: Problem) -> dict[str, Row]:
    """The fills a decision's result lists are those stamped while it was handled; returns them."""
    # the fills made while the decision was handled carry a time between its start and its answer
    # (one and the same time on the paper venue; a live venue's fills arrive while it waits); a
    # resting limit order of the decision may fill later (its own, later, time); none may come before
    stored, later = {}, {}
    for fill in fills:
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
    return stored


def _check_decision_order(where: str, key: tuple[str, str], order: dict[str, Any], orders: dict[str, Row],
                          fills_by_order: dict[str, list[Row]], problem: Problem) -> None:
    """The order a decision's result names is stored, belongs to it, and its fills sum to its filled quantity."""
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


def _check_outbox(conn: sqlite3.Connection, by_key: dict[tuple[str, str], Row], problem: Problem) -> None:
    """Each stored decision has its one decision.accepted / decision.rejected event, written in the
    same transaction (DESIGN.md section 9)."""
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


def _check_provenance(t: _Tables, by_key: dict[tuple[str, str], Row], problem: Problem) -> None:
    """Nothing traded without its decision: the decision a fill, order or position names is stored."""
    for fill in t.fills:
        if fill["decision_id"] is not None and (fill["account_id"], fill["decision_id"]) not in by_key:
            problem(f"fill {fill['id']} names decision {fill['account_id']}/{fill['decision_id']}, which is not stored")
    for order in t.orders.values():
        if order["decision_id"] is not None and (order["account_id"], order["decision_id"]) not in by_key:
            problem(f"order {order['id']} names decision {order['account_id']}/{order['decision_id']}, "
                    f"which is not stored")
    for position in t.positions.values():
        if position["opened_by"] and (position["account_id"], position["opened_by"]) not in by_key:
            problem(f"position {position['id']} was opened by decision {position['opened_by']}, which is not stored")


def _check_positions(t: _Tables, problem: Problem) -> None:
    """Replay every position's fills through the pure domain: the stored position, each fill's
    realized PnL and the funding are reproduced exactly; one open position per account and symbol."""
    fills_by_position: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for fill in t.fills:
        fills_by_position[fill["position_id"]].append(fill)
    funding_by_position: dict[str, Decimal] = defaultdict(Decimal)
    with localcontext(_EXACT):
        for payment in t.funding:
            funding_by_position[payment["position_id"]] += _d(payment["amount"])
    replayed_realized: dict[str, Decimal] = {}  # fill id -> realized pnl by the replay
    for position_id, row in t.positions.items():
        _check_position(position_id, row, fills_by_position.get(position_id, []),
                        funding_by_position.get(position_id, Decimal(0)), replayed_realized, problem)
    for fill in t.fills:
        expected = replayed_realized.get(fill["id"])
        if expected is not None and _d(fill["realized_pnl"]) != expected:
            problem(f"fill {fill['id']}: realized_pnl {fill['realized_pnl']}, replay gives {expected}")
    open_per_symbol: Counter[tuple[str, str]] = Counter(
        (r["account_id"], r["symbol"]) for r in t.positions.values() if r["status"] in ("open", "closing"))
    for (account_id, symbol), count in open_per_symbol.items():
        if count > 1:
            problem(f"account {account_id} has {count} open {symbol} positions (one-way mode allows one)")


def _check_position(position_id: str, row: Row, fills: list[Row], funding: Decimal,
                    replayed_realized: dict[str, Decimal], problem: Problem) -> None:
    """One position replayed from its ``fills`` (recording each fill's realized PnL in
    ``replayed_realized``) against its stored row; ``funding`` is the sum of its payments."""
    with localcontext(_DOMAIN):
        position = new_position(position_id=position_id, account_id=row["account_id"], symbol=row["symbol"],
                                side=row["side"], leverage=row["leverage"], now=row["opened_at"],
                                opened_by=row["opened_by"] or "")
        try:
            for fill in fills:
                qty, price, fee = _d(fill["quantity"]), _d(fill["price"]), _d(fill["fee"])
                if fill["side"] == entry_side(position.side):
                    effect = apply_open_fill(position, qty, price, fee, fill["ts"])
                else:
                    effect = apply_close_fill(position, qty, price, fee, fill["ts"])
                position = effect.position
                replayed_realized[fill["id"]] = effect.realized_pnl
        except Exception as exc:  # an impossible fill sequence
            problem(f"position {position_id}: its fills cannot be replayed: {exc}")
            return
    if not fills and row["status"] != "failed":
        problem(f"position {position_id} ({row['status']}) has no fills")
        return
    for name in ("quantity", "entry_price", "cost", "margin", "realized_pnl", "fees", "closed_quantity",
                 "exit_notional"):
        if name not in row or not hasattr(position, name):
            continue
        if _d(row[name]) != getattr(position, name):
            problem(f"position {position_id}: {name} is {row[name]}, replaying its fills gives "
                    f"{getattr(position, name)}")
    if _d(row["funding"]) != funding:
        problem(f"position {position_id}: funding {row['funding']} but its payments sum to "
                f"{funding}")
    is_open = row["status"] in ("open", "closing")
    if is_open != position.is_open:
        problem(f"position {position_id} is {row['status']} with quantity {row['quantity']}, replay says "
                f"{'open' if position.is_open else 'closed'}")


def _check_books(t: _Tables, by_key: dict[tuple[str, str], Row], problems: list[str], problem: Problem) -> None:
    """The books of every account balance, exactly, and its timeline holds (at most 5 timeline
    problems per account: one broken account should not hide the others); no orphan account."""
    fills_by_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for fill in t.fills:
        fills_by_account[fill["account_id"]].append(fill)
    funding_by_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for payment in t.funding:
        funding_by_account[payment["account_id"]].append(payment)
    decisions_by_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in by_key.values():
        decisions_by_account[row["account_id"]].append(row)
    for account_id, account in t.accounts.items():
        _check_account_totals(account_id, account, fills_by_account[account_id], funding_by_account[account_id],
                              problem)
        problems_before = len(problems)
        _check_timeline(account_id, account, decisions_by_account[account_id], fills_by_account[account_id],
                        funding_by_account[account_id], problem)
        if len(problems) - problems_before > 5:  # one broken account should not hide the others
            del problems[problems_before + 5:]
    for account_id in set(fills_by_account) | set(decisions_by_account):
        if account_id not in t.accounts:
            problem(f"account {account_id} has decisions or fills but no accounts row")


def _check_account_totals(account_id: str, account: Row, fills: list[Row], funding: list[Row],
                          problem: Problem) -> None:
    """An account's realized PnL, fees, funding and balance are exactly the sums of its fills and
    payments (a difference below 1e-12 is tagged :data:`ROUNDING_TAG`)."""
    with localcontext(_EXACT):
        realized = sum((_d(f["realized_pnl"]) for f in fills), Decimal(0))
        fees = sum((_d(f["fee"]) for f in fills), Decimal(0))
        paid = sum((_d(p["amount"]) for p in funding), Decimal(0))
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
    _check_commit_order(account_id, decisions, fills, problem)
    items, fills_of = _timeline(decisions, fills, funding)
    limits = {}
    try:
        limits = json.loads(account["risk_overrides"] or "{}")
    except ValueError:
        pass
    cooldown = float(limits.get("cooldown_seconds") or 0.0)
    replay = _Replay(balance=_d(account["initial_balance"]))
    with localcontext(_EXACT):
        for _ts, _prio, _seq, (kind, value) in items:
            if kind == "funding":
                replay.balance += _d(value["amount"])
                continue
            if kind == "fills":
                replay.apply(value)
                continue
            row = value
            result = row.get("parsed")
            if result is None:
                continue
            _check_decision_state(account_id, row, result, fills_of, cooldown, replay, problem)


def _check_commit_order(account_id: str, decisions: list[Row], fills: list[Row], problem: Problem) -> None:
    """Commit order agrees with time, for an account's decisions and for its fills."""
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


def _timeline(decisions: list[Row], fills: list[Row], funding: list[Row],
              ) -> tuple[list[tuple[float, int, int, Any]], dict[str, list[Row]]]:
    """An account's timeline, in time order (one actor's clock): decisions (the fills made while
    they were handled are returned apart, by decision id), other fills grouped by order and time,
    funding payments."""
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
    return items, fills_of


@dataclass
class _Replay:
    """An account's state replayed along its timeline (amounts summed under the exact context)."""

    balance: Decimal
    quantity: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))  # symbol -> signed
    last_accepted: float | None = None  # when the last accepted decision was answered

    def apply(self, fills: Iterable[Row]) -> None:
        for fill in fills:
            self.balance += _d(fill["realized_pnl"]) - _d(fill["fee"])
            self.quantity[fill["symbol"]] += (1 if fill["side"] == "BUY" else -1) * _d(fill["quantity"])


def _check_decision_state(account_id: str, row: Row, result: dict[str, Any], fills_of: dict[str, list[Row]],
                          cooldown: float, replay: _Replay, problem: Problem) -> None:
    """One decision on its account's timeline: the cooldown it met, then the balance and position
    its result reports against the replay of everything before it plus its own fills."""
    where = f"account {account_id}: decision {row['decision_id']}"
    status = row["status"]
    rejection = (result.get("rejection") or {}).get("code")
    now = row["created_at"]  # when the gate judged it
    last_accepted = replay.last_accepted
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
        replay.last_accepted = row["answered_at"]  # a cooldown starts with the answer
    replay.apply(fills_of.get(row["decision_id"], []))
    reported = result.get("balance")
    if reported is not None and abs(_d(reported) - replay.balance) > _TOLERANCE:
        problem(f"{where}: its result reports balance {reported} but the account's fills before and "
                f"with it give {replay.balance} (decisions overlapped?)")
    position = result.get("position")
    if status in ACCEPTED and position is not None:
        symbol = result.get("symbol")
        held = abs(replay.quantity[symbol])
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
                # a pending answer may since be settled with the venue's truth about the same order
                if not ack.settled_by(json.loads(result)):
                    problems.append(f"{where}: answered {ack.result.get('status')!r}, stored {status!r}")
            elif json.loads(result) != ack.result:
                problems.append(f"{where}: the stored result differs from the answer")
        if len(problems) >= limit:
            break
    return problems
