"""Futures math: brackets, maintenance margin, liquidation, bankruptcy, funding, profit tables."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.domain.margin import (
    bankruptcy_price,
    default_brackets,
    funding_payment,
    funding_times_between,
    is_liquidated,
    liquidation_fee,
    liquidation_price,
    liquidation_price_in_bracket,
    maintenance_margin,
    margin_balance,
)
from actors.domain.market import FeeRates, Instrument, LeverageBracket, SymbolFilters
from actors.domain.positions import apply_close_fill, apply_funding, apply_open_fill, new_position

D = Decimal

# Binance USDⓈ-M BTCUSDT maintenance-margin ladder (notional floor, max leverage, MMR), as published
# on the "Leverage and Margin of USDⓈ-M Futures" page and returned by GET /fapi/v1/leverageBracket.
BTCUSDT_LADDER = [
    (0, 125, "0.004"),
    (50_000, 100, "0.005"),
    (250_000, 50, "0.01"),
    (3_000_000, 20, "0.025"),
    (15_000_000, 10, "0.05"),
    (30_000_000, 5, "0.1"),
    (80_000_000, 4, "0.125"),
    (100_000_000, 3, "0.15"),
    (200_000_000, 2, "0.25"),
    (300_000_000, 1, "0.5"),
]
BTCUSDT_CUM = [0, 50, 1_300, 46_300, 421_300, 1_921_300, 3_921_300, 6_421_300, 26_421_300, 101_421_300]

# The older BTCUSDT ladder that the Binance liquidation-price FAQ example was computed with: its
# fourth bracket (1M-5M notional) has MMR 2.5 % and maintenance amount 16,300, the figures the FAQ
# quotes.
BTCUSDT_LADDER_2021 = [
    (0, 125, "0.004"),
    (50_000, 100, "0.005"),
    (250_000, 50, "0.01"),
    (1_000_000, 20, "0.025"),
    (5_000_000, 10, "0.05"),
    (10_000_000, 5, "0.1"),
    (20_000_000, 4, "0.125"),
    (50_000_000, 3, "0.15"),
    (100_000_000, 2, "0.25"),
]


def instrument(ladder=BTCUSDT_LADDER, symbol: str = "BTCUSDT") -> Instrument:
    return Instrument(
        symbol=symbol,
        base_asset=symbol.removesuffix("USDT"),
        quote_asset="USDT",
        filters=SymbolFilters(tick_size=D("0.1"), step_size=D("0.001"), min_qty=D("0.001")),
        fees=FeeRates(maker=D("0.0002"), taker=D("0.0004")),
        brackets=default_brackets(ladder),
    )


BTC = instrument()
BTC_2021 = instrument(BTCUSDT_LADDER_2021)


def assert_close(a: Decimal, b: Decimal, *, rel: Decimal = D("1e-20")) -> None:
    assert abs(a - b) <= rel * max(abs(a), abs(b), D(1)), (a, b)


# ---------------------------------------------------------------------------------------------
# brackets


def test_btcusdt_ladder_cum_values_are_exact():
    brackets = default_brackets(BTCUSDT_LADDER)
    assert [b.cum for b in brackets] == [D(c) for c in BTCUSDT_CUM]
    assert [b.bracket for b in brackets] == list(range(1, 11))
    assert [b.notional_cap for b in brackets[:-1]] == [b.notional_floor for b in brackets[1:]]
    assert brackets[-1].notional_cap == D("Infinity")
    assert brackets[3].initial_leverage == 20


def test_2021_ladder_reproduces_the_faq_maintenance_amount():
    assert BTC_2021.brackets[3].cum == D(16_300)
    assert BTC_2021.brackets[3].maint_margin_ratio == D("0.025")


def test_explicit_last_cap():
    brackets = default_brackets([(0, 20, "0.01"), (1000, 10, "0.02")], last_cap=D(5000))
    assert brackets[-1].notional_cap == D(5000)
    assert brackets[1].cum == D(10)  # 1000 * (0.02 - 0.01) + 0


@pytest.mark.parametrize(
    "ladder",
    [
        [],
        [(10, 20, "0.01")],  # does not start at 0
        [(0, 20, "0.01"), (0, 10, "0.02")],  # floors not increasing
        [(0, 20, "0.02"), (100, 10, "0.01")],  # ratio decreasing
        [(0, 0, "0.01")],  # leverage < 1
        [(0, 20, "1")],  # ratio not below 1
    ],
)
def test_bad_ladders_are_refused(ladder):
    with pytest.raises(ValueError):
        default_brackets(ladder)


def test_maintenance_margin_per_bracket():
    assert maintenance_margin(BTC, D(10_000)) == D(40)  # 10k * 0.4 %
    assert maintenance_margin(BTC, D(100_000)) == D(450)  # 100k * 0.5 % - 50
    assert maintenance_margin(BTC, D(1_000_000)) == D(8_700)  # 1M * 1 % - 1,300
    assert maintenance_margin(BTC, D(500_000_000)) == D(148_578_700)  # 500M * 50 % - 101,421,300


@pytest.mark.parametrize("ladder", [BTCUSDT_LADDER, BTCUSDT_LADDER_2021])
def test_maintenance_margin_is_continuous_at_every_floor(ladder):
    """cum is what makes MM continuous: both neighbouring bracket lines meet at each floor."""
    brackets = default_brackets(ladder)
    for lower, upper in zip(brackets, brackets[1:]):
        floor = upper.notional_floor
        assert floor * lower.maint_margin_ratio - lower.cum == floor * upper.maint_margin_ratio - upper.cum
        # and MM is the maximum of all bracket lines (convexity), which the LP iteration relies on
        for n in (floor - 1, floor, floor + 1):
            mm = maintenance_margin(instrument(ladder), n)
            assert mm == max(n * b.maint_margin_ratio - b.cum for b in brackets)


# ---------------------------------------------------------------------------------------------
# liquidation price: published examples


def test_binance_faq_isolated_long_btcusdt():
    """Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Contracts"
    (binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93), isolated example, BTCUSDT long:
    wallet balance 1,535,443.01 USDT, position 109.488 BTC at entry 32,481.98, bracket MMR 2.5 %,
    maintenance amount 16,300 -> liquidation price 18,778.73. The same inputs and result are used
    by freqtrade's tests/exchange/test_binance.py::test_liquidation_price_binance.
    """
    wb, qty, entry = D("1535443.01"), D("109.488"), D("32481.98")
    in_bracket = liquidation_price_in_bracket("long", qty, entry, wb, D("0.025"), D(16_300))
    assert in_bracket.quantize(D("0.01")) == D("18778.73")
    # The full computation picks the bracket from the notional at the LP (2.056M, in 1M-5M).
    lp = liquidation_price(BTC_2021, "long", qty, entry, wb)
    assert lp == in_bracket
    assert BTC_2021.bracket_for(qty * lp).cum == D(16_300)


def test_binance_faq_isolated_long_ethusdt():
    """Same FAQ, ETHUSDT isolated long: wallet balance 1,535,443.01, 3,683.979 ETH at 1,456.84,
    MMR 10 %, maintenance amount 135,365 -> liquidation price 1,114.78."""
    lp = liquidation_price_in_bracket("long", D("3683.979"), D("1456.84"), D("1535443.01"), D("0.10"), D(135_365))
    assert lp.quantize(D("0.01")) == D("1114.78")


def test_faq_position_recomputed_with_the_current_ladder_changes_bracket():
    """On today's ladder the entry notional (3.56M) is in the 3M-15M bracket, but the notional at
    the LP (about 2.05M) is in 250k-3M: the LP must be recomputed with that bracket."""
    wb, qty, entry = D("1535443.01"), D("109.488"), D("32481.98")
    assert BTC.bracket_for(qty * entry).bracket == 4
    first_guess = liquidation_price_in_bracket("long", qty, entry, wb, D("0.025"), D(46_300))
    lp = liquidation_price(BTC, "long", qty, entry, wb)
    assert lp != first_guess
    assert BTC.bracket_for(qty * lp).bracket == 3
    assert lp == liquidation_price_in_bracket("long", qty, entry, wb, D("0.01"), D(1_300))
    # independent check: at the LP, margin balance == maintenance margin
    assert_close(margin_balance("long", qty, entry, wb, lp), maintenance_margin(BTC, qty * lp))


def test_constructed_long_example_is_exact():
    """Isolated long 1 BTC at 20,000 with 2,072 margin, first bracket (MMR 0.4 %, cum 0):
    LP = (2072 + 0 - 20000) / (0.004 - 1) = 17928 / 0.996 = 18,000.
    Check: margin balance 2072 + (18000 - 20000) = 72 = 18000 * 0.004 = maintenance margin."""
    lp = liquidation_price(BTC, "long", D(1), D(20_000), D(2_072))
    assert lp == D(18_000)
    assert margin_balance("long", D(1), D(20_000), D(2_072), lp) == D(72)
    assert maintenance_margin(BTC, lp) == D(72)


def test_constructed_short_example():
    """Isolated short 2 BTC at 30,000, 20x -> margin 3,000; entry notional 60k is in bracket 2
    (0.5 %, cum 50): LP = (3000 + 50 + 60000) / (2*0.005 + 2) = 63050 / 2.01 = 31,368.159..."""
    lp = liquidation_price(BTC, "short", D(2), D(30_000), D(3_000))
    assert lp == D(63_050) / D("2.01")
    assert BTC.bracket_for(2 * lp).bracket == 2
    assert_close(margin_balance("short", D(2), D(30_000), D(3_000), lp), maintenance_margin(BTC, 2 * lp))


def test_inconsistent_venue_ladder_does_not_loop():
    """A ladder whose cum breaks continuity (bracket 2 should have cum 490, not 2,000) makes the
    fixed point oscillate: LP in bracket 2 = -2,000 (bracket 1), LP in bracket 1 = 1,010.1...
    (bracket 2). The fallback returns the most conservative candidate for a long."""
    brackets = (
        LeverageBracket(bracket=1, initial_leverage=20, notional_floor=D(0), notional_cap=D(1000),
                        maint_margin_ratio=D("0.01"), cum=D(0)),
        LeverageBracket(bracket=2, initial_leverage=10, notional_floor=D(1000), notional_cap=D("Infinity"),
                        maint_margin_ratio=D("0.5"), cum=D(2000)),
    )
    odd = msgspec.structs.replace(BTC, brackets=brackets)
    lp = liquidation_price(odd, "long", D(1), D(2000), D(1000))
    assert lp == D(1000) / D("0.99")


def test_one_x_long_cannot_be_liquidated():
    assert liquidation_price(BTC, "long", D(1), D(20_000), D(20_000)) is None
    assert bankruptcy_price("long", D(1), D(20_000), D(20_000)) is None
    assert is_liquidated("long", None, D("0.1")) is False


def test_one_x_short_still_has_a_liquidation_price():
    lp = liquidation_price(BTC, "short", D(1), D(20_000), D(20_000))
    assert lp is not None and lp > D(39_000)  # (20000 + 20000) / 1.004 = 39,840.6...


def test_quantity_must_be_positive():
    with pytest.raises(ValueError):
        liquidation_price(BTC, "long", D(0), D(20_000), D(100))
    with pytest.raises(ValueError):
        bankruptcy_price("short", D(-1), D(20_000), D(100))


# ---------------------------------------------------------------------------------------------
# liquidation price: properties

prices = st.decimals(min_value=D("0.01"), max_value=D(200_000), places=2)
quantities = st.decimals(min_value=D("0.001"), max_value=D(5_000), places=3)
sides = st.sampled_from(["long", "short"])
leverages = st.integers(min_value=1, max_value=125)


@settings(max_examples=200, deadline=None)
@given(side=sides, qty=quantities, entry=prices, leverage=leverages)
def test_liquidation_price_solves_margin_balance_equals_maintenance_margin(side, qty, entry, leverage):
    # the venue caps leverage by the bracket of the entry notional (check_leverage, -2027)
    leverage = min(leverage, BTC.bracket_for(qty * entry).initial_leverage)
    wb = qty * entry / leverage
    lp = liquidation_price(BTC, side, qty, entry, wb)
    if lp is None:
        assert side == "long"
        # not liquidatable: at (almost) zero price the balance still covers maintenance
        tiny = D("1e-9")
        assert margin_balance(side, qty, entry, wb, tiny) >= maintenance_margin(BTC, qty * tiny)
        return
    notional = qty * lp
    assert_close(margin_balance(side, qty, entry, wb, lp), maintenance_margin(BTC, notional), rel=D("1e-18"))
    bracket = BTC.bracket_for(notional)
    assert lp == liquidation_price_in_bracket(side, qty, entry, wb, bracket.maint_margin_ratio, bracket.cum)
    # the LP lies between the entry and the bankruptcy price
    bp = bankruptcy_price(side, qty, entry, wb)
    if side == "long":
        assert lp < entry and (bp is None or bp <= lp)
    else:
        assert entry < lp and bp is not None and lp <= bp
    # MM is the max of the bracket lines: the true LP is the most conservative bracket candidate
    candidates = [
        liquidation_price_in_bracket(side, qty, entry, wb, b.maint_margin_ratio, b.cum) for b in BTC.brackets
    ]
    assert lp == (max(candidates) if side == "long" else min(candidates))
    assert is_liquidated(side, lp, lp)
    assert not is_liquidated(side, lp, entry)
    step = D("0.01")
    assert not is_liquidated(side, lp, lp + step if side == "long" else lp - step)


def test_over_leveraged_position_is_liquidated_at_entry():
    """125x on a 650k notional (bracket max 50x): margin is below maintenance at once."""
    qty, entry = D("62.409"), D("10415.17")
    wb = qty * entry / 125
    lp = liquidation_price(BTC, "long", qty, entry, wb)
    assert lp is not None and lp > entry
    assert is_liquidated("long", lp, entry)


@settings(max_examples=200, deadline=None)
@given(side=sides, qty=quantities, entry=prices, wb=st.decimals(min_value=D(0), max_value=D(10**7), places=2))
def test_bankruptcy_price_loses_exactly_the_wallet(side, qty, entry, wb):
    bp = bankruptcy_price(side, qty, entry, wb)
    if bp is None:
        assert side == "long" and wb >= qty * entry
        return
    # BP is a 28-digit quotient: the residue is a rounding error relative to the notional
    assert abs(margin_balance(side, qty, entry, wb, bp)) <= (wb + qty * entry + qty * bp) * D("1e-24")


# ---------------------------------------------------------------------------------------------
# liquidation trigger and fee


@pytest.mark.parametrize(
    "side, mark, expected",
    [
        ("long", D("18000.1"), False),
        ("long", D("18000"), True),
        ("long", D("17999.9"), True),
        ("short", D("17999.9"), False),
        ("short", D("18000"), True),
        ("short", D("18000.1"), True),
    ],
)
def test_is_liquidated(side, mark, expected):
    assert is_liquidated(side, D(18_000), mark) is expected


def test_liquidation_fee():
    assert liquidation_fee(BTC, D(2), D(18_000)) == D(540)  # 36,000 * 1.5 %
    assert liquidation_fee(BTC, D(2), D(18_000), cap=D(100)) == D(100)
    assert liquidation_fee(BTC, D(2), D(18_000), cap=D(-5)) == D(0)


# ---------------------------------------------------------------------------------------------
# funding


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def test_funding_times_are_0_8_16_utc():
    start = ms(2024, 3, 1, 7, 59, 59)
    end = ms(2024, 3, 2, 8, 0, 0)
    assert funding_times_between(start, end) == [
        ms(2024, 3, 1, 8),
        ms(2024, 3, 1, 16),
        ms(2024, 3, 2, 0),
        ms(2024, 3, 2, 8),
    ]


def test_funding_window_is_open_at_start_closed_at_end():
    t8 = ms(2024, 3, 1, 8)
    assert funding_times_between(t8, t8 + 1) == []
    assert funding_times_between(t8 - 1, t8) == [t8]
    assert funding_times_between(t8, t8) == []
    assert funding_times_between(t8 + 5, t8) == []


def test_consecutive_windows_partition_funding_times():
    cuts = [ms(2024, 1, 1), ms(2024, 1, 1, 8), ms(2024, 1, 1, 9, 30), ms(2024, 1, 2, 15, 59, 59), ms(2024, 1, 4)]
    pieces = [t for a, b in zip(cuts, cuts[1:]) for t in funding_times_between(a, b)]
    assert pieces == funding_times_between(cuts[0], cuts[-1])
    assert len(pieces) == 9  # 3 days of 00/08/16, the opening 00:00 excluded, closing 00:00 included


@pytest.mark.parametrize("hours, count", [(1, 24), (4, 6), (8, 3)])
def test_other_funding_intervals(hours, count):
    day = ms(2024, 5, 5)
    times = funding_times_between(day, day + 86_400_000, interval_hours=hours)
    assert len(times) == count
    assert all(t % (hours * 3_600_000) == 0 for t in times)


def test_funding_interval_must_divide_a_day():
    with pytest.raises(ValueError):
        funding_times_between(0, 10**9, interval_hours=5)


@settings(max_examples=200, deadline=None)
@given(
    side=sides,
    qty=quantities,
    mark=prices,
    rate=st.decimals(min_value=D("-0.003"), max_value=D("0.003"), places=6),
)
def test_funding_payment_matches_apply_funding(side, qty, mark, rate):
    position = new_position(
        position_id="p", account_id="a", symbol="BTCUSDT", side=side, leverage=10, now=0.0, opened_by="d"
    )
    position = apply_open_fill(position, qty, mark, D(0), 0.0).position
    _, credited = apply_funding(position, mark, rate, 1.0)
    assert funding_payment(side, qty, mark, rate) == credited
    if rate > 0:  # longs pay shorts
        assert (credited < 0) == (side == "long")


# ---------------------------------------------------------------------------------------------
# A futures profit table in the style of freqtrade's tests (tests/persistence/test_persistence.py
# ::test_calc_profit uses 30 ADA/USDT at 2.0 -> 2.1 with a 0.25 % fee on each leg; its long row
# gives 2.6925). Every row here is worked by hand in its comment:
#   realized = qty * dir * (exit - entry); fees = qty * (entry + exit) * fee_rate;
#   funding = Σ -dir * qty * mark * rate; net = realized - fees + funding;
#   margin = qty * entry / leverage; ROE = net / margin.

PROFIT_TABLE = [
    # side, lev, entry, exit, fundings (mark, rate), net, margin, roe
    # 3 - (0.15 + 0.1575) = 2.6925 (freqtrade's figure); 2.6925 / 60
    ("long", 1, "2.0", "2.1", [], "2.6925", "60", "0.044875"),
    # same PnL, a third of the margin
    ("long", 3, "2.0", "2.1", [], "2.6925", "20", "0.134625"),
    # -3 - 0.3075
    ("short", 1, "2.0", "2.1", [], "-3.3075", "60", "-0.055125"),
    ("short", 3, "2.0", "2.1", [], "-3.3075", "20", "-0.165375"),
    # long pays 30 * 2.05 * 0.0001 = 0.00615 twice: 2.6925 - 0.0123 = 2.6802; margin 12
    ("long", 5, "2.0", "2.1", [("2.05", "0.0001"), ("2.05", "0.0001")], "2.6802", "12", "0.22335"),
    # short receives the same: -3.3075 + 0.0123 = -3.2952
    ("short", 5, "2.0", "2.1", [("2.05", "0.0001"), ("2.05", "0.0001")], "-3.2952", "12", "-0.2746"),
    # winning short, negative rate: it pays 30 * 2.05 * 0.0003 = 0.01845; 3 - 0.3075 - 0.01845;
    # margin 63 / 10
    ("short", 10, "2.1", "2.0", [("2.05", "-0.0003")], "2.67405", "6.3", "0.4244523809523809523809523810"),
]


@pytest.mark.parametrize("side, leverage, entry, exit_, fundings, net, margin, roe", PROFIT_TABLE)
def test_futures_profit_table(side, leverage, entry, exit_, fundings, net, margin, roe):
    qty, fee_rate = D(30), D("0.0025")
    entry, exit_ = D(entry), D(exit_)
    position = new_position(
        position_id="p", account_id="a", symbol="ADAUSDT", side=side, leverage=leverage, now=0.0, opened_by="d"
    )
    opened = apply_open_fill(position, qty, entry, qty * entry * fee_rate, 0.0).position
    assert opened.margin == D(margin)
    for i, (mark, rate) in enumerate(fundings):
        opened, _ = apply_funding(opened, D(mark), D(rate), 1.0 + i)
    closed = apply_close_fill(opened, qty, exit_, qty * exit_ * fee_rate, 10.0).position
    assert closed.net_pnl == D(net)
    assert closed.margin == 0
    assert closed.net_pnl / D(margin) == D(roe)
