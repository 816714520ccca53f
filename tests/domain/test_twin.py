"""The paper twin's figures (pure): signs, references, times, outcomes, the aggregate."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from actors.domain.decisions import Decision
from actors.domain.positions import new_position
from actors.domain.twin import (
    Fill, Outcome, TwinRequest, aggregate, compare, median, mirror_refusal, price_difference_bps, slippage_bps,
)
from actors.venues.sim import sim_instrument


def request(side: str = "BUY", reference: str = "100", received_at: float = 1000.0) -> TwinRequest:
    return TwinRequest(twin_of="lv", received_at=received_at, reference_price=D(reference), reference="decision",
                       order_id="d.entry", side=side, best_bid=D("99.9"), best_ask=D("100"), mark=D("100"),  # type: ignore[arg-type]
                       request="{}")


def filled(*fills: tuple[str, str, str, float], status: str = "filled") -> Outcome:
    return Outcome(status=status, rejection_code=None, venue_code=None,
                   fills=[Fill(D(p), D(q), D(fee), ts) for p, q, fee, ts in fills])


REJECTED = Outcome(status="rejected", rejection_code="VENUE_REJECTED", venue_code="-2019", fills=[])


@pytest.mark.parametrize(("side", "live", "paper", "expected"), [
    ("BUY", "100.10", "100.00", "9.99"),  # paper paid less: kinder, positive
    ("BUY", "100.00", "100.10", "-10"),  # paper paid more
    ("SELL", "99.90", "100.00", "10.0100"),  # paper received more: kinder
    ("SELL", "100.00", "99.90", "-10"),
])
def test_the_price_difference_is_positive_when_paper_was_kinder(side: str, live: str, paper: str, expected: str) -> None:
    assert price_difference_bps(side, D(live), D(paper)) == D(expected).quantize(D("0.0001"))


def test_slippage_is_against_the_reference_and_positive_when_worse() -> None:
    assert slippage_bps("BUY", D("100.05"), D("100")) == D("5.0000")
    assert slippage_bps("BUY", D("99.95"), D("100")) == D("-5.0000")
    assert slippage_bps("SELL", D("99.95"), D("100")) == D("5.0000")
    assert slippage_bps("SELL", D("100"), D("100")) == D("0")


def test_a_comparison_has_each_sides_average_fees_slippage_time_and_outcome() -> None:
    live = filled(("100.2", "0.5", "0.02", 1000.25), ("100.4", "0.5", "0.03", 1000.5))
    paper = filled(("100.0", "1", "0.04", 1000.01))
    c = compare("d", request(), live, paper)
    assert (c.live.avg_price, c.live.fees, c.live.filled_quantity) == (D("100.3"), D("0.05"), D("1"))
    assert (c.paper.avg_price, c.paper.fees) == (D("100.0"), D("0.04"))
    assert c.live.slippage_bps == D("30.0000") and c.paper.slippage_bps == D("0.0000")
    assert c.price_difference_bps == ((D("100.3") - D("100")) / D("100.3") * 10_000).quantize(D("0.0001"))
    assert c.fee_difference == D("0.01")
    assert (c.live.time_to_fill_seconds, c.paper.time_to_fill_seconds) == (0.5, 0.01)  # to the last fill
    assert c.same_outcome


def test_a_side_that_did_not_fill_has_no_price_figures_and_another_outcome() -> None:
    c = compare("d", request(), REJECTED, filled(("100", "1", "0.04", 1000.0)))
    assert c.live.avg_price is None and c.live.slippage_bps is None and c.live.time_to_fill_seconds is None
    assert (c.live.rejection_code, c.live.venue_code) == ("VENUE_REJECTED", "-2019")
    assert c.price_difference_bps is None and c.fee_difference == D("-0.04") and not c.same_outcome
    partially = compare("d", request(), filled(("100", "0.5", "0", 1000.0), status="partially_filled"),
                        filled(("100", "1", "0", 1000.0)))
    assert not partially.same_outcome and partially.price_difference_bps == D("0")


def test_the_aggregate_covers_every_decision() -> None:
    comparisons = [
        compare("a", request(), filled(("100.1", "1", "0.05", 1000.2)), filled(("100", "1", "0.04", 1000.0))),
        compare("b", request("SELL"), filled(("99.8", "1", "0.05", 1000.4)), filled(("100", "1", "0.04", 1000.0))),
        compare("c", request(), filled(("100", "1", "0.04", 1000.6)), filled(("100", "1", "0.04", 1000.0))),
        compare("d", request(), REJECTED, filled(("100", "1", "0.04", 1000.0))),
    ]
    differences = sorted(c.price_difference_bps for c in comparisons[:3])  # type: ignore[type-var]
    total = aggregate(comparisons)
    assert (total.decisions, total.compared, total.different_outcomes) == (4, 3, 1)
    assert total.mean_price_difference_bps == (sum(differences, D(0)) / 3).quantize(D("0.0001"))
    assert total.median_price_difference_bps == differences[1]
    assert (total.live_fees, total.paper_fees, total.fee_difference) == (D("0.14"), D("0.16"), D("-0.02"))
    assert total.mean_time_to_fill_live_seconds == 0.4  # (0.2 + 0.4 + 0.6) / 3: the rejected side has none
    assert total.mean_time_to_fill_paper_seconds == 0.0
    empty = aggregate([])
    assert (empty.decisions, empty.mean_price_difference_bps, empty.median_price_difference_bps) == (0, None, None)
    assert empty.mean_time_to_fill_live_seconds is None


def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    assert median([D("1"), D("2"), D("4"), D("10")]) == D("3.0000")
    assert median([D("1"), D("2"), D("4")]) == D("2")
    assert median([]) is None


def test_a_twin_whose_book_differs_refuses_what_it_cannot_do() -> None:
    instrument = sim_instrument("BTCUSDT")
    close = Decision(decision_id="c", symbol="BTCUSDT", action="close")
    open_long = Decision(decision_id="o", symbol="BTCUSDT", action="open", side="long", quantity=D("1"))
    short = new_position(position_id="p", account_id="lv-twin", symbol="BTCUSDT", side="short", leverage=5, now=0.0,
                         opened_by="x")
    refused = mirror_refusal(close, None, instrument)
    assert refused is not None and refused.code == "NO_POSITION" and "paper twin" in refused.message
    refused = mirror_refusal(open_long, short, instrument)
    assert refused is not None and refused.code == "OPPOSITE_POSITION"
    refused = mirror_refusal(open_long, None, None)
    assert refused is not None and refused.code == "UNKNOWN_SYMBOL"
    assert mirror_refusal(open_long, None, instrument) is None
    assert mirror_refusal(close, short, instrument) is None
