"""The ledger and the planner: pure, on an in-memory book.

What a venue's reports do to an account — fills to positions and balances, statuses that never
move back, a fill seen twice applied once, a liquidation adopted, funding settled once — and what
the planner makes of a decision (orders, client order ids, protection).
"""

from __future__ import annotations

import base64
import hashlib
import re
from decimal import Decimal

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from actors.domain import planner
from actors.domain.book import AccountBook, AccountConfig, Changes
from actors.domain.decisions import Decision
from actors.domain.events import OrderFilled, PositionLiquidated, TradeClosed, TradeOpened
from actors.domain.execution import ExecutionReport, FundingReport, TradeFill
from actors.domain.ledger import LedgerContext, apply_reports
from actors.domain.orders import CLIENT_ORDER_ID_PATTERN, OrderRecord, client_order_id, later_status
from actors.domain.risk import RiskLimits
from tests.domain.test_risk import instrument, quote

D = Decimal
NOW = 1_700_000_000.0
CTX = LedgerContext(account_id="acct", default_leverage=1, instrument_of=instrument, mark_of=lambda s: D("100"))


def book(default_leverage: int = 1) -> AccountBook:
    return AccountBook(AccountConfig(account_id="acct", venue="sim", default_leverage=default_leverage),
                       D("10000"), RiskLimits())


def entry(book_: AccountBook, order_id: str = "d1.entry", qty: str = "2") -> OrderRecord:
    return OrderRecord(id=order_id, account_id="acct", decision_id="d1", position_id="acct.d1", symbol="BTCUSDT",
                       side="BUY", type="MARKET", purpose="entry", reduce_only=False, quantity=D(qty),
                       status="PENDING_NEW", leverage=5, client_order_id=f"c-{order_id}", created_at=NOW,
                       updated_at=NOW)


def trade(cid: str, fill_id: str, price: str, qty: str, status: str, cumulative: str) -> ExecutionReport:
    return ExecutionReport(client_order_id=cid, symbol="BTCUSDT", exec_type="TRADE", status=status,
                           cumulative_quantity=D(cumulative),
                           fill=TradeFill(fill_id=fill_id, price=D(price), quantity=D(qty), fee=D("0.01"),
                                          liquidity="taker"))


def committed(b: AccountBook, changes: Changes) -> Changes:
    b.apply(changes)
    return Changes(b, NOW + 1)


def test_fills_open_a_position_and_move_the_balance_by_fees_only() -> None:
    b = book()
    changes = Changes(b, NOW)
    changes.put_order(entry(b))
    batch = apply_reports(changes, [
        ExecutionReport(client_order_id="c-d1.entry", symbol="BTCUSDT", exec_type="NEW", status="NEW"),
        trade("c-d1.entry", "f1", "100", "1.5", "PARTIALLY_FILLED", "1.5"),
        trade("c-d1.entry", "f2", "101", "0.5", "FILLED", "2"),
    ], CTX)
    (execution,) = batch.executions
    assert execution.order.status == "FILLED" and execution.order.filled_quantity == D("2")
    assert execution.avg_price == (D("100") * D("1.5") + D("101") * D("0.5")) / 2
    position = changes.position("BTCUSDT")
    assert position is not None and position.quantity == D("2") and position.leverage == 5
    assert changes.balance == D("10000") - D("0.02")
    types = [type(e).__name__ for e in changes.events]
    assert types == ["OrderPlaced", "OrderFilled", "TradeOpened", "PositionUpdated"]
    assert changes.order_times == [NOW]  # the venue took one account order


def test_a_fill_seen_twice_is_applied_once_and_a_late_report_never_moves_a_status_back() -> None:
    b = book()
    changes = Changes(b, NOW)
    changes.put_order(entry(b))
    apply_reports(changes, [trade("c-d1.entry", "f1", "100", "2", "FILLED", "2")], CTX)
    changes = committed(b, changes)
    batch = apply_reports(changes, [
        trade("c-d1.entry", "f1", "100", "2", "FILLED", "2"),  # the user stream repeats the REST answer
        ExecutionReport(client_order_id="c-d1.entry", symbol="BTCUSDT", exec_type="NEW", status="NEW"),
    ], CTX)
    assert b.positions["BTCUSDT"].quantity == D("2")
    assert changes.fills == [] and changes.realized == 0 and changes.fees == 0
    assert batch.executions[0].order.status == "FILLED"
    assert later_status("PARTIALLY_FILLED", "NEW") == "PARTIALLY_FILLED"
    assert later_status("CANCELED", "FILLED") == "CANCELED"


def test_reports_out_of_order_still_add_up() -> None:
    b = book()
    changes = Changes(b, NOW)
    changes.put_order(entry(b))
    apply_reports(changes, [
        trade("c-d1.entry", "f2", "101", "0.5", "FILLED", "2"),  # the last fill first
        trade("c-d1.entry", "f1", "100", "1.5", "PARTIALLY_FILLED", "1.5"),
        ExecutionReport(client_order_id="c-d1.entry", symbol="BTCUSDT", exec_type="NEW", status="NEW"),
    ], CTX)
    order = changes.order("d1.entry")
    assert order is not None and (order.status, order.filled_quantity) == ("FILLED", D("2"))
    assert changes.position("BTCUSDT").quantity == D("2")  # type: ignore[union-attr]


