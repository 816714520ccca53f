"""Binance's Algo Order API (conditional orders since 2025-12-09), as the fake models it.

Lifecycle (Binance's ``ALGO_UPDATE`` statuses) and the events of a trigger, in order::

    NEW -> TRIGGERING -> (child ORDER_TRADE_UPDATE NEW, its fills, ACCOUNT_UPDATE)
        -> TRIGGERED (ai = child orderId, act = MARKET / LIMIT) -> FINISHED (ap, aq of the child)

as in the recorded ``ALGO_UPDATE`` messages of a live STOP_MARKET (TRIGGERING, TRIGGERED with
``ap``/``aq`` still 0, then FINISHED). The child order is a classic order with a new orderId and
the algo's ``clientAlgoId`` as its client id. Other endings: CANCELED (``DELETE /algoOrder``),
EXPIRED (a closePosition order, whose time in force is ``GTE_GTC``, when its position goes flat
or when it triggers with nothing to close), REJECTED (at trigger: a reduce-only order with no
position to reduce, with ``CONDITIONAL_ORDER_TRIGGER_REJECT`` "ReduceOnly Order is rejected." and
``rm`` "Reduce Only reject"; or margin insufficient for an opening order).

Placement checks are the classic ones (``-2021`` if it would trigger at once, ``-2022``,
``-4164``), plus ``-4130`` for a second closePosition order of the same type and direction.
The trigger price is not held to the tick size (observed on Binance's testnet).
"""

from __future__ import annotations

from decimal import Decimal

from . import _payloads as payloads
from ._accounts import Account, AlgoOrder, Order
from ._engine import Engine, should_trigger
from ._errors import VenueError
from ._validation import OrderRequest


