"""The risk gate's inputs and verdict (DESIGN.md §6, §8): the account and market views the
checks read, the verdict types they produce, the rejection codes, and small pure helpers over
them (UTC day, the stricter trading state, the leverage of an open, account equity).

Split out of :mod:`actors.domain.risk` (the gate) so that both the gate and the checks
(:mod:`actors.domain.risk_checks`) import them without a cycle; the gate re-exports every
public name here.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

import msgspec

from .decisions import Decision
from .limits import LossAction
from .market import Instrument, Quote
from .money import ZERO
from .positions import Position, unrealized_total

__all__ = [
    "DEFAULT_LEVERAGE",
    "REJECTION_CODES",
    "SECONDS_PER_DAY",
    "AccountView",
    "CheckResult",
    "LossBreach",
    "MarketView",
    "Rejection",
    "RejectionCode",
    "RiskVerdict",
    "TradingState",
    "account_equity",
    "effective_leverage",
    "stricter_state",
    "utc_day",
]

RejectionCode = Literal[
    "TRADING_HALTED",
    "REDUCE_ONLY_MODE",
    "UNKNOWN_SYMBOL",
    "NO_POSITION",
    "OPPOSITE_POSITION",
    "LEVERAGE_ABOVE_MAX",
    "INVALID_TPSL",
    "STOP_LOSS_REQUIRED",
    "MARKET_DATA_STALE",
    "COOLDOWN_ACTIVE",
    "RATE_LIMITED",
    "ORDER_TOO_LARGE",
    "BELOW_MIN_NOTIONAL",
    "POSITION_LIMIT",
    "EXPOSURE_LIMIT",
    "INSUFFICIENT_MARGIN",
    "PRICE_DEVIATION",
    "DAILY_LOSS_LIMIT",
    "MAX_DRAWDOWN",
]
REJECTION_CODES: tuple[str, ...] = typing.get_args(RejectionCode)

TradingState = Literal["active", "reducing", "halted"]

DEFAULT_LEVERAGE = 1  # an open that names no leverage and increases nothing is not leveraged
SECONDS_PER_DAY = 86_400
HUNDRED = Decimal(100)
_STATE_RANK: dict[str, int] = {"active": 0, "reducing": 1, "halted": 2}


# --------------------------------------------------------------------------------------------
# Inputs and verdict


class AccountView(msgspec.Struct, frozen=True, kw_only=True):
    """What the gate needs to know about one account, as of ``now``.

    ``balance`` is the wallet balance (start + realized - fees + funding); ``positions`` the open
    ones; ``open_orders_notional`` / ``open_orders_margin`` what resting limit orders would add
    to exposure / hold as initial margin; ``marks`` the latest mark per symbol of the open
    positions (the decision's own symbol is priced from the MarketView; a missing one is valued
    at its entry price). ``day`` is the UTC day (:func:`utc_day`) ``day_start_equity`` belongs
    to: when ``now`` is on a later day the daily loss counts from zero until the actor rolls it.
    """

    account_id: str
    trading_state: TradingState = "active"
    global_state: TradingState = "active"
    balance: Decimal
    positions: tuple[Position, ...] = ()
    open_orders_notional: Decimal = ZERO
    open_orders_margin: Decimal = ZERO
    cooldown_until: float | None = None
    recent_order_times: Sequence[float] = ()  # ascending (the book's window itself: nothing copied)
    global_recent_order_times: Sequence[float] = ()
    default_leverage: int = DEFAULT_LEVERAGE
    day_start_equity: Decimal
    peak_equity: Decimal
    realized_today: Decimal = ZERO
    day: int | None = None
    marks: dict[str, Decimal] = {}


class MarketView(msgspec.Struct, frozen=True, kw_only=True):
    """The decision symbol's instrument (None: unknown symbol) and latest quote (None: no data)."""

    instrument: Instrument | None
    quote: Quote | None

    def mark(self) -> Decimal | None:
        """The mark price (book mid without a mark stream), or None when there is none."""
        if self.quote is None:
            return None
        try:
            mark = self.quote.mark_price
        except ValueError:
            return None
        return mark if mark > 0 else None

    def age(self, now: float) -> float | None:
        """Seconds since the *oldest* part of the quote (book, mark) arrived; None: no quote."""
        if self.quote is None:
            return None
        received = self.quote.book.received_at
        if self.quote.mark is not None:
            received = min(received, self.quote.mark.received_at)
        return max(0.0, now - received)


class CheckResult(msgspec.Struct, frozen=True):
    """One check of one evaluation: its inputs and outcome. Numbers are kept as numbers (compact,
    nothing formatted on the hot path) and rendered when read (:func:`render_details`)."""

    name: str
    passed: bool
    detail: dict[str, Any]


class Rejection(msgspec.Struct, frozen=True):
    """Why a decision was refused: a gate code (:data:`REJECTION_CODES`) or an execution code
    (``VENUE_REJECTED`` with the venue's code in ``details``, ``LEVERAGE_MISMATCH``,
    ``CANCELLED``). The one rejection type of the service."""

    code: str
    message: str
    details: dict[str, str] = {}


class RiskVerdict(msgspec.Struct, frozen=True, kw_only=True):
    accepted: bool
    rejection: Rejection | None
    checks: tuple[CheckResult, ...]
    order_notional: Decimal
    reduces_exposure: bool
    #: an ``open``'s leverage, decided once here (decision, open position, account default)
    leverage: int | None = None


class LossBreach(msgspec.Struct, frozen=True, kw_only=True):
    """A loss limit reached; ``action`` is the trading state the account must move to."""

    code: Literal["DAILY_LOSS_LIMIT", "MAX_DRAWDOWN"]
    message: str
    details: dict[str, str]
    action: LossAction


# --------------------------------------------------------------------------------------------
# Small pure helpers


def utc_day(now: float) -> int:
    """Days since the epoch of the UTC day holding ``now`` (epoch seconds)."""
    return math.floor(now / SECONDS_PER_DAY)


def stricter_state(a: TradingState, b: TradingState) -> TradingState:
    return a if _STATE_RANK[a] >= _STATE_RANK[b] else b


def effective_leverage(decision: Decision, position: Position | None, default: int = DEFAULT_LEVERAGE) -> int:
    """The leverage an ``open`` trades at: the decision's, else the open position's (an increase),
    else the account's ``default``. The gate checks this value and the execution uses it."""
    if decision.leverage is not None:
        return decision.leverage
    if position is not None:
        return position.leverage
    return default


def account_equity(account: AccountView, marks: Mapping[str, Decimal]) -> Decimal:
    """Wallet balance + unrealized PnL of the open positions (a position without a mark counts 0)."""
    return account.balance + unrealized_total(account.positions, marks.get)
