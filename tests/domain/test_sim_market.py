"""The offline sim venue: seeded, plausible books on the venue's grid, marks and funding."""

from __future__ import annotations

from decimal import Decimal

from actors.domain.money import is_multiple
from actors.venues.sim import BTC_LADDER, SimMarket, next_funding_ms, sim_instrument

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def test_same_seed_same_market_and_another_seed_another() -> None:
    a, b, c = SimMarket(7, SYMBOLS), SimMarket(7, SYMBOLS), SimMarket(8, SYMBOLS)
    runs = [[m.step(1_000 * i, float(i)) for i in range(50)] for m in (a, b, c)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_books_are_deep_sorted_on_the_tick_and_step_grid() -> None:
    market = SimMarket(3, SYMBOLS)
    for i in range(200):
        for book, mark in market.step(1_700_000_000_000 + 250 * i, 1_700_000_000.0 + i / 4):
            f = sim_instrument(book.symbol).filters
            assert len(book.bids) >= 20 and len(book.asks) >= 20
            assert book.bids[0][0] < book.asks[0][0]  # never crossed
            assert [p for p, _ in book.bids] == sorted((p for p, _ in book.bids), reverse=True)
            assert [p for p, _ in book.asks] == sorted(p for p, _ in book.asks)
            for price, quantity in book.bids + book.asks:
                assert is_multiple(price, f.tick_size) and price > 0
                assert is_multiple(quantity, f.step_size) and quantity >= f.min_qty
            spread = (book.asks[0][0] - book.bids[0][0]) / book.mid
            assert spread < Decimal("0.001")  # a plausible spread
            assert abs(mark.mark - book.mid) / book.mid < Decimal("0.005")  # mark near the mid
            assert mark.next_funding_ms % (8 * 3600 * 1000) == 0


def test_the_walk_moves_but_stays_plausible() -> None:
    market = SimMarket(11, ("BTCUSDT",))
    mids = [market.step(i, float(i))[0][0].mid for i in range(2_000)]
    assert len(set(mids)) > 100
    assert all(Decimal("50000") < m < Decimal("90000") for m in mids)


def test_filters_and_fees_like_asterdex() -> None:
    btc = sim_instrument("BTCUSDT")
    assert btc.fees.maker == Decimal("0.0001") and btc.fees.taker == Decimal("0.00035")
    assert btc.filters.tick_size == Decimal("0.1") and btc.filters.step_size == Decimal("0.001")
    assert btc.filters.min_notional == Decimal("5")
    # maintenance-margin ladder: cum_n = floor_n * (mmr_n - mmr_n-1) + cum_n-1
    assert [b.cum for b in BTC_LADDER[:4]] == [Decimal("0"), Decimal("50"), Decimal("1300"), Decimal("46300")]


def test_next_funding_time_is_the_next_8h_boundary() -> None:
    eight = 8 * 3600 * 1000
    assert next_funding_ms(0) == eight
    assert next_funding_ms(eight - 1) == eight
    assert next_funding_ms(eight) == 2 * eight


def test_synthetic_symbols_give_a_venue_as_many_instruments_as_asked() -> None:
    from actors.venues.sim import synthetic_symbols

    symbols = synthetic_symbols(2_000)
    assert len(set(symbols)) == 2_000 and symbols[0] == "S00000USDT" and symbols[-1] == "S01999USDT"
    market = SimMarket(5, ("BTCUSDT", *symbols))
    stepped = market.step(1_700_000_000_000, 1_700_000_000.0)
    assert [book.symbol for book, _ in stepped] == ["BTCUSDT", *symbols]
    for book, mark in stepped[1:]:
        assert 9 < mark.mark < 101 and book.bids[0][0] < book.asks[0][0]
        assert sim_instrument(book.symbol).filters.min_notional == Decimal("5")
    try:
        SimMarket(5, ("NOPEUSDT",))
    except ValueError as exc:
        assert "NOPEUSDT" in str(exc) and "synthetic_symbols" in str(exc)
    else:
        raise AssertionError("an unknown symbol was accepted")
