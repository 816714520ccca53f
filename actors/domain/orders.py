"""An account's orders and fills as it records them, and the ids that tie them to a venue.

Three ids per order, kept apart as piker keeps its ``oid`` apart from the broker's ``reqid``:

* ``id``: the account's own readable id, from the decision and the leg (``d-42.entry``,
  ``<position>:stop_loss``); the API shows it and cancels by it;
* ``client_order_id``: what the venue knows the order by (``newClientOrderId`` /
  ``clientAlgoId``), derived deterministically from (account, order id, revision) and matching
  the venues' rule ``^[.A-Z:/a-z0-9_-]{1,36}$``, so that a retry or a restart can always ask the
  venue what became of it;
* ``venue_order_id``: the venue's own id, once it answered.

Statuses are the venues' (``NEW``, ``PARTIALLY_FILLED``, ``FILLED``, ``CANCELED``, ``REJECTED``,
``EXPIRED``) plus ``PENDING_NEW``: the intent is durable, the venue's answer is not known yet.
Reports may arrive out of order; a status never moves back (:func:`later_status`).
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from typing import Final, Literal

import msgspec

from .money import ZERO

OrderStatus = Literal["PENDING_NEW", "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED"]
OrderPurpose = Literal["entry", "exit", "take_profit", "stop_loss", "close_all", "liquidation", "flatten", "external"]
OPEN_STATUSES: Final = frozenset({"PENDING_NEW", "NEW", "PARTIALLY_FILLED"})
TERMINAL_STATUSES: Final = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED"})
_RANK: Final[dict[str, int]] = {
    "PENDING_NEW": 0, "NEW": 1, "PARTIALLY_FILLED": 2,
    "FILLED": 3, "CANCELED": 3, "REJECTED": 3, "EXPIRED": 3,
}
CLIENT_ORDER_ID_PATTERN: Final = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}\Z")
_LEG_CODES: Final[dict[str, str]] = {
    "entry": "en", "exit": "ex", "take_profit": "tp", "stop_loss": "sl", "close_all": "ca",
    "liquidation": "lq", "external": "xt", "flatten": "fl",
}
PROTECTIVE: Final = ("stop_loss", "take_profit")  # the order they are placed in: stop-loss first


def later_status(current: str, reported: str) -> str:
    """The status after a report: never back (a late ``NEW`` after ``FILLED`` changes nothing)."""
    if current in TERMINAL_STATUSES:
        return current
    return reported if _RANK[reported] >= _RANK[current] else current


def client_order_id(account_id: str, order_id: str, purpose: str, revision: int = 0) -> str:
    """The venue's client order id of an order: a leg code and 130 bits of a hash of
    (account, order id, revision); 29 characters of ``[a-z2-7-]``, within the venues' rule."""
    digest = hashlib.sha256(f"{account_id}\x1f{order_id}\x1f{revision}".encode()).digest()
    code = _LEG_CODES.get(purpose, "or")
    # the first 26 characters of the lower-case RFC 4648 base 32 of the digest: its first 130 bits,
    # ten at a time (base64.b32encode gives the same text at several times the cost)
    bits = int.from_bytes(digest[:17], "big") >> 6
    pairs = _B32_PAIRS
    return code + "-" + "".join([pairs[(bits >> shift) & 1023] for shift in range(120, -1, -10)])


_B32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
#: every 10-bit value as its two base-32 characters
_B32_PAIRS: Final[tuple[str, ...]] = tuple(a + b for a in _B32_ALPHABET for b in _B32_ALPHABET)


class OrderRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One order of the account, as the account knows it (the venue's copy may be ahead)."""

    id: str
    account_id: str
    decision_id: str | None
    position_id: str | None
    symbol: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT | STOP_MARKET | TAKE_PROFIT_MARKET | LIQUIDATION
    purpose: str  # entry | exit | take_profit | stop_loss | liquidation | close_all | external
    reduce_only: bool
    quantity: Decimal | None  # None: closes the whole position (closePosition)
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    status: str = "NEW"
    filled_quantity: Decimal = ZERO
    avg_price: Decimal | None = None  # cum_quote / filled_quantity
    cum_quote: Decimal = ZERO  # the exact sum of price x quantity of the fills
    fee: Decimal = ZERO
    leverage: int | None = None  # entries: the leverage the position is opened at
    take_profit: Decimal | None = None  # resting entries: protection to attach once filled
    stop_loss: Decimal | None = None
    reject_code: str | None = None
    reject_message: str | None = None
    client_order_id: str = ""
    venue_order_id: str | None = None
    sent_at: float | None = None
    revision: int = 0
    #: the most the venue said it filled: fills still on their way make up the difference
    venue_filled: Decimal = ZERO
    created_at: float
    updated_at: float

    @property
    def remaining(self) -> Decimal:
        return (self.quantity or ZERO) - self.filled_quantity

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def settled(self) -> bool:
        """The venue is done with the order and every fill it counted is in."""
        return self.status in TERMINAL_STATUSES and self.filled_quantity >= self.venue_filled

    @property
    def decided(self) -> bool:
        """Whether the venue has decided the order for the decision that placed it: a market
        order is done and every fill it counted is in, any other order was accepted or refused."""
        return self.settled if self.type == "MARKET" else self.status != "PENDING_NEW"

    @property
    def is_resting(self) -> bool:
        """A limit order working on the book."""
        return self.type == "LIMIT" and self.status in OPEN_STATUSES

    @property
    def is_protective(self) -> bool:
        return self.purpose in PROTECTIVE

    @property
    def is_conditional(self) -> bool:
        return self.type in ("STOP_MARKET", "TAKE_PROFIT_MARKET")


class FillRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One execution (a trade, in the venues' ``userTrades`` sense)."""

    id: str
    account_id: str
    order_id: str
    decision_id: str | None
    position_id: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str = "USDT"
    liquidity: str
    realized_pnl: Decimal
    trigger_price: Decimal | None
    top_of_book_only: bool
    ts: float


class FundingPayment(msgspec.Struct, frozen=True, kw_only=True):
    """Funding settled on a position at one of the venue's funding times (negative = paid)."""

    account_id: str
    position_id: str
    symbol: str
    rate: Decimal | None
    mark: Decimal | None
    amount: Decimal
    funding_time: int  # epoch ms
    ts: float
