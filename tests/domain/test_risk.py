"""The risk gate: one triggering test per rejection code, the close/reducing/halted policy,
limits merging and validation, loss_state, and a property test over simulated accounts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.domain.decisions import Decision
from actors.domain.market import FeeRates, Instrument, LeverageBracket, MarkPrice, OrderBook, Quote, SymbolFilters
from actors.domain.money import ZERO, round_step_down
from actors.domain.positions import Position, apply_close_fill, apply_open_fill, new_position
from actors.domain.risk import (
    CHECK_NAMES,
    REJECTION_CODES,
    AccountView,
    GlobalLimits,
    InvalidLimits,
    MarketView,
    render_details,
    RiskLimits,
    RiskVerdict,
    account_equity,
    cooldown_until_after,
    effective_leverage,
    evaluate,
    loss_state,
    merge_global_limits,
    merge_limits,
    stricter_state,
    utc_day,
    validate_limits,
)

D = Decimal
NOW = 1_700_000_000.0
MARK = D("100")
TAKER = D("0.0004")


# ---------------------------------------------------------------------------------------------
# builders


def instrument(symbol: str = "BTCUSDT", *, max_leverage: int = 125, status: str = "TRADING") -> Instrument:
    return Instrument(
        symbol=symbol,
        base_asset=symbol.removesuffix("USDT"),
        quote_asset="USDT",
        filters=SymbolFilters(tick_size=D("0.01"), step_size=D("0.001"), min_qty=D("0.001"), min_notional=D("5")),
        fees=FeeRates(maker=D("0.0002"), taker=TAKER),
        brackets=(
            LeverageBracket(
                bracket=1,
                initial_leverage=max_leverage,
                notional_floor=ZERO,
                notional_cap=D("1000000000"),
                maint_margin_ratio=D("0.004"),
                cum=ZERO,
            ),
        ),
        max_leverage=max_leverage,
        status=status,
    )


def quote(
    symbol: str = "BTCUSDT",
    *,
    mark: Decimal | None = MARK,
    received_at: float = NOW - 1,
    mark_received_at: float | None = None,
) -> Quote:
    mid = mark if mark is not None else MARK
    book = OrderBook(
        symbol=symbol,
        bids=((mid - D("0.1"), D("50")),),
        asks=((mid + D("0.1"), D("50")),),
        venue_ms=int(received_at * 1000),
        received_at=received_at,
    )
    mark_price = None
    if mark is not None:
        at = received_at if mark_received_at is None else mark_received_at
        mark_price = MarkPrice(symbol=symbol, mark=mark, venue_ms=int(at * 1000), received_at=at)
    return Quote(symbol=symbol, book=book, mark=mark_price)


def market(symbol: str = "BTCUSDT", **quote_kw: Any) -> MarketView:
    return MarketView(instrument=instrument(symbol), quote=quote(symbol, **quote_kw))


def pos(
    symbol: str = "BTCUSDT",
    side: str = "long",
    qty: str = "1",
    entry: str = "100",
    leverage: int = 5,
    stop_loss: str | None = None,
) -> Position:
    p = new_position(
        position_id=f"p-{symbol}", account_id="acc-1", symbol=symbol, side=side,  # type: ignore[arg-type]
        leverage=leverage, now=NOW - 100, opened_by="d-0",
    )
    p = apply_open_fill(p, D(qty), D(entry), ZERO, NOW - 100).position
    if stop_loss is not None:
        p = msgspec.structs.replace(p, stop_loss=D(stop_loss))
    return p


def account(**kw: Any) -> AccountView:
    base: dict[str, Any] = {
        "account_id": "acc-1",
        "balance": D("10000"),
        "day_start_equity": D("10000"),
        "peak_equity": D("10000"),
    }
    base.update(kw)
    return AccountView(**base)


def open_(**kw: Any) -> Decision:
    base: dict[str, Any] = {
        "decision_id": "d-1",
        "symbol": "BTCUSDT",
        "action": "open",
        "side": "long",
        "quantity": D("1"),
        "leverage": 5,
    }
    base.update(kw)
    return Decision(**base)


def close_(**kw: Any) -> Decision:
    base: dict[str, Any] = {"decision_id": "d-2", "symbol": "BTCUSDT", "action": "close"}
    base.update(kw)
    return Decision(**base)


def run(
    decision: Decision | None = None,
    acct: AccountView | None = None,
    mkt: MarketView | None = None,
    limits: RiskLimits | None = None,
    now: float = NOW,
    **kw: Any,
) -> RiskVerdict:
    return evaluate(
        decision or open_(), acct or account(), mkt or market(), limits or RiskLimits(), now, **kw
    )


def names(verdict: RiskVerdict) -> list[str]:
    return [c.name for c in verdict.checks]


def assert_rejected(verdict: RiskVerdict, code: str, check: str, *numbers: str) -> None:
    """The code, the numbers in the message, earlier checks passed, checks in the fixed order."""
    assert not verdict.accepted
    assert verdict.rejection is not None
    assert verdict.rejection.code == code, verdict.rejection
    for number in numbers:
        assert number in verdict.rejection.message, (number, verdict.rejection.message)
    assert names(verdict) == list(CHECK_NAMES[: CHECK_NAMES.index(check) + 1])
    assert all(c.passed for c in verdict.checks[:-1])
    assert not verdict.checks[-1].passed
    assert verdict.rejection.details == render_details(verdict.checks[-1].detail)


# ---------------------------------------------------------------------------------------------
# one triggering case per code: (failing check, verdict, numbers the message must carry)

CASES: dict[str, tuple[str, Any, tuple[str, ...]]] = {
    "TRADING_HALTED": ("trading_state", lambda: run(acct=account(global_state="halted")), ("halted",)),
    "REDUCE_ONLY_MODE": ("trading_state", lambda: run(acct=account(trading_state="reducing")), ("reducing",)),
    "UNKNOWN_SYMBOL": (
        "symbol",
        lambda: run(open_(symbol="DOGEUSDT"), mkt=MarketView(instrument=None, quote=None)),
        ("DOGEUSDT",),
    ),
    "NO_POSITION": ("position", lambda: run(close_()), ("BTCUSDT",)),
    "OPPOSITE_POSITION": (
        "position",
        lambda: run(open_(side="short"), acct=account(positions=(pos(qty="0.5"),))),
        ("short", "long", "0.5"),
    ),
    "LEVERAGE_ABOVE_MAX": (
        "leverage",
        lambda: run(open_(leverage=20), limits=RiskLimits(max_leverage=10)),
        ("leverage 20", "maximum 10", "hard cap 25", "venue 125"),
    ),
    "INVALID_TPSL": (
        "tpsl",
        lambda: run(open_(take_profit=D("95"), stop_loss=D("90"))),
        ("take_profit 95", "mark 100"),
    ),
    "STOP_LOSS_REQUIRED": (
        "stop_loss_required",
        lambda: run(limits=RiskLimits(require_stop_loss=True)),
        ("stop_loss", "require_stop_loss"),
    ),
    "MARKET_DATA_STALE": (
        "market_data",
        lambda: run(mkt=market(received_at=NOW - 12.5)),
        ("12.5 s old", "market_data_max_age_seconds 10"),
    ),
    "COOLDOWN_ACTIVE": (
        "cooldown",
        lambda: run(acct=account(cooldown_until=NOW + 12.5)),
        ("cooldown active: 12.5 s left",),
    ),
    "RATE_LIMITED": (
        "rate",
        lambda: run(
            acct=account(recent_order_times=(NOW - 0.5, NOW - 0.4, NOW - 0.1)),
            limits=RiskLimits(max_orders_per_second=3),
        ),
        ("3 orders in the last 1 s", "max_orders_per_second 3", "retry in 0.5 s"),
    ),
    "ORDER_TOO_LARGE": (
        "order_size",
        lambda: run(open_(quantity=None, notional=D("1200")), limits=RiskLimits(max_order_notional=D("1000"))),
        ("order notional 1200 exceeds max_order_notional 1000",),
    ),
    "BELOW_MIN_NOTIONAL": (
        "min_notional",
        lambda: run(open_(quantity=D("0.04")), limits=RiskLimits(min_notional=D("5"))),
        ("order notional 4 is below min_notional 5",),
    ),
    "POSITION_LIMIT": (
        "position_notional",
        lambda: run(
            open_(quantity=D("5")),
            acct=account(positions=(pos(qty="10"),)),
            limits=RiskLimits(max_position_notional=D("1200")),
        ),
        ("1500", "position 1000", "order 500", "max_position_notional 1200"),
    ),
    "EXPOSURE_LIMIT": (
        "total_exposure",
        lambda: run(
            open_(quantity=D("10")),
            acct=account(
                positions=(pos("ETHUSDT", qty="2", entry="1500"),),
                marks={"ETHUSDT": D("2000")},
                open_orders_notional=D("500"),
            ),
            limits=RiskLimits(max_total_notional=D("5000")),
        ),
        ("5500", "positions 4000", "open orders 500", "order 1000", "max_total_notional 5000"),
    ),
    "INSUFFICIENT_MARGIN": (
        "margin",
        lambda: run(open_(quantity=None, notional=D("250")), acct=account(balance=D("30"))),
        ("required margin 50.1", "notional 250", "leverage 5", "fee 0.1", "available balance 30"),
    ),
    "PRICE_DEVIATION": (
        "price_deviation",
        lambda: run(open_(reference_price=D("102")), limits=RiskLimits(max_price_deviation_bps=D("100"))),
        ("reference price 102", "200 bps", "mark 100", "max_price_deviation_bps 100"),
    ),
    "DAILY_LOSS_LIMIT": (
        "daily_loss",
        lambda: run(acct=account(balance=D("9400")), limits=RiskLimits(daily_loss_limit=D("500"))),
        ("daily loss 600", "6% of day start equity", "daily_loss_limit 500", "10000", "9400"),
    ),
    "MAX_DRAWDOWN": (
        "drawdown",
        lambda: run(
            acct=account(balance=D("9600"), peak_equity=D("12000")), limits=RiskLimits(max_drawdown_pct=D("20"))
        ),
        ("drawdown 20%", "peak equity 12000", "equity 9600", "max_drawdown_pct 20%"),
    ),
}


def test_every_code_has_a_triggering_case() -> None:
    assert set(CASES) == set(REJECTION_CODES)


@pytest.mark.parametrize("code", list(CASES))
def test_each_code_is_triggered_with_numbers_in_the_message(code: str) -> None:
    check, make, numbers = CASES[code]
    assert_rejected(make(), code, check, *numbers)


def test_a_plain_open_passes_every_check_in_order() -> None:
    verdict = run()
    assert verdict.accepted and verdict.rejection is None
    assert names(verdict) == list(CHECK_NAMES)
    assert all(c.passed for c in verdict.checks)
    assert verdict.order_notional == D("100")
    assert verdict.reduces_exposure is False


def test_check_order_is_the_design_order() -> None:
    assert CHECK_NAMES == (
        "trading_state",
        "symbol", "position", "leverage", "tpsl", "stop_loss_required",
        "market_data",
        "cooldown", "rate", "global_rate",
        "order_size", "min_notional", "position_notional", "total_exposure", "open_positions", "margin",
        "price_deviation",
        "daily_loss", "drawdown",
    )  # fmt: skip


def test_verdict_is_json_serializable_for_the_audit_log() -> None:
    for code in CASES:
        verdict = CASES[code][1]()
        decoded = msgspec.json.decode(msgspec.json.encode(verdict))
        assert decoded["rejection"]["code"] == code
        assert all(isinstance(v, str) for c in decoded["checks"] for v in c["detail"].values())


def test_first_failure_wins() -> None:
    # halted, stale, on cooldown and too large: only the trading state is reported
    verdict = run(
        open_(notional=D("5000"), quantity=None),
        acct=account(trading_state="halted", cooldown_until=NOW + 5),
        mkt=market(received_at=NOW - 60),
        limits=RiskLimits(max_order_notional=D("10")),
    )
    assert_rejected(verdict, "TRADING_HALTED", "trading_state")


# ---------------------------------------------------------------------------------------------
# trading state


def test_halted_blocks_closes_too() -> None:
    verdict = run(close_(), acct=account(trading_state="halted", positions=(pos(),)))
    assert_rejected(verdict, "TRADING_HALTED", "trading_state", "halted")


def test_global_halt_applies_to_every_account() -> None:
    verdict = run(close_(), acct=account(global_state="halted", positions=(pos(),)))
    assert_rejected(verdict, "TRADING_HALTED", "trading_state")


def test_reducing_lets_a_close_through() -> None:
    verdict = run(close_(), acct=account(trading_state="reducing", positions=(pos(),)))
    assert verdict.accepted
    assert verdict.reduces_exposure


def test_global_reducing_blocks_opens_and_passes_closes() -> None:
    acct = account(global_state="reducing", positions=(pos(),))
    assert_rejected(run(open_(), acct=acct), "REDUCE_ONLY_MODE", "trading_state")
    assert run(close_(), acct=acct).accepted


def test_the_stricter_state_applies() -> None:
    assert stricter_state("active", "reducing") == "reducing"
    assert stricter_state("halted", "reducing") == "halted"
    assert stricter_state("reducing", "active") == "reducing"
    assert stricter_state("active", "active") == "active"


# ---------------------------------------------------------------------------------------------
# closes bypass new-exposure limits


def test_close_bypasses_cooldown_exposure_margin_and_loss_limits() -> None:
    big = pos(qty="100", leverage=5)  # notional 10000 at the mark
    acct = account(
        positions=(big, pos("ETHUSDT", qty="10")),
        cooldown_until=NOW + 300,
        balance=D("1000"),  # below the position margin: nothing is available
        peak_equity=D("100000"),
    )
    limits = RiskLimits(
        max_leverage=2,
        max_position_notional=D("10"),
        max_total_notional=D("10"),
        max_open_positions=1,
        max_order_notional=D("10"),
        min_notional=D("1"),
        require_stop_loss=True,
        daily_loss_limit=D("1"),
        daily_loss_limit_pct=D("1"),
        max_drawdown_pct=D("1"),
        max_price_deviation_bps=D("1"),
    )
    verdict = run(close_(reference_price=D("150")), acct=acct, limits=limits)
    assert verdict.accepted, verdict.rejection
    assert verdict.reduces_exposure
    assert verdict.order_notional == D("10000")
    assert names(verdict) == list(CHECK_NAMES)
    skipped = {c.name for c in verdict.checks if "skipped" in c.detail}
    assert skipped == {
        "leverage", "tpsl", "stop_loss_required", "cooldown", "order_size", "min_notional",
        "position_notional", "total_exposure", "open_positions", "margin", "price_deviation",
        "daily_loss", "drawdown",
    }  # fmt: skip


def test_the_same_open_is_refused_by_those_limits() -> None:
    acct = account(positions=(pos(),), cooldown_until=NOW + 300)
    assert_rejected(run(open_(), acct=acct), "COOLDOWN_ACTIVE", "cooldown", "s left")


def test_rate_limits_apply_to_closes_too() -> None:
    verdict = run(
        close_(),
        acct=account(positions=(pos(),), recent_order_times=tuple(NOW - 10 - i for i in range(5))),
        limits=RiskLimits(max_orders_per_minute=5),
    )
    assert_rejected(verdict, "RATE_LIMITED", "rate", "5 orders in the last 60 s", "max_orders_per_minute 5")


def test_stale_market_data_blocks_closes() -> None:
    verdict = run(close_(), acct=account(positions=(pos(),)), mkt=market(received_at=NOW - 30))
    assert_rejected(verdict, "MARKET_DATA_STALE", "market_data", "30 s old")


def test_close_notional_is_the_closed_quantity_at_the_mark() -> None:
    acct = account(positions=(pos(qty="3", entry="90"),))
    assert run(close_(quantity=D("1")), acct=acct, mkt=market(mark=D("120"))).order_notional == D("120")
    assert run(close_(), acct=acct, mkt=market(mark=D("120"))).order_notional == D("360")
    clamped = run(close_(quantity=D("5")), acct=acct, mkt=market(mark=D("120")))
    assert clamped.accepted and clamped.order_notional == D("360")
    assert render_details(clamped.checks[CHECK_NAMES.index("position")].detail)["close_quantity"] == "3"


def test_close_of_an_unknown_symbol() -> None:
    verdict = run(close_(symbol="DOGEUSDT"), mkt=MarketView(instrument=None, quote=None))
    assert_rejected(verdict, "UNKNOWN_SYMBOL", "symbol", "DOGEUSDT")


# ---------------------------------------------------------------------------------------------
# decision validity details


def test_a_symbol_that_is_not_trading_refuses_opens_but_not_closes() -> None:
    mkt = MarketView(instrument=instrument(status="SETTLING"), quote=quote())
    assert_rejected(run(open_(), mkt=mkt), "UNKNOWN_SYMBOL", "symbol", "SETTLING")
    assert run(close_(), acct=account(positions=(pos(),)), mkt=mkt).accepted


def test_market_view_for_another_symbol_is_unknown() -> None:
    assert_rejected(run(open_(symbol="ETHUSDT")), "UNKNOWN_SYMBOL", "symbol", "ETHUSDT")


def test_increase_in_the_same_direction_is_allowed() -> None:
    assert run(open_(), acct=account(positions=(pos(),))).accepted


@pytest.mark.parametrize(
    ("venue_max", "limit", "leverage", "ok"),
    [(125, 25, 25, True), (8, 25, 10, False), (8, 25, 8, True), (125, 3, 4, False), (125, 25, 30, False)],
)
def test_leverage_cap_is_the_minimum_of_limit_hard_cap_and_venue(
    venue_max: int, limit: int, leverage: int, ok: bool
) -> None:
    mkt = MarketView(instrument=instrument(max_leverage=venue_max), quote=quote())
    verdict = run(open_(leverage=leverage), mkt=mkt, limits=RiskLimits(max_leverage=limit))
    if ok:
        assert verdict.accepted
    else:
        cap = str(min(venue_max, limit, 25))
        assert_rejected(verdict, "LEVERAGE_ABOVE_MAX", "leverage", f"leverage {leverage}", f"maximum {cap}")


def test_increase_of_a_position_above_a_lowered_cap_is_refused() -> None:
    acct = account(positions=(pos(leverage=20),))
    verdict = run(open_(leverage=None), acct=acct, limits=RiskLimits(max_leverage=10))
    assert_rejected(verdict, "LEVERAGE_ABOVE_MAX", "leverage", "BTCUSDT position's leverage 20", "maximum 10")


def test_effective_leverage() -> None:
    assert effective_leverage(open_(leverage=7), pos(leverage=3)) == 7
    assert effective_leverage(open_(leverage=None), pos(leverage=3)) == 3
    assert effective_leverage(open_(leverage=None), None) == 1


@pytest.mark.parametrize(
    ("side", "tp", "sl", "ok", "fragment"),
    [
        ("long", "110", "90", True, ""),
        ("long", "110", None, True, ""),
        ("long", None, "101", False, "stop_loss 101 must be below the mark 100"),
        ("long", "90", "95", False, "stop_loss 95 must be below take_profit 90"),
        ("short", "90", "110", True, ""),
        ("short", "105", "110", False, "take_profit 105 must be below the mark 100"),
        ("short", None, "99", False, "stop_loss 99 must be above the mark 100"),
        ("short", "110", "90", False, "stop_loss 90 must be above take_profit 110"),
    ],
)
def test_tpsl_sides(side: str, tp: str | None, sl: str | None, ok: bool, fragment: str) -> None:
    decision = open_(side=side, take_profit=D(tp) if tp else None, stop_loss=D(sl) if sl else None)
    verdict = run(decision)
    if ok:
        assert verdict.accepted, verdict.rejection
    else:
        assert_rejected(verdict, "INVALID_TPSL", "tpsl", fragment)


def test_tpsl_of_a_limit_order_is_checked_against_its_price() -> None:
    # a long limit at 80 with the mark at 100: a stop at 85 would fire as soon as it fills
    bad = open_(order_type="limit", price=D("80"), take_profit=D("95"), stop_loss=D("85"))
    assert_rejected(run(bad), "INVALID_TPSL", "tpsl", "stop_loss 85 must be below the limit price 80")
    good = open_(order_type="limit", price=D("80"), take_profit=D("95"), stop_loss=D("75"))
    assert run(good).accepted


def test_tpsl_outside_the_venues_price_filter_is_refused_before_anything_trades() -> None:
    """A level the venue's price filter refuses would be refused after the entry filled (the
    position then closed again, unprotected, at a cost): the gate refuses the decision instead."""
    bounded = msgspec.structs.replace(instrument(), filters=msgspec.structs.replace(
        instrument().filters, min_price=D("10"), max_price=D("1000")))
    mkt = MarketView(instrument=bounded, quote=quote())
    assert_rejected(run(open_(take_profit=D("1000.01"), stop_loss=D("50")), mkt=mkt), "INVALID_TPSL", "tpsl",
                    "take_profit 1000.01 is above the venue's maximum price 1000")
    assert_rejected(run(open_(side="short", take_profit=D("5"), stop_loss=D("150")), mkt=mkt), "INVALID_TPSL",
                    "tpsl", "take_profit 5 is below the venue's minimum price 10")
    assert run(open_(take_profit=D("1000"), stop_loss=D("10")), mkt=mkt).accepted  # the bounds themselves
    assert run(open_(take_profit=D("5000"), stop_loss=D("1"))).accepted  # no filter bounds: none applied


def test_tpsl_on_an_increase_is_checked_against_the_mark() -> None:
    acct = account(positions=(pos(entry="50"),))
    verdict = run(open_(take_profit=D("90")), acct=acct)  # above the entry, below the mark
    assert_rejected(verdict, "INVALID_TPSL", "tpsl", "take_profit 90", "mark 100")


def test_existing_stop_loss_satisfies_require_stop_loss_on_an_increase() -> None:
    limits = RiskLimits(require_stop_loss=True)
    assert run(open_(), acct=account(positions=(pos(stop_loss="90"),)), limits=limits).accepted
    assert run(open_(stop_loss=D("90")), limits=limits).accepted


# ---------------------------------------------------------------------------------------------
# market data, cooldown, rate


def test_no_quote_is_stale() -> None:
    verdict = run(mkt=MarketView(instrument=instrument(), quote=None))
    assert_rejected(verdict, "MARKET_DATA_STALE", "market_data", "no market data for BTCUSDT", "10")


def test_a_stale_mark_with_a_fresh_book_is_stale() -> None:
    verdict = run(mkt=market(received_at=NOW - 0.5, mark_received_at=NOW - 11))
    assert_rejected(verdict, "MARKET_DATA_STALE", "market_data", "11 s old")


def test_no_mark_and_an_empty_book_is_stale() -> None:
    book = OrderBook(symbol="BTCUSDT", bids=(), asks=(), venue_ms=0, received_at=NOW)
    mkt = MarketView(instrument=instrument(), quote=Quote(symbol="BTCUSDT", book=book))
    assert_rejected(run(mkt=mkt), "MARKET_DATA_STALE", "market_data", "no mark price")


def test_book_mid_serves_as_mark_without_a_mark_stream() -> None:
    verdict = run(mkt=market(mark=None))
    assert verdict.accepted and verdict.order_notional == D("100")


def test_data_exactly_at_the_age_limit_passes() -> None:
    assert run(mkt=market(received_at=NOW - 10)).accepted


def test_cooldown_details_and_expiry() -> None:
    verdict = run(acct=account(cooldown_until=NOW + 0.04))
    assert verdict.rejection is not None
    assert verdict.rejection.message == "cooldown active: 0.1 s left"  # rounded up, never "0"
    assert verdict.rejection.details["seconds_left"] == "0.1"
    assert run(acct=account(cooldown_until=NOW)).accepted
    assert cooldown_until_after(NOW, RiskLimits(cooldown_seconds=30)) == NOW + 30
    assert cooldown_until_after(NOW, RiskLimits()) is None


def test_rate_window_excludes_old_orders() -> None:
    acct = account(recent_order_times=(NOW - 1.0, NOW - 2, NOW - 3))
    assert run(acct=acct, limits=RiskLimits(max_orders_per_second=1)).accepted


def test_global_rate_limit() -> None:
    acct = account(global_recent_order_times=(NOW - 0.2, NOW - 0.1))
    verdict = run(acct=acct, global_limits=GlobalLimits(max_orders_per_second=2))
    assert_rejected(verdict, "RATE_LIMITED", "global_rate", "global rate limit", "2 orders", "max_orders_per_second 2")
    assert run(acct=acct).accepted  # no global limits given: off


# ---------------------------------------------------------------------------------------------
# sizes and exposure


def test_notional_or_quantity_times_mark() -> None:
    assert run(open_(quantity=None, notional=D("250"))).order_notional == D("250")
    assert run(open_(quantity=D("2.5")), mkt=market(mark=D("200"))).order_notional == D("500")


def test_size_limits_are_inclusive() -> None:
    limits = RiskLimits(max_order_notional=D("100"), min_notional=D("100"), max_position_notional=D("100"))
    assert run(limits=limits).accepted


def test_open_positions_count() -> None:
    acct = account(positions=(pos("ETHUSDT"), pos("SOLUSDT")), marks={"ETHUSDT": MARK, "SOLUSDT": MARK})
    limits = RiskLimits(max_open_positions=2)
    verdict = run(acct=acct, limits=limits)
    assert_rejected(verdict, "EXPOSURE_LIMIT", "open_positions", "2 open positions", "make 3", "max_open_positions 2")
    # an increase of an existing position is not a new one
    acct = account(positions=(pos("ETHUSDT"), pos("BTCUSDT")), marks={"ETHUSDT": MARK})
    assert run(acct=acct, limits=limits).accepted


def test_exposure_values_other_positions_at_entry_without_a_mark() -> None:
    acct = account(positions=(pos("ETHUSDT", qty="2", entry="1500"),))
    verdict = run(acct=acct, limits=RiskLimits(max_total_notional=D("3100")))
    assert verdict.accepted
    assert render_details(verdict.checks[CHECK_NAMES.index("total_exposure")].detail)["positions_notional"] == "3000"


def test_margin_counts_position_and_open_order_margin() -> None:
    # balance 1000 - position margin 100*8/5=160 - open orders 800 = 40 available; need 20.04
    acct = account(balance=D("1000"), positions=(pos("ETHUSDT", qty="8"),), open_orders_margin=D("800"))
    assert run(acct=acct).accepted
    verdict = run(open_(quantity=D("2")), acct=acct)  # needs 40.08
    assert_rejected(
        verdict, "INSUFFICIENT_MARGIN", "margin",
        "required margin 40.08", "available balance 40", "position margin 160", "open orders 800",
    )  # fmt: skip


def test_margin_of_an_increase_uses_the_position_leverage() -> None:
    acct = account(balance=D("220"), positions=(pos(qty="1", leverage=2),))  # margin 50, available 170
    verdict = run(open_(quantity=D("4"), leverage=None), acct=acct)  # 400 / 2 + 0.16
    assert_rejected(verdict, "INSUFFICIENT_MARGIN", "margin", "required margin 200.16", "leverage 2")


def test_price_deviation_within_the_limit_and_without_a_reference() -> None:
    limits = RiskLimits(max_price_deviation_bps=D("100"))
    assert run(open_(reference_price=D("99")), limits=limits).accepted
    assert run(limits=limits).accepted


# ---------------------------------------------------------------------------------------------
# loss limits


def test_daily_loss_pct_and_unrealized_losses() -> None:
    # balance unchanged but the open position lost 500 at the mark: equity 9500
    acct = account(positions=(pos(qty="10", entry="150"),))
    verdict = run(acct=acct, limits=RiskLimits(daily_loss_limit_pct=D("5")))
    assert_rejected(verdict, "DAILY_LOSS_LIMIT", "daily_loss", "daily loss 500", "daily_loss_limit_pct 5%")


def test_daily_loss_counts_from_zero_on_a_new_utc_day() -> None:
    yesterday = utc_day(NOW) - 1
    acct = account(balance=D("9000"), day=yesterday)
    assert run(acct=acct, limits=RiskLimits(daily_loss_limit=D("500"))).accepted
    acct = account(balance=D("9000"), day=utc_day(NOW))
    assert not run(acct=acct, limits=RiskLimits(daily_loss_limit=D("500"))).accepted


def test_loss_state_for_the_watcher() -> None:
    acct = account(peak_equity=D("12000"))
    limits = RiskLimits(daily_loss_limit=D("500"), max_drawdown_pct=D("25"), on_loss_limit="reducing")
    assert loss_state(acct, D("9600"), limits, NOW) is None
    breach = loss_state(acct, D("9500"), limits, NOW)
    assert breach is not None and breach.code == "DAILY_LOSS_LIMIT" and breach.action == "reducing"
    assert "daily loss 500" in breach.message and breach.details["daily_loss"] == "500"
    breach = loss_state(acct, D("9000"), RiskLimits(max_drawdown_pct=D("25")), NOW)
    assert breach is not None and breach.code == "MAX_DRAWDOWN" and breach.action == "halted"
    assert "drawdown 25%" in breach.message
    assert loss_state(acct, D("20000"), limits, NOW) is None


def test_account_equity_and_utc_day() -> None:
    short = pos("ETHUSDT", side="short", qty="1", entry="50")
    acct = account(balance=D("1000"), positions=(pos(qty="2", entry="100"), short))
    assert account_equity(acct, {"BTCUSDT": D("110"), "ETHUSDT": D("40")}) == D("1030")
    assert account_equity(acct, {}) == D("1000")
    assert utc_day(0) == 0
    assert utc_day(86_399.9) == 0
    assert utc_day(86_400) == 1
    assert utc_day(NOW) == 19675


# ---------------------------------------------------------------------------------------------
# limits: validation and merging


def test_defaults() -> None:
    limits = RiskLimits()
    assert limits.max_leverage == 25
    assert limits.cooldown_seconds == 0
    assert limits.market_data_max_age_seconds == 10
    assert limits.on_loss_limit == "halted"
    assert limits.require_stop_loss is False
    assert limits.max_position_notional is None


@pytest.mark.parametrize("value", [26, 125, "30", 0, -1])
def test_leverage_cap_cannot_be_raised_or_disabled(value: object) -> None:
    with pytest.raises(InvalidLimits) as err:
        merge_limits(RiskLimits(), {"max_leverage": value})
    assert err.value.field == "max_leverage"


def test_leverage_cap_cannot_be_constructed_or_decoded_above_25() -> None:
    with pytest.raises(InvalidLimits):
        RiskLimits(max_leverage=26)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"max_leverage": 50}, RiskLimits)
    with pytest.raises(InvalidLimits) as err:
        merge_limits(RiskLimits(), {"max_leverage": None})
    assert err.value.field == "max_leverage"


def test_unknown_key_names_the_key() -> None:
    with pytest.raises(InvalidLimits) as err:
        merge_limits(RiskLimits(), {"max_leverage": 5, "max_levrage": 3})
    assert err.value.field == "max_levrage"
    assert "max_levrage" in str(err.value)


def test_merge_accepts_numbers_and_strings() -> None:
    merged = merge_limits(
        RiskLimits(max_leverage=10, max_order_notional=D("100")),
        {
            "max_position_notional": "1500.50",
            "max_total_notional": 5000,
            "daily_loss_limit_pct": 2.5,
            "max_open_positions": "3",
            "cooldown_seconds": "12.5",
            "require_stop_loss": True,
            "on_loss_limit": "reducing",
            "max_order_notional": None,
        },
    )
    assert merged.max_leverage == 10  # untouched default
    assert merged.max_position_notional == D("1500.50")
    assert merged.max_total_notional == D("5000")
    assert merged.daily_loss_limit_pct == D("2.5")
    assert merged.max_open_positions == 3
    assert merged.cooldown_seconds == 12.5
    assert merged.require_stop_loss is True
    assert merged.on_loss_limit == "reducing"
    assert merged.max_order_notional is None  # null turns a limit off


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_position_notional", "-5"),
        ("max_position_notional", "0"),
        ("max_position_notional", "abc"),
        ("max_position_notional", "NaN"),
        ("max_position_notional", True),
        ("max_open_positions", 1.5),
        ("max_open_positions", 0),
        ("max_orders_per_second", -1),
        ("cooldown_seconds", -1),
        ("cooldown_seconds", "inf"),
        ("daily_loss_limit_pct", "0"),
        ("daily_loss_limit_pct", "100.01"),
        ("max_drawdown_pct", 150),
        ("min_notional", "-1"),
        ("require_stop_loss", "yes"),
        ("on_loss_limit", "panic"),
        ("market_data_max_age_seconds", 0),
        ("market_data_max_age_seconds", None),
        ("on_loss_limit", None),
    ],
)
def test_invalid_values_are_refused_naming_the_field(key: str, value: object) -> None:
    with pytest.raises(InvalidLimits) as err:
        merge_limits(RiskLimits(), {key: value})
    assert err.value.field == key


def test_invalid_combination_and_shapes() -> None:
    with pytest.raises(InvalidLimits) as err:
        merge_limits(RiskLimits(max_order_notional=D("50")), {"min_notional": "100"})
    assert err.value.field == "min_notional" and "100" in err.value.message and "50" in err.value.message
    with pytest.raises(InvalidLimits) as err:
        merge_limits(RiskLimits(), ["max_leverage", 3])  # type: ignore[arg-type]
    assert err.value.field is None


def test_validate_limits_checks_types_of_directly_built_values() -> None:
    validate_limits(RiskLimits())
    with pytest.raises(InvalidLimits) as err:
        RiskLimits(max_position_notional=1000)  # type: ignore[arg-type]  # an int, not a Decimal
    assert err.value.field == "max_position_notional"


def test_pct_at_100_is_allowed() -> None:
    assert merge_limits(RiskLimits(), {"max_drawdown_pct": 100}).max_drawdown_pct == D("100")


def test_global_limits() -> None:
    merged = merge_global_limits(GlobalLimits(), {"max_orders_per_minute": "600"})
    assert merged.max_orders_per_minute == 600
    with pytest.raises(InvalidLimits) as err:
        merge_global_limits(GlobalLimits(), {"max_leverage": 5})
    assert err.value.field == "max_leverage"


# ---------------------------------------------------------------------------------------------
# property: no accepted decision breaks the leverage cap or the exposure limits

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
VENUE_MAX = {"BTCUSDT": 125, "ETHUSDT": 50, "SOLUSDT": 10}
INSTRUMENTS = {s: instrument(s, max_leverage=VENUE_MAX[s]) for s in SYMBOLS}
STEP = D("0.001")

limits_st = st.builds(
    RiskLimits,
    max_leverage=st.integers(1, 25),
    max_position_notional=st.none() | st.integers(50, 5000).map(D),
    max_total_notional=st.none() | st.integers(100, 10000).map(D),
    max_open_positions=st.none() | st.integers(1, 3),
)
step_st = st.tuples(
    st.integers(0, len(SYMBOLS) - 1),  # symbol
    st.integers(-800, 800),  # price move in bps before the decision
    st.sampled_from(["open", "open", "close"]),
    st.sampled_from(["long", "short"]),
    st.one_of(
        st.tuples(st.just("quantity"), st.integers(1, 40_000)),  # thousandths of a unit
        st.tuples(st.just("notional"), st.integers(1, 4000)),
    ),
    st.none() | st.integers(1, 30),  # leverage (above 25 must be refused by the gate too)
)


def _measures(positions: dict[str, Position], marks: dict[str, Decimal]) -> tuple[dict[str, Decimal], Decimal, int]:
    per_symbol = {s: p.notional(marks[s]) for s, p in positions.items()}
    return per_symbol, sum(per_symbol.values(), ZERO), len(positions)


@settings(max_examples=150, deadline=None)
@given(limits=limits_st, steps=st.lists(step_st, min_size=1, max_size=30))
def test_accepted_decisions_never_break_leverage_or_exposure_limits(limits: RiskLimits, steps: list[Any]) -> None:
    balance = D("2000")
    marks = {"BTCUSDT": D("100"), "ETHUSDT": D("20"), "SOLUSDT": D("5")}
    positions: dict[str, Position] = {}
    now = NOW
    for i, (sym_idx, move_bps, action, side, (size_kind, size), leverage) in enumerate(steps):
        now += 1
        symbol = SYMBOLS[sym_idx]
        marks[symbol] = max(D("0.01"), (marks[symbol] * (1 + D(move_bps) / 10_000)).quantize(D("0.01")))
        mark = marks[symbol]
        if action == "open":
            quantity, notional = (D(size) / 1000, None) if size_kind == "quantity" else (None, D(size))
            decision = Decision(
                decision_id=f"d-{i}", symbol=symbol, action="open", side=side, leverage=leverage,
                quantity=quantity, notional=notional,
            )  # fmt: skip
        else:
            decision = Decision(decision_id=f"d-{i}", symbol=symbol, action="close", quantity=D(size) / 1000)
        acct = AccountView(
            account_id="acc-1",
            balance=balance,
            positions=tuple(positions.values()),
            marks=dict(marks),
            day_start_equity=D("2000"),
            peak_equity=D("2000"),
        )
        market_view = MarketView(instrument=INSTRUMENTS[symbol], quote=quote(symbol, mark=mark, received_at=now))
        verdict = evaluate(decision, acct, market_view, limits, now)
        if not verdict.accepted:
            continue

        before = _measures(positions, marks)
        existing = positions.get(symbol)
        if decision.action == "open":
            if decision.quantity is not None:
                qty = decision.quantity
            else:  # the executor rounds a notional down to the venue's step
                assert decision.notional is not None
                qty = round_step_down(decision.notional / mark, STEP)
            if qty <= 0:
                continue
            p = existing or new_position(
                position_id=f"p-{i}", account_id="acc-1", symbol=symbol, side=side,
                leverage=effective_leverage(decision, None), now=now, opened_by=decision.decision_id,
            )  # fmt: skip
            fee = qty * mark * TAKER
            positions[symbol] = apply_open_fill(p, qty, mark, fee, now).position
            balance -= fee
        else:
            assert existing is not None  # NO_POSITION otherwise
            qty = min(decision.quantity or existing.quantity, existing.quantity)
            fee = qty * mark * TAKER
            effect = apply_close_fill(existing, qty, mark, fee, now)
            balance += effect.realized_pnl - fee
            if effect.kind == "closed":
                del positions[symbol]
            else:
                positions[symbol] = effect.position
            assert verdict.reduces_exposure

        per_symbol, total, count = _measures(positions, marks)
        for p in positions.values():
            assert p.leverage <= min(limits.max_leverage, VENUE_MAX[p.symbol], 25)
        if decision.action == "open":
            if limits.max_position_notional is not None:
                assert per_symbol[symbol] <= limits.max_position_notional
            if limits.max_total_notional is not None:
                assert total <= limits.max_total_notional
            if limits.max_open_positions is not None:
                assert count <= limits.max_open_positions
            assert balance - sum((p.margin for p in positions.values()), ZERO) >= 0
        else:  # a close may leave limits exceeded by price moves, but never increases anything
            assert per_symbol.get(symbol, ZERO) <= before[0][symbol]
            assert total <= before[1] and count <= before[2]
