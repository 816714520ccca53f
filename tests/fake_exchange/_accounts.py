"""Trading accounts of the fake exchange: credentials, wallet, positions, orders, trades, income.

Plain mutable records (the engine in ``_engine.py`` is the only writer). Money is ``Decimal``;
ids are ints and times are milliseconds of the fake's server clock, as on the venues. One account
is one-way mode (``positionSide`` ``BOTH``) with a USDT wallet; each symbol has its leverage and
margin type (isolated by default).

Wallet model (what ``ACCOUNT_UPDATE``, ``balance`` and ``account`` report): ``wallet`` is the total
wallet balance ``wb``; an isolated position holds part of it as its isolated wallet ``iw`` (its
margin, notional / leverage at entry); the cross wallet ``cw`` is ``wb - sum(iw)``. Fees and
realized PnL change ``wb``; funding on an isolated position changes both ``wb`` and its ``iw``.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Final, Literal

from actors.tools.venue_market import SymbolSpec, wire

Side = Literal["BUY", "SELL"]
ZERO: Final = Decimal(0)
_EIGHT: Final = Decimal("0.00000001")
_API_KEY: Final = re.compile(r"^[A-Za-z0-9]{64}$")

#: statuses after which an order never changes again
FINAL_STATUSES: Final = frozenset({"FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH", "REJECTED"})
CONDITIONAL_TYPES: Final = frozenset({"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"})


def money(value: Decimal) -> str:
    """A balance, PnL, margin or fee as the venues print it: 8 decimals, truncated."""
    return wire(value.quantize(_EIGHT, rounding=ROUND_DOWN))


def decimals_of(step: str) -> int:
    """Number of decimals of a tick or step size (``"0.10"`` -> 2, ``"1"`` -> 0)."""
    exponent = Decimal(step).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def fixed(value: Decimal, places: int) -> str:
    """``value`` with exactly ``places`` decimals (truncated)."""
    quantum = Decimal(1).scaleb(-places)
    return wire(value.quantize(quantum, rounding=ROUND_DOWN))


def price_text(value: Decimal, spec: SymbolSpec) -> str:
    """An order's price or stop price: the tick size's decimals (``"0"`` when unset)."""
    return "0" if value == 0 else fixed(value, decimals_of(spec.tick_size))


def avg_text(value: Decimal, spec: SymbolSpec) -> str:
    """An average or entry price: at least 5 decimals, as the venues print ``avgPrice``."""
    return fixed(value, max(5, decimals_of(spec.tick_size)))


def qty_text(value: Decimal, spec: SymbolSpec) -> str:
    """A quantity with the step size's decimals."""
    return fixed(value, decimals_of(spec.step_size))


def is_api_key(text: str) -> bool:
    """Binance-style API keys are 64 letters and digits; anything else is "format invalid"."""
    return bool(_API_KEY.match(text))


@dataclass
class SymbolConfig:
    leverage: int = 20
    margin_type: Literal["ISOLATED", "CROSSED"] = "ISOLATED"


@dataclass
class Position:
    """The one-way (``BOTH``) position of one symbol; ``amount`` is signed (short < 0)."""

    symbol: str
    amount: Decimal = ZERO
    entry_price: Decimal = ZERO
    isolated_wallet: Decimal = ZERO
    #: accumulated realized PnL of this symbol (``cr`` in ACCOUNT_UPDATE)
    realized: Decimal = ZERO
    update_ms: int = 0

    @property
    def side(self) -> int:
        return (self.amount > 0) - (self.amount < 0)


@dataclass
class Order:
    """An order of the matching engine (classic endpoint, or the child of a triggered algo order)."""

    order_id: int
    client_id: str
    symbol: str
    side: Side
    type: str  # current type: a triggered STOP_MARKET becomes MARKET, STOP becomes LIMIT
    orig_type: str
    time_in_force: str
    quantity: Decimal  # as sent; 0 for closePosition orders
    price: Decimal = ZERO
    stop_price: Decimal = ZERO
    reduce_only: bool = False
    close_position: bool = False
    working_type: str = "CONTRACT_PRICE"
    price_protect: bool = False
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    time_ms: int = 0
    update_ms: int = 0
    #: Binance ``er``: why the order expired (0 none, 4 reduce-only knocked out, 5 liquidation,
    #: 6 GTE condition (closePosition) unsatisfied, 8 initial order expired after trigger, 9 market
    #: order not filled completely)
    expiry_reason: int = 0
    #: the order was triggered (conditional) or never needed a trigger
    triggered: bool = True
    #: the algo order this order was created by (Binance), if any
    algo_id: int | None = None
    liquidation: bool = False
    #: a closePosition order's size, fixed when it triggers (the position it closes)
    close_size: Decimal = ZERO

    @property
    def is_open(self) -> bool:
        return self.status not in FINAL_STATUSES

    @property
    def size(self) -> Decimal:
        """The quantity this order fills up to."""
        return self.close_size if self.close_position else self.quantity

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO

    @property
    def remaining(self) -> Decimal:
        return self.size - self.executed_qty


