"""The pre-trade risk gate (DESIGN.md §6, §8): a pure function from a decision to a verdict.

``evaluate(decision, account, market, limits, now)`` runs a fixed table of checks, one small
function each, and stops at the first that fails. The verdict names that failure with a stable
code, and it lists every check that ran, with its inputs and outcome, for the audit log.

Check order (names as they appear in the audit; the code each can raise):

=====  ======================  ==============================================  ===========
group  check                   codes                                           on a close
=====  ======================  ==============================================  ===========
state  ``trading_state``       TRADING_HALTED, REDUCE_ONLY_MODE                runs
valid  ``symbol``              UNKNOWN_SYMBOL                                  runs
valid  ``position``            NO_POSITION, OPPOSITE_POSITION                  runs
valid  ``leverage``            LEVERAGE_ABOVE_MAX                              skipped
valid  ``tpsl``                INVALID_TPSL                                    skipped
valid  ``stop_loss_required``  STOP_LOSS_REQUIRED                              skipped
data   ``market_data``         MARKET_DATA_STALE                               runs
pace   ``cooldown``            COOLDOWN_ACTIVE                                 skipped
pace   ``rate``                RATE_LIMITED (this account)                     runs
pace   ``global_rate``         RATE_LIMITED (all accounts)                     runs
size   ``order_size``          ORDER_TOO_LARGE                                 skipped
size   ``min_notional``        BELOW_MIN_NOTIONAL                              skipped
size   ``position_notional``   POSITION_LIMIT                                  skipped
size   ``total_exposure``      EXPOSURE_LIMIT                                  skipped
size   ``open_positions``      EXPOSURE_LIMIT                                  skipped
size   ``margin``              INSUFFICIENT_MARGIN                             skipped
size   ``price_deviation``     PRICE_DEVIATION                                 skipped
loss   ``daily_loss``          DAILY_LOSS_LIMIT                                skipped
loss   ``drawdown``            MAX_DRAWDOWN                                    skipped
=====  ======================  ==============================================  ===========

Policy decisions (documented here because clients and operators depend on them):

* A ``close`` only ever reduces exposure (one-way mode, flips refused), so every check that
  guards *new* exposure is skipped for it and recorded as ``{"skipped": ...}``. A close is still
  refused when trading is ``halted`` (close-all is not a decision and bypasses the gate), when
  there is nothing to close, on stale market data (nothing executes on stale data) and by the
  rate limits: like NautilusTrader's RiskEngine, rate limits count every submitted order, since
  they protect the venue's order-count quota and stop runaway clients, closes included.
* Rate limits: ``recent_order_times`` are the submit times of this account's previous orders
  (ascending),
  ``global_recent_order_times`` those of every account. Per-account limits live in
  :class:`RiskLimits`; the service-wide ones in a separate :class:`GlobalLimits` passed as
  ``evaluate(..., global_limits=...)``, so that a per-account override can never loosen them.
* The leverage of an ``open`` is the decision's, else the open position's (an increase), else
  :data:`DEFAULT_LEVERAGE`. An increase is margined at the position's leverage (see
  ``positions.apply_open_fill``), so the position's leverage is checked against the cap too.
* TP/SL sides are checked against the entry reference: the limit price of a limit order, the
  mark otherwise (increases included). A long needs ``stop_loss < reference < take_profit``, a
  short the reverse.
* An increase needs no new ``stop_loss`` under ``require_stop_loss`` when the open position
  already has one (the protective order closes the whole position).
* Market data age is that of the *oldest* part of the quote (book or mark): the mark values the
  order and the book fills it, so both must be fresh.
* Order notional: ``open`` = the given notional, or quantity x mark (limit orders too); ``close``
  = the closed quantity (clamped to the position) x mark. Exposure is measured at the marks:
  the decision's symbol at the quote's mark, others at ``AccountView.marks`` (entry price when
  missing). Resting orders count in total exposure (``open_orders_notional``) and in margin
  (``open_orders_margin``).
* Size maxima are inclusive (a notional equal to the maximum passes); loss limits trigger when
  reached (a loss equal to the limit blocks).
"""

from __future__ import annotations

import bisect

import math
import typing
from collections.abc import Callable, Mapping
from decimal import ROUND_CEILING, Decimal
from typing import Any, Literal, NamedTuple

import msgspec

from .decisions import HARD_MAX_LEVERAGE, Decision
from .market import Instrument, Quote
from .money import ZERO, BadAmount, bps_between, fmt, fmt8, to_decimal
from .positions import Position, unrealized_total
from .protection import tpsl_problem

