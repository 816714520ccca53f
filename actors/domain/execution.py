"""The messages of the execution seam, both directions, as plain values.

The account hands an :class:`OrderIntent` (or a :class:`CancelIntent`) to its execution adapter;
the adapter answers with the venue's own order lifecycle, as :class:`ExecutionReport`\\ s modelled
on ``ORDER_TRADE_UPDATE`` (execution type + order status + the last fill), and reports money the
venue moved on its own (:class:`FundingReport`). Paper and live adapters speak exactly these; the
protocol itself is ``actors.execution.protocol``. They live in the domain because the pure planner
produces intents and consumes reports.

Execution types (``exec_type``):

===========  ==================================================================================
NEW          the venue accepted the order (it rests, or is about to execute)
TRADE        a fill (``fill`` is set); ``status`` is PARTIALLY_FILLED or FILLED
CANCELED     cancelled (by the account, or by the venue)
EXPIRED      the venue ended the order (a market order's unfilled rest, a reduce-only with
             nothing to reduce)
REJECTED     refused; ``reject`` holds the venue's code and message
TRIGGERED    a conditional order's trigger fired; with ``reject`` set, the market order it
             released could not fill and the trigger stays armed
CALCULATED   a venue-originated liquidation fill (``order_type`` LIQUIDATION)
UNKNOWN      the venue's answer was lost (a timeout, a 5xx...): the order stays in flight, the
             adapter asks the venue, and its outcome comes later as a venue message
===========  ==================================================================================
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

from .filters import VenueReject

ExecType = Literal["NEW", "TRADE", "CANCELED", "EXPIRED", "REJECTED", "TRIGGERED", "CALCULATED", "UNKNOWN"]
WorkingType = Literal["MARK_PRICE", "CONTRACT_PRICE"]


class OrderIntent(msgspec.Struct, frozen=True, kw_only=True):
    """An order the account wants worked, with the client id the venue will know it by."""

    order_id: str
    client_order_id: str
    symbol: str
    side: Literal["BUY", "SELL"]
    type: Literal["MARKET", "LIMIT", "STOP_MARKET", "TAKE_PROFIT_MARKET"]
    purpose: str
    quantity: Decimal | None = None  # None with close_position
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    reduce_only: bool = False
    close_position: bool = False
    working_type: WorkingType = "MARK_PRICE"
    leverage: int | None = None  # entries: the position's leverage (set on the venue first)
    #: the most the walk of a market order may move from the touch (paper's slippage guard)
    max_slippage_bps: Decimal | None = None


class CancelIntent(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    client_order_id: str
    symbol: str
    conditional: bool = False  # a TP/SL (Binance keeps those in its algo service)
    reason: str = "client"


class TradeFill(msgspec.Struct, frozen=True, kw_only=True):
    """One execution of an order. ``fill_id`` is unique within the account (a report seen twice
    carries the same id, and the account applies it once)."""

    fill_id: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str = "USDT"
    liquidity: Literal["maker", "taker"]
    top_of_book_only: bool = False


class ExecutionReport(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    client_order_id: str
    symbol: str
    exec_type: ExecType
    status: str  # the order's status after this report (venue statuses)
    venue_order_id: str | None = None
    side: Literal["BUY", "SELL"] | None = None
    order_type: str | None = None
    cumulative_quantity: Decimal = Decimal(0)
    average_price: Decimal | None = None
    fill: TradeFill | None = None
    reject: VenueReject | None = None
    #: the trigger that released this execution (TP/SL), or the mark that liquidated
    trigger_price: Decimal | None = None
    #: why the venue cancelled / expired it, or the account's reason echoed back
    reason: str | None = None
    venue_time_ms: int = 0
    #: liquidations: the bankruptcy price the venue closed at
    bankruptcy_price: Decimal | None = None


class FundingReport(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Funding the venue settled on the account's position in ``symbol`` (negative = paid).
    A live venue's stream tells the amount only; the rate and mark then stay unknown."""

    symbol: str
    funding_time: int  # epoch ms
    rate: Decimal | None
    mark: Decimal | None
    amount: Decimal
    venue_time_ms: int = 0


Report = ExecutionReport | FundingReport


class VenueOrderState(msgspec.Struct, frozen=True, kw_only=True):
    """An order as the venue reports it when asked (query, open orders): for settling in-flight
    orders and for reconciliation."""

    client_order_id: str
    symbol: str
    status: str
    venue_order_id: str | None = None
    side: Literal["BUY", "SELL"] | None = None
    order_type: str | None = None
    quantity: Decimal | None = None
    filled_quantity: Decimal = Decimal(0)
    average_price: Decimal | None = None
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    reduce_only: bool = False
    close_position: bool = False
    conditional: bool = False
    update_time_ms: int = 0


class VenuePositionState(msgspec.Struct, frozen=True, kw_only=True):
    """A position as the venue reports it (one-way mode: one per symbol)."""

    symbol: str
    side: Literal["long", "short"]
    quantity: Decimal
    entry_price: Decimal
    leverage: int | None = None
    isolated_margin: Decimal | None = None
    liquidation_price: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    update_time_ms: int = 0


class VenueTradeState(msgspec.Struct, frozen=True, kw_only=True):
    """One trade of the account as the venue lists it (``userTrades``)."""

    fill_id: str  # ``<symbol>:<trade id>``, as the user stream's fills are named
    venue_order_id: str
    symbol: str
    side: Literal["BUY", "SELL"]
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    liquidity: Literal["maker", "taker"]
    realized_pnl: Decimal
    time_ms: int


class VenueIncomeState(msgspec.Struct, frozen=True, kw_only=True):
    """One income record (``REALIZED_PNL``, ``COMMISSION``, ``FUNDING_FEE``, ``TRANSFER``...)."""

    kind: str
    symbol: str | None
    amount: Decimal
    asset: str
    time_ms: int
    record_id: str


class VenueAccount(msgspec.Struct, frozen=True, kw_only=True):
    """What the venue holds for the account at one moment (``at``, epoch seconds); the wallet is
    None when it was not asked."""

    positions: tuple[VenuePositionState, ...]
    open_orders: tuple[VenueOrderState, ...]
    #: the symbols whose open orders were listed (None: every symbol)
    order_symbols: tuple[str, ...] | None
    wallet_balance: Decimal | None
    available_balance: Decimal | None
    at: float
