"""The position lifecycle table and money invariants of positions.py under random fill sequences."""

from __future__ import annotations

from decimal import Decimal
from typing import get_args

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.domain.positions import (
    TRANSITIONS,
    IllegalTransition,
    Position,
    PositionEvent,
    PositionStatus,
    apply_close_fill,
    apply_funding,
    apply_open_fill,
    direction,
    fail_position,
    new_position,
    transition,
)

D = Decimal
STATUSES = get_args(PositionStatus)
EVENTS = get_args(PositionEvent)

# ---------------------------------------------------------------------------------------------
# lifecycle table


def test_the_table_only_uses_known_statuses_and_events():
    for (status, event), target in TRANSITIONS.items():
        assert status in STATUSES and event in EVENTS and target in STATUSES


ALL_PAIRS = [(status, event) for status in STATUSES for event in EVENTS]
ILLEGAL = [pair for pair in ALL_PAIRS if pair not in TRANSITIONS]


def test_pair_counts():
    assert len(ALL_PAIRS) == 36
    assert len(ILLEGAL) == 36 - len(TRANSITIONS) == 27


@pytest.mark.parametrize("status, event", ILLEGAL)
def test_every_illegal_transition_raises(status, event):
    with pytest.raises(IllegalTransition) as caught:
        transition(status, event)
    assert (caught.value.status, caught.value.event) == (status, event)
    assert repr(event) in str(caught.value) and repr(status) in str(caught.value)


@pytest.mark.parametrize("pair, target", sorted(TRANSITIONS.items()))
def test_every_legal_transition_goes_where_the_table_says(pair, target):
    assert transition(*pair) == target


@pytest.mark.parametrize("terminal", ["closed", "failed"])
def test_terminal_statuses_have_no_way_out(terminal):
    for event in EVENTS:
        with pytest.raises(IllegalTransition):
            transition(terminal, event)


def make_position(side: str = "long", leverage: int = 10) -> Position:
    return new_position(
        position_id="p", account_id="a", symbol="BTCUSDT", side=side, leverage=leverage, now=0.0, opened_by="d"
    )


def test_fill_functions_respect_the_table():
    created = make_position()
    opened = apply_open_fill(created, D(1), D(100), D(0), 1.0).position
    assert opened.status == "open"
    with pytest.raises(IllegalTransition):
        fail_position(opened, 2.0, "late reject")  # an open position cannot fail
    closed = apply_close_fill(opened, D(1), D(100), D(0), 2.0).position
    assert closed.status == "closed"
    with pytest.raises(IllegalTransition):
        apply_open_fill(closed, D(1), D(100), D(0), 3.0)  # no reuse of a closed position
    failed = fail_position(created, 1.0, "rejected")
    assert failed.status == "failed"
    with pytest.raises(IllegalTransition):
        apply_open_fill(failed, D(1), D(100), D(0), 3.0)
    closing = msgspec.structs.replace(opened, status="closing")
    with pytest.raises(IllegalTransition):
        apply_open_fill(closing, D(1), D(100), D(0), 3.0)  # no increase while closing


def test_flip_is_refused():
    opened = apply_open_fill(make_position(), D(1), D(100), D(0), 1.0).position
    with pytest.raises(ValueError):
        apply_close_fill(opened, D(2), D(100), D(0), 2.0)


# ---------------------------------------------------------------------------------------------
# money invariants under random sequences

# positions.py keeps an exact cost basis and rounds what is a quotient to 8 decimals: margins up
# on entry, pro-rata releases of margin down and of cost to nearest, the average entry to nearest.
# Cash identities are therefore exact; only valuations through the rounded average entry (equity
# at the mark) and the leverage of a partly reduced position carry a residue, below EPS.
P8 = D("1E-8")
EPS = D("1e-6")
SYMBOLS = ("BTCUSDT", "ETHUSDT")
START_BALANCE = D(1_000_000)
FEE_RATE = D("0.0004")

prices = st.decimals(min_value=D(100), max_value=D(100_000), places=1)
quantities = st.decimals(min_value=D("0.001"), max_value=D(10), places=3)
symbol_st = st.sampled_from(SYMBOLS)
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("open"), symbol_st, st.sampled_from(["long", "short"]), st.integers(1, 25), quantities, prices
        ),
        st.tuples(st.just("increase"), symbol_st, quantities, prices),
        st.tuples(st.just("reduce"), symbol_st, st.integers(1, 999), prices),
        st.tuples(st.just("close"), symbol_st, prices),
        st.tuples(st.just("move"), symbol_st, prices),
        st.tuples(st.just("funding"), symbol_st, st.decimals(min_value=D("-0.003"), max_value=D("0.003"), places=6)),
    ),
    max_size=40,
)


