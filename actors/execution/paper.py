"""The paper adapter: a simulated venue of its own for one account, on real market data.

It holds the account's working orders exactly where a live venue would — resting limit orders and
``closePosition`` take-profit / stop-loss triggers — registers them as price alarms with the
market-data actor, and when one fires (delivered to the account's mailbox, handed back here by
:meth:`PaperVenue.on_message`) executes it and answers with the reports a venue sends. It settles
funding at the venue's funding times and liquidates at the liquidation price, as the venue does.

Fills follow the paper model of DESIGN.md §5: market orders walk the current L2 book (liquidity
taken stays consumed for this account until the venue's book updates; a slippage cap leaves the
rest unfilled), the venue's filters and fee rates apply, and an order the venue would refuse is
refused with the venue's code.

In paper mode the account's committed book is the venue's position table: the simulated venue
reads it (never writes it). Its answers are local and immediate, so the account commits intent
and outcome together; until then they are provisional: :meth:`settle` makes them final (sending
the alarm changes to the market-data actor) or undoes them. The only client it holds is the
read-only market view: nothing here can write to an exchange.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, Protocol

import msgspec
import trio

from ..domain.alarms import Alarm
from ..domain.execution import (
    CancelIntent, ExecutionReport, FundingReport, OrderIntent, Report, TradeFill, VenueOrderState,
    VenuePositionState,
)
from ..domain.fills import BookWalk, consume, walk_book
from ..domain.filters import UNKNOWN_ORDER, VenueReject, check_leverage, check_min_notional, check_price, check_quantity
from ..domain.margin import bankruptcy_price, funding_times_between, is_liquidated, liquidation_fee
from ..domain.market import Instrument, Quote
from ..domain.money import ZERO, fmt
from ..domain.orders import OrderRecord
from ..domain.positions import Position, funding_payment
from ..domain.protection import is_crossed, trigger_direction
from ..messages import AlarmFired

PRICE_TYPES = {"MARK_PRICE": "mark", "CONTRACT_PRICE": "last"}


class MarketBoard(Protocol):
    """What the simulated venue reads of the market and how it sets its price alarms."""

    venue: str

    def quote(self, symbol: str) -> Quote | None: ...

    def instrument(self, symbol: str) -> Instrument | None: ...

    def settlement(self, symbol: str, funding_time_ms: int) -> tuple[Decimal, Decimal] | None: ...

    def funding_times(self, symbol: str, after_ms: int) -> list[int] | None: ...

    async def add_alarm(self, alarm: Alarm, *, check_now: bool = True) -> None: ...

    async def cancel_alarms(self, *alarm_ids: str) -> None: ...


class Working(msgspec.Struct, frozen=True, kw_only=True):
    """An order working on the simulated venue: a resting limit or a trigger."""

    intent: OrderIntent
    filled: Decimal = ZERO
    status: str = "NEW"

    @property
    def remaining(self) -> Decimal:
        return (self.intent.quantity or ZERO) - self.filled


_MISSING: Any = object()


class PaperVenue:
    """The simulated venue of one account (see the module docstring)."""

    is_paper = True
    write_ahead = False

    def connection(self) -> None:
        return None  # nothing leaves the process

    def __init__(self, account_id: str, market: MarketBoard, positions: Mapping[str, Position],
                 funded_until: Mapping[str, int], *, trigger_price: Literal["mark", "last"] = "mark",
                 latency: float = 0.0) -> None:
        self.account_id = account_id
        self.venue = market.venue
        self._market = market
        self._positions = positions
        self._funded_until = funded_until
        self._latency = latency
        self.interruptible = latency > 0  # an entry or exit waits its latency on the way
        self._working_type: Literal["MARK_PRICE", "CONTRACT_PRICE"] = (
            "CONTRACT_PRICE" if trigger_price == "last" else "MARK_PRICE")
        self._working: dict[str, Working] = {}  # by client order id
        # symbol -> (book identity, price -> quantity already taken by this account)
        self._consumed: dict[str, tuple[tuple[int, int], dict[Decimal, Decimal]]] = {}
        # provisional effects since the last settle: undo steps, alarm changes to send, symbols
        # touched (plain lists: most accounts are idle, and an empty set costs four times a list)
        self._undo: list[Callable[[], None]] = []
        self._saved: list[tuple[str, str]] = []
        #: alarms to register once committed, each with the quote it was checked against already
        #: (None: check it against the current quote when registered)
        self._alarm_adds: list[tuple[Alarm, Quote | None]] = []
        self._alarm_cancels: list[str] = []
        self._touched: list[str] = []

    # ------------------------------------------------------------------------------ protocol

    async def submit(self, intent: OrderIntent) -> Sequence[Report]:
        if self._latency > 0 and intent.purpose in ("entry", "exit"):
            # a decision's order on its way to the venue (cancellable: nothing happened yet);
            # close-all and protective orders follow at once
            await trio.sleep(self._latency)
        quote, instrument = self._market.quote(intent.symbol), self._market.instrument(intent.symbol)
        if quote is None or instrument is None:
            return [_rejected(intent, VenueReject(-1121, f"no market data for {intent.symbol}."))]
        if intent.type == "MARKET":
            return self._market_order(intent, quote, instrument)
        if intent.type == "LIMIT":
            return self._limit_order(intent, quote, instrument)
        return self._trigger_order(intent, quote)

    async def cancel(self, intent: CancelIntent) -> Sequence[Report]:
        working = self._working.get(intent.client_order_id)
        if working is None:
            return [ExecutionReport(client_order_id=intent.client_order_id, symbol=intent.symbol,
                                    exec_type="REJECTED", status="REJECTED",
                                    reject=VenueReject(UNKNOWN_ORDER, "Unknown order sent."))]
        self._remove(intent.client_order_id)
        return [_report(working.intent, "CANCELED", "CANCELED", working.filled, reason=intent.reason)]

    async def query(self, symbol: str, client_order_id: str, *, conditional: bool = False) -> VenueOrderState | None:
        working = self._working.get(client_order_id)
        return None if working is None else _state(working)

    async def open_orders(self) -> Sequence[VenueOrderState]:
        return [_state(w) for w in self._working.values()]

    async def positions(self) -> Sequence[VenuePositionState]:
        return [VenuePositionState(symbol=p.symbol, side=p.side, quantity=p.quantity, entry_price=p.entry_price,
                                   leverage=p.leverage, isolated_margin=p.margin,
                                   liquidation_price=p.liquidation_price)
                for p in self._positions.values() if p.is_open]

    async def on_message(self, message: Any) -> Sequence[Report]:
        if not isinstance(message, AlarmFired):
            return []
        if message.kind == "liquidation":
            position = self._positions.get(message.symbol)
            if position is None or position.id != message.ref or position.liquidation_price != message.threshold:
                return []  # stale: the position changed or closed since
            return self._liquidate(position, message.price)
        working = self._working.get(message.ref)
        if working is None or working.status not in ("NEW", "PARTIALLY_FILLED"):
            return []  # cancelled or filled since
        if message.kind == "limit":
            if working.intent.price != message.threshold:
                return []
            return self._match_resting(working)
        if working.intent.trigger_price != message.threshold:
            return []  # moved since
        return self._fire_trigger(working, message.price)

    async def poll(self, now: float) -> Sequence[Report]:
        """Funding at the funding times each open position lived through, and a safety net for
        alarms dropped under load: every trigger and liquidation level re-checked."""
        reports: list[Report] = [*self._funding(now)]
        for position in list(self._positions.values()):
            quote = self._market.quote(position.symbol)
            if quote is None or not position.is_open:
                continue
            mark = quote.mark_price
            if is_liquidated(position.side, position.liquidation_price, mark):
                reports += self._liquidate(position, mark)
                continue
            for purpose in ("stop_loss", "take_profit"):
                working = self._trigger_of(position, purpose)
                if working is None or working.intent.trigger_price is None:
                    continue
                price = _price_of(quote, PRICE_TYPES[working.intent.working_type])
                direction = trigger_direction(position.side, purpose)
                if price is not None and is_crossed(direction, working.intent.trigger_price, price):
                    reports += self._fire_trigger(working, price)
                    break
        return reports

    async def settle(self, committed: bool) -> None:
        if not committed:
            for undo in reversed(self._undo):
                undo()
        else:
            for symbol in sorted(set(self._touched)):
                self._refresh_liquidation_alarm(symbol)
            if self._alarm_cancels:
                await self._market.cancel_alarms(*self._alarm_cancels)
            for alarm, checked_on in self._alarm_adds:
                # checked against a quote that is still the current one: its crossing liquidity is
                # taken, the next price decides; a newer quote arrived meanwhile (while the commit
                # was made): it is checked now, or its price would slip past the alarm
                fresh = checked_on is None or self._market.quote(alarm.symbol) is not checked_on
                await self._market.add_alarm(alarm, check_now=fresh)
        self._undo.clear()
        self._saved.clear()
        self._alarm_adds.clear()
        self._alarm_cancels.clear()
        self._touched.clear()

    async def restore(self, orders: Sequence[OrderRecord]) -> None:
        """After a (re)start: the account's working orders and positions, back on the venue."""
        for order in orders:
            if order.type not in ("LIMIT", "STOP_MARKET", "TAKE_PROFIT_MARKET") or not order.is_open:
                continue
            intent = OrderIntent(
                order_id=order.id, client_order_id=order.client_order_id, symbol=order.symbol,
                side=order.side,  # type: ignore[arg-type]
                type=order.type,  # type: ignore[arg-type]
                purpose=order.purpose, quantity=order.quantity, price=order.price,
                trigger_price=order.trigger_price, reduce_only=order.reduce_only,
                close_position=order.is_protective, leverage=order.leverage,
                working_type=self._working_type,
            )
            working = Working(intent=intent, filled=order.filled_quantity, status=order.status)
            self._working[order.client_order_id] = working
            self._alarm_adds.append((self._alarm_for(working), None))
        self._touched.extend(p.symbol for p in self._positions.values())
        await self.settle(committed=True)

    # ------------------------------------------------------------------------------ orders

    def _market_order(self, intent: OrderIntent, quote: Quote, instrument: Instrument) -> list[Report]:
        assert intent.quantity is not None
        quantity = intent.quantity
        if intent.reduce_only:
            position = self._positions.get(intent.symbol)
            if position is None or _exit_side(position) != intent.side:
                return [_rejected(intent, VenueReject(-2022, "ReduceOnly Order is rejected."))]
            quantity = min(quantity, position.quantity)
        elif quantity > 0 and intent.leverage is not None:
            reject = check_leverage(instrument, intent.leverage, (self._held(intent.symbol) + quantity) * quote.mark_price)
            if reject is not None:
                return [_rejected(intent, reject)]
        reject = (check_quantity(instrument, quantity, market=True)
                  or check_min_notional(instrument, quantity, quote.mark_price, reduce_only=intent.reduce_only))
        if reject is not None:
            return [_rejected(intent, reject)]
        consumed = self._consumed_for(quote)
        walk = walk_book(quote.book, intent.side, quantity, consumed=consumed,
                         max_slippage_bps=intent.max_slippage_bps)
        if walk.filled == 0:
            reason = "slippage cap" if walk.stopped_by == "slippage_cap" else "no liquidity"
            return [_rejected(intent, VenueReject(-2020, f"Unable to fill ({reason})."))]
        consume(consumed, walk)
        reports: list[Report] = [_report(intent, "NEW", "NEW", ZERO)]
        reports += _trades(intent, walk, instrument.fees.taker, "taker", quantity, ZERO, trigger_price=None)
        if walk.filled < quantity:
            reports.append(_report(intent, "EXPIRED", "EXPIRED", walk.filled,
                                   reason=(walk.stopped_by or "unfilled").replace("_", " ")))
        self._touch(intent.symbol)
        return reports

    def _limit_order(self, intent: OrderIntent, quote: Quote, instrument: Instrument) -> list[Report]:
        """What crosses on arrival fills now (taker); the rest rests on the book."""
        assert intent.quantity is not None and intent.price is not None
        reject = None
        if not intent.reduce_only and intent.leverage is not None and intent.quantity > 0:
            reject = check_leverage(instrument, intent.leverage,
                                    (self._held(intent.symbol) + intent.quantity) * quote.mark_price)
        reject = reject or (check_price(instrument, intent.price, side=intent.side, mark=quote.mark_price)
                            or check_quantity(instrument, intent.quantity, market=False)
                            or check_min_notional(instrument, intent.quantity, intent.price,
                                                  reduce_only=intent.reduce_only))
        if reject is not None:
            return [_rejected(intent, reject)]
        reports: list[Report] = [_report(intent, "NEW", "NEW", ZERO)]
        consumed = self._consumed_for(quote)
        walk = walk_book(quote.book, intent.side, intent.quantity, consumed=consumed, limit_price=intent.price)
        filled = ZERO
        if walk.filled > 0:
            consume(consumed, walk)
            reports += _trades(intent, walk, instrument.fees.taker, "taker", intent.quantity, ZERO, trigger_price=None,
                               rests=True)
            filled = walk.filled
            self._touch(intent.symbol)
        if filled < intent.quantity:
            working = Working(intent=intent, filled=filled, status="PARTIALLY_FILLED" if filled else "NEW")
            self._put(intent.client_order_id, working)
            self._alarm_adds.append((self._alarm_for(working), quote))  # its crossing liquidity is taken
        return reports

    def _trigger_order(self, intent: OrderIntent, quote: Quote) -> list[Report]:
        """A ``closePosition`` take-profit / stop-loss: armed on the mark (or last) price."""
        assert intent.trigger_price is not None
        price = _price_of(quote, PRICE_TYPES[intent.working_type])
        direction = trigger_direction(_position_side(intent), intent.purpose)
        if price is not None and is_crossed(direction, intent.trigger_price, price):
            return [_rejected(intent, VenueReject(-2021, "Order would immediately trigger."))]
        working = Working(intent=intent)
        self._put(intent.client_order_id, working)
        self._alarm_adds.append((self._alarm_for(working), None))
        return [_report(intent, "NEW", "NEW", ZERO)]

    def _match_resting(self, working: Working) -> list[Report]:
        """A resting limit the book moved through: it fills at most the crossing size, as maker."""
        intent = working.intent
        quote, instrument = self._market.quote(intent.symbol), self._market.instrument(intent.symbol)
        if quote is None or instrument is None or intent.price is None:
            return []
        quantity = working.remaining
        if intent.reduce_only:
            position = self._positions.get(intent.symbol)
            if position is None or _exit_side(position) != intent.side:
                self._remove(intent.client_order_id)
                return [_report(intent, "EXPIRED", "EXPIRED", working.filled, reason="reduce-only order with no position",
                                reject=VenueReject(-2022, "ReduceOnly Order is rejected."))]
            quantity = min(quantity, position.quantity)
        consumed = self._consumed_for(quote)
        walk = walk_book(quote.book, intent.side, quantity, consumed=consumed, limit_price=intent.price)
        reports: list[Report] = []
        if walk.filled > 0:
            consume(consumed, walk)
            reports = _trades(intent, walk, instrument.fees.maker, "maker", intent.quantity or ZERO, working.filled,
                              trigger_price=None, rests=True)
            working = msgspec.structs.replace(working, filled=working.filled + walk.filled, status="PARTIALLY_FILLED")
            self._touch(intent.symbol)
        if working.remaining > 0:
            self._put(intent.client_order_id, working)
            self._alarm_adds.append((self._alarm_for(working), quote))
        else:
            self._remove(intent.client_order_id)
        return reports

    def _fire_trigger(self, working: Working, price: Decimal) -> list[Report]:
        """A take-profit or stop-loss fired: a market order walks the book at that moment (a gap
        fills worse than the trigger). If the book runs out, the trigger stays armed."""
        intent = working.intent
        quote, instrument = self._market.quote(intent.symbol), self._market.instrument(intent.symbol)
        position = self._positions.get(intent.symbol)
        if quote is None or instrument is None:
            return []
        if position is None or _exit_side(position) != intent.side:
            self._remove(intent.client_order_id)
            return [_report(intent, "EXPIRED", "EXPIRED", working.filled, reason="no position to close")]
        consumed = self._consumed_for(quote)
        walk = walk_book(quote.book, intent.side, position.quantity, consumed=consumed)
        if walk.filled == 0:
            self._alarm_adds.append((self._alarm_for(working), quote))
            return [_report(intent, "TRIGGERED", working.status, working.filled, trigger_price=intent.trigger_price,
                            reject=VenueReject(-2020, "Unable to fill (no liquidity)."))]
        consume(consumed, walk)
        closes_all = walk.filled >= position.quantity
        total = working.filled + position.quantity
        reports = _trades(intent, walk, instrument.fees.taker, "taker", total, working.filled,
                          trigger_price=intent.trigger_price, rests=True)
        self._touch(intent.symbol)
        if closes_all:
            self._remove(intent.client_order_id)
        else:
            working = msgspec.structs.replace(working, filled=working.filled + walk.filled, status="PARTIALLY_FILLED")
            self._put(intent.client_order_id, working)
            self._alarm_adds.append((self._alarm_for(working), quote))
        return reports

    def _liquidate(self, position: Position, mark: Decimal) -> list[Report]:
        """The venue closes the position at its bankruptcy price and takes the liquidation fee."""
        instrument = self._market.instrument(position.symbol)
        if instrument is None:
            return []
        price = bankruptcy_price(position.side, position.quantity, position.entry_price, position.margin)
        if price is None:
            return []
        fee = liquidation_fee(instrument, position.quantity, price)
        order_id = f"{position.id}:liquidation"
        self._touch(position.symbol)
        return [ExecutionReport(
            client_order_id=f"autoclose-{position.id}", symbol=position.symbol, exec_type="CALCULATED",
            status="FILLED", side=_exit_side(position), order_type="LIQUIDATION",
            cumulative_quantity=position.quantity, average_price=price, trigger_price=mark, bankruptcy_price=price,
            fill=TradeFill(fill_id=f"{order_id}.1", price=price, quantity=position.quantity, fee=fee,
                           liquidity="taker"),
        )]

    def _funding(self, now: float) -> list[Report]:
        """Funding for every funding time each open position lived through, once each: the
        account's ``funded_until`` (rebuilt from the database on a restart) says what was paid.

        The times are the venue's: those its mark-price messages announced and the market-data
        actor saw pass (``T`` / ``nextFundingTime``: 8 h, 4 h or 1 h apart, per symbol). Only
        where the marks announce nothing (the ``sim`` venue) is it the 8-hour grid of the clock.
        Mark and rate are those in force at the funding time when the market-data actor saw that
        settlement, else the current ones."""
        now_ms = int(now * 1000)
        reports: list[Report] = []
        for symbol, position in self._positions.items():
            if not position.is_open:
                continue
            start = max(self._funded_until.get(position.id, 0), int(position.opened_at * 1000))
            announced = self._market.funding_times(symbol, start)
            for funding_time in funding_times_between(start, now_ms) if announced is None else announced:
                settlement = self._market.settlement(symbol, funding_time)
                if settlement is None:
                    quote = self._market.quote(symbol)
                    if quote is None or quote.mark is None:
                        break  # no mark yet: paid on a later round, still for this funding time
                    settlement = (quote.mark.mark, quote.mark.funding_rate)
                mark, rate = settlement
                amount = funding_payment(position.side, position.quantity, mark, rate)
                reports.append(FundingReport(symbol=symbol, funding_time=funding_time, rate=rate, mark=mark,
                                             amount=amount))
        return reports

    # ------------------------------------------------------------------------------ helpers

    def _touch(self, symbol: str) -> None:
        if symbol not in self._touched:
            self._touched.append(symbol)

    def _held(self, symbol: str) -> Decimal:
        position = self._positions.get(symbol)
        return position.quantity if position is not None and position.is_open else ZERO

    def _trigger_of(self, position: Position, purpose: str) -> Working | None:
        for working in self._working.values():
            if working.intent.purpose == purpose and working.intent.symbol == position.symbol:
                return working
        return None

    def _alarm_for(self, working: Working) -> Alarm:
        intent = working.intent
        if intent.type == "LIMIT":
            assert intent.price is not None
            buy = intent.side == "BUY"  # a buy fills when the best ask comes down to its price
            return Alarm(alarm_id=intent.client_order_id, account_id=self.account_id, symbol=intent.symbol,
                         price_type="ask" if buy else "bid", direction="below" if buy else "above",
                         threshold=intent.price, kind="limit", ref=intent.client_order_id)
        assert intent.trigger_price is not None
        return Alarm(alarm_id=intent.client_order_id, account_id=self.account_id, symbol=intent.symbol,
                     price_type=PRICE_TYPES[intent.working_type],  # type: ignore[arg-type]
                     direction=trigger_direction(_position_side(intent), intent.purpose),
                     threshold=intent.trigger_price, kind=intent.purpose, ref=intent.client_order_id)

    def _refresh_liquidation_alarm(self, symbol: str) -> None:
        """After the account applied what this venue did: the position's liquidation level."""
        position = self._positions.get(symbol)
        if position is None or not position.is_open:
            self._alarm_cancels.append(f"{self.account_id}:{symbol}:liquidation")
            return
        alarm_id = f"{self.account_id}:{symbol}:liquidation"
        if position.liquidation_price is None:
            self._alarm_cancels.append(alarm_id)
            return
        self._alarm_adds.append((Alarm(
            alarm_id=alarm_id, account_id=self.account_id, symbol=symbol, price_type="mark",
            direction="below" if position.side == "long" else "above", threshold=position.liquidation_price,
            kind="liquidation", ref=position.id), None))

    def _consumed_for(self, quote: Quote) -> dict[Decimal, Decimal]:
        identity = (quote.book.venue_ms, quote.book.update_id)
        current = self._consumed.get(quote.symbol)
        self._save("consumed", quote.symbol, self._consumed)
        if current is None or current[0] != identity:
            current = (identity, {})
            self._consumed[quote.symbol] = current
        elif ("consumed-copy", quote.symbol) not in self._saved:
            self._saved.append(("consumed-copy", quote.symbol))
            current = (identity, dict(current[1]))  # the saved value keeps what was taken before
            self._consumed[quote.symbol] = current
        return current[1]

    def _put(self, client_order_id: str, working: Working) -> None:
        self._save("working", client_order_id, self._working)
        self._working[client_order_id] = working

    def _remove(self, client_order_id: str) -> None:
        self._save("working", client_order_id, self._working)
        self._working.pop(client_order_id, None)
        self._alarm_cancels.append(client_order_id)

    def _save(self, kind: str, key: str, table: dict[str, Any]) -> None:
        """Remember a value before its first provisional change, to undo it if not committed."""
        if (kind, key) in self._saved:
            return
        self._saved.append((kind, key))
        previous = table.get(key, _MISSING)
        if previous is _MISSING:
            self._undo.append(lambda: table.pop(key, None))
        else:
            self._undo.append(lambda: table.__setitem__(key, previous))


