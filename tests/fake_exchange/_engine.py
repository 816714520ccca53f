"""The fake's matching engine: orders against the scripted book, positions, fees, triggers.

Synchronous and single-threaded (trio runs one task at a time), so every REST call or scripting
call is atomic. Events go out through ``emit(account, event)`` in the order they happen.

Matching (documented choices where the venues say nothing):

* A taker order (MARKET, or the marketable part of a LIMIT) walks the opposite side of the
  fake's book, one trade per level, at the level's price, and consumes that liquidity. What the
  book cannot fill of a MARKET order expires (status EXPIRED, Binance ``er`` 9), like the
  venues' market orders; IOC remainders expire (``er`` 2).
* A resting LIMIT order is invisible in the book. When :meth:`Engine.book_changed` sees the new
  book cross it, it fills at its own price (maker fee), consuming the crossing levels.
* Contract price (``workingType=CONTRACT_PRICE``) is the last trade price: the mid of the book
  after each ``set_book``, then the price of each fill. Mark price is the scripted mark.
* Conditional orders (Aster's classic STOP/TAKE_PROFIT[_MARKET]) trigger on the rules of the
  venues' docs: STOP BUY when price >= stopPrice, SELL when <=; TAKE_PROFIT the reverse. A
  triggered order keeps its id and client id; its ``type`` becomes MARKET (LIMIT for STOP and
  TAKE_PROFIT) while ``origType`` keeps the conditional type, and an ORDER_TRADE_UPDATE with
  ``x=NEW`` announces it, followed by its fills.
* closePosition orders are "good till the position exists": when a position goes flat, its
  closePosition orders expire (Binance ``er`` 6, "GTE condition unsatisfied") and so do resting
  reduce-only LIMIT orders (``er`` 4). One triggering with nothing to close expires unfilled.
"""

from __future__ import annotations

import itertools
import random
import string
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import _margin as margin
from . import _payloads as payloads
from ._accounts import CONDITIONAL_TYPES, ZERO, Account, Income, Order, Trade
from ._errors import VenueError
from actors.tools.venue_market import Flavour, MarketState, SymbolMarket, SymbolSpec, wire
from ._validation import OrderRequest

if TYPE_CHECKING:
    from ._algo import AlgoService

Emit = Callable[[Account, dict[str, Any]], None]
_ALNUM = string.ascii_letters + string.digits


def should_trigger(order_type: str, side: str, stop: Decimal, price: Decimal) -> bool:
    """The venues' trigger rule for STOP* and TAKE_PROFIT* orders."""
    if order_type.startswith("STOP"):
        return price >= stop if side == "BUY" else price <= stop
    return price <= stop if side == "BUY" else price >= stop


