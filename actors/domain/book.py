"""An account's book: its balances, positions, open orders, pacing and trading state.

:class:`AccountBook` is owned by the account's actor and changes in one place only,
:meth:`AccountBook.apply`, after the :class:`Changes` it is given were committed (*compute, commit,
apply*). :class:`Changes` is the overlay the pure planner and ledger write into while they handle
one message: lookups see the pending values first, then the book's.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, Final, Literal, NamedTuple, Protocol

import msgspec

from .events import Payload
from .market import Quote
from .money import ZERO
from .orders import FillRecord, FundingPayment, OrderRecord
from .positions import Position, unrealized_total
from .risk import CheckResult, RiskLimits, TradingState

RECENT_TERMINAL_ORDERS: Final = 512  # client ids of finished orders kept to recognise late reports
#: a paper account's venue answers on the spot and never late: a short window is enough there
#: (it keeps a busy paper account's memory small: finished orders and their fill ids are most of it)
RECENT_TERMINAL_ORDERS_PAPER: Final = 32
ORDER_TIMES_KEPT: Final = 512  # submit times of recent orders, for the order-rate limits
_NO_ORDER_TIMES: Final[collections.deque[float]] = collections.deque(maxlen=0)  # shared, never written


class QuoteSource(Protocol):
    def quote(self, symbol: str) -> Quote | None: ...


def marks_of(market: QuoteSource) -> Callable[[str], Decimal | None]:
    """The mark of a symbol on ``market`` (None without a quote)."""

    def mark(symbol: str) -> Decimal | None:
        quote = market.quote(symbol)
        return quote.mark_price if quote is not None else None

    return mark


class AccountConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The settings of an account that its book and planner need."""

    account_id: str
    venue: str
    mode: Literal["paper", "live"] = "paper"
    default_leverage: int = 1
    trigger_price: Literal["mark", "last"] = "mark"
    max_slippage_bps: Decimal | None = None

    @property
    def is_paper(self) -> bool:
        return self.mode == "paper"


class AuditEntry(NamedTuple):
    decision_id: str | None
    ts: float
    accepted: bool
    code: str | None
    message: str | None
    checks: tuple[CheckResult, ...]


class DecisionEntry(NamedTuple):
    """The decision row: inserted once (the unique index refuses a resent id), updated after."""

    decision_id: str
    fingerprint: str
    request_json: str
    status: str
    result: bytes
    insert: bool


class Applied(NamedTuple):
    acquired: list[str]  # symbols the account now holds a position in
    released: list[str]  # symbols it no longer holds


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final[Any] = _Unchanged()