# ---------------------------------------------------------------------------------- reports


def _position_side(intent: OrderIntent) -> str:
    """The side of the position a closing order (a trigger) works against."""
    return "long" if intent.side == "SELL" else "short"


def _exit_side(position: Position) -> str:
    return "SELL" if position.side == "long" else "BUY"


def _price_of(quote: Quote, price_type: str) -> Decimal | None:
    if price_type == "mark":
        return quote.mark_price
    if price_type == "bid":
        return quote.book.best_bid
    if price_type == "ask":
        return quote.book.best_ask
    return quote.book.mid


def _report(intent: OrderIntent, exec_type: str, status: str, cumulative: Decimal, *, reason: str | None = None,
            reject: VenueReject | None = None, trigger_price: Decimal | None = None) -> ExecutionReport:
    return ExecutionReport(
        client_order_id=intent.client_order_id, symbol=intent.symbol, exec_type=exec_type,  # type: ignore[arg-type]
        status=status, side=intent.side, order_type=intent.type, cumulative_quantity=cumulative, reason=reason,
        reject=reject, trigger_price=trigger_price,
    )


def _rejected(intent: OrderIntent, reject: VenueReject) -> ExecutionReport:
    return _report(intent, "REJECTED", "REJECTED", ZERO, reject=reject)