class Engine:
    """Accounts, orders and positions of one fake venue."""

    def __init__(self, flavour: Flavour, state: MarketState, server_ms: Callable[[], int], emit: Emit) -> None:
        self.flavour: Flavour = flavour
        self.state = state
        self.server_ms = server_ms
        self.emit = emit
        self.accounts: dict[str, Account] = {}
        self.algos: AlgoService | None = None
        self.last_price: dict[str, Decimal] = {s: Decimal(m.mark) for s, m in state.markets.items()}
        self._order_ids = itertools.count(8_389_765_100_001)
        self._trade_ids = itertools.count(698_759_001)
        self._tran_ids = itertools.count(9_689_322_392)
        self.algo_ids = itertools.count(1_000_000_033_225_453)
        self._random = random.Random(1666)
        self._settling = False

    # -- lookups ----------------------------------------------------------------------------

    def spec(self, symbol: str) -> SymbolSpec:
        return self.state.specs[symbol]

    def market(self, symbol: str) -> SymbolMarket:
        return self.state.markets[symbol]

    def mark(self, symbol: str) -> Decimal:
        return Decimal(self.market(symbol).mark)

    def trigger_price(self, symbol: str, working_type: str) -> Decimal:
        return self.mark(symbol) if working_type == "MARK_PRICE" else self.last_price[symbol]

    def next_order_id(self) -> int:
        return next(self._order_ids)

    def new_client_id(self, prefix: str = "") -> str:
        """A venue-generated client order id (22 letters and digits, like the venues')."""
        return prefix + "".join(self._random.choice(_ALNUM) for _ in range(22 - len(prefix)))

    def reducible(self, account: Account, symbol: str, side: str) -> Decimal:
        """How much of the position an order on ``side`` can reduce (0 if it would increase)."""
        position = account.positions.get(symbol)
        if position is None or not position.amount:
            return ZERO
        if (position.amount > 0) == (side == "SELL"):
            return abs(position.amount)
        return ZERO

    def best_price(self, symbol: str, side: str) -> Decimal | None:
        """Best price a taker on ``side`` would hit (best ask for a BUY)."""
        m = self.market(symbol)
        levels = m.asks if side == "BUY" else m.bids
        return Decimal(levels[0][0]) if levels else None

    # -- placing ----------------------------------------------------------------------------

    def submit(self, account: Account, request: OrderRequest) -> tuple[Order, dict[str, Any]]:
        """Accept (or refuse with :class:`VenueError`) a classic order; returns it and its ACK body."""
        client_id = request.client_id or self.new_client_id()
        if any(o.client_id == client_id for o in account.open_orders()):
            # unique among open orders (docs); Binance's code, Aster shares the engine
            raise VenueError(-4116)
        self.check_against_market(account, request)
        if request.close_position:
            waiting = account.open_orders(request.symbol)
            self.check_single_close_position(
                ((o.symbol, o.side, o.orig_type) for o in waiting if o.close_position and not o.triggered), request
            )
        self._check_time_in_force(request)
        now = self.server_ms()
        order = Order(
            order_id=self.next_order_id(),
            client_id=client_id,
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            orig_type=request.type,
            time_in_force=request.time_in_force,
            quantity=request.quantity,
            price=request.price,
            stop_price=request.stop_price,
            reduce_only=request.reduce_only,
            close_position=request.close_position,
            working_type=request.working_type,
            price_protect=request.price_protect,
            time_ms=now,
            update_ms=now,
            triggered=request.type not in CONDITIONAL_TYPES,
        )
        ack = self.start(account, order)
        self.settle(order.symbol)
        return order, ack

    def start(self, account: Account, order: Order) -> dict[str, Any]:
        """Register ``order``, announce it (NEW), and work it; returns its body as accepted."""
        account.orders[order.order_id] = order
        self.emit_order_event(account, order, "NEW")
        ack = payloads.order_body(order, self.spec(order.symbol), self.flavour, "new")
        self.work(account, order)
        return ack

    def check_against_market(self, account: Account, request: OrderRequest) -> None:
        """PERCENT_PRICE, reduce-only direction, MIN_NOTIONAL, margin, max notional, immediate trigger."""
        spec, mark = self.spec(request.symbol), self.mark(request.symbol)
        conditional = request.type in CONDITIONAL_TYPES
        if request.price and mark:
            if request.price > mark * Decimal(spec.multiplier_up):
                raise VenueError(-4016)
            if request.price < mark * Decimal(spec.multiplier_down):
                raise VenueError(-4024)
        if request.type == "MARKET" and mark:
            best = self.best_price(request.symbol, request.side)
            if best is not None and not (
                mark * Decimal(spec.multiplier_down) <= best <= mark * Decimal(spec.multiplier_up)
            ):
                raise VenueError(-4131)
        if request.reduce_only and not self.reducible(account, request.symbol, request.side):
            raise VenueError(-2022)
        if conditional and should_trigger(
            request.type, request.side, request.stop_price, self.trigger_price(request.symbol, request.working_type)
        ):
            raise VenueError(-2021)
        if request.reduce_only or request.close_position:
            return
        reference = request.price or (request.stop_price if conditional else None)
        reference = reference or self.best_price(request.symbol, request.side) or mark
        min_reference = request.price or (request.stop_price if conditional else mark)
        if request.quantity * min_reference < Decimal(spec.min_notional):
            raise VenueError(
                -4164, f"Order's notional must be no smaller than {spec.min_notional} (unless you choose reduce only)"
            )
        if not conditional:
            self.check_margin(account, request.symbol, request.side, request.quantity, reference)

    def check_margin(self, account: Account, symbol: str, side: str, quantity: Decimal, price: Decimal) -> None:
        """-2019 when the initial margin of the increasing part exceeds the available balance."""
        increase = max(ZERO, quantity - self.reducible(account, symbol, side))
        if not increase:
            return
        config = account.config(symbol)
        position = account.positions.get(symbol)
        held = abs(position.amount) if position and self.reducible(account, symbol, side) == 0 else ZERO
        if (held + increase) * price > margin.max_notional(self.spec(symbol), config.leverage):
            raise VenueError(-2027)
        if increase * price / config.leverage > margin.available_balance(account):
            raise VenueError(-2019)

    @staticmethod
    def check_single_close_position(existing: Iterable[tuple[str, str, str]], request: OrderRequest) -> None:
        """-4130: one open closePosition stop and one take-profit per direction (observed on Binance)."""
        family = request.type.split("_")[0]
        for symbol, side, order_type in existing:
            if symbol == request.symbol and side == request.side and order_type.split("_")[0] == family:
                raise VenueError(-4130)

    def _check_time_in_force(self, request: OrderRequest) -> None:
        """Binance refuses FOK / post-only orders that cannot execute as asked (-5021 / -5022)."""
        if self.flavour != "binance" or request.type != "LIMIT":
            return
        if request.time_in_force == "GTX" and self._crosses(request.symbol, request.side, request.price):
            raise VenueError(-5022)
        if (
            request.time_in_force == "FOK"
            and self._fillable(request.symbol, request.side, request.price) < request.quantity
        ):
            raise VenueError(-5021)

    # -- working orders -----------------------------------------------------------------------

    def work(self, account: Account, order: Order) -> None:
        """Execute what can execute now; rest or expire the remainder as the order's type says."""
        if not order.triggered:
            return  # a conditional order waits for its trigger
        if order.type == "MARKET":
            self._take(account, order, limit=None)
            if order.is_open:
                self.expire(account, order, reason=9)
            return
        tif = order.time_in_force
        if tif == "GTX" and self._crosses(order.symbol, order.side, order.price):
            self.expire(account, order, reason=0)
            return
        if tif == "FOK" and self._fillable(order.symbol, order.side, order.price) < order.remaining:
            self.expire(account, order, reason=0)
            return
        self._take(account, order, limit=order.price)
        if order.is_open and tif in ("IOC", "FOK"):
            self.expire(account, order, reason=2)

    def _crosses(self, symbol: str, side: str, price: Decimal) -> bool:
        best = self.best_price(symbol, side)
        return best is not None and (best <= price if side == "BUY" else best >= price)

    def _fillable(self, symbol: str, side: str, limit: Decimal) -> Decimal:
        m = self.market(symbol)
        levels = m.asks if side == "BUY" else m.bids
        return sum(
            (Decimal(q) for p, q in levels if (Decimal(p) <= limit if side == "BUY" else Decimal(p) >= limit)), ZERO
        )

    def _take(self, account: Account, order: Order, limit: Decimal | None) -> None:
        """Fill ``order`` as taker against the book (up to ``limit``), consuming liquidity."""
        cap = order.remaining
        if order.reduce_only or order.close_position:
            cap = min(cap, self.reducible(account, order.symbol, order.side))
        fills = self._consume(order.symbol, order.side, cap, limit)
        trades = [self._fill(account, order, price, qty, maker=False) for price, qty in fills]
        self.after_fills(account, order.symbol, trades)

    def _consume(
        self, symbol: str, side: str, quantity: Decimal, limit: Decimal | None
    ) -> list[tuple[Decimal, Decimal]]:
        """Take up to ``quantity`` from the side a ``side`` taker hits: (price, qty) per level."""
        m = self.market(symbol)
        levels = m.asks if side == "BUY" else m.bids
        fills: list[tuple[Decimal, Decimal]] = []
        while quantity > 0 and levels:
            price, available = Decimal(levels[0][0]), Decimal(levels[0][1])
            if limit is not None and (price > limit if side == "BUY" else price < limit):
                break
            take = min(quantity, available)
            fills.append((price, take))
            quantity -= take
            if take == available:
                levels.pop(0)
            else:
                levels[0] = (levels[0][0], wire(available - take))
        if fills:
            m.update_id += 1
        return fills

    def book_changed(self, symbol: str) -> None:
        """The scripted book of ``symbol`` changed: new contract price, resting fills, triggers."""
        m = self.market(symbol)
        if m.bids and m.asks:
            self.last_price[symbol] = (Decimal(m.bids[0][0]) + Decimal(m.asks[0][0])) / 2
        elif m.bids or m.asks:
            self.last_price[symbol] = Decimal((m.bids or m.asks)[0][0])
        self._match_resting(symbol)
        self.settle(symbol)

    def mark_changed(self, symbol: str) -> None:
        self.settle(symbol)

    def _match_resting(self, symbol: str) -> None:
        resting = [
            (o.time_ms, o.order_id, account, o)
            for account in self.accounts.values()
            for o in account.open_orders(symbol)
            if o.triggered and o.type == "LIMIT"
        ]
        for _time, _id, account, order in sorted(resting, key=lambda item: (item[0], item[1])):
            cap = order.remaining
            if order.reduce_only:
                cap = min(cap, self.reducible(account, symbol, order.side))
            fills = self._consume(symbol, order.side, cap, order.price)
            quantity = sum((q for _p, q in fills), ZERO)
            if quantity:
                trade = self._fill(account, order, order.price, quantity, maker=True)
                self.after_fills(account, symbol, [trade])

    # -- fills and positions ------------------------------------------------------------------

    def _fill(self, account: Account, order: Order, price: Decimal, qty: Decimal, *, maker: bool) -> Trade:
        """Apply one fill to the order, the position and the wallet; announce it."""
        now = self.server_ms()
        config = account.config(order.symbol)
        position = account.position(order.symbol)
        signed = qty if order.side == "BUY" else -qty
        fee = ZERO if order.liquidation else price * qty * (account.maker_rate if maker else account.taker_rate)
        realized = ZERO
        closing = min(qty, abs(position.amount)) if position.amount and (position.amount > 0) != (signed > 0) else ZERO
        if closing:
            realized = closing * (price - position.entry_price) * position.side
            position.isolated_wallet -= position.isolated_wallet * closing / abs(position.amount)
            position.amount += closing if signed > 0 else -closing
            if not position.amount:
                position.entry_price = position.isolated_wallet = ZERO
        opening = qty - closing
        if opening:
            held = abs(position.amount)
            position.entry_price = (held * position.entry_price + opening * price) / (held + opening)
            position.amount += opening if signed > 0 else -opening
            if config.margin_type == "ISOLATED":
                position.isolated_wallet += opening * price / config.leverage
        position.realized += realized
        position.update_ms = account.update_ms = now
        account.wallet += realized - fee
        trade = Trade(
            next(self._trade_ids), order.order_id, order.symbol, order.side, price, qty, fee, realized, maker, now
        )
        account.trades.append(trade)
        if realized:
            self.add_income(account, order.symbol, "REALIZED_PNL", realized, trade.trade_id)
        if fee:
            self.add_income(account, order.symbol, "COMMISSION", -fee, trade.trade_id)
        order.executed_qty += qty
        order.cum_quote += price * qty
        order.update_ms = now
        order.status = "FILLED" if order.remaining <= 0 else "PARTIALLY_FILLED"
        self.last_price[order.symbol] = price
        spec = self.spec(order.symbol)
        if self.flavour == "binance":
            self.emit(account, payloads.trade_lite_event(order, spec, trade))
        self.emit_order_event(account, order, "CALCULATED" if order.liquidation else "TRADE", trade=trade)
        return trade

    def execute_at(self, account: Account, order: Order, price: Decimal) -> Trade:
        """Fill what remains of ``order`` at ``price`` outside the book (liquidation engine)."""
        trade = self._fill(account, order, price, order.remaining, maker=False)
        self.after_fills(account, order.symbol, [trade])
        return trade

    def add_income(
        self, account: Account, symbol: str, kind: str, amount: Decimal, trade_id: int | None = None
    ) -> Income:
        entry = Income(next(self._tran_ids), symbol, kind, amount, self.server_ms(), trade_id)
        account.income.append(entry)
        return entry

    def after_fills(self, account: Account, symbol: str, trades: list[Trade]) -> None:
        if not trades:
            return
        self.account_update(account, [symbol], "ORDER")
        for order in {t.order_id: account.orders[t.order_id] for t in trades}.values():
            if not order.is_open:
                self.finalized(account, order)
        if not account.position(symbol).amount:
            self.position_closed(account, symbol)

    def position_closed(self, account: Account, symbol: str) -> None:
        """The position went flat: closePosition orders and resting reduce-only orders expire."""
        for order in account.open_orders(symbol):
            if order.close_position and not order.triggered:
                self.expire(account, order, reason=6)
            elif order.reduce_only and order.triggered:
                self.expire(account, order, reason=4)
        if self.algos is not None:
            self.algos.position_closed(account, symbol)

    def account_update(self, account: Account, symbols: list[str], reason: str, balance_change: Decimal = ZERO) -> None:
        entries = []
        for symbol in symbols:
            position = account.position(symbol)
            upnl = margin.unrealized(position, self.mark(symbol))
            entries.append(payloads.position_event_entry(account, position, self.spec(symbol), self.flavour, upnl))
        event = payloads.account_update_event(
            account, reason, entries, at_ms=self.server_ms(), balance_change=balance_change
        )
        self.emit(account, event)

    # -- ending orders ------------------------------------------------------------------------

    def cancel(self, account: Account, order: Order) -> Order:
        """Cancel an open order (-2011 "Unknown order sent." when it is not open)."""
        if not order.is_open:
            raise VenueError(-2011)
        order.status = "CANCELED"
        order.update_ms = self.server_ms()
        self.emit_order_event(account, order, "CANCELED")
        self.finalized(account, order)
        return order

    def cancel_all(self, account: Account, symbol: str) -> int:
        orders = account.open_orders(symbol)
        for order in orders:
            self.cancel(account, order)
        return len(orders)

    def expire(self, account: Account, order: Order, *, reason: int) -> None:
        order.status = "EXPIRED"
        order.expiry_reason = reason
        order.update_ms = self.server_ms()
        self.emit_order_event(account, order, "EXPIRED")
        self.finalized(account, order)

    def finalized(self, account: Account, order: Order) -> None:
        if order.algo_id is not None and self.algos is not None:
            self.algos.child_finished(account, order)

    def emit_order_event(self, account: Account, order: Order, execution: str, trade: Trade | None = None) -> None:
        spec = self.spec(order.symbol)
        event = payloads.order_event(
            account, order, spec, self.flavour, execution=execution, at_ms=self.server_ms(), trade=trade
        )
        self.emit(account, event)

    # -- triggers -----------------------------------------------------------------------------

    def settle(self, symbol: str) -> None:
        """Trigger every conditional order whose condition holds, until none does."""
        if self._settling:
            return
        self._settling = True
        try:
            for _round in range(100):
                fired = self._trigger_classic(symbol)
                if self.algos is not None:
                    fired = self.algos.evaluate(symbol) or fired
                if not fired:
                    return
        finally:
            self._settling = False

    def price_protected(self, symbol: str, enabled: bool) -> bool:
        """priceProtect: no trigger while mark and contract price differ by more than triggerProtect."""
        if not enabled:
            return False
        mark, last = self.mark(symbol), self.last_price[symbol]
        return bool(mark) and abs(mark - last) / mark > Decimal("0.0500")

    def _trigger_classic(self, symbol: str) -> bool:
        waiting = [
            (o.time_ms, o.order_id, account, o)
            for account in self.accounts.values()
            for o in account.open_orders(symbol)
            if not o.triggered
        ]
        fired = False
        for _time, _id, account, order in sorted(waiting, key=lambda item: (item[0], item[1])):
            if not order.is_open or order.triggered:
                continue
            price = self.trigger_price(symbol, order.working_type)
            if should_trigger(order.orig_type, order.side, order.stop_price, price) and not self.price_protected(
                symbol, order.price_protect
            ):
                self._trigger(account, order)
                fired = True
        return fired

    def _trigger(self, account: Account, order: Order) -> None:
        reducible = self.reducible(account, order.symbol, order.side)
        if (order.close_position or order.reduce_only) and not reducible:
            self.expire(account, order, reason=6 if order.close_position else 0)
            return
        order.triggered = True
        order.type = "MARKET" if order.orig_type.endswith("MARKET") else "LIMIT"
        if order.close_position:
            order.close_size = reducible
        order.update_ms = self.server_ms()
        self.emit_order_event(account, order, "NEW")
        self.work(account, order)