class AccountBook:
    """The in-memory state of one account. Its actor is the only writer (through :meth:`apply`)."""

    def __init__(self, config: AccountConfig, initial_balance: Decimal, limits: RiskLimits) -> None:
        self.config = config
        self.account_id = config.account_id
        self.limits = limits
        self.initial_balance = initial_balance
        self.realized_pnl = ZERO
        self.fees = ZERO
        self.funding = ZERO
        self.trading_state: TradingState = "active"
        self.state_reason: str | None = None
        self.state_source = "account"
        self.cooldown_until: float | None = None
        self.positions: dict[str, Position] = {}  # open positions by symbol
        self.orders: dict[str, OrderRecord] = {}  # orders still open at the venue, by id
        self.client_ids: dict[str, str] = {}  # client order id -> order id (open ones)
        self.terminal: collections.OrderedDict[str, OrderRecord] = collections.OrderedDict()  # by client id
        #: fill ids applied per order, for orders open or recently finished (a fill seen again is skipped)
        self.applied_fills: dict[str, set[str]] = {}
        self.recent_order_times: collections.deque[float] = _NO_ORDER_TIMES  # replaced by the first order
        self.peak_equity = initial_balance
        self.day_start_equity = initial_balance
        self.day: int | None = None
        self.funded_until: dict[str, int] = {}  # position id -> last funding time settled (epoch ms)
        self.version = 0  # bumped by every apply (read-only snapshots are rebuilt on change)

    @property
    def is_paper(self) -> bool:
        return self.config.is_paper

    @property
    def balance(self) -> Decimal:
        """The wallet: start + realized PnL - fees + funding (margin does not move it)."""
        return self.initial_balance + self.realized_pnl - self.fees + self.funding

    @property
    def margin(self) -> Decimal:
        return sum((p.margin for p in self.positions.values()), ZERO)

    def unrealized(self, market: QuoteSource) -> Decimal:
        return unrealized_total(self.positions.values(), marks_of(market))

    def equity(self, market: QuoteSource) -> Decimal:
        return self.balance + self.unrealized(market)

    def fill_applied(self, order_id: str, fill_id: str) -> bool:
        return fill_id in self.applied_fills.get(order_id, ())

    def order_by_client(self, client_order_id: str) -> OrderRecord | None:
        order_id = self.client_ids.get(client_order_id)
        if order_id is not None:
            return self.orders.get(order_id)
        return self.terminal.get(client_order_id)

    def unsettled_orders(self) -> list[OrderRecord]:
        """Orders in flight (the venue's answer awaited), and orders the venue finished whose
        fills are not all in: what the venue holds may differ from the book by their fills."""
        return [*(o for o in self.orders.values() if o.status == "PENDING_NEW"),
                *(o for o in self.terminal.values() if not o.settled)]

    def protective_orders(self, position_id: str) -> list[OrderRecord]:
        return [o for o in self.orders.values() if o.position_id == position_id and o.is_protective]

    def resting_exposure(self) -> tuple[Decimal, Decimal]:
        """(notional, initial margin) that resting limit orders which add exposure would take."""
        notional = margin = ZERO
        for order in self.orders.values():
            if order.is_resting and not order.reduce_only:
                value = order.remaining * (order.price or ZERO)
                notional += value
                margin += value / (order.leverage or 1)
        return notional, margin

    def record_order_times(self, times: Iterable[float]) -> None:
        """Orders the venue took (for the order-rate limits), oldest first."""
        times = list(times)
        if not times:
            return
        if self.recent_order_times is _NO_ORDER_TIMES:
            self.recent_order_times = collections.deque(maxlen=ORDER_TIMES_KEPT)
        self.recent_order_times.extend(times)

    def apply(self, changes: Changes) -> Applied:
        """Make committed ``changes`` the book's state."""
        self.realized_pnl += changes.realized
        self.fees += changes.fees
        self.funding += changes.funding
        acquired: list[str] = []
        released: list[str] = []
        for symbol, position in changes.positions.items():
            if position.is_open:
                if symbol not in self.positions:
                    acquired.append(symbol)
                self.positions[symbol] = position
            elif self.positions.pop(symbol, None) is not None:
                released.append(symbol)
        for order_id, order in changes.orders.items():
            if order.is_open:
                self.orders[order_id] = order
                if order.client_order_id:
                    self.client_ids[order.client_order_id] = order_id
                continue
            self.orders.pop(order_id, None)
            if order.client_order_id:
                self.client_ids.pop(order.client_order_id, None)
                self.terminal[order.client_order_id] = order
                self.terminal.move_to_end(order.client_order_id)
                while len(self.terminal) > (RECENT_TERMINAL_ORDERS_PAPER if self.config.is_paper
                                            else RECENT_TERMINAL_ORDERS):
                    _, evicted = self.terminal.popitem(last=False)
                    self.applied_fills.pop(evicted.id, None)
        for fill in changes.fills:  # forgotten with the order, when it leaves the recent ones
            self.applied_fills.setdefault(fill.order_id, set()).add(fill.id)
        if changes.cooldown_until is not UNCHANGED:
            self.cooldown_until = changes.cooldown_until
        if changes.trading_state is not None:
            self.trading_state, self.state_reason, self.state_source = changes.trading_state
        if changes.limits is not None:
            self.limits = changes.limits
        if changes.day is not None:
            self.day, self.day_start_equity = changes.day
        if changes.peak_equity is not None:
            self.peak_equity = changes.peak_equity
        for payment in changes.funding_payments:
            self.funded_until[payment.position_id] = max(self.funded_until.get(payment.position_id, 0),
                                                         payment.funding_time)
        self.record_order_times(changes.order_times)
        self.version += 1
        return Applied(acquired, released)