@dataclass
class AlgoOrder:
    """A Binance conditional algo order (``/fapi/v1/algoOrder``)."""

    algo_id: int
    client_algo_id: str
    symbol: str
    side: Side
    order_type: str
    time_in_force: str
    quantity: Decimal
    trigger_price: Decimal
    price: Decimal = ZERO
    working_type: str = "CONTRACT_PRICE"
    price_protect: bool = False
    reduce_only: bool = False
    close_position: bool = False
    status: str = "NEW"
    actual_order_id: int | None = None
    create_ms: int = 0
    update_ms: int = 0
    trigger_ms: int = 0
    reject_reason: str = ""

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "TRIGGERING")


@dataclass(frozen=True)
class Trade:
    """One fill of one order (``userTrades``)."""

    trade_id: int
    order_id: int
    symbol: str
    side: Side
    price: Decimal
    qty: Decimal
    commission: Decimal  # positive: what the account paid
    realized_pnl: Decimal
    maker: bool
    time_ms: int

    @property
    def quote_qty(self) -> Decimal:
        return self.price * self.qty


@dataclass(frozen=True)
class Income:
    """One entry of the income history (REALIZED_PNL, COMMISSION, FUNDING_FEE, TRANSFER...)."""

    tran_id: int
    symbol: str
    income_type: str
    income: Decimal
    time_ms: int
    trade_id: int | None = None
    info: str = ""


@dataclass
class ListenKey:
    key: str
    expires_ms: int
    active: bool = True


@dataclass
class Account:
    """A trading account and everything the venue knows about it."""

    name: str
    account_id: int
    wallet: Decimal
    api_key: str | None = None
    api_secret: str | None = None
    #: Aster V3: the main wallet address and the API wallet (signer) address, checksummed
    user: str | None = None
    signer: str | None = None
    maker_rate: Decimal = Decimal("0.0002")
    taker_rate: Decimal = Decimal("0.0004")
    default_leverage: int = 20
    default_margin_type: Literal["ISOLATED", "CROSSED"] = "ISOLATED"
    configs: dict[str, SymbolConfig] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)
    algo_orders: dict[int, AlgoOrder] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    income: list[Income] = field(default_factory=list)
    listen_key: ListenKey | None = None
    update_ms: int = 0
    #: server times (ms) of accepted new-order requests, for the order-count headers and limits
    order_times: deque[int] = field(default_factory=deque)
    #: every user-data event produced for this account, in order (what a perfect listener saw)
    events: list[dict[str, object]] = field(default_factory=list)

    def config(self, symbol: str) -> SymbolConfig:
        if symbol not in self.configs:
            self.configs[symbol] = SymbolConfig(self.default_leverage, self.default_margin_type)
        return self.configs[symbol]

    def position(self, symbol: str) -> Position:
        if symbol not in self.positions:
            self.positions[symbol] = Position(symbol)
        return self.positions[symbol]

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self.orders.values() if o.is_open and (symbol is None or o.symbol == symbol)]

    def open_algo_orders(self, symbol: str | None = None) -> list[AlgoOrder]:
        return [a for a in self.algo_orders.values() if a.is_open and (symbol is None or a.symbol == symbol)]

    def order_by_client_id(self, client_id: str, symbol: str | None = None) -> Order | None:
        """The open order with this client id, else the most recent one (the venue's lookup)."""
        matches = [
            o for o in self.orders.values() if o.client_id == client_id and (symbol is None or o.symbol == symbol)
        ]
        open_ones = [o for o in matches if o.is_open]
        candidates = open_ones or matches
        return candidates[-1] if candidates else None

    def isolated_total(self) -> Decimal:
        return sum((p.isolated_wallet for p in self.positions.values()), ZERO)

    def cross_wallet(self) -> Decimal:
        return self.wallet - self.isolated_total()
