"""Performance statistics of round trips and of an equity curve."""

from __future__ import annotations

from decimal import Decimal

from actors.domain.performance import max_drawdown, performance
from actors.domain.positions import Position, apply_close_fill, apply_funding, apply_open_fill, new_position

D = Decimal


def round_trip(
    pid: str, side: str, qty: str, entry: str, exit_: str, *, fee: str = "0", funding: str = "0"
) -> Position:
    """A closed position: one entry fill, optional funding credit, one exit fill (fee on each fill)."""
    position = new_position(
        position_id=pid, account_id="a", symbol="BTCUSDT", side=side, leverage=5, now=0.0, opened_by=pid
    )
    position = apply_open_fill(position, D(qty), D(entry), D(fee), 1.0).position
    if D(funding):
        # a rate that credits exactly ``funding`` at mark == entry
        rate = -D(funding) / (D(qty) * D(entry)) * (1 if side == "long" else -1)
        position, credited = apply_funding(position, D(entry), rate, 2.0)
        assert credited == D(funding)
    return apply_close_fill(position, D(qty), D(exit_), D(fee), 3.0).position


def test_trade_statistics():
    trades = [
        round_trip("w1", "long", "1", "100", "110", fee="1"),  # 10 - 2 = 8
        round_trip("w2", "short", "2", "50", "45", fee="0.5", funding="1"),  # 10 - 1 + 1 = 10
        round_trip("l1", "long", "1", "100", "96", fee="1"),  # -4 - 2 = -6
        round_trip("l2", "short", "1", "100", "101", funding="-1"),  # -1 - 0 - 1 = -2
        round_trip("be", "long", "1", "100", "102", fee="1"),  # 2 - 2 = 0: break-even
    ]
    assert [t.net_pnl for t in trades] == [D(8), D(10), D(-6), D(-2), D(0)]
    perf = performance(trades, [])
    assert (perf.trades, perf.wins, perf.losses, perf.breakeven) == (5, 2, 2, 1)
    assert perf.win_rate == D("0.4")
    assert perf.avg_win == D(9)
    assert perf.avg_loss == D(-4)
    assert perf.largest_win == D(10) and perf.largest_loss == D(-6)
    assert perf.gross_profit == D(18) and perf.gross_loss == D(8)
    assert perf.profit_factor == D("2.25")
    assert perf.realized_pnl == D(10 + 10 - 4 - 1 + 2)
    assert perf.total_fees == D(2 + 1 + 2 + 0 + 2)
    assert perf.total_funding == D(0)  # +1 and -1
    assert perf.net_pnl == D(10) == sum(t.net_pnl for t in trades)
    assert perf.expectancy == D(2)


def test_no_losses_means_no_profit_factor():
    perf = performance([round_trip("w", "long", "1", "100", "110")], [])
    assert perf.profit_factor is None
    assert perf.avg_loss is None and perf.largest_loss is None
    assert perf.win_rate == D(1)


def test_only_losses():
    perf = performance([round_trip("l", "short", "1", "100", "110", fee="1")], [])
    assert perf.profit_factor == D(0)
    assert perf.avg_win is None and perf.avg_loss == D(-12)
    assert perf.win_rate == D(0)


def test_no_trades():
    perf = performance([], [])
    assert perf.trades == 0 and perf.win_rate is None and perf.expectancy is None
    assert perf.net_pnl == 0 and perf.max_drawdown == 0 and perf.max_drawdown_pct == 0


def test_positions_that_are_not_closed_are_ignored():
    closed = round_trip("c", "long", "1", "100", "110")
    still_open = new_position(
        position_id="o", account_id="a", symbol="BTCUSDT", side="long", leverage=5, now=0.0, opened_by="o"
    )
    still_open = apply_open_fill(still_open, D(2), D(100), D(1), 1.0).position
    partly = apply_close_fill(still_open, D(1), D(150), D(1), 2.0).position  # realized 50, still open
    perf = performance([closed, still_open, partly], [])
    assert perf.trades == 1 and perf.net_pnl == D(10)


def test_max_drawdown_absolute_and_percent():
    curve = [(0.0, D(100)), (1.0, D(120)), (2.0, D(90)), (3.0, D(130)), (4.0, D(117)), (5.0, D(140))]
    dd = max_drawdown(curve)
    assert dd.amount == D(30)  # 120 -> 90
    assert dd.pct == D(25)  # 30 / 120
    assert (dd.peak_ts, dd.trough_ts) == (1.0, 2.0)
    perf = performance([], curve)
    assert perf.max_drawdown == D(30) and perf.max_drawdown_pct == D(25)
    assert (perf.max_drawdown_peak_ts, perf.max_drawdown_trough_ts) == (1.0, 2.0)


def test_largest_percent_and_largest_amount_can_come_from_different_peaks():
    curve = [(0.0, D(10)), (1.0, D(5)), (2.0, D(100)), (3.0, D(80)), (4.0, D(90))]
    dd = max_drawdown(curve)
    assert dd.amount == D(20)  # 100 -> 80
    assert dd.pct == D(50)  # 10 -> 5
    assert (dd.peak_ts, dd.trough_ts) == (2.0, 3.0)


def test_drawdown_points_are_taken_in_time_order():
    shuffled = [(3.0, D(130)), (0.0, D(100)), (2.0, D(90)), (1.0, D(120))]
    assert max_drawdown(shuffled).amount == D(30)


def test_rising_or_empty_curve_has_no_drawdown():
    for curve in ([], [(0.0, D(1))], [(0.0, D(1)), (1.0, D(2)), (2.0, D(2))]):
        dd = max_drawdown(curve)
        assert dd.amount == 0 and dd.pct == 0 and dd.peak_ts is None and dd.trough_ts is None


def test_drawdown_below_zero_equity_has_no_percent_from_a_non_positive_peak():
    dd = max_drawdown([(0.0, D(-10)), (1.0, D(-30))])
    assert dd.amount == D(20)
    assert dd.pct == 0
