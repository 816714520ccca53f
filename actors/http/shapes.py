"""The shapes of the front door's answers that have no Struct of their own elsewhere, as msgspec
Structs: the OpenAPI document is generated from them (``actors/http/schema.py``) and schemathesis
checks every answer against it. Money is a JSON string everywhere.

Request shapes live beside their routes (``AccountIn``, ``StateChange``, ``ProtectionIn``) or in
the domain (``DecisionIn``); the decision result and the order, fill and position views are
``actors.domain.views``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ..domain.performance import Performance
from ..domain.reconcile import VenueView
from ..domain.risk import GlobalLimits, RiskLimits
from ..domain.views import ErrorView, FillView, OrderView, PositionView

TradingState = Literal["active", "reducing", "halted"]
ActorState = Literal["starting", "running", "restarting", "failed", "stopped"]


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every error: ``{"error": {"code", "message", "field"}}``."""

    error: ErrorView


class Pending(msgspec.Struct, kw_only=True):
    """A decision still running when the request timed out (202): poll ``result_url``."""

    decision_id: str
    status: Literal["pending"]
    result_url: str | None = None


class AccountSummary(msgspec.Struct, kw_only=True):
    id: str
    mode: str
    venue: str
    is_paper: bool
    actor_state: ActorState
    trading_state: TradingState | None
    balance: str | None
    open_positions: int | None
    paper_twin: str | None = None  # a live account with a paper twin: the twin's id
    twin_of: str | None = None  # a paper twin: its live account


class AccountList(msgspec.Struct, kw_only=True):
    items: list[AccountSummary]
    next_cursor: str | None


class ActorView(msgspec.Struct, kw_only=True):
    state: ActorState
    restarts: int
    last_error: str | None
    last_error_at: float | None
    next_restart_at: float | None
    gate: str | None  # why decisions are refused for now (a live account reconciling with its venue)
    inbox_depth: int
    inbox_capacity: int
    priority_depth: int
    priority_dropped: int


class FeedView(msgspec.Struct, kw_only=True):
    venue: str
    state: str
    detail: str
    last_message_age_seconds: float | None
    symbols: int
    alarms: int
    alarms_dropped: int
    malformed: int


class RiskUsage(msgspec.Struct, kw_only=True):
    open_positions: int
    total_notional: str
    orders_last_minute: int
    day_start_equity: str
    daily_pnl: str
    peak_equity: str
    drawdown: str


class Inspection(msgspec.Struct, kw_only=True):
    """``GET /v1/accounts/{id}``: the actor, and (while it runs) the account's committed state."""

    id: str
    mode: str
    venue: str
    is_paper: bool
    actor: ActorView
    trading_state: TradingState | None = None
    effective_trading_state: TradingState | None = None
    state_reason: str | None = None
    global_trading_state: TradingState | None = None
    cooldown_seconds_left: float | None = None
    initial_balance: str | None = None
    balance: str | None = None
    available_balance: str | None = None
    margin: str | None = None
    equity: str | None = None
    realized_pnl: str | None = None
    unrealized_pnl: str | None = None
    fees: str | None = None
    funding: str | None = None
    net_pnl: str | None = None
    positions: list[PositionView] | None = None
    open_orders: list[OrderView] | None = None
    risk_limits: RiskLimits | None = None
    global_risk_limits: GlobalLimits | None = None
    market_data: FeedView | None = None
    risk_usage: RiskUsage | None = None
    venue_connection: VenueConnection | None = None  # live accounts
    venue_account: VenueView | None = None  # live accounts: the venue's side, as the last reconciliation saw it
    paper_twin: str | None = None  # a live account with a paper twin: the twin's id
    twin_of: str | None = None  # a paper twin: its live account


class VenueConnection(msgspec.Struct, kw_only=True):
    """A live account's connection to its venue: a masked key id, never a secret."""

    venue: str
    key_id: str
    stream_connected: bool
    clock_offset_ms: int | None
    symbols_prepared: dict[str, int]  # symbol -> leverage set on the venue (margin type ISOLATED)
    requests: dict[str, Any]  # the trading client's counters: by endpoint and outcome, latency, retries


class PositionList(msgspec.Struct, kw_only=True):
    items: list[PositionView]
    next_cursor: str | None


class OrderList(msgspec.Struct, kw_only=True):
    items: list[OrderView]
    next_cursor: str | None


class FillList(msgspec.Struct, kw_only=True):
    items: list[FillView]
    next_cursor: str | None


class AuditCheck(msgspec.Struct, kw_only=True):
    name: str
    passed: bool
    detail: dict[str, Any] = {}