def _trades(intent: OrderIntent, walk: BookWalk, rate: Decimal, liquidity: Literal["taker", "maker"],
            quantity: Decimal, filled_before: Decimal, *, trigger_price: Decimal | None,
            rests: bool = False) -> list[Report]:
    """One TRADE report per level the walk took. Fill ids are unique per match: a later match of
    the same order is numbered after the quantity it had filled before."""
    prefix = intent.order_id if filled_before == 0 else f"{intent.order_id}.after-{fmt(filled_before)}"
    reports: list[Report] = []
    cumulative = filled_before
    for index, leg in enumerate(walk.legs):
        cumulative += leg.quantity
        done = cumulative >= quantity
        reports.append(ExecutionReport(
            client_order_id=intent.client_order_id, symbol=intent.symbol, exec_type="TRADE",
            status="FILLED" if done else "PARTIALLY_FILLED", side=intent.side, order_type=intent.type,
            cumulative_quantity=cumulative, average_price=walk.vwap, trigger_price=trigger_price,
            fill=TradeFill(fill_id=f"{prefix}.{index + 1}", price=leg.price, quantity=leg.quantity,
                           fee=leg.price * leg.quantity * rate, liquidity=liquidity,
                           top_of_book_only=walk.top_of_book_only),
        ))
    return reports


def _state(working: Working) -> VenueOrderState:
    intent = working.intent
    return VenueOrderState(
        client_order_id=intent.client_order_id, symbol=intent.symbol, status=working.status, side=intent.side,
        order_type=intent.type, quantity=intent.quantity, filled_quantity=working.filled, price=intent.price,
        trigger_price=intent.trigger_price, reduce_only=intent.reduce_only, close_position=intent.close_position,
        conditional=intent.type in ("STOP_MARKET", "TAKE_PROFIT_MARKET"),
    )
