"""The SQL of the service, next to its schema: how an account's changes are written, how an
account is loaded, and what the front door reads.

Writes are :class:`~.rows.Statement` lists handed to the persistence actor; the account's load is
one function run inside a round (:meth:`~.actor.Persistence.call`: every read in one thread hop);
the front door reads on its own read connections.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec

from ..domain.book import UNCHANGED, AccountBook, Changes
from ..domain.events import Payload
from ..domain.orders import FillRecord, FundingPayment, OrderRecord
from ..domain.positions import Position
from ..domain.risk import CheckResult
from ..domain.views import FillView, OrderView, fill_view, order_view
from .items import EventRecord
from .rows import Statement, dec, insert, text, upsert
from .schema import OPEN_ORDER_STATUSES_SQL

#: audit details keep their numbers as JSON numbers (exact: Decimal's own digits), rendered when read
_check_encoder = msgspec.json.Encoder(decimal_format="number")

# ------------------------------------------------------------------------------------ writes


def order_statement(order: OrderRecord) -> Statement:
    return upsert("orders", {
        "id": order.id, "account_id": order.account_id, "decision_id": order.decision_id,
        "position_id": order.position_id, "symbol": order.symbol, "side": order.side,
        "type": order.type, "purpose": order.purpose, "reduce_only": int(order.reduce_only),
        "quantity": text(order.quantity), "price": text(order.price),
        "trigger_price": text(order.trigger_price), "status": order.status,
        "filled_quantity": text(order.filled_quantity), "avg_price": text(order.avg_price),
        "cum_quote": text(order.cum_quote), "fee": text(order.fee), "leverage": order.leverage, "take_profit": text(order.take_profit),
        "stop_loss": text(order.stop_loss), "reject_code": order.reject_code,
        "reject_message": order.reject_message, "client_order_id": order.client_order_id or None,
        "venue_order_id": order.venue_order_id, "sent_at": order.sent_at, "revision": order.revision,
        "venue_filled": text(order.venue_filled),
        "created_at": order.created_at, "updated_at": order.updated_at,
    }, key=("account_id", "id"))


def fill_statement(fill: FillRecord) -> Statement:
    return insert("fills", {
        "id": fill.id, "account_id": fill.account_id, "order_id": fill.order_id,
        "decision_id": fill.decision_id, "position_id": fill.position_id, "symbol": fill.symbol,
        "side": fill.side, "quantity": text(fill.quantity), "price": text(fill.price),
        "fee": text(fill.fee), "fee_asset": fill.fee_asset, "liquidity": fill.liquidity,
        "realized_pnl": text(fill.realized_pnl), "trigger_price": text(fill.trigger_price),
        "top_of_book_only": int(fill.top_of_book_only), "ts": fill.ts,
    })


POSITION_DECIMALS = (
    "quantity", "entry_price", "cost", "margin", "realized_pnl", "fees", "funding", "closed_quantity",
    "exit_notional", "max_quantity", "take_profit", "stop_loss", "liquidation_price",
)
_POSITION_ZERO = ("quantity", "entry_price", "cost", "margin", "realized_pnl", "fees", "funding",
                  "closed_quantity", "exit_notional", "max_quantity")


def position_statement(position: Position) -> Statement:
    row = msgspec.structs.asdict(position)
    for name in POSITION_DECIMALS:
        row[name] = text(row[name])
    row["external"] = int(position.external)
    return upsert("positions", row)


def funding_statement(payment: FundingPayment) -> Statement:
    return Statement(
        "INSERT INTO funding_payments (account_id, position_id, symbol, rate, mark, amount, funding_time, ts)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (payment.account_id, payment.position_id, payment.symbol, text(payment.rate), text(payment.mark),
         text(payment.amount), payment.funding_time, payment.ts),
    )


def audit_statement(account_id: str, decision_id: str | None, ts: float, accepted: bool, code: str | None,
                    message: str | None, checks: Iterable[CheckResult] | bytes) -> Statement:
    """One risk evaluation (the front door writes malformed requests' rows through this too)."""
    # a CheckResult encodes as {"name", "passed", "detail"}: the structs themselves, no dicts built
    encoded = checks if isinstance(checks, bytes) else _check_encoder.encode(checks)
    return Statement(
        "INSERT INTO audit (account_id, decision_id, ts, accepted, code, message, checks) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (account_id, decision_id, ts, int(accepted), code, message, encoded.decode()),
    )


def account_row(book: AccountBook, changes: Changes) -> dict[str, Any]:
    """The account row as it will be once ``changes`` are applied."""
    state, reason, source = changes.trading_state or (book.trading_state, book.state_reason, book.state_source)
    day, day_start = changes.day if changes.day is not None else (book.day, book.day_start_equity)
    cooldown = book.cooldown_until if changes.cooldown_until is UNCHANGED else changes.cooldown_until
    limits = changes.limits or book.limits
    config = book.config
    return {
        "id": book.account_id, "mode": config.mode, "venue": config.venue,
        "initial_balance": text(book.initial_balance), "balance": text(changes.balance),
        "realized_pnl": text(book.realized_pnl + changes.realized), "fees": text(book.fees + changes.fees),
        "funding": text(book.funding + changes.funding), "trading_state": state,
        "state_reason": reason, "state_source": source, "cooldown_until": cooldown,
        "peak_equity": text(changes.peak_equity or book.peak_equity), "day_start_equity": text(day_start),
        "day": day, "risk_overrides": _json_of(limits), "settings": _json_of(config), "updated_at": changes.now,
    }


#: the JSON of an account's settings and limits by object identity: both are frozen structs of
#: immutable fields (a change is a new object), written with every account row; an entry holds its
#: object, so its id is not reused meanwhile
_JSON_OF: dict[int, tuple[object, str]] = {}
_JSON_OF_SIZE = 4096


def _json_of(value: object) -> str:
    entry = _JSON_OF.get(id(value))
    if entry is not None and entry[0] is value:
        return entry[1]
    encoded = msgspec.json.encode(value).decode()
    if len(_JSON_OF) >= _JSON_OF_SIZE:
        _JSON_OF.clear()
    _JSON_OF[id(value)] = (value, encoded)
    return encoded


def changes_statements(book: AccountBook, changes: Changes) -> list[Statement]:
    """Everything ``changes`` write, in one transaction with their events."""
    account_id = book.account_id
    statements: list[Statement] = []
    for d in changes.decisions:
        if d.insert:
            statements.append(Statement(
                "INSERT INTO decisions (account_id, decision_id, fingerprint, request, status, result, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (account_id, d.decision_id, d.fingerprint, d.request_json, d.status, d.result.decode(),
                 changes.now, changes.now)))
        else:
            statements.append(Statement(
                "UPDATE decisions SET status = ?, result = ?, updated_at = ? WHERE account_id = ? AND decision_id = ?",
                (d.status, d.result.decode(), changes.now, account_id, d.decision_id)))
    if changes.audit is not None:
        a = changes.audit
        statements.append(audit_statement(account_id, a.decision_id, a.ts, a.accepted, a.code, a.message, a.checks))
    statements.extend(order_statement(o) for o in changes.orders.values())
    statements.extend(fill_statement(f) for f in changes.fills)
    statements.extend(position_statement(p) for p in changes.positions.values())
    statements.extend(funding_statement(p) for p in changes.funding_payments)
    statements.append(upsert("accounts", account_row(book, changes)))
    return statements