class Changes:
    """What handling one message changes, before it is committed. Lookups see it over the book."""

    def __init__(self, book: AccountBook, now: float) -> None:
        self.book = book
        self.now = now
        self.realized = ZERO
        self.fees = ZERO
        self.funding = ZERO
        self.positions: dict[str, Position] = {}  # symbol -> new value (closed included)
        self.orders: dict[str, OrderRecord] = {}  # order id -> new value
        self.client_ids: dict[str, str] = {}  # client order id -> order id, for orders added here
        self.fills: list[FillRecord] = []
        self.fill_ids: set[str] = set()  # fills applied in these changes
        self.funding_payments: list[FundingPayment] = []
        self.events: list[Payload] = []
        self.order_times: list[float] = []  # orders sent, for the rate limits
        self.cooldown_until: Any = UNCHANGED
        self.trading_state: tuple[TradingState, str | None, str] | None = None
        self.limits: RiskLimits | None = None
        self.day: tuple[int, Decimal] | None = None
        self.peak_equity: Decimal | None = None
        self.audit: AuditEntry | None = None
        self.decisions: list[DecisionEntry] = []  # decision rows written (or updated) with these changes
        #: positions closed while handling this message, by id: kept across :meth:`reset` (a
        #: checkpoint moves them out of the book, the answer still reports them)
        self.closed: dict[str, Position] = {}
        #: the last position view built (the position, its mark, the view): the decision's result
        #: shows the same position at the same mark as its event, and builds it once
        self.last_position_view: tuple[Position, Decimal | None, Any] | None = None

    # -- lookups over the book

    def position(self, symbol: str) -> Position | None:
        if symbol in self.positions:
            return self.positions[symbol]
        return self.book.positions.get(symbol)

    def open_position(self, symbol: str) -> Position | None:
        position = self.position(symbol)
        return position if position is not None and position.is_open else None

    def order(self, order_id: str) -> OrderRecord | None:
        if order_id in self.orders:
            return self.orders[order_id]
        return self.book.orders.get(order_id)

    def order_by_client(self, client_order_id: str) -> OrderRecord | None:
        order_id = self.client_ids.get(client_order_id)
        if order_id is not None:
            return self.orders[order_id]
        order = self.book.order_by_client(client_order_id)
        if order is not None and order.id in self.orders:
            return self.orders[order.id]
        return order

    def fill_applied(self, order_id: str, fill_id: str) -> bool:
        return fill_id in self.fill_ids or self.book.fill_applied(order_id, fill_id)

    def open_positions(self) -> list[Position]:
        merged = dict(self.book.positions)
        merged.update(self.positions)
        return [p for p in merged.values() if p.is_open]

    def open_orders(self) -> list[OrderRecord]:
        merged = dict(self.book.orders)
        merged.update(self.orders)
        return [o for o in merged.values() if o.is_open]

    def protective_orders(self, position_id: str) -> list[OrderRecord]:
        return [o for o in self.open_orders() if o.position_id == position_id and o.is_protective]

    @property
    def balance(self) -> Decimal:
        return self.book.balance + self.realized - self.fees + self.funding

    # -- writes

    def put_order(self, order: OrderRecord) -> None:
        self.orders[order.id] = order
        if order.client_order_id:
            self.client_ids[order.client_order_id] = order.id

    def put_position(self, position: Position) -> None:
        self.positions[position.symbol] = position
        if not position.is_open:
            self.closed[position.id] = position

    def latest_position(self, position: Position) -> Position:
        """``position`` as it stands now (open, or closed while handling this message)."""
        current = self.position(position.symbol)
        if current is not None and current.id == position.id:
            return current
        return self.closed.get(position.id, position)

    def add_fill(self, fill: FillRecord) -> None:
        self.fills.append(fill)
        self.fill_ids.add(fill.id)

    def emit(self, payload: Payload) -> None:
        self.events.append(payload)

    def extend(self, later: Iterable[Payload]) -> None:
        self.events.extend(later)

    def reset(self, now: float) -> None:
        """After a commit (the book has applied everything): start over, empty, at ``now``."""
        closed = self.closed
        self.__init__(self.book, now)  # type: ignore[misc]
        self.closed = closed