class AlgoService:
    """The algo orders of every account of a Binance-flavoured fake."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        engine.algos = self

    def submit(self, account: Account, request: OrderRequest) -> AlgoOrder:
        engine = self.engine
        client_algo_id = request.client_id or engine.new_client_id()
        if any(a.client_algo_id == client_algo_id for a in account.open_algo_orders()):
            raise VenueError(-4116)
        engine.check_against_market(account, request)
        if request.close_position:
            engine.check_single_close_position(
                (
                    (a.symbol, a.side, a.order_type)
                    for a in account.open_algo_orders(request.symbol)
                    if a.close_position
                ),
                request,
            )
        now = engine.server_ms()
        algo = AlgoOrder(
            algo_id=next(engine.algo_ids),
            client_algo_id=client_algo_id,
            symbol=request.symbol,
            side=request.side,
            order_type=request.type,
            time_in_force=request.time_in_force,
            quantity=request.quantity,
            trigger_price=request.stop_price,
            price=request.price,
            working_type=request.working_type,
            price_protect=request.price_protect,
            reduce_only=request.reduce_only,
            close_position=request.close_position,
            create_ms=now,
            update_ms=now,
        )
        account.algo_orders[algo.algo_id] = algo
        self._event(account, algo)
        return algo

    def find(self, account: Account, algo_id: int | None, client_algo_id: str | None) -> AlgoOrder:
        """By algoId or clientAlgoId (-2013 "Order does not exist." when unknown)."""
        if algo_id is not None:
            found = account.algo_orders.get(algo_id)
        else:
            matches = [a for a in account.algo_orders.values() if a.client_algo_id == client_algo_id]
            candidates = [a for a in matches if a.is_open] or matches
            found = candidates[-1] if candidates else None
        if found is None:
            raise VenueError(-2013)
        return found

    def actual(self, account: Account, algo: AlgoOrder) -> Order | None:
        return account.orders.get(algo.actual_order_id) if algo.actual_order_id else None

    def cancel(self, account: Account, algo: AlgoOrder) -> AlgoOrder:
        if algo.status != "NEW":
            raise VenueError(-2011)
        self._end(account, algo, "CANCELED")
        return algo

    def cancel_all(self, account: Account, symbol: str) -> int:
        algos = [a for a in account.open_algo_orders(symbol) if a.status == "NEW"]
        for algo in algos:
            self._end(account, algo, "CANCELED")
        return len(algos)

    # -- engine hooks ------------------------------------------------------------------------

    def evaluate(self, symbol: str) -> bool:
        """Trigger the algo orders of ``symbol`` whose condition holds; True if any did."""
        engine = self.engine
        waiting = [
            (a.create_ms, a.algo_id, account, a)
            for account in engine.accounts.values()
            for a in account.algo_orders.values()
            if a.symbol == symbol and a.status == "NEW"
        ]
        fired = False
        for _time, _id, account, algo in sorted(waiting, key=lambda item: (item[0], item[1])):
            if algo.status != "NEW":
                continue
            price = engine.trigger_price(symbol, algo.working_type)
            if should_trigger(algo.order_type, algo.side, algo.trigger_price, price) and not engine.price_protected(
                symbol, algo.price_protect
            ):
                self._trigger(account, algo)
                fired = True
        return fired

    def position_closed(self, account: Account, symbol: str) -> None:
        for algo in account.open_algo_orders(symbol):
            if algo.close_position and algo.status == "NEW":
                self._end(account, algo, "EXPIRED")

    def child_finished(self, account: Account, order: Order) -> None:
        algo = account.algo_orders.get(order.algo_id) if order.algo_id is not None else None
        if algo is not None and algo.status == "TRIGGERED":
            self._end(account, algo, "FINISHED")

    # -- internals ---------------------------------------------------------------------------

    def _trigger(self, account: Account, algo: AlgoOrder) -> None:
        engine = self.engine
        now = engine.server_ms()
        algo.status, algo.trigger_ms, algo.update_ms = "TRIGGERING", now, now
        self._event(account, algo)
        reducible = engine.reducible(account, algo.symbol, algo.side)
        if algo.close_position and not reducible:
            self._end(account, algo, "EXPIRED")
            return
        if algo.reduce_only and not reducible:
            self._reject(account, algo, "ReduceOnly Order is rejected.", "Reduce Only reject")
            return
        if not (algo.reduce_only or algo.close_position):
            reference = algo.price or engine.best_price(algo.symbol, algo.side) or engine.mark(algo.symbol)
            try:
                engine.check_margin(account, algo.symbol, algo.side, algo.quantity, reference)
            except VenueError as refused:
                self._reject(account, algo, refused.msg, refused.msg)
                return
        child = Order(
            order_id=engine.next_order_id(),
            client_id=algo.client_algo_id,
            symbol=algo.symbol,
            side=algo.side,
            type="MARKET" if algo.order_type.endswith("MARKET") else "LIMIT",
            orig_type=algo.order_type,
            time_in_force=algo.time_in_force,
            quantity=algo.quantity,
            price=algo.price,
            stop_price=algo.trigger_price,
            reduce_only=algo.reduce_only,
            close_position=algo.close_position,
            working_type=algo.working_type,
            price_protect=algo.price_protect,
            time_ms=now,
            update_ms=now,
            algo_id=algo.algo_id,
            close_size=reducible if algo.close_position else Decimal(0),
        )
        algo.actual_order_id = child.order_id
        engine.start(account, child)
        algo.status, algo.update_ms = "TRIGGERED", engine.server_ms()
        self._event(account, algo, fills_known=False)
        if not child.is_open:
            self._end(account, algo, "FINISHED")

    def _reject(self, account: Account, algo: AlgoOrder, reason: str, short_reason: str) -> None:
        now = self.engine.server_ms()
        self.engine.emit(account, payloads.trigger_reject_event(algo, reason, now))
        algo.reject_reason = short_reason
        self._end(account, algo, "REJECTED")

    def _end(self, account: Account, algo: AlgoOrder, status: str) -> None:
        algo.status, algo.update_ms = status, self.engine.server_ms()
        self._event(account, algo)

    def _event(self, account: Account, algo: AlgoOrder, *, fills_known: bool = True) -> None:
        engine = self.engine
        actual = self.actual(account, algo) if algo.status in ("TRIGGERED", "FINISHED") else None
        event = payloads.algo_event(algo, engine.spec(algo.symbol), actual, engine.server_ms())
        if actual is not None and not fills_known:
            event["o"].update({"ap": "0", "aq": "0"})
        engine.emit(account, event)