class Ledger:
    """The account as the service books it: cash moves only by PnL, fees and funding; margin is
    reserved from and released to ``available``. Kept independently of positions.py's fields."""

    def __init__(self) -> None:
        self.available = START_BALANCE
        self.open: dict[str, Position] = {}
        self.closed: list[Position] = []
        self.marks: dict[str, Decimal] = {symbol: D(1000) for symbol in SYMBOLS}
        # signed quantity and cash of every fill, for an equity computed without average entries
        self.net_qty: dict[str, Decimal] = {symbol: D(0) for symbol in SYMBOLS}
        self.cash = START_BALANCE  # start - Σ signed_qty * fill price - fees + funding
        self.entry_fills: dict[str, int] = {}
        self.exit_legs: dict[str, list[tuple[Decimal, Decimal]]] = {}
        self.fee_total = D(0)
        self.funding_total = D(0)

    def fill(self, symbol: str, signed_qty: Decimal, price: Decimal, fee: Decimal) -> None:
        self.net_qty[symbol] += signed_qty
        self.cash -= signed_qty * price + fee
        self.fee_total += fee
        self.marks[symbol] = price

    def apply(self, op: tuple) -> None:
        kind, symbol = op[0], op[1]
        position = self.open.get(symbol)
        if kind == "open":
            _, _, side, leverage, qty, price = op
            if position is not None:
                return
            fee = qty * price * FEE_RATE
            effect = apply_open_fill(
                new_position(position_id=f"p{len(self.closed)}-{symbol}", account_id="a", symbol=symbol,
                             side=side, leverage=leverage, now=0.0, opened_by="d"),
                qty, price, fee, 1.0,
            )
            assert effect.kind == "opened"
            self.available -= effect.margin_delta + fee
            self.fill(symbol, direction(side) * qty, price, fee)
            self.open[symbol] = effect.position
            self.entry_fills[symbol] = 1
            self.exit_legs[symbol] = []
        elif kind == "increase":
            _, _, qty, price = op
            if position is None:
                return
            fee = qty * price * FEE_RATE
            effect = apply_open_fill(position, qty, price, fee, 2.0)
            assert effect.kind == "increased"
            assert effect.margin_delta == (qty * price / position.leverage).quantize(P8, rounding="ROUND_UP")
            self.available -= effect.margin_delta + fee
            self.fill(symbol, direction(position.side) * qty, price, fee)
            self.open[symbol] = effect.position
            self.entry_fills[symbol] += 1
        elif kind in ("reduce", "close"):
            if position is None:
                return
            if kind == "reduce":
                _, _, permille, price = op
                qty = (position.quantity * permille / 1000).quantize(D("0.001"), rounding="ROUND_DOWN")
                if qty == 0 or qty >= position.quantity:
                    return
            else:
                _, _, price = op
                qty = position.quantity
            fee = qty * price * FEE_RATE
            effect = apply_close_fill(position, qty, price, fee, 3.0)
            released = position.cost if qty == position.quantity else (position.cost * qty / position.quantity).quantize(P8)
            assert effect.realized_pnl == direction(position.side) * (qty * price - released)
            self.available += -effect.margin_delta + effect.realized_pnl - fee
            self.fill(symbol, -direction(position.side) * qty, price, fee)
            self.exit_legs[symbol].append((qty, price))
            if effect.kind == "closed":
                self.check_round_trip(position, effect.position, symbol)
                del self.open[symbol]
                self.closed.append(effect.position)
            else:
                self.open[symbol] = effect.position
        elif kind == "move":
            self.marks[symbol] = op[2]
        elif kind == "funding":
            if position is None:
                return
            updated, credited = apply_funding(position, self.marks[symbol], op[2], 4.0)
            self.available += credited
            self.cash += credited
            self.funding_total += credited
            self.open[symbol] = updated

    def check_round_trip(self, before: Position, after: Position, symbol: str) -> None:
        assert after.status == "closed" and after.quantity == 0
        assert after.margin == 0  # margin released fully
        assert after.closed_at is not None
        legs = self.exit_legs[symbol]
        assert after.closed_quantity == sum(q for q, _ in legs)
        if self.entry_fills[symbol] == 1:
            # one entry fill: the realized PnL is exact, leg by leg and as a whole
            dir_ = direction(after.side)
            assert after.realized_pnl == sum(q * dir_ * (x - after.entry_price) for q, x in legs)
            if len(legs) == 1:
                qty, exit_price = legs[0]
                assert after.realized_pnl == qty * (exit_price - after.entry_price) * dir_
                assert after.exit_price == exit_price

    def check(self) -> None:
        positions = list(self.open.values()) + self.closed
        balance = (
            START_BALANCE
            + sum((p.realized_pnl for p in positions), D(0))
            - sum((p.fees for p in positions), D(0))
            + sum((p.funding for p in positions), D(0))
        )
        margin = sum((p.margin for p in self.open.values()), D(0))
        assert balance == self.available + margin, (balance, self.available, margin)
        assert sum((p.fees for p in positions), D(0)) == self.fee_total
        assert sum((p.funding for p in positions), D(0)) == self.funding_total
        unrealized = sum((p.unrealized_pnl(self.marks[p.symbol]) for p in self.open.values()), D(0))
        equity = balance + unrealized
        # equity from raw fills (no average entry price): cash + Σ net qty * mark
        by_fills = self.cash + sum((self.net_qty[s] * self.marks[s] for s in SYMBOLS), D(0))
        assert abs(equity - by_fills) <= EPS, (equity, by_fills)
        for position in self.open.values():
            assert position.quantity > 0 and position.margin > 0
            assert position.status == "open"
            assert direction(position.side) * position.quantity == self.net_qty[position.symbol]
            assert position.cost / position.margin <= position.leverage * (1 + EPS)
        for position in self.closed:
            assert position.quantity == 0 and position.margin == 0
        for symbol in SYMBOLS:
            if symbol not in self.open:
                assert self.net_qty[symbol] == 0


