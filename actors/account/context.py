"""What an account actor is given by its supervisor, how it rebuilds its book, and the read-only
snapshot of it that others (the front door) read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from ..clock import ServiceClock
from ..domain.book import AccountBook, AccountConfig, Changes
from ..domain.events import AccountCreated
from ..domain.money import fmt
from ..domain.orders import OrderRecord
from ..domain.positions import Position
from ..domain.risk import GlobalLimits, RiskLimits, TradingState
from ..market_data import MarketData
from ..persistence import Persistence, upsert
from ..persistence.queries import account_row, event_record, load_account
from ..settings import AccountSettings
from .mailbox import Mailbox

if TYPE_CHECKING:
    from ..execution.protocol import ExecutionAdapter
    from .twin import PaperTwinLink

AdapterFactory = Callable[["AccountContext", AccountBook, trio.Nursery], Awaitable["ExecutionAdapter"]]


class AccountContext(msgspec.Struct, kw_only=True):
    """Everything an account actor is given by its supervisor."""

    settings: AccountSettings
    limits: RiskLimits
    market: MarketData
    persistence: Persistence
    clock: ServiceClock
    mailbox: Mailbox
    adapter_factory: AdapterFactory
    global_state: Callable[[], TradingState]
    global_order_times: Any  # the supervisor's service-wide rate window (read here)
    global_limits: GlobalLimits | None = None
    record_global_order: Callable[[float], None] | None = None  # tells the supervisor an order went out
    paper_latency: float = 0.0
    venue_answer_seconds: float = 10.0
    service_settings: Any = None  # the whole Settings: a live account's venue, the database path
    venue_limiter: Any = None  # the request-weight limiter shared by every live account of the venue
    paper_twin: PaperTwinLink | None = None  # a live account with a paper twin: the way to it
    #: cluster mode: until when (``trio.current_time()``) this node surely still owns the account's
    #: shard lease; None on a single node (always). A live adapter stops sending orders a safety
    #: margin before it (``actors.cluster.leases.may_send_orders``); a paper adapter has nothing to send.
    lease_valid_until: Callable[[], float] | None = None
    #: a live account's gate: why its decisions are refused for now (reconciling with the venue),
    #: or None when they are taken; the supervisor answers them 503 meanwhile
    on_gate: Callable[[str | None], None] | None = None

    @property
    def protection_deadline_seconds(self) -> float:
        return self.settings.protection_deadline_seconds

    @property
    def reconcile_interval_seconds(self) -> float:
        venue = self.service_settings.venue_settings(self.settings.venue) if self.service_settings else None
        return getattr(venue, "reconcile_interval_seconds", 60.0)

    def gate(self, reason: str | None) -> None:
        if self.on_gate is not None:
            self.on_gate(reason)

    @property
    def config(self) -> AccountConfig:
        s = self.settings
        return AccountConfig(account_id=s.id, venue=s.venue, mode=s.mode, default_leverage=s.default_leverage,
                             trigger_price=s.trigger_price, max_slippage_bps=s.max_slippage_bps)


async def load_book(ctx: AccountContext) -> AccountBook:
    """Rebuild the account from the database (one round), or create it on its first start."""
    settings = ctx.settings
    book = AccountBook(ctx.config, settings.balance, ctx.limits)
    now = ctx.clock.now()
    rows = await ctx.persistence.call(load_account, settings.id, now)
    if rows.account is None:
        changes = Changes(book, now)
        row = account_row(book, changes)
        row["created_at"] = now
        await ctx.persistence.commit([upsert("accounts", row)], [event_record(
            settings.id, book.is_paper, now,
            AccountCreated(venue=settings.venue, mode=settings.mode, balance=fmt(settings.balance)))])
        return book
    a = rows.account
    book.initial_balance = Decimal(a["initial_balance"])
    book.realized_pnl, book.fees, book.funding = Decimal(a["realized_pnl"]), Decimal(a["fees"]), Decimal(a["funding"])
    book.trading_state, book.state_reason = a["trading_state"], a["state_reason"]
    book.state_source = a["state_source"] or "account"
    book.cooldown_until = a["cooldown_until"]
    book.peak_equity = Decimal(a["peak_equity"]) if a["peak_equity"] else book.initial_balance
    book.day_start_equity = Decimal(a["day_start_equity"]) if a["day_start_equity"] else book.initial_balance
    book.day = a["day"]
    if a["risk_overrides"]:
        book.limits = msgspec.json.decode(a["risk_overrides"], type=RiskLimits)
    for position in rows.positions:
        book.positions[position.symbol] = position
    for order in rows.orders:
        book.orders[order.id] = order
        if order.client_order_id:
            book.client_ids[order.client_order_id] = order.id
    book.funded_until.update(rows.funded_until)
    book.applied_fills.update(rows.order_fills)
    book.record_order_times(rows.recent_order_times)
    return book


class AccountSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """An account's committed state at one moment, for readers outside its actor."""

    account_id: str
    is_paper: bool
    trading_state: TradingState
    state_reason: str | None
    state_source: str
    cooldown_until: float | None
    initial_balance: Decimal
    balance: Decimal
    realized_pnl: Decimal
    fees: Decimal
    funding: Decimal
    margin: Decimal
    positions: tuple[Position, ...]
    orders: tuple[OrderRecord, ...]
    limits: RiskLimits
    recent_order_times: tuple[float, ...]
    peak_equity: Decimal
    day_start_equity: Decimal
    day: int | None


def snapshot_of(book: AccountBook) -> AccountSnapshot:
    return AccountSnapshot(
        account_id=book.account_id, is_paper=book.is_paper, trading_state=book.trading_state,
        state_reason=book.state_reason, state_source=book.state_source, cooldown_until=book.cooldown_until,
        initial_balance=book.initial_balance, balance=book.balance, realized_pnl=book.realized_pnl, fees=book.fees,
        funding=book.funding, margin=book.margin, positions=tuple(book.positions.values()),
        orders=tuple(book.orders.values()), limits=book.limits, recent_order_times=tuple(book.recent_order_times),
        peak_equity=book.peak_equity, day_start_equity=book.day_start_equity, day=book.day,
    )
