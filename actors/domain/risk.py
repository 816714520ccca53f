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

Layout: the limits and their validation live in :mod:`actors.domain.limits`, the views and
verdict types in :mod:`actors.domain.risk_types`, the checks and their table (with the
audit-detail helpers) in :mod:`actors.domain.risk_checks`. This module is the gate
(:func:`evaluate`, :func:`loss_state`) and re-exports every public name of those three, so
``from actors.domain.risk import ...`` keeps working for all of them.
"""

from __future__ import annotations

from decimal import Decimal

from .decisions import Decision
from .limits import HUNDRED as HUNDRED
from .limits import LossAction as LossAction
from .limits import (
    GlobalLimits, InvalidLimits, RiskLimits, cooldown_until_after, merge_global_limits, merge_limits,
    validate_global_limits, validate_limits,
)
from .money import ZERO
from .positions import Position
from .risk_checks import Detail as Detail
from .risk_checks import check_cooldown as check_cooldown
from .risk_checks import check_daily_loss as check_daily_loss
from .risk_checks import check_drawdown as check_drawdown
from .risk_checks import check_global_rate as check_global_rate
from .risk_checks import check_leverage as check_leverage
from .risk_checks import check_margin as check_margin
from .risk_checks import check_market_data as check_market_data
from .risk_checks import check_min_notional as check_min_notional
from .risk_checks import check_open_positions as check_open_positions
from .risk_checks import check_order_size as check_order_size
from .risk_checks import check_position as check_position
from .risk_checks import check_position_notional as check_position_notional
from .risk_checks import check_price_deviation as check_price_deviation
from .risk_checks import check_rate as check_rate
from .risk_checks import check_stop_loss_required as check_stop_loss_required
from .risk_checks import check_symbol as check_symbol
from .risk_checks import check_total_exposure as check_total_exposure
from .risk_checks import check_tpsl as check_tpsl
from .risk_checks import check_trading_state as check_trading_state
from .risk_checks import render_detail as render_detail
from .risk_checks import (
    _CHECKS, _SKIPPED, CHECK_NAMES, _Ctx, _daily_loss_breach, _drawdown_breach, render_details,
)
from .risk_types import (
    DEFAULT_LEVERAGE, REJECTION_CODES, SECONDS_PER_DAY, AccountView, CheckResult, LossBreach, MarketView,
    Rejection, RejectionCode, RiskVerdict, TradingState, account_equity, effective_leverage, stricter_state,
    utc_day,
)

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
