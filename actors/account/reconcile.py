"""A live account's reconciliation with its venue: the venue is the source of truth.

Run by the account actor before its first decision (the start gate: the account stays
``starting`` and decisions are answered 503 until it completes), every
``reconcile_interval_seconds``, after every user-stream reconnect and whenever its venue path
overflowed. One pass (:func:`reconcile`):

1. asks the venue for its positions, open orders (conditional ones included) and wallet;
2. settles every order open here that the venue no longer works, or whose fills the venue counts
   ahead of ours, by asking for it by client id (an order sent and never seen after its receive
   window is refused; one the venue dropped without a trace is cancelled here);
3. lists the orders working on the venue the account does not know (external: left alone);
4. closes every position gap with the venue's trades the account has not applied (trades of its
   own orders as those orders' fills, the rest as an ``external`` order's), and what no trade
   explains at the venue's entry price or the mark;
5. places again a stop-loss or take-profit the service set and the venue no longer works;
6. reads the venue's income records (fees, funding, realized PnL) for the live PnL view.

Each difference is a ``reconciliation.mismatch`` event with before and after. A periodic pass that
finds nothing costs the positions (weight 5) and the open orders of the symbols the account deals
in (1 each, 2 with Binance's algo orders); every ``INCOME_EVERY`` passes the wallet and the income
records too (35), on the first periodic pass and every ``FULL_SWEEP_EVERY`` passes after it every
symbol's open orders (80).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

from ..domain import reconcile as plan
from ..domain.book import Changes, marks_of
from ..domain.execution import ExecutionReport, VenueAccount, VenueIncomeState
from ..domain.filters import VenueReject
from ..domain.money import ZERO, fmt
from ..domain.orders import OrderRecord
from ..persistence.queries import orders_by_venue_id, symbol_fill_ids

if TYPE_CHECKING:
    from ..execution.live import LiveAdapter
    from .actor import AccountActor

log = logging.getLogger("actors.account.reconcile")

INCOME_EVERY = 5  # passes between two reads of the income records and the wallet (weight 30 + 5)
FULL_SWEEP_EVERY = 10  # periodic passes between two listings of every symbol's open orders (weight 80)
INCOME_PAGE = 1000  # records per read (the venues' maximum)
INCOME_PAGES = 20  # reads per pass at most (a long history is caught up over several passes)
_NEVER_ARRIVED = -2013


class ReconcileState:
    """What the actor keeps between passes."""

    def __init__(self, income_since: float) -> None:
        self.external: dict[str, dict[str, Any]] = {}  # client id -> the venue's order, as listed
        self.income_since = income_since
        self.income: Counter[str] = Counter()
        self.income_seen: set[str] = set()
        self.passes = 0
        self.mismatches = 0
        self.agreed_at: float | None = None
        self.view: plan.VenueView | None = None
        #: an order in flight whose outcome the venue cannot tell yet: when to ask again (epoch)
        self.ask_again_at: float | None = None


async def reconcile(actor: AccountActor, reason: str) -> int:
    """One pass; returns the number of differences found. Raises the venue's error (VenueIOError)
    when it cannot be asked: the caller keeps the account gated."""
    adapter: LiveAdapter = actor.adapter  # type: ignore[assignment]
    state = actor.reconciliation
    before_requests = Counter(adapter.client.stats.requests)
    changes = actor.changes()
    # the open orders of the symbols the account deals in (weight ~5 + 2 per symbol), and of every
    # symbol (weight 80: orders placed outside the service anywhere) on the first periodic pass
    # and every FULL_SWEEP_EVERY passes after: a start after a crash stays cheap and quick
    full = state.passes % FULL_SWEEP_EVERY == 1
    venue = await adapter.venue_account(None if full else plan.symbols_of_interest(changes),
                                        wallet=state.passes % INCOME_EVERY == 1)
    state.ask_again_at = None
    found = 0
    for order in changes.open_orders():  # too recent to be listed yet: the next pass asks
        if order.status == "PENDING_NEW" and (order.sent_at or 0) + plan.SETTLE_AFTER_SECONDS > venue.at:
            _ask_again(state, (order.sent_at or 0) + plan.SETTLE_AFTER_SECONDS)

    # 1-2. orders open here
    check = plan.check_orders(changes, venue, state.external)
    for order in check.settle:
        found += await settle(actor, changes, order, venue.at)
    # 3. orders working there that nobody here sent
    listed = {o.client_order_id: plan.order_brief(o) for o in check.external}
    for client_id, brief in listed.items():
        if client_id not in state.external:
            found += 1
            plan.mismatch(changes, "order.external", brief["symbol"],
                          "an order working on the venue that the service did not send: left alone", None, brief)
    if venue.order_symbols is None:
        state.external = listed
    else:  # only the symbols listed this time are known to be as they are
        state.external = {cid: o for cid, o in state.external.items() if o["symbol"] not in venue.order_symbols}
        state.external.update(listed)
    await actor.checkpoint(changes)

    # 4. positions
    in_flight = {o.symbol for o in changes.open_orders() if o.status == "PENDING_NEW"}
    for gap in plan.position_gaps(changes, venue):
        if gap.symbol in in_flight:
            continue  # an answer still on its way explains it, or the next pass sees the difference
        found += await _close_gap(actor, changes, gap, venue)
    await actor.checkpoint(changes)

    # 5. protection the service set and the venue no longer works
    for position, take_profit, stop_loss in plan.missing_protection(changes):
        found += 1
        missing = [name for name, level in (("stop-loss", stop_loss), ("take-profit", take_profit)) if level]
        plan.mismatch(changes, "protection.missing", position.symbol,
                      f"{' and '.join(missing)} not working on the venue: placed again",
                      {"stop_loss": fmt(stop_loss), "take_profit": fmt(take_profit)}, None)
        await actor.protect(changes, position, take_profit, stop_loss, decision_id=None)

    # 6. income
    if state.passes % INCOME_EVERY == 1:  # from the first periodic pass on, not at start
        for _ in range(INCOME_PAGES):
            records = await adapter.income(state.income_since)
            _add_income(state, records, adapter.local_time)
            if len(records) < INCOME_PAGE:
                break
    await actor.commit(changes)

    state.passes += 1
    state.mismatches += found
    now = actor.now()
    if found == 0:
        state.agreed_at = now
    requests = Counter(adapter.client.stats.requests)
    requests.subtract(before_requests)
    state.view = _view(actor, venue, state, now, {f"{e} {o}": n for (e, o), n in sorted(requests.items()) if n})
    if found:
        log.warning("account %s: reconciliation (%s) found %d difference(s) with the venue", actor.account_id,
                    reason, found)
    return found


async def settle(actor: AccountActor, changes: Changes, order: OrderRecord, at: float) -> int:
    """Ask the venue what became of ``order`` (as of ``at``, epoch) and apply it; 1 when that
    changed what the account knew. Raises VenueIOError when the venue cannot be asked."""
    adapter: LiveAdapter = actor.adapter  # type: ignore[assignment]
    reports = await adapter.settle_order(order.symbol, order.client_order_id, conditional=order.is_conditional)
    assert reports is not None
    before = plan.order_brief(order)
    if not reports:  # the venue does not know it
        if order.status == "PENDING_NEW":
            if (order.sent_at or 0) + adapter.horizon > at:
                # it may still arrive: asked again once it no longer can (a protective order is
                # not placed twice; the position waits that long at most)
                _ask_again(actor.reconciliation, (order.sent_at or 0) + adapter.horizon)
                return 0
            reports = [ExecutionReport(client_order_id=order.client_order_id, symbol=order.symbol,
                                       exec_type="REJECTED", status="REJECTED", reject=VenueReject(
                                           _NEVER_ARRIVED, "the venue never received the order"))]
        else:
            reports = [ExecutionReport(client_order_id=order.client_order_id, symbol=order.symbol,
                                       exec_type="CANCELED", status="CANCELED", reason="gone from the venue")]
    await actor.apply(changes, reports)
    after = changes.order(order.id) or order
    if after.status == order.status and after.filled_quantity == order.filled_quantity:
        return 0
    plan.mismatch(changes, "order.settled", order.symbol,
                  f"the venue's answer for {order.purpose} order {order.id}", before, plan.order_brief(after))
    return 1


async def _close_gap(actor: AccountActor, changes: Changes, gap: plan.PositionGap, venue: VenueAccount) -> int:
    adapter: LiveAdapter = actor.adapter  # type: ignore[assignment]
    symbol = gap.symbol
    since = gap.local.opened_at if gap.local is not None else venue.at - 7 * 86400
    trades = await adapter.trades(symbol, since)
    applied = await actor.ctx.persistence.call(symbol_fill_ids, actor.account_id, symbol, since - 60)
    applied |= changes.fill_ids
    fresh = [t for t in trades if t.fill_id not in applied]
    # trades of the account's own orders are those orders' fills
    own = {o.venue_order_id: o for o in changes.open_orders() if o.venue_order_id}
    unknown_ids = sorted({t.venue_order_id for t in fresh if t.venue_order_id not in own})
    for order in await actor.ctx.persistence.call(orders_by_venue_id, actor.account_id, unknown_ids):
        own.setdefault(order.venue_order_id or "", changes.order(order.id) or order)
    external = []
    for trade in fresh:
        order = own.get(trade.venue_order_id)
        if order is None:
            external.append(trade)
            continue
        if changes.order(order.id) is None:
            changes.put_order(order)  # a finished order of the account's own, back for its late fill
        await actor.apply(changes, plan.fill_reports(order, plan.moves_of([trade])))
    local = changes.open_position(symbol)
    here, there = plan.net_of(local), plan.net_of(gap.venue)
    moves = plan.moves_of(external)
    detail = f"{len(external)} venue trade(s) the service had not applied"
    if sum((m.delta for m in moves), ZERO) != there - here:
        quote = actor.ctx.market.quote(symbol)
        moves = plan.balancing_moves(plan.PositionGap(symbol, local, gap.venue),
                                     quote.mark_price if quote is not None else None, at=venue.at)
        detail = ("no venue trade explains the difference" if not external else
                  f"the venue's {len(external)} unapplied trade(s) do not add up to the difference") + \
            ": adopted at the venue's entry price, closed at the mark"
    for run in plan.segments(here, moves):
        quantity = sum((m.quantity for m in run), ZERO)
        order = plan.external_order(changes, symbol, run[0].side, quantity, position=changes.open_position(symbol),
                                    note=detail)
        if gap.venue is not None and gap.venue.leverage and not order.reduce_only:
            order = msgspec.structs.replace(order, leverage=gap.venue.leverage)
        changes.put_order(order)
        await actor.apply(changes, plan.fill_reports(order, run))
    if gap.local is None and gap.venue is not None and changes.open_position(symbol) is not None:
        await actor.ctx.market.acquire(symbol, actor.account_id)
    plan.mismatch(changes, gap.kind, symbol, detail, plan.position_brief(gap.local),
                  plan.position_brief(changes.open_position(symbol)))
    return 1


def _ask_again(state: ReconcileState, at: float) -> None:
    state.ask_again_at = at if state.ask_again_at is None else min(state.ask_again_at, at)


def _add_income(state: ReconcileState, records: list[VenueIncomeState], local_time: Callable[[int], float]) -> None:
    for record in records:
        if record.record_id in state.income_seen:
            continue
        state.income_seen.add(record.record_id)
        state.income[record.kind] += record.amount
        state.income_since = max(state.income_since, local_time(record.time_ms))


def _view(actor: AccountActor, venue: VenueAccount, state: ReconcileState, now: float,
          requests: dict[str, int]) -> plan.VenueView:
    mark_of = marks_of(actor.ctx.market)
    positions = []
    for p in venue.positions:
        mark = mark_of(p.symbol)
        unrealized = None if mark is None else plan.signed(p.quantity, p.side) * (mark - p.entry_price)
        positions.append({"symbol": p.symbol, "side": p.side, "quantity": fmt(p.quantity),
                          "entry_price": fmt(p.entry_price), "mark_price": fmt(mark),
                          "unrealized_pnl": fmt(unrealized), "leverage": p.leverage,
                          "liquidation_price": fmt(p.liquidation_price)})
    wallet = (fmt(venue.wallet_balance), fmt(venue.available_balance)) if venue.wallet_balance is not None else (
        (state.view.wallet_balance, state.view.available_balance) if state.view is not None else (None, None))
    return plan.VenueView(
        wallet_balance=wallet[0], available_balance=wallet[1],
        positions=positions, external_orders=list(state.external.values()),
        fees=fmt(-state.income.get("COMMISSION", Decimal(0))) or "0",
        funding=fmt(state.income.get("FUNDING_FEE", Decimal(0))) or "0",
        realized_pnl=fmt(state.income.get("REALIZED_PNL", Decimal(0))) or "0",
        income_since=state.income_since, reconciled_at=now, agreed_at=state.agreed_at, passes=state.passes,
        mismatches=state.mismatches, last_pass_requests=requests)


def next_delay(failures: int) -> float:
    """Seconds before a failed pass is tried again."""
    return min(30.0, 0.5 * math.pow(2, max(0, failures - 1)))