def event_records(book: AccountBook, changes: Changes) -> list[EventRecord]:
    return [event_record(book.account_id, book.is_paper, changes.now, payload) for payload in changes.events]


def event_record(account_id: str | None, is_paper: bool, ts: float, payload: Payload) -> EventRecord:
    return EventRecord(type=payload.TYPE, account_id=account_id, is_paper=is_paper, ts=ts, payload=payload)


# ------------------------------------------------------------------------------------ loading


class AccountRows(NamedTuple):
    """Everything an account's actor rebuilds itself from (read in one round)."""

    account: dict[str, Any] | None
    positions: list[Position]
    orders: list[OrderRecord]
    funded_until: dict[str, int]
    recent_order_times: list[float]
    order_fills: dict[str, set[str]]  # fill ids of the open orders


_ACCOUNT_COLUMNS = ("initial_balance", "realized_pnl", "fees", "funding", "trading_state", "state_reason",
                    "state_source", "cooldown_until", "peak_equity", "day_start_equity", "day", "risk_overrides")
_POSITION_COLUMNS = tuple(Position.__struct_fields__)
_ORDER_COLUMNS = ("id", "account_id", "decision_id", "position_id", "symbol", "side", "type", "purpose",
                  "reduce_only", "quantity", "price", "trigger_price", "status", "filled_quantity", "avg_price",
                  "cum_quote", "fee", "leverage", "take_profit", "stop_loss", "reject_code", "reject_message",
                  "client_order_id", "venue_order_id", "sent_at", "revision", "venue_filled", "created_at",
                  "updated_at")


