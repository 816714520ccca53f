"""The database schema, as versioned migrations that are data.

Each migration is a list of operations (create a table, add a column, create an index) written
once with portable column types, so that every backend applies the same migrations: SQLite
through sqlite-utils here, PostgreSQL by generating its DDL from the same operations. The version
is kept in the database (``PRAGMA user_version`` on SQLite); a database newer than the code is
refused.

Tables (DESIGN.md §7): ``accounts``, ``decisions`` (idempotency key, request, result), ``orders``,
``fills``, ``positions``, ``funding_payments``, ``events`` (outbox, monotonic ``seq``), ``audit``
(risk evaluations), ``credentials`` (encrypted), ``service_state``.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field

import sqlite_utils

log = logging.getLogger("actors.persistence")

# Portable column types: str = TEXT, int = INTEGER (64 bit), float = REAL/double, bytes = BLOB.
ColumnType = type


@dataclass(frozen=True)
class CreateTable:
    table: str
    columns: dict[str, ColumnType]
    pk: str
    #: an INTEGER primary key named ``seq`` is the row's insertion order (autoincrementing)
    indexes: tuple[tuple[tuple[str, ...], bool], ...] = field(default=())


@dataclass(frozen=True)
class AddColumn:
    table: str
    column: str
    type: ColumnType


@dataclass(frozen=True)
class CreateIndex:
    table: str
    columns: tuple[str, ...]
    unique: bool = False
    #: a partial index: only the rows this SQL condition holds for (a query uses it when its own
    #: WHERE holds the same condition, written alike)
    where: str | None = None
    #: the index's name; by default the one sqlite-utils gives (``idx_<table>_<columns>``)
    name: str | None = None

    @property
    def index_name(self) -> str:
        return self.name or f"idx_{self.table}_{'_'.join(self.columns)}"


@dataclass(frozen=True)
class DropIndex:
    name: str


Operation = CreateTable | AddColumn | CreateIndex | DropIndex

#: the statuses of an order the venue may still fill (what an account loads at start); the text
#: of the partial index's condition and of the query it serves, so that SQLite uses the index
OPEN_ORDER_STATUSES_SQL = "status IN ('PENDING_NEW', 'NEW', 'PARTIALLY_FILLED')"

_MIGRATION_1: tuple[Operation, ...] = (
    CreateTable("accounts", {
        "id": str, "mode": str, "venue": str, "initial_balance": str, "balance": str,
        "realized_pnl": str, "fees": str, "funding": str, "trading_state": str,
        "state_reason": str, "state_source": str, "risk_overrides": str, "cooldown_until": float,
        "peak_equity": str, "day_start_equity": str, "day": int, "settings": str,
        "created_at": float, "updated_at": float,
    }, pk="id"),
    CreateTable("decisions", {
        "seq": int, "account_id": str, "decision_id": str, "fingerprint": str, "request": str,
        "status": str, "result": str, "created_at": float,
    }, pk="seq", indexes=((("account_id", "decision_id"), True),)),
    CreateTable("orders", {
        "seq": int, "id": str, "account_id": str, "decision_id": str, "position_id": str,
        "symbol": str, "side": str, "type": str, "purpose": str, "reduce_only": int,
        "quantity": str, "price": str, "trigger_price": str, "status": str,
        "filled_quantity": str, "avg_price": str, "fee": str, "leverage": int,
        "take_profit": str, "stop_loss": str, "reject_code": str,
        "reject_message": str, "created_at": float, "updated_at": float,
    }, pk="seq", indexes=((("account_id", "id"), True), (("account_id", "seq"), False))),
    CreateTable("fills", {
        "seq": int, "id": str, "account_id": str, "order_id": str, "decision_id": str,
        "position_id": str, "symbol": str, "side": str, "quantity": str, "price": str,
        "fee": str, "liquidity": str, "realized_pnl": str, "trigger_price": str,
        "top_of_book_only": int, "ts": float,
    }, pk="seq", indexes=((("account_id", "id"), True), (("account_id", "seq"), False))),
    CreateTable("positions", {
        "seq": int, "id": str, "account_id": str, "symbol": str, "side": str, "status": str,
        "quantity": str, "entry_price": str, "cost": str, "leverage": int, "margin": str,
        "realized_pnl": str, "fees": str, "funding": str, "opened_at": float,
        "updated_at": float, "closed_at": float, "closed_quantity": str, "exit_notional": str,
        "max_quantity": str, "take_profit": str, "stop_loss": str, "liquidation_price": str,
        "close_reason": str, "opened_by": str,
    }, pk="seq", indexes=((("id",), True), (("account_id", "status", "seq"), False))),
    CreateTable("funding_payments", {
        "seq": int, "account_id": str, "position_id": str, "symbol": str, "rate": str,
        "mark": str, "amount": str, "funding_time": int, "ts": float,
    }, pk="seq", indexes=((("position_id", "funding_time"), True),)),
    CreateTable("events", {
        "seq": int, "type": str, "account_id": str, "is_paper": int, "ts": float, "payload": str,
    }, pk="seq"),
    CreateTable("audit", {
        "seq": int, "account_id": str, "decision_id": str, "ts": float, "accepted": int,
        "code": str, "message": str, "checks": str,
    }, pk="seq", indexes=((("account_id", "seq"), False),)),
    CreateTable("credentials", {
        "id": str, "venue": str, "account_id": str, "ciphertext": bytes, "created_at": float,
    }, pk="id"),
    CreateTable("service_state", {"key": str, "value": str}, pk="key"),
)

# Version 2: the execution seam. Every order carries the deterministic client order id the venue
# knows it by (and the venue's own id once it answered), the time it was sent (an ambiguous
# answer is settled by asking the venue; after the venue's receive window it can no longer arrive),
# a revision (a moved stop-loss is a new venue order) and the exact quote amount filled (its average
# price derived from it, whatever order its fills were reported in). Fills keep their fee asset; a position
# adopted from the venue (opened outside the service) is flagged ``external``.
_MIGRATION_2: tuple[Operation, ...] = (
    AddColumn("orders", "client_order_id", str),
    AddColumn("orders", "venue_order_id", str),
    AddColumn("orders", "sent_at", float),
    AddColumn("orders", "revision", int),
    AddColumn("orders", "cum_quote", str),
    AddColumn("fills", "fee_asset", str),
    AddColumn("positions", "external", int),
    AddColumn("decisions", "updated_at", float),
    CreateIndex("orders", ("account_id", "client_order_id")),
    CreateIndex("orders", ("account_id", "status")),
)

# Version 3: each placement of a protective order (a moved stop-loss too) is an order of its own,
# so the cancelled one keeps its row; the position counts them. An order keeps the most the venue
# said it filled (its fills may arrive after its final status).
_MIGRATION_3: tuple[Operation, ...] = (
    AddColumn("positions", "protection_revision", int),
    AddColumn("orders", "venue_filled", str),
)

# Version 4: what every order paid for in index pages, each about 2.5 more pages in the
# write-ahead log per paper decision, which a decision committed alone pays in its fsync:
# - the open orders an account loads at start are found through a partial index that holds only
#   them, instead of an index on every order's status (a paper market order is written once,
#   already filled, and takes no entry);
# - no query reads an order by its client order id: an account finds its orders by client id in
#   memory (the open ones and its recent ones, loaded at start), so that index goes. Its random
#   keys cost the most of all, a leaf page anywhere in the index for every order.
_MIGRATION_4: tuple[Operation, ...] = (
    DropIndex("idx_orders_account_id_status"),
    DropIndex("idx_orders_account_id_client_order_id"),
    CreateIndex("orders", ("account_id",), where=OPEN_ORDER_STATUSES_SQL, name="idx_orders_open"),
)

MIGRATIONS: dict[int, tuple[Operation, ...]] = {
    1: _MIGRATION_1, 2: _MIGRATION_2, 3: _MIGRATION_3, 4: _MIGRATION_4,
}
SCHEMA_VERSION = max(MIGRATIONS)


def _apply_sqlite(db: sqlite_utils.Database, operation: Operation) -> None:
    match operation:
        case CreateTable(table, columns, pk, indexes):
            db[table].create(columns, pk=pk)  # type: ignore[union-attr]
            for index_columns, unique in indexes:
                db.execute(index_ddl(CreateIndex(table, index_columns, unique)))
        case AddColumn(table, column, type_):
            db[table].add_column(column, type_)  # type: ignore[union-attr]
        case CreateIndex():
            db.execute(index_ddl(operation))
        case DropIndex(name):
            db.execute(f"DROP INDEX IF EXISTS {name}")


def index_ddl(index: CreateIndex) -> str:
    """``CREATE INDEX`` in the SQL SQLite and PostgreSQL share."""
    where = f" WHERE {index.where}" if index.where is not None else ""
    return (f"CREATE {'UNIQUE ' if index.unique else ''}INDEX {index.index_name} ON {index.table}"
            f" ({', '.join(index.columns)}){where}")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring an SQLite database to :data:`SCHEMA_VERSION`, one transaction per version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {version} is newer than this service ({SCHEMA_VERSION})"
        )
    db = sqlite_utils.Database(conn)
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for operation in MIGRATIONS[target]:
                _apply_sqlite(db, operation)
            conn.execute(f"PRAGMA user_version={target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("database migrated to schema version %d", target)
    return SCHEMA_VERSION