@settings(max_examples=200, deadline=None)
@given(ops=operations)
def test_money_invariants_hold_over_any_sequence(ops):
    ledger = Ledger()
    ledger.check()
    for op in ops:
        ledger.apply(op)
        ledger.check()
    for symbol in list(ledger.open):  # flatten everything: balance is all available again
        ledger.apply(("close", symbol, ledger.marks[symbol]))
        ledger.check()
    assert not ledger.open
    total = START_BALANCE + sum((p.net_pnl for p in ledger.closed), D(0))
    assert ledger.available == total


@settings(max_examples=200, deadline=None)
@given(
    side=st.sampled_from(["long", "short"]),
    leverage=st.integers(1, 25),
    qty=quantities,
    entry=prices,
    exit_=prices,
)
def test_round_trip_realized_pnl_is_exact(side, leverage, qty, entry, exit_):
    opened = apply_open_fill(make_position(side, leverage), qty, entry, D(0), 1.0)
    assert opened.margin_delta == (qty * entry / leverage).quantize(P8, rounding="ROUND_UP")
    closed = apply_close_fill(opened.position, qty, exit_, D(0), 2.0)
    assert closed.kind == "closed"
    assert closed.realized_pnl == closed.position.realized_pnl == qty * (exit_ - entry) * direction(side)
    assert closed.margin_delta == -opened.margin_delta
    assert closed.position.margin == 0


# ---------------------------------------------------------------------------------------------
# exact identities on small worked cases


def test_leverage_never_exceeds_the_position_leverage_exactly():
    opened = apply_open_fill(make_position("long", 3), D("0.001"), D(100), D(0), 1.0).position
    increased = apply_open_fill(opened, D("0.003"), D(100), D(0), 2.0).position
    # margins rounded up: 0.03333334 + 0.1 = 0.13333334 >= 0.4 / 3
    assert increased.notional_at_entry / increased.margin <= increased.leverage


def test_available_plus_margin_is_the_balance_exactly():
    """An account that reserves each fill's margin_delta (and pays its fee) from ``available``:
    two fills of 0.001 at 100 with 3x and a 4 bps fee: available + margin is the balance exactly."""
    position = make_position("long", 3)
    available = START_BALANCE
    for _ in range(2):
        fee = D("0.001") * D(100) * FEE_RATE
        effect = apply_open_fill(position, D("0.001"), D(100), fee, 1.0)
        position = effect.position
        available -= effect.margin_delta + fee
    balance = START_BALANCE - position.fees
    assert available + position.margin == balance
