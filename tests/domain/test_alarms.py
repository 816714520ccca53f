"""The price-alarm index: crossing rules, cancellation, replacement, compaction, a reference model."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.domain import alarms as alarms_module
from actors.domain.alarms import COMPACT_FLOOR, Alarm, AlarmIndex, is_crossed
from actors.tools.bench_alarms import measure_tick_cost

D = Decimal


def alarm(
    alarm_id: str,
    direction: str,
    threshold: str | int | Decimal,
    *,
    account: str = "acct-1",
    symbol: str = "BTCUSDT",
    price_type: str = "mark",
    kind: str = "take_profit",
) -> Alarm:
    return Alarm(
        alarm_id=alarm_id,
        account_id=account,
        symbol=symbol,
        price_type=price_type,
        direction=direction,
        threshold=D(threshold),
        kind=kind,
        ref=f"pos-{alarm_id}",
    )


def ids(alarms: list[Alarm]) -> list[str]:
    return [a.alarm_id for a in alarms]


def test_above_fires_at_or_above_and_in_ascending_order():
    index = AlarmIndex()
    for aid, threshold in [("a110", 110), ("a100", 100), ("a105", 105)]:
        index.add(alarm(aid, "above", threshold))
    a100 = index.get("a100")
    assert a100 is not None and a100.threshold == D(100)
    assert index.on_price("BTCUSDT", "mark", D("104.99")) == [a100]
    assert index.get("a100") is None
    assert ids(index.on_price("BTCUSDT", "mark", D(105))) == ["a105"]  # "at" the threshold fires
    assert index.on_price("BTCUSDT", "mark", D(105)) == []  # a fired alarm is gone
    assert ids(index.on_price("BTCUSDT", "mark", D(1000))) == ["a110"]
    assert len(index) == 0


def test_below_fires_at_or_below_and_in_descending_order():
    index = AlarmIndex()
    for aid, threshold in [("b90", 90), ("b95", 95), ("b80", 80)]:
        index.add(alarm(aid, "below", threshold, kind="stop_loss"))
    assert index.on_price("BTCUSDT", "mark", D("95.01")) == []
    assert ids(index.on_price("BTCUSDT", "mark", D(90))) == ["b95", "b90"]
    assert ids(index.on_price("BTCUSDT", "mark", D(1))) == ["b80"]


def test_a_tick_fires_only_the_crossed_side():
    index = AlarmIndex()
    index.add(alarm("tp", "above", 110))
    index.add(alarm("sl", "below", 90, kind="stop_loss"))
    assert index.on_price("BTCUSDT", "mark", D(100)) == []
    assert ids(index.on_price("BTCUSDT", "mark", D(111))) == ["tp"]
    assert ids(list(index)) == ["sl"]
    assert ids(index.on_price("BTCUSDT", "mark", D(89))) == ["sl"]


def test_symbols_and_price_types_are_separate():
    index = AlarmIndex()
    index.add(alarm("mark", "above", 100))
    index.add(alarm("last", "above", 100, price_type="last"))
    index.add(alarm("eth", "above", 100, symbol="ETHUSDT"))
    assert ids(index.on_price("BTCUSDT", "last", D(200))) == ["last"]
    assert ids(index.on_price("BTCUSDT", "bid", D(200))) == []
    assert ids(index.on_price("BTCUSDT", "mark", D(200))) == ["mark"]
    assert ids(index.on_price("ETHUSDT", "mark", D(200))) == ["eth"]
    assert index.on_price("SOLUSDT", "mark", D(200)) == []


def test_an_alarm_already_crossed_fires_on_the_next_tick():
    index = AlarmIndex()
    a = alarm("sl", "below", 100, kind="stop_loss")
    assert is_crossed(a, D(99)) and is_crossed(a, D(100)) and not is_crossed(a, D("100.01"))
    index.add(a)
    assert index.on_price("BTCUSDT", "mark", D(99)) == [a]


def test_cancel():
    index = AlarmIndex()
    index.add(alarm("a", "above", 100))
    index.add(alarm("b", "above", 101))
    assert index.cancel("a") is True
    assert index.cancel("a") is False
    assert index.cancel("never-added") is False
    assert "a" not in index and "b" in index
    assert ids(index.on_price("BTCUSDT", "mark", D(200))) == ["b"]
    assert index.cancel("b") is False  # fired alarms are no longer registered
    assert index.count_for("acct-1") == 0


def test_cancel_account():
    index = AlarmIndex()
    for i in range(5):
        index.add(alarm(f"x{i}", "above", 100 + i, account="x"))
    for i in range(3):
        index.add(alarm(f"y{i}", "below", 90 - i, account="y"))
    assert (index.count_for("x"), index.count_for("y")) == (5, 3)
    assert index.cancel_account("x") == 5
    assert index.cancel_account("x") == 0
    assert index.count_for("x") == 0 and index.count_for("y") == 3 and len(index) == 3
    assert index.on_price("BTCUSDT", "mark", D(1000)) == []
    assert ids(index.on_price("BTCUSDT", "mark", D(0))) == ["y0", "y1", "y2"]
    assert index.count_for("y") == 0
    assert index.alarms_for("y") == []


def test_duplicate_id_replaces_the_old_alarm():
    index = AlarmIndex()
    index.add(alarm("tp", "above", 100, account="a"))
    index.add(alarm("tp", "above", 120, account="b"))
    assert len(index) == 1
    assert (index.count_for("a"), index.count_for("b")) == (0, 1)
    assert index.on_price("BTCUSDT", "mark", D(110)) == []  # the old threshold is dead
    fired = index.on_price("BTCUSDT", "mark", D(120))
    assert [a.threshold for a in fired] == [D(120)]
    # replacing with another direction / symbol moves it too
    index.add(alarm("z", "above", 100))
    index.add(alarm("z", "below", 50, symbol="ETHUSDT"))
    assert index.on_price("BTCUSDT", "mark", D(200)) == []
    assert ids(index.on_price("ETHUSDT", "mark", D(40))) == ["z"]


def test_many_alarms_at_the_same_price_fire_together_in_insertion_order():
    index = AlarmIndex()
    for i in range(1000):
        index.add(alarm(f"a{i}", "above", 100, account=f"acct{i % 7}"))
    index.add(alarm("far", "above", 101))
    assert index.on_price("BTCUSDT", "mark", D("99.99")) == []
    fired = index.on_price("BTCUSDT", "mark", D(100))
    assert ids(fired) == [f"a{i}" for i in range(1000)]
    assert ids(list(index)) == ["far"]


def test_thresholds_closer_than_float_precision_are_told_apart():
    """The heap orders by float first: two thresholds with the same float must still fire exactly."""
    low, high = D("0.1"), D("0.1000000000000000000001")
    assert float(low) == float(high)
    index = AlarmIndex()
    index.add(alarm("high", "above", high))
    index.add(alarm("low", "above", low))
    index.add(alarm("b-low", "below", low))
    index.add(alarm("b-high", "below", high))
    assert ids(index.on_price("BTCUSDT", "mark", low)) == ["low", "b-high", "b-low"]
    assert ids(index.on_price("BTCUSDT", "mark", high)) == ["high"]


def test_equal_thresholds_in_different_notations_fire_in_insertion_order():
    index = AlarmIndex()
    index.add(alarm("first", "above", D("100.00")))
    index.add(alarm("second", "above", D("100")))
    index.add(alarm("third", "above", D("1E+2")))
    assert ids(index.on_price("BTCUSDT", "mark", D("100.0"))) == ["first", "second", "third"]


def test_invalid_alarms_are_refused():
    index = AlarmIndex()
    with pytest.raises(ValueError):
        index.add(alarm("a", "sideways", 100))
    with pytest.raises(ValueError):
        index.add(alarm("a", "above", 100, price_type="index"))
    with pytest.raises(ValueError):
        index.add(alarm("a", "above", D("NaN")))
    assert len(index) == 0


def test_compaction_keeps_storage_bounded_after_heavy_cancels():
    index = AlarmIndex()
    n = 20_000
    for i in range(n):
        index.add(alarm(f"a{i}", "above" if i % 2 else "below", 50_000 + i, account=f"acct{i % 100}"))
    assert index.storage_size == n
    for i in range(n - 10):
        assert index.cancel(f"a{i}")
    assert len(index) == 10
    # two heaps, each holding at most 2 * live + COMPACT_FLOOR entries
    assert index.storage_size <= 2 * (2 * 10 + COMPACT_FLOOR)
    fired = index.on_price("BTCUSDT", "mark", D(10**9))
    assert ids(fired) == [f"a{i}" for i in range(n - 10, n) if i % 2]


def test_storage_stays_bounded_under_add_cancel_churn():
    index = AlarmIndex()
    for i in range(100):
        index.add(alarm(f"keep{i}", "above", 10**6 + i))
    peak = 0
    for round_ in range(200):
        for j in range(50):
            index.add(alarm(f"tmp{round_}-{j}", "above", 1000 + j, account="churn"))
        assert index.cancel_account("churn") == 50
        for j in range(50):  # re-adding the same id replaces: garbage too
            index.add(alarm(f"keep{j}", "above", 10**6 + round_ + j))
        peak = max(peak, index.storage_size)
    assert len(index) == 100
    assert peak <= 2 * 100 + COMPACT_FLOOR + 50


def test_cancel_account_compacts():
    index = AlarmIndex()
    for i in range(5000):
        index.add(alarm(f"a{i}", "below", i, account="big"))
    index.add(alarm("small", "below", 1, account="small"))
    index.cancel_account("big")
    assert index.storage_size <= 2 * 1 + COMPACT_FLOOR
    assert ids(index.on_price("BTCUSDT", "mark", D(0))) == ["small"]


# ---------------------------------------------------------------------------------------------
# against a naive O(n) reference


class NaiveIndex:
    """Scans every alarm on every tick; order: above by (threshold, added), below by (-threshold, added)."""

    def __init__(self) -> None:
        self.alarms: dict[str, tuple[Alarm, int]] = {}
        self.seq = 0

    def add(self, a: Alarm) -> None:
        self.seq += 1
        self.alarms.pop(a.alarm_id, None)
        self.alarms[a.alarm_id] = (a, self.seq)

    def cancel(self, alarm_id: str) -> bool:
        return self.alarms.pop(alarm_id, None) is not None

    def cancel_account(self, account_id: str) -> int:
        doomed = [k for k, (a, _) in self.alarms.items() if a.account_id == account_id]
        for k in doomed:
            del self.alarms[k]
        return len(doomed)

    def on_price(self, symbol: str, price_type: str, price: Decimal) -> list[Alarm]:
        hits = [
            (a, seq)
            for a, seq in self.alarms.values()
            if a.symbol == symbol and a.price_type == price_type and is_crossed(a, price)
        ]
        above = sorted((h for h in hits if h[0].direction == "above"), key=lambda h: (h[0].threshold, h[1]))
        below = sorted((h for h in hits if h[0].direction == "below"), key=lambda h: (-h[0].threshold, h[1]))
        fired = [a for a, _ in above + below]
        for a in fired:
            del self.alarms[a.alarm_id]
        return fired

    def count_for(self, account_id: str) -> int:
        return sum(1 for a, _ in self.alarms.values() if a.account_id == account_id)


price_st = st.integers(min_value=90, max_value=110).map(D)
symbols = st.sampled_from(["BTCUSDT", "ETHUSDT"])
price_types = st.sampled_from(["mark", "last", "bid", "ask"])
accounts = st.sampled_from(["a", "b", "c"])
alarm_st = st.builds(
    Alarm,
    alarm_id=st.integers(min_value=0, max_value=30).map(lambda i: f"id{i}"),
    account_id=accounts,
    symbol=symbols,
    price_type=price_types,
    direction=st.sampled_from(["above", "below"]),
    threshold=price_st,
    kind=st.sampled_from(["take_profit", "stop_loss", "liquidation", "limit"]),
    ref=st.just("r"),
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), alarm_st),
        st.tuples(st.just("add"), alarm_st),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=30).map(lambda i: f"id{i}")),
        st.tuples(st.just("cancel_account"), accounts),
        st.tuples(st.just("tick"), st.tuples(symbols, price_types, price_st)),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(ops=ops)
def test_matches_the_naive_reference(ops):
    run_against_reference(ops)


@settings(max_examples=100, deadline=None)
@given(ops=ops)
def test_matches_the_naive_reference_when_compacting_eagerly(ops):
    """With no compaction floor every cancel may rebuild a heap: the rebuild must keep exactly
    the live entries."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(alarms_module, "COMPACT_FLOOR", 0)
        run_against_reference(ops)


