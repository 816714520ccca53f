"""Trading performance of an account: round trips, win rate, profit factor, drawdown.

Pure: the caller passes the closed positions and an equity curve; nothing is read or timed here.

Definitions (all amounts in the quote asset, as ``Decimal``):

* a trade is a round trip, i.e. one **closed** position; its result is ``net_pnl`` =
  realized PnL - fees + funding. ``net_pnl > 0`` is a win, ``< 0`` a loss, ``== 0`` break-even
  (counted in ``trades``, neither a win nor a loss);
* ``win_rate = wins / trades`` (a fraction in [0, 1]);
* ``avg_win`` = mean ``net_pnl`` of the wins (positive); ``avg_loss`` = mean ``net_pnl`` of the
  losses (negative, the sign is kept);
* ``profit_factor = gross_profit / gross_loss`` with ``gross_profit = Σ net_pnl of the wins`` and
  ``gross_loss = -Σ net_pnl of the losses``; ``None`` when there is no loss;
* ``expectancy = net_pnl / trades``;
* the drawdown at a point is ``running peak - equity``; ``max_drawdown`` is its largest value and
  ``max_drawdown_pct`` the largest ``(peak - equity) / peak * 100`` over points whose peak is
  positive. The two maxima are taken separately and may come from different peaks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

import msgspec

from .money import ZERO
from .positions import Position

HUNDRED = Decimal(100)

EquityPoint = tuple[float, Decimal]  # (timestamp, equity)


class Drawdown(msgspec.Struct, frozen=True, kw_only=True):
    """The largest peak-to-trough fall of an equity curve."""

    amount: Decimal = ZERO  # peak - trough, >= 0
    pct: Decimal = ZERO  # largest (peak - equity) / peak * 100 over positive peaks
    peak_ts: float | None = None  # where the largest absolute fall started
    trough_ts: float | None = None  # and where it bottomed


class Performance(msgspec.Struct, frozen=True, kw_only=True):
    trades: int
    wins: int
    losses: int
    breakeven: int
    win_rate: Decimal | None  # wins / trades, None without trades
    avg_win: Decimal | None
    avg_loss: Decimal | None  # negative
    largest_win: Decimal | None
    largest_loss: Decimal | None  # negative
    gross_profit: Decimal
    gross_loss: Decimal  # positive magnitude
    profit_factor: Decimal | None  # None when there is no loss
    expectancy: Decimal | None  # net_pnl / trades
    max_drawdown: Decimal
    max_drawdown_pct: Decimal
    max_drawdown_peak_ts: float | None
    max_drawdown_trough_ts: float | None
    realized_pnl: Decimal  # Σ realized, before fees and funding
    total_fees: Decimal  # Σ fees paid (positive = cost)
    total_funding: Decimal  # Σ funding received (negative = paid)
    net_pnl: Decimal  # realized_pnl - total_fees + total_funding


def max_drawdown(equity_curve: Iterable[EquityPoint]) -> Drawdown:
    """Largest fall of equity from a running peak, in quote units and in percent of the peak.

    Points are taken in timestamp order (a stable sort, so equal timestamps keep their order).
    """
    points = sorted(equity_curve, key=lambda point: point[0])
    if not points:
        return Drawdown()
    peak_ts, peak = points[0]
    best = Drawdown()
    best_amount = ZERO
    best_pct = ZERO
    for ts, equity in points:
        if equity > peak:
            peak, peak_ts = equity, ts
            continue
        fall = peak - equity
        if fall > best_amount:
            best_amount = fall
            best = Drawdown(amount=fall, peak_ts=peak_ts, trough_ts=ts)
        if peak > 0:
            best_pct = max(best_pct, fall / peak * HUNDRED)
    return msgspec.structs.replace(best, pct=best_pct)


def _mean(values: Sequence[Decimal]) -> Decimal | None:
    if not values:
        return None
    return sum(values, ZERO) / len(values)


def performance(closed_positions: Iterable[Position], equity_curve: Iterable[EquityPoint] = ()) -> Performance:
    """Performance of the closed positions (round trips) and of the equity curve.

    Positions whose status is not ``closed`` (still open, or failed before any fill) are not
    round trips and are ignored.
    """
    closed = [position for position in closed_positions if position.status == "closed"]
    results = [position.net_pnl for position in closed]
    wins = [pnl for pnl in results if pnl > 0]
    losses = [pnl for pnl in results if pnl < 0]
    gross_profit = sum(wins, ZERO)
    gross_loss = -sum(losses, ZERO)
    realized = sum((position.realized_pnl for position in closed), ZERO)
    fees = sum((position.fees for position in closed), ZERO)
    funding = sum((position.funding for position in closed), ZERO)
    net = realized - fees + funding
    trades = len(closed)
    drawdown = max_drawdown(equity_curve)
    return Performance(
        trades=trades,
        wins=len(wins),
        losses=len(losses),
        breakeven=trades - len(wins) - len(losses),
        win_rate=Decimal(len(wins)) / trades if trades else None,
        avg_win=_mean(wins),
        avg_loss=_mean(losses),
        largest_win=max(wins) if wins else None,
        largest_loss=min(losses) if losses else None,
        gross_profit=gross_profit,
        gross_loss=gross_loss,
        profit_factor=gross_profit / gross_loss if gross_loss else None,
        expectancy=net / trades if trades else None,
        max_drawdown=drawdown.amount,
        max_drawdown_pct=drawdown.pct,
        max_drawdown_peak_ts=drawdown.peak_ts,
        max_drawdown_trough_ts=drawdown.trough_ts,
        realized_pnl=realized,
        total_fees=fees,
        total_funding=funding,
        net_pnl=net,
    )
