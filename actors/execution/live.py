"""The live adapter: one account's orders on AsterDEX or Binance USDⓈ-M, through the execution
protocol the paper venue also speaks.

It holds the account's :class:`~actors.venues.trading.TradingClient` (the only object in the
service that can write to a venue; a paper account never gets one) and runs the account's
user-data stream in the account's nursery, posting what the venue sends to the account's venue
path. It is write-ahead: the account commits every intent before :meth:`LiveAdapter.submit`.

How an order's outcome is learned, and never guessed:

* a definitive answer (filled, accepted, refused with the venue's code) becomes reports at once;
  a filled order's fills (price, quantity, fee, fee asset) come from ``userTrades`` and from the
  user stream, under one fill id per venue trade (``<symbol>:<trade id>``), so either source
  counts once;
* an ambiguous one (a timeout, a dropped connection, a 5xx, -1001, -1007) is settled by asking
  the venue for the order's client id, with backoff, for at most the venue's receive window plus
  a margin: found, it is reported as the venue has it; still unknown after the window, it can
  never arrive (the venue refuses a request older than its window) and is reported refused; if
  the venue cannot be asked, nothing is reported and the order stays in flight until the account
  reconciles. An entry is never sent twice. A protective (``closePosition``) order may be sent
  again with the same client id once the venue says it does not have it: the venues refuse a
  client id already open, so a second copy cannot be created.

Before its first order on a symbol the adapter sets the margin type to ISOLATED and the
position's leverage (-4046 "no need to change" and its kin count as done).

The pure translations (an intent into the venue's request; venue orders, trades, funding and
refusals into reports) live in :mod:`actors.execution.live_reports`. The rest stays one file: the
adapter's order-id and ambiguity bookkeeping (algo and child order ids, the fills streamed per
order, symbols set up, settling a lost answer) is the adapter's own state, read and written by
the very methods that send and receive, so it has no seam of its own.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, TypeVar

import tenacity
import trio

from .. import kill_points
from ..backoff import Backoff
from ..domain.execution import (
    CancelIntent, ExecutionReport, OrderIntent, Report, TradeFill, VenueAccount, VenueIncomeState,
    VenueOrderState, VenuePositionState, VenueTradeState,
)
from ..domain.filters import NOT_SENT_CODE, UNKNOWN_ORDER, VenueReject
from ..messages import AccountCannotStart
from ..settings import LiveVenueSettings
from ..venues.credentials import (
    Credentials, CredentialsError, CredentialStore, master_key_from_env, resolve_credentials,
)
from ..venues.profiles import VenueProfile, get_profile
from ..venues.rest import RateLimited, VenueBanned, VenueError, VenueIOError, VenueUnavailable
from ..venues.signed_http import AmbiguousOutcome, CredentialsRejected, TradingSettings
from ..venues.trading import TradingClient
from ..venues.trading_types import OrderRequest, VenueOrder
from ..venues.user_events import (
    AccountUpdate, AlgoUpdate, ConditionalOrderTriggerReject, OrderTradeUpdate, StreamConnected, StreamDisconnected,
)
from ..venues.user_stream import UserStreamSettings, user_stream
from .live_reports import (
    _funding, _invalid, _order_status, _refused, _report, _request, _state, _status_of, _trade_reports, _with_reason,
)

if TYPE_CHECKING:
    from ..account.context import AccountContext
    from ..domain.book import AccountBook

log = logging.getLogger("actors.execution.live")

#: refused before the venue could act: the order does not exist there
_NOT_PLACED_CODE: Final = -2013
#: the venue's "execution status unknown": a cancel whose answer was lost, the order still working
CANCEL_UNCONFIRMED: Final = -1007
T = TypeVar("T")
_ALGO_STATUS: Final = {"NEW": ("NEW", "NEW"), "CANCELED": ("CANCELED", "CANCELED"), "EXPIRED": ("EXPIRED", "EXPIRED"),
                       "REJECTED": ("REJECTED", "REJECTED"), "TRIGGERING": ("TRIGGERED", "NEW"),
                       "TRIGGERED": ("TRIGGERED", "NEW")}


class Resolved:
    """The outcome of an order whose answer was lost, as the venue told it when asked."""

    __slots__ = ("reports",)

    def __init__(self, reports: list[Report]) -> None:
        self.reports = reports


class ReconcileRequested:
    """Posted to the account when what the venue said may have been missed (a stream reconnect,
    a full venue path): the account reconciles before it trusts its book again."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class LiveAdapter:
    is_paper = False
    write_ahead = True
    interruptible = True
    #: the account reconciles with this venue (:mod:`actors.account.reconcile`)
    reconcilable = True

    def __init__(self, account_id: str, client: TradingClient, *, venue: str, clock: Callable[[], float],
                 post: Callable[[Any], bool], nursery: trio.Nursery, settle_margin_seconds: float = 2.0,
                 protective_retry_seconds: float = 10.0, stream_grace_seconds: float = 0.5) -> None:
        self.account_id = account_id
        self._nursery = nursery
        self.venue = venue
        self.client = client
        self._clock = clock
        self._post = post
        #: an order not found this long after it was sent can no longer arrive
        self._horizon = client.recv_window_seconds + settle_margin_seconds
        self._protective_retry_seconds = protective_retry_seconds
        self._leverage: dict[str, int] = {}  # symbols set up on the venue: their leverage
        self._algo_ids: dict[int, str] = {}  # Binance algo id -> client algo id
        self._children: dict[int, str] = {}  # order placed by a triggered algo order -> its client id
        self.gap = False  # the venue path overflowed: the account must reconcile
        self.stream_connected = False
        #: the USDT wallet balance as the user stream last told it, and when (epoch)
        self.stream_wallet: tuple[Decimal, float] | None = None
        #: quantity the user stream reported filled, by client order id (the last few hundred
        #: orders): an order's fills come from the stream, ``userTrades`` only when it is late
        self._streamed: collections.OrderedDict[str, Decimal] = collections.OrderedDict()
        self._stream_moved = trio.Event()
        self.stream_grace_seconds = stream_grace_seconds

    # ------------------------------------------------------------------------------ protocol

    async def submit(self, intent: OrderIntent) -> Sequence[Report]:
        try:
            await self._prepare(intent)
        except VenueBanned as exc:
            return [_refused(intent, exc)]
        except VenueError as exc:
            return [_refused(intent, exc)]
        except VenueIOError as exc:  # the venue cannot be reached: nothing was sent
            return [_refused(intent, exc)]
        try:
            request = _request(intent)
        except ValueError as exc:  # the venue would refuse it: never sent
            return [_report(intent, "REJECTED", "REJECTED", reject=_invalid(intent, exc))]
        kill_points.reached(f"before:{intent.purpose}")
        if intent.close_position or intent.reduce_only:
            return await self._send_reducing(intent, request)
        sent_at = self._clock()
        try:
            order = await self.client.place_order(request)
        except AmbiguousOutcome as exc:
            return self._unknown(intent, sent_at, exc)
        except VenueIOError as exc:  # a refusal, a rate limit, a ban, never sent: not placed
            return [_refused(intent, exc)]
        kill_points.reached(f"sent:{intent.purpose}")
        return await self._reports_of(intent, order)

    async def cancel(self, intent: CancelIntent) -> Sequence[Report]:
        """A cancel is sent again while it did not reach the venue (a 429, a connection never
        made); after an ambiguous answer the venue is asked what became of the order."""
        async def once() -> VenueOrder | None:
            return await self.client.cancel_order(intent.symbol, intent.client_order_id,
                                                  conditional=intent.conditional and self.client.algo)
        try:
            order = await self._persist(once)
        except AmbiguousOutcome as exc:
            try:
                order = await self.client.query_order(intent.symbol, intent.client_order_id,
                                                      conditional=intent.conditional and self.client.algo)
            except VenueIOError:
                order = _UNKNOWN
            if order is _UNKNOWN or (order is not None and _order_status(order) in ("NEW", "PARTIALLY_FILLED")):
                # not done, or not known to be: the order is taken as still working (if the cancel
                # did land, the user stream or the next reconciliation says so)
                state = "the venue cannot be asked" if order is _UNKNOWN else "the order is still working"
                return [ExecutionReport(client_order_id=intent.client_order_id, symbol=intent.symbol,
                                        exec_type="REJECTED", status="REJECTED",
                                        reject=VenueReject(CANCEL_UNCONFIRMED, f"cancel not confirmed ({exc}); {state}"))]
        except VenueIOError as exc:
            code, msg = (exc.code, exc.msg) if isinstance(exc, VenueError) else (NOT_SENT_CODE, f"not sent: {exc}")
            return [ExecutionReport(client_order_id=intent.client_order_id, symbol=intent.symbol,
                                    exec_type="REJECTED", status="REJECTED", reject=VenueReject(code, msg))]
        if order is None:
            return [ExecutionReport(client_order_id=intent.client_order_id, symbol=intent.symbol,
                                    exec_type="REJECTED", status="REJECTED",
                                    reject=VenueReject(UNKNOWN_ORDER, "Unknown order sent."))]
        reports = await self._order_reports(order, intent.client_order_id)
        return [_with_reason(r, intent.reason) if r.exec_type == "CANCELED" else r for r in reports]

    async def query(self, symbol: str, client_order_id: str, *, conditional: bool = False) -> VenueOrderState | None:
        order = await self.client.query_order(symbol, client_order_id, conditional=conditional and self.client.algo)
        return None if order is None else _state(order)

    async def open_orders(self) -> Sequence[VenueOrderState]:
        orders = await self.client.open_orders()
        if self.client.algo:
            orders += await self.client.open_conditional_orders()
        return [_state(o) for o in orders]

    async def positions(self) -> Sequence[VenuePositionState]:
        return [VenuePositionState(
            symbol=p.symbol, side="long" if p.quantity > 0 else "short", quantity=abs(p.quantity),
            entry_price=p.entry_price, leverage=p.leverage, isolated_margin=p.isolated_margin,
            liquidation_price=p.liquidation_price or None, unrealized_pnl=p.unrealized_pnl, update_time_ms=p.update_time,
        ) for p in await self.client.positions() if p.quantity != 0]

    async def on_message(self, message: Any) -> Sequence[Report]:
        match message:
            case OrderTradeUpdate():
                return self._order_update(message)
            case AlgoUpdate():
                return self._algo_update(message)
            case ConditionalOrderTriggerReject():
                client_id = self._algo_ids.get(message.order_id)
                if client_id is None:
                    return []
                return [ExecutionReport(client_order_id=client_id, symbol=message.symbol, exec_type="TRIGGERED",
                                        status="NEW", reject=VenueReject(-2021, message.reason),
                                        venue_time_ms=message.event_time)]
            case AccountUpdate(reason="FUNDING_FEE"):
                return _funding(message)
            case Resolved():
                return message.reports
            case _:
                return []

    async def poll(self, now: float) -> Sequence[Report]:
        return []  # a live venue speaks through its user stream; the account reconciles on its own clock

    async def settle(self, committed: bool) -> None:
        return None  # write-ahead: nothing here is provisional

    @property
    def horizon(self) -> float:
        """Seconds after it was sent beyond which an order the venue does not know never arrives."""
        return self._horizon

    def connection(self) -> dict[str, Any]:
        client = self.client
        return {"venue": self.venue, "key_id": client.key_id,
                "stream_connected": self.stream_connected, "clock_offset_ms": client.clock_offset_ms,
                "symbols_prepared": dict(self._leverage), "requests": client.stats.snapshot()}

    # ------------------------------------------------------------------------------ reconciliation

    async def venue_account(self, symbols: Iterable[str] | None = None, *, wallet: bool = True) -> VenueAccount:
        """Positions, open orders (conditional ones included) and, with ``wallet``, the wallet, as
        the venue has them now. Open orders of ``symbols`` only (weight 1 each, 2 with Binance's
        algo orders) or of every symbol (``None``: weight 40, 80 with the algo orders).

        Raises VenueIOError when the venue cannot be asked."""
        positions = await self.positions()
        if symbols is None:
            orders = list(await self.open_orders())
            covered = None
        else:
            covered = tuple(sorted(set(symbols)))
            orders = []
            for symbol in covered:
                found = await self.client.open_orders(symbol)
                if self.client.algo:
                    found += await self.client.open_conditional_orders(symbol)
                orders += [_state(o) for o in found]
        quote = None
        if wallet:
            quote = next((b for b in await self.client.balances() if b.asset == "USDT"), None)
        return VenueAccount(positions=tuple(positions), open_orders=tuple(orders), order_symbols=covered,
                            wallet_balance=quote.wallet_balance if quote else None,
                            available_balance=quote.available_balance if quote else None, at=self._clock())

    async def settle_order(self, symbol: str, client_order_id: str, *, conditional: bool) -> list[Report] | None:
        """What became of one order, as reports (accepted, fills, how it ended); ``[]`` when the
        venue does not know it. Raises VenueIOError when the venue cannot be asked."""
        order = await self.client.query_order(symbol, client_order_id, conditional=conditional and self.client.algo)
        if order is None:
            return []
        if order.is_algo:
            self._algo_ids[order.venue_order_id] = client_order_id
        return await self._order_reports(order, client_order_id)

    async def trades(self, symbol: str, since: float) -> list[VenueTradeState]:
        """The account's trades on ``symbol`` since ``since`` (epoch seconds; the venues keep 7 days)."""
        start = self._venue_ms(max(since, self._clock() - 6.9 * 86400))
        trades = await self.client.user_trades(symbol, start_ms=start, limit=1000)
        return [VenueTradeState(fill_id=f"{t.symbol}:{t.id}", venue_order_id=str(t.order_id), symbol=t.symbol,
                                side=t.side,  # type: ignore[arg-type]
                                price=t.price, quantity=t.qty, fee=abs(t.commission), fee_asset=t.commission_asset,
                                liquidity="maker" if t.maker else "taker", realized_pnl=t.realized_pnl, time_ms=t.time)
                for t in sorted(trades, key=lambda t: t.id)]

    def _venue_ms(self, at: float) -> int:
        """A time of this clock (epoch seconds) on the venue's clock (epoch milliseconds)."""
        return int(at * 1000 + (self.client.clock_offset_ms or 0))

    def local_time(self, venue_ms: int) -> float:
        """A time of the venue's clock (epoch milliseconds) on this clock (epoch seconds)."""
        return (venue_ms - (self.client.clock_offset_ms or 0)) / 1000

    async def income(self, since: float) -> list[VenueIncomeState]:
        """Income records (realized PnL, commissions, funding...) since ``since`` (epoch seconds)."""
        records = await self.client.income(start_ms=self._venue_ms(since), limit=1000)
        return [VenueIncomeState(kind=i.income_type, symbol=i.symbol or None, amount=i.income, asset=i.asset,
                                 time_ms=i.time, record_id=i.tran_id) for i in records]

    # ------------------------------------------------------------------------------ streams

    def deliver(self, message: Any) -> None:
        """The user stream's callback: everything goes to the account's venue path."""
        if isinstance(message, AccountUpdate):
            wallet = next((b.wallet_balance for b in message.balances if b.asset == "USDT"), None)
            if wallet is not None:
                self.stream_wallet = (wallet, self.local_time(message.event_time))
        if isinstance(message, StreamDisconnected):
            self.stream_connected = False
        if isinstance(message, StreamConnected):
            self.stream_connected = True
            if message.reconnect:
                self._post(ReconcileRequested("the user-data stream reconnected"))
        if isinstance(message, OrderTradeUpdate) and message.cum_filled_qty > 0:
            client_id = self._children.get(message.order_id, message.client_order_id)
            self._streamed[client_id] = max(message.cum_filled_qty, self._streamed.get(client_id, Decimal(0)))
            self._streamed.move_to_end(client_id)
            while len(self._streamed) > _STREAMED_ORDERS:
                self._streamed.popitem(last=False)
            self._stream_moved.set()
            self._stream_moved = trio.Event()
        if isinstance(message, AlgoUpdate):
            self._algo_ids[message.algo_id] = message.client_algo_id
            if message.actual_order_id:
                self._children[message.actual_order_id] = message.client_algo_id
        if not self._post(message) and not self.gap:
            self.gap = True
            log.error("%s: the account's venue path is full; it will reconcile", self.account_id)

    # ------------------------------------------------------------------------------ details

    async def _prepare(self, intent: OrderIntent) -> None:
        """Margin type and leverage of the symbol, before the first entry at a leverage."""
        if intent.leverage is None or self._leverage.get(intent.symbol) == intent.leverage:
            return
        if intent.symbol not in self._leverage:
            await self.client.set_margin_type(intent.symbol, "ISOLATED")
        await self.client.set_leverage(intent.symbol, intent.leverage)
        self._leverage[intent.symbol] = intent.leverage

    async def _send_reducing(self, intent: OrderIntent, request: OrderRequest) -> Sequence[Report]:
        """A close, a flatten or a protective order. Sent again (see :meth:`_persist`) while it
        did not reach the venue, and, for a protective order, when the venue says it does not
        have it after an ambiguous answer (the venue refuses a client id it holds open, so a
        second copy cannot be made). A reduce-only order whose answer was lost is not: it may
        still arrive, and only its receive window can tell."""
        sent_at = self._clock()

        async def once() -> Sequence[Report]:
            nonlocal sent_at
            sent_at = self._clock()
            try:
                order = await self.client.place_order(request)
            except AmbiguousOutcome as exc:
                found = await self._query(intent.symbol, intent.client_order_id, intent.close_position)
                if found is not None:
                    return await self._reports_of(intent, found)
                if not intent.close_position:
                    return self._unknown(intent, sent_at, exc)
                raise _SendAgain(exc) from None
            kill_points.reached(f"sent:{intent.purpose}")
            return await self._reports_of(intent, order)

        try:
            return await self._persist(once)
        except _SendAgain as exc:
            return self._unknown(intent, sent_at, exc.ambiguous)
        except VenueIOError as exc:  # refused, banned, or never reached the venue in time
            return [_refused(intent, exc)]

    async def _persist(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` again, with exponential backoff and jitter (tenacity), while the
        request did not reach the venue (429 and local rate limits: the limiter holds the next
        attempt until the pause ends; a connection never made) or asks for it (:class:`_SendAgain`),
        until ``protective_retry_seconds`` have passed; then the last failure is raised."""
        deadline = trio.current_time() + self._protective_retry_seconds
        retrying = tenacity.AsyncRetrying(
            sleep=trio.sleep, reraise=True,
            stop=lambda state: trio.current_time() >= deadline,
            wait=tenacity.wait_exponential_jitter(multiplier=0.2, max=2.0, jitter=0.1),
            retry=tenacity.retry_if_exception_type((RateLimited, VenueUnavailable, _SendAgain)),
        )
        async for round_ in retrying:
            with round_:
                return await attempt()
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    def _unknown(self, intent: OrderIntent, sent_at: float, exc: Exception) -> list[Report]:
        log.warning("%s: %s %s: outcome unknown (%s); asking the venue", self.account_id, intent.purpose,
                    intent.client_order_id, exc)
        self._nursery.start_soon(self._resolve, intent, sent_at)
        return [_report(intent, "UNKNOWN", "PENDING_NEW")]

    async def _resolve(self, intent: OrderIntent, sent_at: float) -> None:
        """Ask the venue what became of an order whose answer was lost, with backoff, and post
        the outcome to the account. Not found once its receive window is over, the order can never
        arrive: refused. If the venue cannot be asked at all, the account's next reconciliation
        settles it."""
        backoff = Backoff(0.2, 1.0)
        while True:
            try:
                order = await self.client.query_order(intent.symbol, intent.client_order_id,
                                                      conditional=intent.close_position and self.client.algo)
            except (AmbiguousOutcome, VenueIOError):
                order = _UNKNOWN
            if isinstance(order, VenueOrder):
                self._post(Resolved(await self._reports_of(intent, order)))
                return
            if order is None and self._clock() >= sent_at + self._horizon:
                self._post(Resolved([_report(intent, "REJECTED", "REJECTED", reject=VenueReject(
                    _NOT_PLACED_CODE, "the venue never received the order (not found after its receive window)"))]))
                return
            if self._clock() >= sent_at + 10 * self._horizon:
                log.error("%s: %s %s still unknown; the next reconciliation settles it", self.account_id,
                          intent.purpose, intent.client_order_id)
                return
            await trio.sleep(backoff.next())

    async def _query(self, symbol: str, client_order_id: str, conditional: bool) -> VenueOrder | None:
        try:
            return await self.client.query_order(symbol, client_order_id, conditional=conditional and self.client.algo)
        except (AmbiguousOutcome, VenueIOError):
            return None

    async def _reports_of(self, intent: OrderIntent, order: VenueOrder) -> list[Report]:
        if order.is_algo:
            self._algo_ids[order.venue_order_id] = intent.client_order_id
        return await self._order_reports(order, intent.client_order_id)

    async def _order_reports(self, order: VenueOrder, client_order_id: str) -> list[Report]:
        """An order as the venue has it, as reports: accepted, its fills (from ``userTrades``),
        and how it ended. Fills still on their way arrive on the user stream."""
        symbol = order.symbol
        reports: list[Report] = [ExecutionReport(
            client_order_id=client_order_id, symbol=symbol, exec_type="NEW", status="NEW",
            venue_order_id=str(order.venue_order_id), side=order.side,  # type: ignore[arg-type]
            order_type=order.orig_type, venue_time_ms=order.update_time)]
        if order.executed_qty > 0 and not order.is_algo and not await self._streamed_fills(client_order_id, order):
            try:
                trades = await self.client.user_trades(symbol, order_id=order.venue_order_id)
            except VenueIOError:
                trades = []  # the user stream brings them
            reports += _trade_reports(client_order_id, order, trades)
        if order.is_algo and order.actual_order_id and order.status in ("TRIGGERED", "FINISHED"):
            # a trigger that fired: the order it placed carries the fills (Binance's Algo Service)
            self._children[order.actual_order_id] = client_order_id
            try:
                trades = await self.client.user_trades(symbol, order_id=order.actual_order_id)
            except VenueIOError:
                trades = []  # the user stream or the next reconciliation brings them
            if trades:
                reports += _trade_reports(client_order_id, order, trades, final=order.status == "FINISHED")
        status = _order_status(order)
        if status in ("CANCELED", "EXPIRED", "REJECTED"):
            reports.append(ExecutionReport(client_order_id=client_order_id, symbol=symbol, exec_type=status,  # type: ignore[arg-type]
                                           status=status, cumulative_quantity=order.executed_qty,
                                           reason="venue", venue_order_id=str(order.venue_order_id)))
        elif order.executed_qty > 0:
            # the fills the venue counted, whether or not they are listed yet
            reports.append(ExecutionReport(client_order_id=client_order_id, symbol=symbol, exec_type="NEW",
                                           status=status, cumulative_quantity=order.executed_qty,
                                           average_price=order.avg_price or None))
        return reports

    async def _streamed_fills(self, client_order_id: str, order: VenueOrder) -> bool:
        """Whether the user stream has reported (or reports within the grace) every fill the
        venue counts for the order: its trade events carry price, quantity, fee and fee asset, so
        ``userTrades`` (a request of weight 5) is only asked when the stream is down or late."""
        if not self.stream_connected:
            return False
        with trio.move_on_after(self.stream_grace_seconds):
            while self._streamed.get(client_order_id, Decimal(0)) < order.executed_qty:
                await self._stream_moved.wait()
            return True
        return False

    def _order_update(self, event: OrderTradeUpdate) -> list[Report]:
        client_id = self._children.get(event.order_id, event.client_order_id)
        exec_type = event.execution_type
        fill = None
        if exec_type in ("TRADE", "CALCULATED") and event.last_filled_qty > 0:
            fill = TradeFill(fill_id=f"{event.symbol}:{event.trade_id}", price=event.last_filled_price,
                             quantity=event.last_filled_qty, fee=abs(event.commission),
                             fee_asset=event.commission_asset or "USDT", liquidity="maker" if event.maker else "taker")
        if exec_type not in ("NEW", "TRADE", "CANCELED", "EXPIRED", "CALCULATED", "REJECTED"):
            return []  # AMENDMENT and the like change nothing the account keeps
        liquidation = exec_type == "CALCULATED" or event.order_type == "LIQUIDATION"
        return [ExecutionReport(
            client_order_id=client_id, symbol=event.symbol,
            exec_type="CALCULATED" if liquidation and fill is not None else exec_type,  # type: ignore[arg-type]
            status=_status_of(event.status), venue_order_id=str(event.order_id),
            side=event.side,  # type: ignore[arg-type]
            order_type="LIQUIDATION" if liquidation else event.orig_type, cumulative_quantity=event.cum_filled_qty,
            average_price=event.avg_price or None, fill=fill, trigger_price=event.stop_price,
            reason=event.expiry_reason or ("venue" if exec_type in ("CANCELED", "EXPIRED") else None),
            venue_time_ms=event.event_time, bankruptcy_price=event.last_filled_price if liquidation else None,
        )]

    def _algo_update(self, event: AlgoUpdate) -> list[Report]:
        mapped = _ALGO_STATUS.get(event.status)
        if mapped is None:
            return []  # FINISHED: the order it placed reported its fills itself
        exec_type, status = mapped
        reject = VenueReject(-2021, event.reject_reason or "rejected") if status == "REJECTED" else None
        return [ExecutionReport(client_order_id=event.client_algo_id, symbol=event.symbol, exec_type=exec_type,  # type: ignore[arg-type]
                                status=status, venue_order_id=str(event.algo_id), order_type=event.order_type,
                                trigger_price=event.trigger_price, reject=reject, reason="venue",
                                venue_time_ms=event.event_time)]


_UNKNOWN: Final[Any] = object()
_STREAMED_ORDERS: Final = 512


class _SendAgain(Exception):
    """A protective order whose answer was lost and that the venue says it does not have."""

    def __init__(self, ambiguous: AmbiguousOutcome) -> None:
        super().__init__(str(ambiguous))
        self.ambiguous = ambiguous


# ---------------------------------------------------------------------------------- opening


async def open_live_adapter(ctx: AccountContext, book: AccountBook, nursery: trio.Nursery) -> LiveAdapter:
    """The adapter of a live account: its credentials, its trading client (checked against the
    venue), its user-data stream in the account's ``nursery``.

    Raises:
        AccountCannotStart: the credentials are missing, cannot be decrypted, or the venue
            refuses them; the message names the account and where the credentials come from.
    """
    account = ctx.settings
    venue = ctx.service_settings.venue_settings(account.venue)
    assert isinstance(venue, LiveVenueSettings)
    profile = get_profile(account.venue, venue.rest_url, venue.ws_url)
    credentials = await trio.to_thread.run_sync(_credentials, ctx)
    client = TradingClient(profile, credentials, account_id=account.id, clock=ctx.clock.now,
                           limiter=ctx.venue_limiter,
                           settings=TradingSettings(recv_window_ms=venue.recv_window_ms,
                                                    timeout_seconds=venue.request_timeout_seconds))
    failures = 0
    while True:
        try:
            await client.sync_time()
            await client.check_credentials()
            break
        except CredentialsRejected as exc:
            await client.aclose()
            raise AccountCannotStart(
                f"account {account.id!r}: {account.venue} refused its credentials ({_source(ctx)}, key "
                f"{client.key_id}): {exc.code} {exc.msg}") from None
        except VenueIOError as exc:  # the venue cannot be asked now (down, rate budget): wait, gated
            failures += 1
            ctx.gate(f"connecting to {account.venue}: {exc}")
            log.warning("account %s: cannot check its credentials with %s (attempt %d): %s", account.id,
                        account.venue, failures, exc)
            await trio.sleep(min(30.0, 0.5 * 2 ** min(failures - 1, 6)))
        except BaseException:
            with trio.CancelScope(shield=True):
                await client.aclose()
            raise
    adapter = LiveAdapter(account.id, client, venue=account.venue, clock=ctx.clock.now,
                          post=ctx.mailbox.post_venue, nursery=nursery, settle_margin_seconds=venue.settle_margin_seconds,
                          protective_retry_seconds=account.protection_deadline_seconds)
    stream = UserStreamSettings(keepalive_interval_seconds=venue.user_stream_keepalive_seconds,
                                reconnect_initial_seconds=venue.user_stream_reconnect_seconds)
    nursery.start_soon(_run_stream, adapter, profile, stream)
    return adapter


async def _run_stream(adapter: LiveAdapter, profile: VenueProfile, settings: UserStreamSettings) -> None:
    """The account's user-data stream, and the trading client closed when the account stops."""
    try:
        await user_stream(adapter.client, profile, adapter.deliver, settings=settings)
    finally:
        with trio.CancelScope(shield=True):
            await adapter.client.aclose()


def _credentials(ctx: AccountContext) -> Credentials:
    """From the environment variables the settings name, else from the encrypted store."""
    account = ctx.settings
    try:
        if account.credentials is not None:
            return resolve_credentials(account.id, account.venue, account.credentials)
        store = CredentialStore.open(ctx.service_settings.database.path, master_key_from_env())
        try:
            return resolve_credentials(account.id, account.venue, None, store=store)
        finally:
            store.close()
    except CredentialsError as exc:
        raise AccountCannotStart(str(exc)) from None


def _source(ctx: AccountContext) -> str:
    settings = ctx.settings.credentials
    if settings is None:
        return "credentials from the encrypted store"
    if settings.kind == "hmac":
        return f"api key from ${settings.api_key_env}, secret from ${settings.api_secret_env}"
    return f"signer key from ${settings.signer_key_env}"
