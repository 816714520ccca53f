"""Perpetual futures math for isolated, one-way positions (linear USDⓈ-M, contract multiplier 1).

Pure: no I/O, no clock. Every amount is a :class:`decimal.Decimal`; prices are passed in.

Notation used in the docstrings (as in the Binance liquidation-price FAQ):

* ``s``    direction: +1 long, -1 short
* ``q``    absolute position quantity (base units)
* ``e``    entry price
* ``WB``   isolated wallet balance = the position's isolated margin (+ any margin added by hand)
* ``MMR``  maintenance margin ratio of a bracket, ``cum`` its maintenance amount

Maintenance margin is ``MM(N) = N * MMR(N) - cum(N)`` for a notional ``N``. With the ``cum`` values
of :func:`default_brackets` (``cum_n = floor_n * (MMR_n - MMR_{n-1}) + cum_{n-1}``) this is a
continuous, convex, piecewise-linear function of ``N``: ``MM(N) = max_n (N * MMR_n - cum_n)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from .market import Instrument, LeverageBracket, Side
from .money import ZERO, to_decimal
from .positions import funding_payment as funding_payment  # the one rule lives with positions

MS_PER_HOUR = 3_600_000
INFINITY = Decimal("Infinity")

BracketRow = tuple[Decimal | int | str, int, Decimal | int | str]  # (notional_floor, initial_leverage, MMR)


def _direction(side: Side) -> int:
    if side == "long":
        return 1
    if side == "short":
        return -1
    raise ValueError(f"side must be 'long' or 'short', got {side!r}")


# --------------------------------------------------------------------------------------------
# Brackets and maintenance margin


def default_brackets(
    ladder: Iterable[BracketRow], *, last_cap: Decimal = INFINITY
) -> tuple[LeverageBracket, ...]:
    """Build a bracket table from ``(notional_floor, initial_leverage, maint_margin_ratio)`` rows.

    Each bracket's cap is the next row's floor (``last_cap`` for the last one) and its
    maintenance amount is, exactly::

        cum_1 = 0
        cum_n = floor_n * (MMR_n - MMR_{n-1}) + cum_{n-1}

    which makes the maintenance margin continuous across bracket boundaries. Floors must start at
    0 and increase strictly, ratios must lie in [0, 1) and never decrease, leverages be >= 1.
    """
    rows = [
        (to_decimal(floor, what="notional_floor"), int(leverage), to_decimal(mmr, what="maint_margin_ratio"))
        for floor, leverage, mmr in ladder
    ]
    if not rows:
        raise ValueError("a bracket ladder needs at least one row")
    if rows[0][0] != 0:
        raise ValueError("the first bracket must start at notional 0")
    brackets: list[LeverageBracket] = []
    previous_mmr = ZERO
    cum = ZERO
    for index, (floor, leverage, mmr) in enumerate(rows):
        if leverage < 1:
            raise ValueError(f"bracket {index + 1}: initial leverage must be >= 1")
        if not ZERO <= mmr < 1:
            raise ValueError(f"bracket {index + 1}: maintenance margin ratio must be in [0, 1)")
        if index > 0:
            if floor <= rows[index - 1][0]:
                raise ValueError(f"bracket {index + 1}: floors must increase strictly")
            if mmr < previous_mmr:
                raise ValueError(f"bracket {index + 1}: maintenance margin ratios must not decrease")
            cum = floor * (mmr - previous_mmr) + cum
        cap = rows[index + 1][0] if index + 1 < len(rows) else last_cap
        if cap <= floor:
            raise ValueError(f"bracket {index + 1}: cap must be above the floor")
        brackets.append(
            LeverageBracket(
                bracket=index + 1,
                initial_leverage=leverage,
                notional_floor=floor,
                notional_cap=cap,
                maint_margin_ratio=mmr,
                cum=cum,
            )
        )
        previous_mmr = mmr
    return tuple(brackets)


def maintenance_margin(instrument: Instrument, notional: Decimal) -> Decimal:
    """``MM = N * MMR(bracket(N)) - cum(bracket(N))`` for a position notional ``N`` (>= 0)."""
    bracket = instrument.bracket_for(notional)
    return notional * bracket.maint_margin_ratio - bracket.cum


def margin_balance(
    side: Side, quantity: Decimal, entry_price: Decimal, isolated_wallet: Decimal, mark: Decimal
) -> Decimal:
    """Isolated margin balance at ``mark``: ``WB + s * q * (mark - e)`` (wallet + unrealized PnL)."""
    return isolated_wallet + _direction(side) * quantity * (mark - entry_price)


# --------------------------------------------------------------------------------------------
# Liquidation and bankruptcy


def liquidation_price_in_bracket(
    side: Side,
    quantity: Decimal,
    entry_price: Decimal,
    isolated_wallet: Decimal,
    maint_margin_ratio: Decimal,
    cum: Decimal,
) -> Decimal:
    """The price where margin balance equals maintenance margin, for one given bracket.

    Solves ``WB + s*q*(LP - e) = q*LP*MMR - cum`` for ``LP``::

        LP = (WB + cum - s*q*e) / (q*MMR - s*q)

    (the Binance formula with the other-position terms at 0, as in isolated mode). The result may
    be <= 0 (a long that cannot be liquidated); :func:`liquidation_price` interprets it.
    """
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    s = _direction(side)
    denominator = quantity * maint_margin_ratio - s * quantity
    if denominator == 0:
        raise ValueError("a maintenance margin ratio of 1 leaves no liquidation price for a long")
    return (isolated_wallet + cum - s * quantity * entry_price) / denominator


def liquidation_price(
    instrument: Instrument,
    side: Side,
    quantity: Decimal,
    entry_price: Decimal,
    isolated_wallet: Decimal,
) -> Decimal | None:
    """Liquidation price of an isolated one-way position, or ``None`` if it cannot be liquidated.

    ``LP = (WB + cum - s*q*e) / (q*MMR - s*q)`` with ``MMR`` and ``cum`` taken from the bracket that
    holds the notional *at the liquidation price* (``q * LP``), as the Binance FAQ requires. We
    start from the bracket of the entry notional and, while ``q * LP`` falls in another bracket,
    recompute with that bracket.

    Convergence: ``MM`` is the maximum of the bracket lines, so every bracket's line lies at or
    under ``MM`` and (for a long) each recomputation moves ``LP`` up, never past the true root;
    for a short symmetrically down. The loop therefore ends within ``len(brackets)`` steps. A
    venue ladder whose ``cum`` values break that property falls back to scanning every bracket.

    Returns ``None`` when ``LP <= 0``: a long whose isolated wallet covers its entry notional
    (e.g. 1x) is not liquidated at any positive price. A short always has a positive ``LP``.
    A position whose wallet is already under maintenance at entry (leverage above what its bracket
    allows) gets an ``LP`` on the far side of the entry, so :func:`is_liquidated` holds at once.
    The price is not rounded to the tick; round it (up for longs, down for shorts) if needed.
    """
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    bracket = instrument.bracket_for(quantity * entry_price)
    price = ZERO
    for _ in range(len(instrument.brackets) + 1):
        price = liquidation_price_in_bracket(
            side, quantity, entry_price, isolated_wallet, bracket.maint_margin_ratio, bracket.cum
        )
        at_price = instrument.bracket_for(quantity * price)
        if at_price == bracket:
            break
        bracket = at_price
    else:  # only with a ladder whose cum values are not consistent (see _scan_brackets)
        price = _scan_brackets(instrument, side, quantity, entry_price, isolated_wallet)
    if price <= 0:
        return None
    return price


def _scan_brackets(
    instrument: Instrument, side: Side, quantity: Decimal, entry_price: Decimal, isolated_wallet: Decimal
) -> Decimal:
    """Fallback for a venue ladder on which the fixed point does not converge.

    Takes the candidate of every bracket, keeps those whose ``q * LP`` lies in their own bracket
    (all of them if none does) and returns the most conservative: the highest for a long, the
    lowest for a short.
    """
    candidates: list[Decimal] = []
    consistent: list[Decimal] = []
    for bracket in instrument.brackets:
        price = liquidation_price_in_bracket(
            side, quantity, entry_price, isolated_wallet, bracket.maint_margin_ratio, bracket.cum
        )
        candidates.append(price)
        if instrument.bracket_for(quantity * price) == bracket:
            consistent.append(price)
    pool = consistent or candidates
    return max(pool) if _direction(side) == 1 else min(pool)


def bankruptcy_price(side: Side, quantity: Decimal, entry_price: Decimal, isolated_wallet: Decimal) -> Decimal | None:
    """The price at which the isolated wallet is exactly lost: ``WB + s*q*(BP - e) = 0``::

        BP = e - s * WB / q

    Fees are not included. Returns ``None`` when ``BP <= 0`` (a long with ``WB >= q*e`` never goes
    bankrupt at a positive price).
    """
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    price = entry_price - _direction(side) * isolated_wallet / quantity
    if price <= 0:
        return None
    return price


def is_liquidated(side: Side, liquidation_price: Decimal | None, mark: Decimal) -> bool:
    """Whether ``mark`` has crossed the liquidation price: long ``mark <= LP``, short ``mark >= LP``.

    A position without a liquidation price (``None``) is never liquidated.
    """
    if liquidation_price is None:
        return False
    if _direction(side) == 1:
        return mark <= liquidation_price
    return mark >= liquidation_price


def liquidation_fee(
    instrument: Instrument, quantity: Decimal, price: Decimal, *, cap: Decimal | None = None
) -> Decimal:
    """Liquidation clearance fee: ``q * price * instrument.liquidation_fee_rate``.

    ``price`` is the price the position is closed at by the liquidation. With ``cap`` (e.g. the
    isolated margin left after the close), the fee is at most ``cap`` and never negative, the way
    a venue only takes what is left of an isolated position's margin.
    """
    fee = quantity * price * instrument.liquidation_fee_rate
    if cap is not None:
        fee = max(ZERO, min(fee, cap))
    return fee


# --------------------------------------------------------------------------------------------
# Funding


def funding_times_between(start_ms: int, end_ms: int, interval_hours: int = 8) -> list[int]:
    """Funding timestamps (epoch ms, venue clock) in the half-open window ``(start_ms, end_ms]``.

    Funding happens every ``interval_hours`` from 00:00 UTC (00:00/08:00/16:00 for 8 h). The window
    is open at the start and closed at the end, so consecutive windows ``(t0, t1]``, ``(t1, t2]``
    never count a funding time twice nor miss one. ``interval_hours`` must divide 24.
    """
    if interval_hours <= 0 or 24 % interval_hours != 0:
        raise ValueError("interval_hours must be a positive divisor of 24")
    if end_ms <= start_ms:
        return []
    step = interval_hours * MS_PER_HOUR
    first = (start_ms // step + 1) * step  # the first multiple of step strictly after start_ms
    return list(range(first, end_ms + 1, step))