def load_account(conn: sqlite3.Connection, account_id: str, now: float) -> AccountRows:
    """Runs inside a persistence round (on the write connection): every read of an account."""
    row = conn.execute(f"SELECT {', '.join(_ACCOUNT_COLUMNS)} FROM accounts WHERE id = ?", (account_id,)).fetchone()
    if row is None:
        return AccountRows(None, [], [], {}, [], {})
    positions = [position_from_row(dict(zip(_POSITION_COLUMNS, r))) for r in conn.execute(
        f"SELECT {', '.join(_POSITION_COLUMNS)} FROM positions WHERE account_id = ? AND status IN ('open', 'closing')",
        (account_id,))]
    orders = [order_from_row(dict(zip(_ORDER_COLUMNS, r))) for r in conn.execute(
        f"SELECT {', '.join(_ORDER_COLUMNS)} FROM orders WHERE account_id = ?"
        f" AND {OPEN_ORDER_STATUSES_SQL}", (account_id,))]
    funded = {position_id: funding_time for position_id, funding_time in conn.execute(
        "SELECT position_id, MAX(funding_time) FROM funding_payments WHERE account_id = ? GROUP BY position_id",
        (account_id,))}
    # the rate limits survive a restart: orders the venue took in the last minute
    times = [t for (t,) in conn.execute(
        "SELECT created_at FROM orders WHERE account_id = ? AND created_at > ? AND purpose IN ('entry', 'exit',"
        " 'close_all') AND status NOT IN ('PENDING_NEW', 'REJECTED') ORDER BY created_at", (account_id, now - 60))]
    order_fills: dict[str, set[str]] = {}
    if orders:
        marks = ", ".join("?" for _ in orders)
        for order_id, fill_id in conn.execute(
                f"SELECT order_id, id FROM fills WHERE account_id = ? AND order_id IN ({marks})",
                (account_id, *(o.id for o in orders))):
            order_fills.setdefault(order_id, set()).add(fill_id)
    return AccountRows(dict(zip(_ACCOUNT_COLUMNS, row)), positions, orders, funded, times, order_fills)


def order_fills(conn: sqlite3.Connection, account_id: str, order_id: str) -> list[FillRecord]:
    cursor = conn.execute("SELECT * FROM fills WHERE account_id = ? AND order_id = ? ORDER BY seq", (account_id, order_id))
    names = [d[0] for d in cursor.description or ()]
    return [fill_from_row(dict(zip(names, row))) for row in cursor.fetchall()]


def symbol_fill_ids(conn: sqlite3.Connection, account_id: str, symbol: str, since: float) -> set[str]:
    """Ids of the fills recorded on ``symbol`` since ``since`` (a venue trade's fill id is
    ``<symbol>:<trade id>``): which of the venue's trades the account has applied."""
    return {fill_id for (fill_id,) in conn.execute(
        "SELECT id FROM fills WHERE account_id = ? AND symbol = ? AND ts >= ?", (account_id, symbol, since))}


def orders_by_venue_id(conn: sqlite3.Connection, account_id: str, venue_order_ids: list[str]) -> list[OrderRecord]:
    """The account's orders the venue knows by these ids."""
    if not venue_order_ids:
        return []
    marks = ", ".join("?" for _ in venue_order_ids)
    cursor = conn.execute(f"SELECT {', '.join(_ORDER_COLUMNS)} FROM orders WHERE account_id = ?"
                          f" AND venue_order_id IN ({marks})", (account_id, *venue_order_ids))
    return [order_from_row(dict(zip(_ORDER_COLUMNS, row))) for row in cursor.fetchall()]


def pending_decision_orders(conn: sqlite3.Connection, account_id: str) -> list[OrderRecord]:
    """The orders of the account's decisions still answered ``pending`` (their venue answer was
    lost, or the service stopped before it stored the final result)."""
    columns = ", ".join(f"o.{c}" for c in _ORDER_COLUMNS)
    cursor = conn.execute(
        f"SELECT {columns} FROM orders o JOIN decisions d ON d.account_id = o.account_id"
        " AND d.decision_id = o.decision_id WHERE o.account_id = ? AND d.status = 'pending'"
        " AND o.purpose IN ('entry', 'exit')", (account_id,))
    return [order_from_row(dict(zip(_ORDER_COLUMNS, row))) for row in cursor.fetchall()]