__all__ = [
    "CHECK_NAMES",
    "DEFAULT_LEVERAGE",
    "REJECTION_CODES",
    "SECONDS_PER_DAY",
    "AccountView",
    "CheckResult",
    "GlobalLimits",
    "InvalidLimits",
    "LossBreach",
    "MarketView",
    "Rejection",
    "RejectionCode",
    "RiskLimits",
    "RiskVerdict",
    "TradingState",
    "account_equity",
    "cooldown_until_after",
    "effective_leverage",
    "evaluate",
    "loss_state",
    "merge_global_limits",
    "merge_limits",
    "stricter_state",
    "utc_day",
    "validate_global_limits",
    "validate_limits",
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
LossAction = Literal["reducing", "halted"]

DEFAULT_LEVERAGE = 1  # an open that names no leverage and increases nothing is not leveraged
SECONDS_PER_DAY = 86_400
HUNDRED = Decimal(100)
_STATE_RANK: dict[str, int] = {"active": 0, "reducing": 1, "halted": 2}


# --------------------------------------------------------------------------------------------
# Limits


class InvalidLimits(ValueError):
    """A risk limit that cannot be accepted; ``field`` names it (None: the whole object)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class RiskLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-account risk limits (DESIGN §6 names). ``None`` turns a limit off.

    Money and percentages are Decimal (quote units; percent in (0, 100]). The leverage cap is
    never off and never above 25x; market data staleness is never off either. Construction
    validates (``__post_init__``), so an invalid value cannot exist; use :func:`merge_limits`
    to apply settings or API overrides and get an :class:`InvalidLimits` naming the field.
    """

    max_leverage: int = HARD_MAX_LEVERAGE
    cooldown_seconds: float = 0.0
    max_position_notional: Decimal | None = None
    max_total_notional: Decimal | None = None
    max_open_positions: int | None = None
    max_order_notional: Decimal | None = None
    min_notional: Decimal | None = None
    max_price_deviation_bps: Decimal | None = None
    require_stop_loss: bool = False
    daily_loss_limit: Decimal | None = None
    daily_loss_limit_pct: Decimal | None = None
    max_drawdown_pct: Decimal | None = None
    max_orders_per_minute: int | None = None
    max_orders_per_second: int | None = None
    market_data_max_age_seconds: float = 10.0
    on_loss_limit: LossAction = "halted"

    def __post_init__(self) -> None:
        validate_limits(self)


class GlobalLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Service-wide order-rate limits, over ``AccountView.global_recent_order_times``."""

    max_orders_per_second: int | None = None
    max_orders_per_minute: int | None = None

    def __post_init__(self) -> None:
        validate_global_limits(self)


# Field kinds drive both type validation and override parsing.
_Kind = Literal["int", "money", "pct", "seconds", "bool", "loss_action"]
_OPTIONAL = frozenset(
    {
        "max_position_notional",
        "max_total_notional",
        "max_open_positions",
        "max_order_notional",
        "min_notional",
        "max_price_deviation_bps",
        "daily_loss_limit",
        "daily_loss_limit_pct",
        "max_drawdown_pct",
        "max_orders_per_minute",
        "max_orders_per_second",
    }
)
_KINDS: dict[str, _Kind] = {
    "max_leverage": "int",
    "cooldown_seconds": "seconds",
    "max_position_notional": "money",
    "max_total_notional": "money",
    "max_open_positions": "int",
    "max_order_notional": "money",
    "min_notional": "money",
    "max_price_deviation_bps": "money",
    "require_stop_loss": "bool",
    "daily_loss_limit": "money",
    "daily_loss_limit_pct": "pct",
    "max_drawdown_pct": "pct",
    "max_orders_per_minute": "int",
    "max_orders_per_second": "int",
    "market_data_max_age_seconds": "seconds",
    "on_loss_limit": "loss_action",
}
_GLOBAL_KINDS: dict[str, _Kind] = {"max_orders_per_second": "int", "max_orders_per_minute": "int"}
# minimum allowed value per field, and whether it is inclusive
_MINIMA: dict[str, tuple[Decimal, bool]] = {
    "max_leverage": (Decimal(1), True),
    "cooldown_seconds": (ZERO, True),
    "max_position_notional": (ZERO, False),
    "max_total_notional": (ZERO, False),
    "max_open_positions": (Decimal(1), True),
    "max_order_notional": (ZERO, False),
    "min_notional": (ZERO, True),
    "max_price_deviation_bps": (ZERO, False),
    "daily_loss_limit": (ZERO, False),
    "daily_loss_limit_pct": (ZERO, False),
    "max_drawdown_pct": (ZERO, False),
    "max_orders_per_minute": (Decimal(1), True),
    "max_orders_per_second": (Decimal(1), True),
    "market_data_max_age_seconds": (ZERO, False),
}
assert set(_KINDS) == set(RiskLimits.__struct_fields__), "risk limit kinds out of sync"
assert set(_GLOBAL_KINDS) == set(GlobalLimits.__struct_fields__), "global limit kinds out of sync"


def _type_error(kind: _Kind, value: object) -> str | None:
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        want = "an integer"
    elif kind in ("money", "pct"):
        ok = isinstance(value, Decimal) and value.is_finite()
        want = "a finite decimal number"
    elif kind == "seconds":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        want = "a finite number of seconds"
    elif kind == "bool":
        ok = isinstance(value, bool)
        want = "true or false"
    else:
        ok = value in typing.get_args(LossAction)
        want = "'reducing' or 'halted'"
    return None if ok else f"must be {want}, got {value!r}"


def _check_fields(limits: msgspec.Struct, kinds: Mapping[str, _Kind], optional: frozenset[str]) -> None:
    for name, kind in kinds.items():
        value = getattr(limits, name)
        if value is None:
            if name in optional:
                continue
            raise InvalidLimits(name, "cannot be turned off")
        problem = _type_error(kind, value)
        if problem:
            raise InvalidLimits(name, problem)
        if kind == "pct" and value > HUNDRED:
            raise InvalidLimits(name, f"must be a percentage in (0, 100], got {fmt(value)}")
        if name in _MINIMA:
            floor, inclusive = _MINIMA[name]
            number = value if isinstance(value, Decimal) else to_decimal(value)
            if number < floor or (number == floor and not inclusive):
                relation = "at least" if inclusive else "greater than"
                raise InvalidLimits(name, f"must be {relation} {fmt(floor)}, got {fmt(number)}")


def validate_limits(limits: RiskLimits) -> None:
    """Raise :class:`InvalidLimits` for a value no account may run with."""
    _check_fields(limits, _KINDS, _OPTIONAL)
    if limits.max_leverage > HARD_MAX_LEVERAGE:
        raise InvalidLimits(
            "max_leverage", f"must be between 1 and {HARD_MAX_LEVERAGE} (hard cap), got {limits.max_leverage}"
        )
    if (
        limits.min_notional is not None
        and limits.max_order_notional is not None
        and limits.min_notional > limits.max_order_notional
    ):
        raise InvalidLimits(
            "min_notional",
            f"min_notional {fmt(limits.min_notional)} is above max_order_notional "
            f"{fmt(limits.max_order_notional)}: no order could pass",
        )


def validate_global_limits(limits: GlobalLimits) -> None:
    _check_fields(limits, _GLOBAL_KINDS, frozenset(_GLOBAL_KINDS))


def _parse(name: str, kind: _Kind, value: object) -> object:
    """Turn one override value (a JSON/YAML scalar) into the field's type, or raise."""
    if kind in ("money", "pct"):
        try:
            return to_decimal(value, what=name)
        except BadAmount as exc:
            raise InvalidLimits(name, str(exc)) from None
    if kind == "seconds":
        try:
            return float(to_decimal(value, what=name))
        except BadAmount as exc:
            raise InvalidLimits(name, str(exc)) from None
    if kind == "int":
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise InvalidLimits(name, f"must be an integer, got {value!r}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise InvalidLimits(name, f"must be true or false, got {value!r}")
    return value  # loss_action: checked by validation


def _merge(struct_type: type, kinds: Mapping[str, _Kind], defaults: msgspec.Struct, overrides: object) -> object:
    if not isinstance(overrides, Mapping):
        raise InvalidLimits(None, f"risk limits must be an object, got {type(overrides).__name__}")
    changes: dict[str, object] = {}
    for name, value in overrides.items():
        if name not in kinds:
            raise InvalidLimits(str(name), f"unknown risk limit {name!r}")
        changes[name] = None if value is None else _parse(name, kinds[name], value)
    candidate = msgspec.structs.replace(defaults, **changes)  # __post_init__ validates
    assert isinstance(candidate, struct_type)
    return candidate


def merge_limits(defaults: RiskLimits, overrides: Mapping[str, object]) -> RiskLimits:
    """Apply a partial dict of overrides (settings ``risk:`` or ``PUT .../risk``) to ``defaults``.

    Money and percentages may be JSON numbers or strings; integers may be integral strings;
    ``null`` turns an optional limit off. Raises :class:`InvalidLimits` naming the field for an
    unknown key, a wrong type or a value out of range (``max_leverage`` above 25 included).
    """
    merged = _merge(RiskLimits, _KINDS, defaults, overrides)
    assert isinstance(merged, RiskLimits)
    return merged


def merge_global_limits(defaults: GlobalLimits, overrides: Mapping[str, object]) -> GlobalLimits:
    merged = _merge(GlobalLimits, _GLOBAL_KINDS, defaults, overrides)
    assert isinstance(merged, GlobalLimits)
    return merged


def cooldown_until_after(now: float, limits: RiskLimits) -> float | None:
    """When a cooldown started at ``now`` ends (None when cooldowns are off)."""
    return now + limits.cooldown_seconds if limits.cooldown_seconds > 0 else None


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
    recent_order_times: tuple[float, ...] = ()
    global_recent_order_times: tuple[float, ...] = ()
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


def _num(value: Decimal | int | None) -> str:
    """A number for messages: plain notation, at most 8 decimals (``off`` for a limit left out)."""
    if value is None:
        return "off"
    if isinstance(value, int):
        return str(value)
    return fmt8(value)


#: a value of an audit detail: text, or a Decimal kept as it is on the
#: hot path and rendered like a message's numbers only when read (:func:`render_detail`)
Detail = str | Decimal


def _raw(value: Decimal | int | None) -> Detail:
    """A number as an audit detail: a Decimal is kept as it is (formatting it is the costly part,
    left to the reader); a count or a limit left out is text already (``str`` of an int is cheap)."""
    if value is None:
        return "off"
    if isinstance(value, int):
        return str(value)
    return value


def render_detail(value: Detail) -> str:
    """An audit detail as it is shown: numbers in plain notation, at most 8 decimals; ``off`` for
    a limit left out."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    return _num(value)


def render_details(detail: Mapping[str, Detail]) -> dict[str, str]:
    return {key: render_detail(value) for key, value in detail.items()}


def _secs(seconds: float, *, places: str = "0.1") -> str:
    """Seconds for humans, rounded up (a wait of 0.04 s shows as 0.1, never as 0)."""
    return fmt(to_decimal(seconds).quantize(Decimal(places), rounding=ROUND_CEILING)) or "0"


def _pct(part: Decimal, whole: Decimal) -> Decimal | None:
    return None if whole <= 0 else part / whole * HUNDRED


def _daily_loss(account: AccountView, equity: Decimal, now: float) -> Decimal:
    if account.day is not None and account.day < utc_day(now):
        return ZERO  # a new UTC day started at the current equity
    return account.day_start_equity - equity


def _daily_loss_breach(
    account: AccountView, equity: Decimal, limits: RiskLimits, now: float
) -> tuple[dict[str, Detail], str | None]:
    loss = _daily_loss(account, equity, now)
    loss_pct = _pct(loss, account.day_start_equity)
    detail = {
        "equity": _raw(equity),
        "day_start_equity": _raw(account.day_start_equity),
        "daily_loss": _raw(loss),
        "daily_loss_pct": "n/a" if loss_pct is None else _raw(loss_pct.quantize(Decimal("0.01"))),
        "realized_today": _raw(account.realized_today),
        "daily_loss_limit": _raw(limits.daily_loss_limit),
        "daily_loss_limit_pct": _raw(limits.daily_loss_limit_pct),
    }
    pct_text = "" if loss_pct is None else f" ({_num(loss_pct.quantize(Decimal('0.01')))}% of day start equity)"
    if limits.daily_loss_limit is not None and loss >= limits.daily_loss_limit:
        return detail, (
            f"daily loss {_num(loss)}{pct_text} reached daily_loss_limit {_num(limits.daily_loss_limit)} "
            f"(day start equity {_num(account.day_start_equity)}, equity {_num(equity)})"
        )
    if limits.daily_loss_limit_pct is not None and loss_pct is not None and loss_pct >= limits.daily_loss_limit_pct:
        return detail, (
            f"daily loss {_num(loss)}{pct_text} reached daily_loss_limit_pct {_num(limits.daily_loss_limit_pct)}% "
            f"(day start equity {_num(account.day_start_equity)}, equity {_num(equity)})"
        )
    return detail, None


def _drawdown_breach(account: AccountView, equity: Decimal, limits: RiskLimits) -> tuple[dict[str, Detail], str | None]:
    drawdown = _pct(account.peak_equity - equity, account.peak_equity)
    shown = "n/a" if drawdown is None else _num(drawdown.quantize(Decimal("0.01")))
    detail = {
        "equity": _raw(equity),
        "peak_equity": _raw(account.peak_equity),
        "drawdown_pct": shown,
        "max_drawdown_pct": _raw(limits.max_drawdown_pct),
    }
    if limits.max_drawdown_pct is not None and drawdown is not None and drawdown >= limits.max_drawdown_pct:
        return detail, (
            f"drawdown {shown}% from peak equity {_num(account.peak_equity)} (equity {_num(equity)}) "
            f"reached max_drawdown_pct {_num(limits.max_drawdown_pct)}%"
        )
    return detail, None


def loss_state(account: AccountView, equity: Decimal, limits: RiskLimits, now: float) -> LossBreach | None:
    """For the continuous watcher: the first loss limit ``equity`` reaches, or None.

    Daily loss is measured on the UTC day (``day_start_equity - equity``, absolute and as a
    percentage of ``day_start_equity``); drawdown from ``peak_equity`` in percent.
    """
    detail, message = _daily_loss_breach(account, equity, limits, now)
    if message is not None:
        return LossBreach(code="DAILY_LOSS_LIMIT", message=message, details=render_details(detail),
                          action=limits.on_loss_limit)
    detail, message = _drawdown_breach(account, equity, limits)
    if message is not None:
        return LossBreach(code="MAX_DRAWDOWN", message=message, details=render_details(detail),
                          action=limits.on_loss_limit)
    return None


# --------------------------------------------------------------------------------------------
# The checks


class _Ctx(NamedTuple):
    decision: Decision
    account: AccountView
    market: MarketView
    limits: RiskLimits
    global_limits: GlobalLimits
    now: float
    state: TradingState
    position: Position | None  # the open position in the decision's symbol
    mark: Decimal | None
    close_quantity: Decimal  # closes only
    order_notional: Decimal  # ZERO while unknown (no mark yet)
    #: what the checks need of every open position, computed once per evaluation (:func:`_portfolio`)
    memo: dict[str, Any]

    @property
    def is_close(self) -> bool:
        return self.decision.action == "close"

    def mark_of(self, symbol: str) -> Decimal | None:
        if symbol == self.decision.symbol and self.mark is not None:
            return self.mark
        return self.account.marks.get(symbol)


class _Outcome(NamedTuple):
    detail: dict[str, Detail]
    failure: tuple[RejectionCode, str] | None = None


def _ok(**detail: Detail) -> _Outcome:
    return _Outcome(detail)


def _fail(code: RejectionCode, message: str, **detail: Detail) -> _Outcome:
    return _Outcome(detail, (code, message))


def check_trading_state(c: _Ctx) -> _Outcome:
    detail = {"account_state": c.account.trading_state, "global_state": c.account.global_state, "state": c.state}
    states = f"(account {c.account.trading_state}, global {c.account.global_state})"
    if c.state == "halted":
        return _fail("TRADING_HALTED", f"trading is halted {states}: every decision is refused", **detail)
    if c.state == "reducing" and not c.is_close:
        return _fail("REDUCE_ONLY_MODE", f"trading is reducing {states}: only closes are accepted", **detail)
    return _ok(**detail)


def check_symbol(c: _Ctx) -> _Outcome:
    instrument = c.market.instrument
    if instrument is None or instrument.symbol != c.decision.symbol:
        return _fail("UNKNOWN_SYMBOL", f"unknown symbol {c.decision.symbol}", symbol=c.decision.symbol)
    if instrument.status != "TRADING" and not c.is_close:
        return _fail(
            "UNKNOWN_SYMBOL",
            f"symbol {c.decision.symbol} is not trading (status {instrument.status})",
            symbol=c.decision.symbol,
            status=instrument.status,
        )
    return _ok(symbol=c.decision.symbol, status=instrument.status)


def check_position(c: _Ctx) -> _Outcome:
    d, p = c.decision, c.position
    if c.is_close:
        if p is None:
            return _fail("NO_POSITION", f"no open position in {d.symbol} to close", symbol=d.symbol)
        return _ok(
            position_side=p.side,
            position_quantity=_raw(p.quantity),
            requested_quantity=_raw(d.quantity) if d.quantity is not None else "all",
            close_quantity=_raw(c.close_quantity),
        )
    if p is None:
        return _ok(side=str(d.side), position="none")
    if p.side != d.side:
        return _fail(
            "OPPOSITE_POSITION",
            f"cannot open {d.side} {d.symbol}: a {p.side} position of {_num(p.quantity)} is open "
            f"(one-way mode: close it first)",
            side=str(d.side),
            position_side=p.side,
            position_quantity=_raw(p.quantity),
        )
    return _ok(side=str(d.side), position_side=p.side, position_quantity=_raw(p.quantity))


def check_leverage(c: _Ctx) -> _Outcome:
    assert c.market.instrument is not None  # the symbol check passed
    venue_max = c.market.instrument.max_leverage
    cap = min(c.limits.max_leverage, HARD_MAX_LEVERAGE, venue_max)
    leverage = effective_leverage(c.decision, c.position, c.account.default_leverage)
    # an increase is margined at the position's leverage, which must respect the cap as well
    used = max(leverage, c.position.leverage) if c.position is not None else leverage
    detail = {
        "leverage": str(leverage),
        "position_leverage": str(c.position.leverage) if c.position is not None else "none",
        "max_leverage": str(c.limits.max_leverage),
        "hard_cap": str(HARD_MAX_LEVERAGE),
        "venue_max_leverage": str(venue_max),
        "cap": str(cap),
    }
    if used < 1:
        return _fail("LEVERAGE_ABOVE_MAX", f"leverage {used} is below 1", **detail)
    if used > cap:
        by_position = c.position is not None and (c.decision.leverage or 0) < used
        what = f"the open {c.decision.symbol} position's leverage" if by_position else "leverage"
        return _fail(
            "LEVERAGE_ABOVE_MAX",
            f"{what} {used} exceeds the maximum {cap} (max_leverage {c.limits.max_leverage}, "
            f"hard cap {HARD_MAX_LEVERAGE}, venue {venue_max})",
            **detail,
        )
    return _ok(**detail)


def check_tpsl(c: _Ctx) -> _Outcome:
    d = c.decision
    tp, sl = d.take_profit, d.stop_loss
    if d.order_type == "limit" and d.price is not None:
        ref, ref_name = d.price, "limit price"
    else:
        ref, ref_name = c.mark, "mark"
    detail = {
        "side": str(d.side),
        "take_profit": _raw(tp) if tp is not None else "none",
        "stop_loss": _raw(sl) if sl is not None else "none",
        "reference": f"{_num(ref)} ({ref_name})" if ref is not None else "unavailable",
    }
    problem = tpsl_problem(str(d.side), ref, tp, sl, reference_name=ref_name)
    if problem is not None:
        return _fail("INVALID_TPSL", problem, **detail)
    return _ok(**detail)


def check_stop_loss_required(c: _Ctx) -> _Outcome:
    existing = c.position.stop_loss if c.position is not None else None
    detail = {
        "require_stop_loss": str(c.limits.require_stop_loss).lower(),
        "stop_loss": _raw(c.decision.stop_loss) if c.decision.stop_loss is not None else "none",
        "position_stop_loss": _raw(existing) if existing is not None else "none",
    }
    if c.limits.require_stop_loss and c.decision.stop_loss is None and existing is None:
        return _fail("STOP_LOSS_REQUIRED", "a stop_loss is required to open (require_stop_loss is on)", **detail)
    return _ok(**detail)


def check_market_data(c: _Ctx) -> _Outcome:
    max_age = c.limits.market_data_max_age_seconds
    age = c.market.age(c.now)
    limit_text = f"market_data_max_age_seconds {_num(to_decimal(max_age))}"
    if age is None or c.market.quote is None or c.market.quote.symbol != c.decision.symbol:
        return _fail("MARKET_DATA_STALE", f"no market data for {c.decision.symbol} ({limit_text})", age="none")
    detail = {"age_seconds": _secs(age, places="0.001"), "max_age_seconds": _raw(to_decimal(max_age))}
    if c.mark is None:
        return _fail("MARKET_DATA_STALE", f"no mark price for {c.decision.symbol} (empty book, no mark)", **detail)
    detail["mark"] = c.mark
    if age > max_age:
        return _fail(
            "MARKET_DATA_STALE", f"market data for {c.decision.symbol} is {_secs(age)} s old, {limit_text}", **detail
        )
    return _ok(**detail)


def check_cooldown(c: _Ctx) -> _Outcome:
    until = c.account.cooldown_until
    detail = {"cooldown_seconds": _raw(to_decimal(c.limits.cooldown_seconds))}
    if until is None or until <= c.now:
        return _ok(**detail, cooldown_until="none" if until is None else _num(to_decimal(until)))
    left = _secs(until - c.now)
    return _fail(
        "COOLDOWN_ACTIVE",
        f"cooldown active: {left} s left",
        **detail,
        cooldown_until=_raw(to_decimal(until)),
        seconds_left=left,
    )


_WINDOW_KEYS = {1.0: "orders_last_1s", 60.0: "orders_last_60s"}


def _rate_outcome(
    times: tuple[float, ...], now: float, per_second: int | None, per_minute: int | None, scope: str
) -> _Outcome:
    detail: dict[str, Detail] = {}
    failure: tuple[RejectionCode, str] | None = None
    prefix = "" if scope == "account" else "global "
    windows = ((per_second, 1.0, "max_orders_per_second"), (per_minute, 60.0, "max_orders_per_minute"))
    for limit, window, name in windows:
        in_window = times[bisect.bisect_right(times, now - window):]  # times are ascending
        detail[_WINDOW_KEYS[window]] = str(len(in_window))
        detail[name] = _raw(limit)
        if failure is None and limit is not None and len(in_window) >= limit:
            retry_after = _secs(in_window[-limit] + window - now, places="0.001")
            detail["retry_after_seconds"] = retry_after
            failure = (
                "RATE_LIMITED",
                f"{prefix}rate limit: {len(in_window)} orders in the last {int(window)} s, "
                f"{prefix}{name} {limit} (retry in {retry_after} s)",
            )
    return _Outcome(detail, failure)


def check_rate(c: _Ctx) -> _Outcome:
    lim = c.limits
    times = c.account.recent_order_times
    return _rate_outcome(times, c.now, lim.max_orders_per_second, lim.max_orders_per_minute, "account")


def check_global_rate(c: _Ctx) -> _Outcome:
    g = c.global_limits
    times = c.account.global_recent_order_times
    return _rate_outcome(times, c.now, g.max_orders_per_second, g.max_orders_per_minute, "global")


def check_order_size(c: _Ctx) -> _Outcome:
    limit = c.limits.max_order_notional
    detail = {"order_notional": _raw(c.order_notional), "max_order_notional": _raw(limit)}
    if limit is not None and c.order_notional > limit:
        return _fail(
            "ORDER_TOO_LARGE",
            f"order notional {_num(c.order_notional)} exceeds max_order_notional {_num(limit)}",
            **detail,
        )
    return _ok(**detail)


def check_min_notional(c: _Ctx) -> _Outcome:
    limit = c.limits.min_notional
    detail = {"order_notional": _raw(c.order_notional), "min_notional": _raw(limit)}
    if limit is not None and c.order_notional < limit:
        return _fail(
            "BELOW_MIN_NOTIONAL",
            f"order notional {_num(c.order_notional)} is below min_notional {_num(limit)}",
            **detail,
        )
    return _ok(**detail)


def check_position_notional(c: _Ctx) -> _Outcome:
    assert c.mark is not None
    current = c.position.notional(c.mark) if c.position is not None else ZERO
    after = current + c.order_notional
    limit = c.limits.max_position_notional
    detail = {
        "position_notional": _raw(current),
        "order_notional": _raw(c.order_notional),
        "position_notional_after": _raw(after),
        "max_position_notional": _raw(limit),
    }
    if limit is not None and after > limit:
        return _fail(
            "POSITION_LIMIT",
            f"{c.decision.symbol} position notional after the order {_num(after)} (position {_num(current)} "
            f"+ order {_num(c.order_notional)}) exceeds max_position_notional {_num(limit)}",
            **detail,
        )
    return _ok(**detail)


class _Portfolio(NamedTuple):
    open_positions: int
    margin: Decimal  # the open positions' margin
    notional: Decimal  # at their marks (at entry without one)
    unrealized: Decimal  # at their marks (0 without one)


def _portfolio(c: _Ctx) -> _Portfolio:
    """One pass over the open positions for every check that needs them (their count, margin,
    notional, unrealized PnL at the marks, the decision's symbol at the decision's mark): with
    thousands of positions each pass costs, and the checks used to make five."""
    found = c.memo.get("portfolio")
    if found is None:
        count, margin, notional, unrealized = 0, ZERO, ZERO, ZERO
        for p in c.account.positions:
            if p.is_open:
                count += 1
                margin += p.margin
                mark = c.mark_of(p.symbol)
                if mark is None:
                    notional += p.notional(p.entry_price)
                else:
                    notional += p.notional(mark)
                    unrealized += p.unrealized_pnl(mark)
        found = c.memo["portfolio"] = _Portfolio(count, margin, notional, unrealized)
    return found


def _positions_notional(c: _Ctx) -> Decimal:
    return _portfolio(c).notional


def check_total_exposure(c: _Ctx) -> _Outcome:
    positions = _positions_notional(c)
    orders = c.account.open_orders_notional
    after = positions + orders + c.order_notional
    limit = c.limits.max_total_notional
    detail = {
        "positions_notional": _raw(positions),
        "open_orders_notional": _raw(orders),
        "order_notional": _raw(c.order_notional),
        "total_notional_after": _raw(after),
        "max_total_notional": _raw(limit),
    }
    if limit is not None and after > limit:
        return _fail(
            "EXPOSURE_LIMIT",
            f"total notional after the order {_num(after)} (positions {_num(positions)} + open orders "
            f"{_num(orders)} + order {_num(c.order_notional)}) exceeds max_total_notional {_num(limit)}",
            **detail,
        )
    return _ok(**detail)


def check_open_positions(c: _Ctx) -> _Outcome:
    count = _portfolio(c).open_positions
    opens_new = c.position is None
    limit = c.limits.max_open_positions
    detail = {
        "open_positions": str(count),
        "opens_new_position": str(opens_new).lower(),
        "max_open_positions": _raw(limit),
    }
    if limit is not None and opens_new and count + 1 > limit:
        return _fail(
            "EXPOSURE_LIMIT",
            f"{count} open positions: a new {c.decision.symbol} position would make {count + 1}, "
            f"above max_open_positions {limit}",
            **detail,
        )
    return _ok(**detail)


def check_margin(c: _Ctx) -> _Outcome:
    assert c.market.instrument is not None
    leverage = c.position.leverage if c.position is not None else effective_leverage(
        c.decision, None, c.account.default_leverage)
    taker = c.market.instrument.fees.taker
    fee = c.order_notional * taker
    required = c.order_notional / leverage + fee
    position_margin = _portfolio(c).margin
    orders_margin = c.account.open_orders_margin
    available = c.account.balance - position_margin - orders_margin
    detail = {
        "order_notional": _raw(c.order_notional),
        "leverage": str(leverage),
        "taker_fee_rate": _raw(taker),
        "estimated_fee": _raw(fee),
        "required_margin": _raw(required),
        "balance": _raw(c.account.balance),
        "position_margin": _raw(position_margin),
        "open_orders_margin": _raw(orders_margin),
        "available_balance": _raw(available),
    }
    if required > available:
        return _fail(
            "INSUFFICIENT_MARGIN",
            f"required margin {_num(required)} (notional {_num(c.order_notional)} / leverage {leverage} "
            f"+ fee {_num(fee)}) exceeds available balance {_num(available)} (balance "
            f"{_num(c.account.balance)} - position margin {_num(position_margin)} - open orders "
            f"{_num(orders_margin)})",
            **detail,
        )
    return _ok(**detail)


def check_price_deviation(c: _Ctx) -> _Outcome:
    assert c.mark is not None
    ref = c.decision.reference_price
    limit = c.limits.max_price_deviation_bps
    if ref is None:
        return _ok(reference_price="none", mark=_raw(c.mark), max_price_deviation_bps=_raw(limit))
    deviation = bps_between(ref, c.mark)
    shown = _num(deviation.quantize(Decimal("0.01")))
    detail = {
        "reference_price": _raw(ref),
        "mark": _raw(c.mark),
        "deviation_bps": shown,
        "max_price_deviation_bps": _raw(limit),
    }
    if limit is not None and deviation > limit:
        return _fail(
            "PRICE_DEVIATION",
            f"reference price {_num(ref)} deviates {shown} bps from the mark {_num(c.mark)}, "
            f"max_price_deviation_bps {_num(limit)}",
            **detail,
        )
    return _ok(**detail)


def _equity(c: _Ctx) -> Decimal:
    """The account's equity at the marks (the decision's symbol at the decision's mark)."""
    return c.account.balance + _portfolio(c).unrealized


def check_daily_loss(c: _Ctx) -> _Outcome:
    detail, message = _daily_loss_breach(c.account, _equity(c), c.limits, c.now)
    return _Outcome(detail, None if message is None else ("DAILY_LOSS_LIMIT", message))


def check_drawdown(c: _Ctx) -> _Outcome:
    detail, message = _drawdown_breach(c.account, _equity(c), c.limits)
    return _Outcome(detail, None if message is None else ("MAX_DRAWDOWN", message))


class _Check(NamedTuple):
    name: str
    run: Callable[[_Ctx], _Outcome]
    on_close: bool  # also runs for closes (False: guards new exposure only)


_CHECKS: tuple[_Check, ...] = (
    _Check("trading_state", check_trading_state, True),
    _Check("symbol", check_symbol, True),
    _Check("position", check_position, True),
    _Check("leverage", check_leverage, False),
    _Check("tpsl", check_tpsl, False),
    _Check("stop_loss_required", check_stop_loss_required, False),
    _Check("market_data", check_market_data, True),
    _Check("cooldown", check_cooldown, False),
    _Check("rate", check_rate, True),
    _Check("global_rate", check_global_rate, True),
    _Check("order_size", check_order_size, False),
    _Check("min_notional", check_min_notional, False),
    _Check("position_notional", check_position_notional, False),
    _Check("total_exposure", check_total_exposure, False),
    _Check("open_positions", check_open_positions, False),
    _Check("margin", check_margin, False),
    _Check("price_deviation", check_price_deviation, False),
    _Check("daily_loss", check_daily_loss, False),
    _Check("drawdown", check_drawdown, False),
)
CHECK_NAMES: tuple[str, ...] = tuple(check.name for check in _CHECKS)
_SKIPPED = {"skipped": "close decisions only reduce exposure"}


# --------------------------------------------------------------------------------------------
# The gate


def _open_position(account: AccountView, symbol: str) -> Position | None:
    for position in account.positions:
        if position.symbol == symbol and position.is_open:
            return position
    return None


def _context(
    decision: Decision,
    account: AccountView,
    market: MarketView,
    limits: RiskLimits,
    global_limits: GlobalLimits,
    now: float,
) -> _Ctx:
    position = _open_position(account, decision.symbol)
    mark = market.mark()
    close_quantity = ZERO
    if decision.action == "close":
        if position is not None:
            wanted = decision.quantity if decision.quantity is not None else position.quantity
            close_quantity = min(wanted, position.quantity)
        notional = close_quantity * mark if mark is not None else ZERO
    elif decision.notional is not None:
        notional = decision.notional
    else:
        notional = (decision.quantity or ZERO) * mark if mark is not None else ZERO
    return _Ctx(
        decision=decision,
        account=account,
        market=market,
        limits=limits,
        global_limits=global_limits,
        now=now,
        state=stricter_state(account.trading_state, account.global_state),
        position=position,
        mark=mark,
        close_quantity=close_quantity,
        order_notional=notional,
        memo={},
    )


def evaluate(
    decision: Decision,
    account: AccountView,
    market: MarketView,
    limits: RiskLimits,
    now: float,
    *,
    global_limits: GlobalLimits | None = None,
) -> RiskVerdict:
    """Run the checks in their fixed order; accept, or reject with the first failure.

    Pure: ``now`` is epoch seconds from the caller's clock. ``checks`` lists every check that ran
    (closes record the exposure checks as skipped), ending with the failing one if any.
    """
    ctx = _context(decision, account, market, limits, global_limits or GlobalLimits(), now)
    results: list[CheckResult] = []
    rejection: Rejection | None = None
    for check in _CHECKS:
        if ctx.is_close and not check.on_close:
            results.append(CheckResult(check.name, True, dict(_SKIPPED)))
            continue
        outcome = check.run(ctx)
        results.append(CheckResult(check.name, outcome.failure is None, outcome.detail))
        if outcome.failure is not None:
            code, message = outcome.failure
            rejection = Rejection(code, message, render_details(outcome.detail))
            break
    return RiskVerdict(
        accepted=rejection is None,
        rejection=rejection,
        checks=tuple(results),
        order_notional=ctx.order_notional,
        reduces_exposure=ctx.is_close,
        leverage=None if ctx.is_close else effective_leverage(decision, ctx.position, account.default_leverage),
    )