class AuditEntry(msgspec.Struct, kw_only=True):
    seq: int
    decision_id: str | None
    ts: float
    accepted: bool
    code: str | None
    message: str | None
    checks: list[AuditCheck]


class AuditList(msgspec.Struct, kw_only=True):
    items: list[AuditEntry]
    next_cursor: str | None


class PerformanceView(Performance, kw_only=True):
    account_id: str


class RestartAnswer(msgspec.Struct, kw_only=True):
    id: str
    actor: ActorView


class RiskAnswer(msgspec.Struct, kw_only=True):
    account_id: str
    risk_limits: RiskLimits


# Amounts on the wire: a decimal string in plain notation or a JSON number. The patterns are the
# contract (the OpenAPI document says the same): a request outside them is malformed (400).
# Surrounding whitespace is allowed (and ignored), as the conversion to Decimal ignores it.
POSITIVE_DECIMAL = r"^\s*([1-9][0-9]{0,14}(\.[0-9]{1,15})?|0?\.[0-9]{0,14}[1-9][0-9]{0,14})\s*$"
NON_NEGATIVE_DECIMAL = r"^\s*(0|[1-9][0-9]{0,14})(\.[0-9]{1,15})?\s*$"
PERCENT_DECIMAL = r"^\s*(100(\.0{1,15})?|[1-9][0-9]?(\.[0-9]{1,15})?|0?\.[0-9]{0,14}[1-9][0-9]{0,14})\s*$"
MAX_AMOUNT = 1e15

PositiveAmount = Annotated[str, Meta(pattern=POSITIVE_DECIMAL)] | Annotated[float, Meta(gt=0, le=MAX_AMOUNT)]
NonNegativeAmount = (Annotated[str, Meta(pattern=NON_NEGATIVE_DECIMAL)]
                     | Annotated[float, Meta(ge=0, le=MAX_AMOUNT)])
Percent = Annotated[str, Meta(pattern=PERCENT_DECIMAL)] | Annotated[float, Meta(gt=0, le=100)]
INTEGER_TEXT = r"^\s*[0-9]{1,9}\s*$"
Seconds = Annotated[str, Meta(pattern=NON_NEGATIVE_DECIMAL)] | Annotated[float, Meta(ge=0, le=MAX_AMOUNT)]
PositiveSeconds = Annotated[str, Meta(pattern=POSITIVE_DECIMAL)] | Annotated[float, Meta(gt=0, le=MAX_AMOUNT)]


def _count(low: int, high: int | None = None) -> Any:
    """An integer limit: a JSON integer in range (``5.0`` counts, as in JSON Schema), or an
    integer in a string."""
    return (Annotated[int, Meta(ge=low, le=high)] | Annotated[float, Meta(ge=low, le=high)]
            | Annotated[str, Meta(pattern=INTEGER_TEXT)])