def exit_order(order_id: str, qty: str) -> OrderRecord:
    return OrderRecord(id=order_id, account_id="acct", decision_id=order_id.split(".")[0], position_id="acct.d1",
                       symbol="BTCUSDT", side="SELL", type="MARKET", purpose="exit", reduce_only=True,
                       quantity=D(qty), status="NEW", client_order_id=f"c-{order_id}", created_at=NOW, updated_at=NOW)


def test_a_position_id_is_never_given_to_a_second_position() -> None:
    """An entry planned as an add to a position that closes before it fills opens its decision's
    own position; a resting entry that fills on after its position closed opens one named after
    the fill. The closed position is never reopened under its id (its record and its protective
    orders' client ids stay its own)."""
    b = book()
    changes = Changes(b, NOW)
    changes.put_order(entry(b, qty="2"))
    apply_reports(changes, [trade("c-d1.entry", "f1", "100", "1", "PARTIALLY_FILLED", "1")], CTX)
    add = msgspec.structs.replace(entry(b, "d2.entry", qty="1"), decision_id="d2", position_id="acct.d1",
                                  client_order_id="c-d2.entry")
    changes.put_order(add)
    changes.put_order(exit_order("x1.exit", "1"))
    apply_reports(changes, [trade("c-x1.exit", "f2", "100", "1", "FILLED", "1")], CTX)
    changes = committed(b, changes)
    assert "BTCUSDT" not in b.positions  # acct.d1 closed

    apply_reports(changes, [trade("c-d2.entry", "f3", "101", "1", "FILLED", "1")], CTX)  # the add, late
    opened = changes.position("BTCUSDT")
    assert opened is not None and opened.is_open and opened.id == "acct.d2"
    assert [f.position_id for f in changes.fills] == ["acct.d2"]
    changes.put_order(msgspec.structs.replace(exit_order("x2.exit", "1"), position_id="acct.d2"))
    apply_reports(changes, [trade("c-x2.exit", "f4", "101", "1", "FILLED", "1")], CTX)
    changes = committed(b, changes)

    apply_reports(changes, [trade("c-d1.entry", "f5", "99", "1", "FILLED", "2")], CTX)  # the first entry fills on
    again = changes.position("BTCUSDT")
    assert again is not None and again.is_open and again.id == "acct.d1.f5"
    assert (changes.order("d1.entry") or entry(b)).filled_quantity == D("2")


def test_a_report_for_an_unknown_order_is_left_to_the_caller() -> None:
    b = book()
    changes = Changes(b, NOW)
    batch = apply_reports(changes, [trade("someone-elses", "f9", "100", "1", "FILLED", "1")], CTX)
    assert batch.executions == [] and [r.client_order_id for r in batch.unknown] == ["someone-elses"]
    assert changes.fills == []


def test_a_liquidation_is_adopted_as_the_positions_liquidation_order() -> None:
    b = book()
    changes = Changes(b, NOW)
    changes.put_order(entry(b, qty="1"))
    apply_reports(changes, [trade("c-d1.entry", "f1", "100", "1", "FILLED", "1")], CTX)
    changes = committed(b, changes)
    apply_reports(changes, [ExecutionReport(
        client_order_id="autoclose-xyz", symbol="BTCUSDT", exec_type="CALCULATED", status="FILLED",
        order_type="LIQUIDATION", trigger_price=D("80.3"), bankruptcy_price=D("80"),
        fill=TradeFill(fill_id="acct.d1:liquidation.1", price=D("80"), quantity=D("1"), fee=D("1"), liquidity="taker"),
    )], CTX)
    position = changes.position("BTCUSDT")
    assert position is not None and not position.is_open and position.close_reason == "liquidation"
    assert changes.order("acct.d1:liquidation") is not None
    liquidated = [e for e in changes.events if isinstance(e, PositionLiquidated)]
    assert [(e.mark, e.bankruptcy_price, e.fee) for e in liquidated] == [("80.3", "80", "1")]
    assert any(isinstance(e, TradeClosed) for e in changes.events)
    assert changes.realized == D("-20")


def test_funding_is_settled_once_per_funding_time() -> None:
    b = book()
    changes = Changes(b, NOW)
    changes.put_order(entry(b, qty="1"))
    apply_reports(changes, [trade("c-d1.entry", "f1", "100", "1", "FILLED", "1")], CTX)
    changes = committed(b, changes)
    report = FundingReport(symbol="BTCUSDT", funding_time=1_700_006_400_000, rate=D("0.0001"), mark=D("100"),
                           amount=D("-0.01"))
    apply_reports(changes, [report, report], CTX)
    assert changes.funding == D("-0.01") and len(changes.funding_payments) == 1
    changes = committed(b, changes)
    apply_reports(changes, [report], CTX)  # after a restart, the same funding time again
    assert changes.funding == 0 and changes.funding_payments == []


