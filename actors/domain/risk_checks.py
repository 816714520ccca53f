"""The checks of the pre-trade risk gate (:mod:`actors.domain.risk`), one small pure function
each, and their table ``_CHECKS`` in the order the gate runs them (the module docstring of
:mod:`actors.domain.risk` lists it with the codes each check can raise); with the helpers that
render audit details and measure the loss limits (shared with ``risk.loss_state``).

Each check reads a :class:`_Ctx` (the decision, the views, the limits and what the gate derived
from them once) and returns an :class:`_Outcome`: its audit details and, when it fails, the
rejection code and message. Split out of :mod:`actors.domain.risk`, which re-exports every
public name here.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_CEILING, Decimal
from typing import Any, NamedTuple

from .decisions import HARD_MAX_LEVERAGE, Decision
from .limits import HUNDRED, GlobalLimits, RiskLimits
from .money import ZERO, bps_between, fmt, fmt8, to_decimal
from .positions import Position
from .protection import tpsl_problem
from .risk_types import (
    AccountView, MarketView, RejectionCode, TradingState, effective_leverage, utc_day,
)

# --------------------------------------------------------------------------------------------
# Audit details and loss measures


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
    if limits.daily_loss_limit is not None and loss >= limits.daily_loss_limit:
        pct_text = _pct_text(loss_pct)
        return detail, (
            f"daily loss {_num(loss)}{pct_text} reached daily_loss_limit {_num(limits.daily_loss_limit)} "
            f"(day start equity {_num(account.day_start_equity)}, equity {_num(equity)})"
        )
    if limits.daily_loss_limit_pct is not None and loss_pct is not None and loss_pct >= limits.daily_loss_limit_pct:
        pct_text = _pct_text(loss_pct)
        return detail, (
            f"daily loss {_num(loss)}{pct_text} reached daily_loss_limit_pct {_num(limits.daily_loss_limit_pct)}% "
            f"(day start equity {_num(account.day_start_equity)}, equity {_num(equity)})"
        )
    return detail, None


def _pct_text(loss_pct: Decimal | None) -> str:
    return "" if loss_pct is None else f" ({_num(loss_pct.quantize(Decimal('0.01')))}% of day start equity)"


def _drawdown_breach(account: AccountView, equity: Decimal, limits: RiskLimits) -> tuple[dict[str, Detail], str | None]:
    drawdown = _pct(account.peak_equity - equity, account.peak_equity)
    shown = "n/a" if drawdown is None else drawdown.quantize(Decimal("0.01"))
    detail = {
        "equity": _raw(equity),
        "peak_equity": _raw(account.peak_equity),
        "drawdown_pct": shown,
        "max_drawdown_pct": _raw(limits.max_drawdown_pct),
    }
    if limits.max_drawdown_pct is not None and drawdown is not None and drawdown >= limits.max_drawdown_pct:
        return detail, (
            f"drawdown {_num(drawdown.quantize(Decimal('0.01')))}% from peak equity {_num(account.peak_equity)} (equity {_num(equity)}) "
            f"reached max_drawdown_pct {_num(limits.max_drawdown_pct)}%"
        )
    return detail, None


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
    instrument = c.market.instrument
    problem = tpsl_problem(str(d.side), ref, tp, sl, reference_name=ref_name,
                           filters=instrument.filters if instrument is not None else None)
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
    if age is None or c.market.quote is None or c.market.quote.symbol != c.decision.symbol:
        return _fail("MARKET_DATA_STALE", f"no market data for {c.decision.symbol} ({_age_limit(max_age)})",
                     age="none")
    detail = {"age_seconds": _secs(age, places="0.001"), "max_age_seconds": _raw(to_decimal(max_age))}
    if c.mark is None:
        return _fail("MARKET_DATA_STALE", f"no mark price for {c.decision.symbol} (empty book, no mark)", **detail)
    detail["mark"] = c.mark
    if age > max_age:
        return _fail(
            "MARKET_DATA_STALE", f"market data for {c.decision.symbol} is {_secs(age)} s old, {_age_limit(max_age)}",
            **detail
        )
    return _ok(**detail)


def _age_limit(max_age: float) -> str:
    return f"market_data_max_age_seconds {_num(to_decimal(max_age))}"


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
    times: Sequence[float], now: float, per_second: int | None, per_minute: int | None, scope: str
) -> _Outcome:
    detail: dict[str, Detail] = {}
    failure: tuple[RejectionCode, str] | None = None
    prefix = "" if scope == "account" else "global "
    windows = ((per_second, 1.0, "max_orders_per_second"), (per_minute, 60.0, "max_orders_per_minute"))
    for limit, window, name in windows:
        in_window = len(times) - bisect.bisect_right(times, now - window)  # times are ascending
        detail[_WINDOW_KEYS[window]] = str(in_window)
        detail[name] = _raw(limit)
        if failure is None and limit is not None and in_window >= limit:
            retry_after = _secs(times[len(times) - limit] + window - now, places="0.001")
            detail["retry_after_seconds"] = retry_after
            failure = (
                "RATE_LIMITED",
                f"{prefix}rate limit: {in_window} orders in the last {int(window)} s, "
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