def first_order_at(conn: sqlite3.Connection, account_id: str) -> float | None:
    """When the account sent its first order (where its venue history of interest starts)."""
    row = conn.execute("SELECT MIN(created_at) FROM orders WHERE account_id = ?", (account_id,)).fetchone()
    return row[0] if row is not None else None


def stored_decision(conn: sqlite3.Connection, account_id: str, decision_id: str) -> tuple[str, bytes] | None:
    row = conn.execute("SELECT fingerprint, result FROM decisions WHERE account_id = ? AND decision_id = ?",
                       (account_id, decision_id)).fetchone()
    return None if row is None else (row[0], row[1].encode())


def position_from_row(row: dict[str, Any]) -> Position:
    values = {name: row.get(name) for name in Position.__struct_fields__}
    for name in POSITION_DECIMALS:
        values[name] = dec(values[name])
    for name in _POSITION_ZERO:
        if values[name] is None:
            values[name] = Decimal(0)
    values["external"] = bool(values.get("external"))
    values["protection_revision"] = values.get("protection_revision") or 0
    return Position(**values)


def order_from_row(row: dict[str, Any]) -> OrderRecord:
    return OrderRecord(
        id=row["id"], account_id=row["account_id"], decision_id=row["decision_id"],
        position_id=row["position_id"], symbol=row["symbol"], side=row["side"], type=row["type"],
        purpose=row["purpose"], reduce_only=bool(row["reduce_only"]), quantity=dec(row["quantity"]),
        price=dec(row["price"]), trigger_price=dec(row["trigger_price"]), status=row["status"],
        filled_quantity=dec(row["filled_quantity"]) or Decimal(0), avg_price=dec(row["avg_price"]),
        cum_quote=_cum_quote(row),
        fee=dec(row["fee"]) or Decimal(0), leverage=row["leverage"], take_profit=dec(row["take_profit"]),
        stop_loss=dec(row["stop_loss"]), reject_code=row["reject_code"], reject_message=row["reject_message"],
        client_order_id=row.get("client_order_id") or "", venue_order_id=row.get("venue_order_id"),
        sent_at=row.get("sent_at"), revision=row.get("revision") or 0,
        venue_filled=dec(row.get("venue_filled")) or Decimal(0),
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


def _cum_quote(row: dict[str, Any]) -> Decimal:
    """Orders stored before ``cum_quote`` existed: recovered from their average price."""
    if row.get("cum_quote") is not None:
        return Decimal(row["cum_quote"])
    if row["avg_price"] is None or row["filled_quantity"] is None:
        return Decimal(0)
    return Decimal(row["avg_price"]) * Decimal(row["filled_quantity"])


def fill_from_row(row: dict[str, Any]) -> FillRecord:
    return FillRecord(
        id=row["id"], account_id=row["account_id"], order_id=row["order_id"], decision_id=row["decision_id"],
        position_id=row["position_id"], symbol=row["symbol"], side=row["side"], quantity=Decimal(row["quantity"]),
        price=Decimal(row["price"]), fee=Decimal(row["fee"]), fee_asset=row.get("fee_asset") or "USDT",
        liquidity=row["liquidity"], realized_pnl=Decimal(row["realized_pnl"]),
        trigger_price=dec(row["trigger_price"]), top_of_book_only=bool(row["top_of_book_only"]), ts=row["ts"],
    )


# ------------------------------------------------------------------------------------ front door reads


def order_view_from_row(row: dict[str, Any]) -> OrderView:
    return order_view(order_from_row(row))


def fill_view_from_row(row: dict[str, Any]) -> FillView:
    return fill_view(fill_from_row(row))


def keyset_sql(table: str, where: str | None, has_cursor: bool) -> str:
    """Newest first, ``limit + 1`` rows to know whether there is a next page."""
    sql = f"SELECT * FROM {table} WHERE account_id = ?"
    if where:
        sql += f" AND {where}"
    if has_cursor:
        sql += " AND seq < ?"
    return sql + " ORDER BY seq DESC LIMIT ?"


DECISION_RESULT_SQL = "SELECT result, fingerprint FROM decisions WHERE account_id = ? AND decision_id = ?"
CLOSED_POSITIONS_SQL = "SELECT * FROM positions WHERE account_id = ? AND status = 'closed' ORDER BY closed_at, seq"
