"""Reconciliation with a live venue, pure: where the account's records and the venue's disagree,
and the orders and fills that bring the records back to the venue's truth.

The venue is the source of truth. :mod:`actors.account.reconcile` asks it (positions, open orders,
trades) and applies what these functions plan, through the same ledger as every other report:

* an order open here that the venue no longer works, or whose fills the venue counts ahead of
  ours, is *settled*: the venue is asked for it by client id and its answer applied;
* an order working on the venue that the account does not know is *external*: listed, left alone;
* a position gap (the venue holds more, less, the other side, or nothing) is closed with the
  venue's own trades the account has not applied, as an ``external`` order's fills; what no trade
  explains (older than the venue keeps, or none at all) is adopted at the venue's entry price or
  closed at the mark, flagged, never guessed silently;
* a position the service opened whose stop-loss or take-profit is not working is protected again.

Every difference is a :class:`~actors.domain.events.ReconciliationMismatch` with before and after.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec

from .book import Changes
from .events import ReconciliationMismatch
from .execution import ExecutionReport, TradeFill, VenueAccount, VenueOrderState, VenuePositionState, VenueTradeState
from .money import ZERO, fmt
from .orders import OrderRecord, client_order_id
from .positions import Position

#: an order the venue does not list as open is asked about only once its answer had this long to
#: arrive (an order sent a moment ago may not be listed yet)
SETTLE_AFTER_SECONDS = 2.0


class VenueView(msgspec.Struct, kw_only=True):
    """The live account as its venue sees it, for inspection (``GET /v1/accounts/{id}``)."""

    wallet_balance: str | None
    available_balance: str | None
    positions: list[dict[str, Any]]
    external_orders: list[dict[str, Any]]
    fees: str  # from the venue's income records since the actor started reading them
    funding: str
    realized_pnl: str
    income_since: float
    reconciled_at: float  # the last pass that completed
    agreed_at: float | None  # the last pass that found nothing to change
    passes: int
    mismatches: int  # differences found since the actor started
    last_pass_requests: dict[str, int]  # endpoint -> requests made by the last pass


class OrderCheck(NamedTuple):
    settle: list[OrderRecord]  # to ask the venue about, by client id
    external: list[VenueOrderState]  # working on the venue, unknown here


class PositionGap(NamedTuple):
    symbol: str
    local: Position | None  # open here
    venue: VenuePositionState | None  # open there

    @property
    def kind(self) -> str:
        if self.local is None:
            return "position.unknown"  # opened outside the service
        if self.venue is None:
            return "position.closed_away"  # closed on the venue while the service did not see it
        if self.local.side != self.venue.side:
            return "position.side"
        return "position.quantity"


def check_orders(changes: Changes, venue: VenueAccount, known_client_ids: Iterable[str] = ()) -> OrderCheck:
    """Open orders here against open orders there (of the symbols listed)."""
    working = {o.client_order_id: o for o in venue.open_orders}
    settle = []
    for order in changes.open_orders():
        if venue.order_symbols is not None and order.symbol not in venue.order_symbols:
            continue  # not listed this time
        seen = working.get(order.client_order_id)
        if seen is None:
            if order.status != "PENDING_NEW" or (order.sent_at or 0) + SETTLE_AFTER_SECONDS <= venue.at:
                settle.append(order)
        elif order.status == "PENDING_NEW" or seen.filled_quantity > order.filled_quantity:
            settle.append(order)
    known = set(known_client_ids)
    external = [o for client_id, o in working.items()
                if changes.order_by_client(client_id) is None and client_id not in known]
    return OrderCheck(settle, external)


def position_gaps(changes: Changes, venue: VenueAccount) -> list[PositionGap]:
    there = {p.symbol: p for p in venue.positions if p.quantity > 0}
    here = {p.symbol: p for p in changes.open_positions()}
    gaps = []
    for symbol in sorted(set(there) | set(here)):
        local, remote = here.get(symbol), there.get(symbol)
        if local is not None and remote is not None and local.side == remote.side and local.quantity == remote.quantity:
            continue
        gaps.append(PositionGap(symbol, local, remote))
    return gaps


def unapplied_trades(trades: Iterable[VenueTradeState], applied_fill_ids: set[str],
                     own_order_ids: set[str]) -> list[VenueTradeState]:
    """The venue's trades the account has not applied and that no order of its own will report
    (those are settled with their order)."""
    return [t for t in trades if t.fill_id not in applied_fill_ids and t.venue_order_id not in own_order_ids]


def external_order(changes: Changes, symbol: str, side: str, quantity: Decimal, *, position: Position | None,
                   note: str) -> OrderRecord:
    """An order the account did not send: trades made outside the service (the venue's app, a
    liquidation no report told), or a difference no trade explains."""
    order_id = f"{symbol}:external:{int(changes.now * 1_000_000)}:{len(changes.orders)}"
    reduce_only = position is not None and position.is_open and position.side != ("long" if side == "BUY" else "short")
    return OrderRecord(
        id=order_id, account_id=changes.book.account_id, decision_id=None,
        position_id=position.id if position is not None and position.is_open else
        f"{changes.book.account_id}.{symbol}.external.{int(changes.now * 1000)}",
        symbol=symbol, side=side, type="MARKET", purpose="external", reduce_only=reduce_only, quantity=quantity,
        status="NEW", reject_message=note, client_order_id=client_order_id(changes.book.account_id, order_id, "external"),
        sent_at=changes.now, created_at=changes.now, updated_at=changes.now,
    )


class Move(NamedTuple):
    """One change of the venue's net quantity the account has not applied: a venue trade, or a
    balancing move no trade stands for (fee unknown: zero)."""

    fill_id: str
    side: str  # BUY | SELL
    quantity: Decimal
    price: Decimal
    fee: Decimal = ZERO
    fee_asset: str = "USDT"
    liquidity: str = "taker"
    venue_order_id: str | None = None
    time_ms: int = 0

    @property
    def delta(self) -> Decimal:
        return self.quantity if self.side == "BUY" else -self.quantity


def moves_of(trades: Iterable[VenueTradeState]) -> list[Move]:
    return [Move(t.fill_id, t.side, t.quantity, t.price, t.fee, t.fee_asset, t.liquidity, t.venue_order_id,
                 t.time_ms) for t in trades]


def balancing_moves(gap: PositionGap, mark: Decimal | None, *, at: float) -> list[Move]:
    """Moves no trade stands for, from the account's quantity to the venue's: what is closed goes
    at the mark (or the venue's entry price when no mark is known), what is opened at the venue's
    entry price."""
    here, there = net_of(gap.local), net_of(gap.venue)
    stamp = f"{gap.symbol}:balance:{int(at * 1000)}"
    entry = gap.venue.entry_price if gap.venue is not None else None
    close_price = mark or entry or (gap.local.entry_price if gap.local is not None else ZERO)
    moves = []
    if here != 0 and (there == 0 or (here > 0) != (there > 0)):  # close what is held here first
        moves.append(Move(f"{stamp}:close", "SELL" if here > 0 else "BUY", abs(here), close_price))
        here = ZERO
    difference = there - here
    if difference != 0:
        growing = abs(there) > abs(here)
        price = (entry if growing else close_price) or close_price
        moves.append(Move(f"{stamp}:{'open' if growing else 'reduce'}", "BUY" if difference > 0 else "SELL",
                          abs(difference), price))
    return moves


def segments(start: Decimal, moves: Iterable[Move]) -> list[list[Move]]:
    """``moves`` cut into runs that each only open (or add to) or only reduce the net quantity
    starting at ``start``; a move through zero is split in two (fee shared pro rata)."""
    runs: list[list[Move]] = []
    net = start
    kind: bool | None = None  # True: opening, False: reducing
    for move in moves:
        pending: Move | None = move
        while pending is not None:
            delta = pending.delta
            reducing = net != 0 and (net > 0) != (delta > 0)
            taken = pending
            pending = None
            if reducing and abs(delta) > abs(net):
                share = abs(net) / taken.quantity
                first = taken._replace(quantity=abs(net), fee=taken.fee * share)
                pending = taken._replace(fill_id=f"{taken.fill_id}:flip", quantity=taken.quantity - abs(net),
                                         fee=taken.fee - first.fee)
                taken = first
            if kind is None or kind != (not reducing) or not runs:
                runs.append([])
                kind = not reducing
            runs[-1].append(taken)
            net += taken.delta
    return runs


def fill_reports(order: OrderRecord, moves: Iterable[Move]) -> list[ExecutionReport]:
    reports = []
    cumulative = ZERO
    for move in moves:
        cumulative += move.quantity
        reports.append(ExecutionReport(
            client_order_id=order.client_order_id, symbol=order.symbol, exec_type="TRADE",
            status="FILLED" if order.quantity is not None and cumulative >= order.quantity else "PARTIALLY_FILLED",
            side=move.side,  # type: ignore[arg-type]
            order_type="MARKET", cumulative_quantity=cumulative,
            fill=TradeFill(fill_id=move.fill_id, price=move.price, quantity=move.quantity, fee=move.fee,
                           fee_asset=move.fee_asset, liquidity=move.liquidity),  # type: ignore[arg-type]
            venue_time_ms=move.time_ms, venue_order_id=move.venue_order_id))
    return reports


def signed(quantity: Decimal, side: str) -> Decimal:
    return quantity if side == "long" else -quantity


def net_of(position: Position | VenuePositionState | None) -> Decimal:
    """A position as a signed quantity (long positive, short negative; none zero)."""
    if position is None:
        return ZERO
    return signed(position.quantity, position.side)


def missing_protection(changes: Changes) -> list[tuple[Position, Decimal | None, Decimal | None]]:
    """Positions the service opened whose stop-loss or take-profit is set but not working:
    (position, take-profit to place, stop-loss to place)."""
    missing = []
    for position in changes.open_positions():
        if position.external:
            continue
        working = {o.purpose for o in changes.protective_orders(position.id)}
        take_profit = position.take_profit if "take_profit" not in working else None
        stop_loss = position.stop_loss if "stop_loss" not in working else None
        if take_profit is not None or stop_loss is not None:
            missing.append((position, take_profit, stop_loss))
    return missing


def mismatch(changes: Changes, kind: str, symbol: str | None, detail: str, before: dict[str, Any] | None,
             after: dict[str, Any] | None) -> None:
    changes.emit(ReconciliationMismatch(kind=kind, symbol=symbol, detail=detail, before=before, after=after))


def position_brief(position: Position | VenuePositionState | None) -> dict[str, Any] | None:
    if position is None or position.quantity == 0:
        return None
    return {"side": position.side, "quantity": fmt(position.quantity), "entry_price": fmt(position.entry_price)}


def order_brief(order: OrderRecord | VenueOrderState) -> dict[str, Any]:
    if isinstance(order, OrderRecord):
        return {"order_id": order.id, "symbol": order.symbol, "client_order_id": order.client_order_id,
                "status": order.status, "filled_quantity": fmt(order.filled_quantity)}
    return {"client_order_id": order.client_order_id, "symbol": order.symbol, "status": order.status,
            "type": order.order_type,
            "side": order.side, "quantity": fmt(order.quantity), "price": fmt(order.price),
            "trigger_price": fmt(order.trigger_price)}


def symbols_of_interest(changes: Changes, venue_positions: Iterable[VenuePositionState] = ()) -> set[str]:
    """The symbols a cheap pass lists open orders for: where the account holds a position or an
    order, here or on the venue."""
    symbols = {p.symbol for p in changes.open_positions()} | {o.symbol for o in changes.open_orders()}
    return symbols | {p.symbol for p in venue_positions if p.quantity > 0}