class RiskOverrides(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Risk limits to change (DESIGN.md §6 names; ``PUT /v1/accounts/{id}/risk``, the ``risk`` of a
    new account). ``null`` turns an optional limit off; the leverage cap, the market-data age and
    the others without ``null`` are never off. Values across limits are checked by the account
    (``422 INVALID_LIMIT``: e.g. a ``min_notional`` above ``max_order_notional``)."""

    max_leverage: _count(1, 25) | UnsetType = UNSET
    cooldown_seconds: Seconds | UnsetType = UNSET
    max_position_notional: PositiveAmount | None | UnsetType = UNSET
    max_total_notional: PositiveAmount | None | UnsetType = UNSET
    max_open_positions: _count(1) | None | UnsetType = UNSET
    max_order_notional: PositiveAmount | None | UnsetType = UNSET
    min_notional: NonNegativeAmount | None | UnsetType = UNSET
    max_price_deviation_bps: PositiveAmount | None | UnsetType = UNSET
    require_stop_loss: bool | UnsetType = UNSET
    daily_loss_limit: PositiveAmount | None | UnsetType = UNSET
    daily_loss_limit_pct: Percent | None | UnsetType = UNSET
    max_drawdown_pct: Percent | None | UnsetType = UNSET
    max_orders_per_minute: _count(1) | None | UnsetType = UNSET
    max_orders_per_second: _count(1) | None | UnsetType = UNSET
    market_data_max_age_seconds: PositiveSeconds | UnsetType = UNSET
    on_loss_limit: Literal["reducing", "halted"] | UnsetType = UNSET

    def as_dict(self) -> dict[str, Any]:
        """The limits given (an absent one stays as it is)."""
        given = {name: value for name in self.__struct_fields__ if (value := getattr(self, name)) is not UNSET}
        for name in _COUNTS:
            value = given.get(name)
            if isinstance(value, float) and value.is_integer():
                given[name] = int(value)  # a fractional one is left to the limits' check (422)
        return given


_COUNTS = ("max_leverage", "max_open_positions", "max_orders_per_minute", "max_orders_per_second")


class AccountStateAnswer(msgspec.Struct, kw_only=True):
    account_id: str
    trading_state: TradingState
    previous: TradingState
    reason: str | None
    effective_state: TradingState


class GlobalStateAnswer(msgspec.Struct, kw_only=True):
    trading_state: TradingState
    previous: TradingState
    reason: str | None


class ClosedPosition(msgspec.Struct, kw_only=True):
    symbol: str
    position_id: str
    quantity: str | None
    avg_price: str | None
    remaining: str | None


class CloseFailure(msgspec.Struct, kw_only=True):
    """A position that could not be closed (``symbol``) or an order the venue would not cancel
    (``order_id``: it is still working)."""

    symbol: str | UnsetType = UNSET
    order_id: str | UnsetType = UNSET
    reason: str


class CloseAllAnswer(msgspec.Struct, kw_only=True):
    account_id: str
    cancelled_orders: list[str]
    closed_positions: list[ClosedPosition]
    failed: list[CloseFailure]


class AccountError(msgspec.Struct, kw_only=True):
    account_id: str
    error: str


class CloseAllAccountsAnswer(msgspec.Struct, kw_only=True):
    items: list[CloseAllAnswer]
    errors: list[AccountError]


class Health(msgspec.Struct, kw_only=True):
    status: Literal["ok", "draining"]
    feeds: list[FeedView]
    accounts: dict[str, int]
    global_trading_state: TradingState


class Readiness(msgspec.Struct, kw_only=True):
    ready: bool
    problems: list[str] = []


class Whoami(msgspec.Struct, kw_only=True):
    role: Literal["admin", "trader", "viewer"]
    accounts: list[str] | None
    name: str
    auth_enabled: bool


class Event(msgspec.Struct, kw_only=True):
    """One message of the event stream (a websocket text frame)."""

    seq: int
    type: str
    account_id: str | None
    is_paper: bool
    ts: float
    payload: dict[str, Any]


# ---------------------------------------------------------------- GET /v1/accounts/{id}/twin


class TwinSide(msgspec.Struct, kw_only=True):
    """What one side (the live account, or its paper twin) did with a decision's order."""

    account_id: str
    status: str  # filled | partially_filled | resting | pending | rejected
    rejection_code: str | None
    venue_code: str | None  # a venue's refusal: its own code
    filled_quantity: str
    avg_price: str | None
    fees: str
    slippage_bps: str | None  # against the reference price; positive: worse than it
    time_to_fill_seconds: float | None  # from the live account's receipt of the decision to the last fill


class MarketAsSent(msgspec.Struct, kw_only=True):
    """The market as the live order went out (what the paper twin filled on)."""

    best_bid: str | None
    best_ask: str | None
    mark: str


class TwinDecision(msgspec.Struct, kw_only=True):
    decision_id: str
    symbol: str
    action: str
    side: Literal["BUY", "SELL"]  # of the decision's order
    received_at: float  # when the live account took the decision (epoch seconds)
    reference_price: str
    reference: Literal["decision", "mark"]  # the decision's reference_price, or the mark at decision time
    market_as_sent: MarketAsSent
    live: TwinSide
    paper: TwinSide
    price_difference_bps: str | None  # positive: the paper fill was kinder than the live one
    fee_difference: str  # live fees - paper fees
    same_outcome: bool  # same status and rejection code


class TwinAggregate(msgspec.Struct, kw_only=True):
    """Over every decision both sides executed (not only the page)."""

    decisions: int
    compared: int  # decisions both sides filled: the price figures are over these
    mean_price_difference_bps: str | None
    median_price_difference_bps: str | None
    live_fees: str
    paper_fees: str
    fee_difference: str  # live - paper
    mean_time_to_fill_live_seconds: float | None
    mean_time_to_fill_paper_seconds: float | None
    different_outcomes: int


class TwinReport(msgspec.Struct, kw_only=True):
    """``GET /v1/accounts/{id}/twin``: the live account against its paper twin, newest first."""

    account_id: str
    twin_account_id: str
    aggregate: TwinAggregate
    items: list[TwinDecision]
    next_cursor: str | None