def run_against_reference(ops) -> None:
    index, naive = AlarmIndex(), NaiveIndex()
    for op, arg in ops:
        if op == "add":
            index.add(arg)
            naive.add(arg)
        elif op == "cancel":
            assert index.cancel(arg) == naive.cancel(arg)
        elif op == "cancel_account":
            assert index.cancel_account(arg) == naive.cancel_account(arg)
        else:
            assert index.on_price(*arg) == naive.on_price(*arg)
        assert len(index) == len(naive.alarms)
        for account in ("a", "b", "c"):
            assert index.count_for(account) == naive.count_for(account)
    # whatever is left fires on extreme prices, exactly as in the reference
    for symbol in ("BTCUSDT", "ETHUSDT"):
        for price_type in ("mark", "last", "bid", "ask"):
            for price in (D(0), D(10**6)):
                assert index.on_price(symbol, price_type, price) == naive.on_price(symbol, price_type, price)
    assert len(index) == 0 and index.storage_size == 0


# ---------------------------------------------------------------------------------------------
# benchmark helper (timings are not asserted: only its shape and bookkeeping)


def test_measure_tick_cost_smoke():
    result = measure_tick_cost(3_000, 300, 2_000, baseline_alarms=100, repeats=1, gap=0.0, spread=0.002)
    assert result["n_alarms"] == 3_000 and result["baseline_alarms"] == 100
    assert result["fired"] > 0  # alarms packed near the price: the re-add path ran
    assert result["storage_size"] >= 3_000
    assert result["ticks_per_second"] > 0 and result["us_per_tick"] > 0
    assert result["ratio"] == pytest.approx(result["us_per_tick"] / result["baseline_us_per_tick"])
    assert result["ok"] is (result["ratio"] <= 2.0)
