"""Order endpoints: new / query / cancel orders, open orders, cancel-all, countdown, Binance algo orders.

Each handler takes a :class:`Call` and returns the JSON payload (or raises :class:`VenueError`).
"""

from __future__ import annotations

from typing import Any

from . import _payloads as payloads
from ._algo import AlgoService
from ._calls import Call
from ._errors import VenueError, missing
from ._validation import parse_order


def new_order(call: Call) -> Any:
    request = parse_order(call.params, call.engine.state.specs, call.flavour, "order")
    order, ack = call.engine.submit(call.account, request)
    if request.response_type == "ACK":
        return ack
    return payloads.order_body(order, call.venue.spec(order.symbol), call.flavour, "new")


def query_order(call: Call) -> Any:
    symbol = call.symbol()
    assert symbol is not None
    order = call.find_order(symbol, unknown_code=-2013)
    return payloads.order_body(order, call.venue.spec(symbol), call.flavour, "query")


def cancel_order(call: Call) -> Any:
    symbol = call.symbol()
    assert symbol is not None
    order = call.find_order(symbol, unknown_code=-2011)
    call.engine.cancel(call.account, order)
    return payloads.order_body(order, call.venue.spec(symbol), call.flavour, "cancel")


def open_order(call: Call) -> Any:
    """``GET openOrder``: one open order; -2013 "Order does not exist." once it is done."""
    symbol = call.symbol()
    assert symbol is not None
    order = call.find_order(symbol, unknown_code=-2013)
    if not order.is_open:
        raise VenueError(-2013)
    return payloads.order_body(order, call.venue.spec(symbol), call.flavour, "query")


def open_orders(call: Call) -> Any:
    symbol = call.symbol(required=False)
    orders = sorted(call.account.open_orders(symbol), key=lambda o: o.order_id)
    return [payloads.order_body(o, call.venue.spec(o.symbol), call.flavour, "query") for o in orders]


def all_orders(call: Call) -> Any:
    symbol = call.symbol()
    from_id = call.integer("orderId")
    limit = call.limit(500, 1000)
    start, end = call.window()
    orders = [
        o
        for o in sorted(call.account.orders.values(), key=lambda o: o.order_id)
        if o.symbol == symbol
        and (from_id is None or o.order_id >= from_id)
        and (from_id is not None or start <= o.time_ms <= end)
    ]
    return [payloads.order_body(o, call.venue.spec(o.symbol), call.flavour, "query") for o in orders[-limit:]]


def cancel_all_orders(call: Call) -> Any:
    symbol = call.symbol()
    assert symbol is not None
    call.engine.cancel_all(call.account, symbol)
    # Aster's example prints the code as a string, Binance's as a number
    return {"code": "200" if call.flavour == "aster" else 200, "msg": "The operation of cancel all open order is done."}


def countdown_cancel_all(call: Call) -> Any:
    """Dead-man switch: cancel every open order of ``symbol`` after ``countdownTime`` ms (0 stops it)."""
    symbol = call.symbol()
    assert symbol is not None
    countdown = call.integer("countdownTime")
    if countdown is None:
        raise missing("countdownTime")
    account, engine, timers = call.account, call.engine, call.venue.timers
    key = ("countdownCancelAll", account.account_id, symbol)
    if countdown <= 0:
        timers.cancel(key)
    else:

        def cancel_everything() -> None:
            engine.cancel_all(account, symbol)

        timers.schedule(key, engine.server_ms() + countdown, cancel_everything)
    return {"symbol": symbol, "countdownTime": str(countdown)}


# -- Binance algo orders --------------------------------------------------------------------------


def _algos(call: Call) -> AlgoService:
    assert call.venue.algos is not None
    return call.venue.algos


def new_algo_order(call: Call) -> Any:
    request = parse_order(call.params, call.engine.state.specs, call.flavour, "algo")
    algo = _algos(call).submit(call.account, request)
    return payloads.algo_body(algo, call.venue.spec(algo.symbol), "new", None)


def _find_algo(call: Call, *, unknown_code: int) -> Any:
    algo_id = call.integer("algoId")
    client_algo_id = call.params.get("clientAlgoId")
    if algo_id is None and not client_algo_id:
        raise VenueError(-1102, "Param 'algoId' or 'clientAlgoId' must be sent, but both were empty/null!")
    try:
        return _algos(call).find(call.account, algo_id, client_algo_id)
    except VenueError:
        raise VenueError(unknown_code) from None


def query_algo_order(call: Call) -> Any:
    algo = _find_algo(call, unknown_code=-2013)
    actual = _algos(call).actual(call.account, algo)
    return payloads.algo_body(algo, call.venue.spec(algo.symbol), "query", actual)


def cancel_algo_order(call: Call) -> Any:
    algo = _find_algo(call, unknown_code=-2011)
    _algos(call).cancel(call.account, algo)
    return {"algoId": algo.algo_id, "clientAlgoId": algo.client_algo_id, "code": "200", "msg": "success"}


def open_algo_orders(call: Call) -> Any:
    symbol = call.symbol(required=False)
    algo_id = call.integer("algoId")
    algos = [
        a
        for a in sorted(call.account.open_algo_orders(symbol), key=lambda a: a.algo_id)
        if algo_id is None or a.algo_id == algo_id
    ]
    service = _algos(call)
    return [payloads.algo_body(a, call.venue.spec(a.symbol), "query", service.actual(call.account, a)) for a in algos]


def all_algo_orders(call: Call) -> Any:
    symbol = call.symbol()
    limit = call.limit(500, 1000)
    service = _algos(call)
    algos = [a for a in sorted(call.account.algo_orders.values(), key=lambda a: a.algo_id) if a.symbol == symbol]
    return [
        payloads.algo_body(a, call.venue.spec(a.symbol), "query", service.actual(call.account, a))
        for a in algos[-limit:]
    ]


def cancel_all_algo_orders(call: Call) -> Any:
    symbol = call.symbol()
    assert symbol is not None
    _algos(call).cancel_all(call.account, symbol)
    return {"code": 200, "msg": "The operation of cancel all open order is done."}