def test_client_order_ids_are_deterministic_and_within_the_venues_rule() -> None:
    ids = {client_order_id(f"acct-{a}", f"{d}.entry", "entry") for a in range(20) for d in range(50)}
    assert len(ids) == 1000
    assert all(CLIENT_ORDER_ID_PATTERN.match(i) and len(i) <= 36 for i in ids)
    assert client_order_id("a", "d.entry", "entry") == client_order_id("a", "d.entry", "entry")
    assert client_order_id("a", "p:stop_loss", "stop_loss", 1) != client_order_id("a", "p:stop_loss", "stop_loss", 0)
    assert re.match(r"^sl-[a-z2-7]{26}$", client_order_id("a", "p:stop_loss", "stop_loss"))


@given(st.text(max_size=40), st.text(max_size=40), st.integers(min_value=0, max_value=1_000))
def test_client_order_ids_never_change_between_versions(account: str, order: str, revision: int) -> None:
    """A restart finds its orders on the venue by recomputing their ids: whatever computes them,
    they stay the first 26 characters of the RFC 4648 base 32 of the SHA-256 (the ids written
    before the computation was rewritten without ``base64``)."""
    digest = hashlib.sha256(f"{account}\x1f{order}\x1f{revision}".encode()).digest()
    expected = "en-" + base64.b32encode(digest[:20]).decode()[:26].lower()
    assert client_order_id(account, order, "entry", revision) == expected
    assert client_order_id("acct-1", "d-42.entry", "entry") == "en-627ogk7piohekwzrrc63tw3y7k"


def test_the_planner_decides_the_leverage_once_and_sizes_on_the_step() -> None:
    b = book(default_leverage=7)
    changes = Changes(b, NOW)
    decision = Decision(decision_id="d1", symbol="BTCUSDT", action="open", side="long", notional=D("250.55"))
    market = planner.MarketContext(instrument=instrument(), quote=quote(received_at=NOW - 1), mark_of=lambda s: D("100"))
    verdict = planner.gate(changes, decision, market, planner.ServiceContext())
    assert verdict.accepted and verdict.leverage == 7
    leverage_check = next(c for c in verdict.checks if c.name == "leverage")
    assert leverage_check.detail["leverage"] == "7"
    planned = planner.plan_order(changes, decision, verdict, instrument(), quote(received_at=NOW - 1))
    assert isinstance(planned, planner.PlannedOrder)
    assert planned.order.quantity == D("2.505") and planned.order.leverage == 7  # 250.55 / 100, step 0.001
    assert planned.intent.client_order_id == client_order_id("acct", "d1.entry", "entry")
    assert planned.order.status == "PENDING_NEW"


def test_moving_protection_cancels_the_old_level_and_places_a_new_revision() -> None:
    b = book()
    changes = Changes(b, NOW)
    changes.put_order(entry(b, qty="1"))
    apply_reports(changes, [trade("c-d1.entry", "f1", "100", "1", "FILLED", "1")], CTX)
    changes = committed(b, changes)
    position = b.positions["BTCUSDT"]
    first = planner.plan_protection(changes, position, D("110"), D("90"), decision_id="d1")
    assert [p.order.purpose for p in first.orders] == ["stop_loss", "take_profit"] and first.cancels == []
    changes.put_position(first.position)
    for planned in first.orders:
        changes.put_order(msgspec.structs.replace(planned.order, status="NEW"))
    changes = committed(b, changes)
    moved = planner.plan_protection(changes, b.positions["BTCUSDT"], None, D("95"), decision_id=None)
    (cancel,) = moved.cancels
    (stop,) = moved.orders
    assert cancel.client_order_id == first.orders[0].order.client_order_id
    # a new order of its own: the replaced one keeps its row (and its late reports their order)
    assert stop.order.id == f"{first.orders[0].order.id}.2" and stop.order.revision == 1
    assert stop.order.client_order_id != cancel.client_order_id
    assert moved.position.stop_loss == D("95") and moved.position.take_profit == D("110")
    assert moved.position.protection_revision == 2
    changes.put_position(moved.position)
    changes.put_order(msgspec.structs.replace(stop.order, status="NEW"))
    changes = committed(b, changes)
    again = planner.plan_protection(changes, b.positions["BTCUSDT"], None, D("96"), decision_id=None)
    assert again.orders[0].order.id == f"{first.orders[0].order.id}.3"
    assert again.cancels[0].order_id == stop.order.id


def test_events_are_one_shape_per_type() -> None:
    assert OrderFilled.TYPE == "order.filled" and TradeOpened.TYPE == "trade.opened"
    assert set(OrderFilled.__struct_fields__) == {"order_id", "filled_quantity", "avg_price", "fee", "status",
                                                  "trigger_price"}
