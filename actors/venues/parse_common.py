"""What the venue parsers share: :class:`ParseError`, the payload types, the decoding helper and
the checks that keep NaN / Infinity out of books and marks.

Split out of :mod:`actors.venues.parsing` (REST payloads) and :mod:`actors.venues.market_frames`
(websocket market streams), which both use it; :mod:`actors.venues.parsing` re-exports the
public names here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from actors.domain.market import MarkPrice, OrderBook

__all__ = ["ParseError", "Raw"]

Raw = bytes | str
_Payload = bytes | str | msgspec.Raw  # a frame, or the still-encoded ``data`` of one
_Levels = tuple[tuple[Decimal, Decimal], ...]


class ParseError(ValueError):
    """A venue payload that does not have the expected shape.

    ``what`` names the payload (``"depth"``, ``"stream btcusdt@bookTicker"``...); the message
    includes msgspec's path to the offending field and an excerpt of the payload.
    """

    def __init__(self, what: str, detail: str, raw: _Payload = b"") -> None:
        self.what = what
        self.detail = detail
        excerpt = raw[:120] if isinstance(raw, str) else bytes(raw)[:120].decode("utf-8", "replace")
        super().__init__(f"cannot parse {what}: {detail}" + (f" (payload: {excerpt!r})" if excerpt else ""))


def _decode(decoder: msgspec.json.Decoder[Any], raw: _Payload, what: str) -> Any:
    try:
        return decoder.decode(raw)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise ParseError(what, str(exc), raw) from None


def _optional_decimal(text: str, what: str) -> Decimal | None:
    if not text:
        return None
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise ParseError(what, f"not a decimal: {text!r}") from None
    if not value.is_finite():
        raise ParseError(what, f"not a finite number: {text!r}")
    return value


def _finite_book(book: OrderBook, what: str) -> OrderBook:
    # msgspec accepts "NaN" and "Infinity" as Decimals; a NaN price would poison every comparison
    for side in (book.bids, book.asks):
        for price, qty in side:
            if not (price.is_finite() and qty.is_finite()):
                raise ParseError(what, f"non-finite level ({price}, {qty})")
    return book


def _finite_mark(mark: MarkPrice, what: str) -> MarkPrice:
    if not mark.mark.is_finite():
        raise ParseError(what, f"non-finite mark price {mark.mark}")
    return mark


def _may_be_non_finite(raw: Raw) -> bool:
    """Whether a frame could hold NaN / Infinity: every spelling contains an "n" or "N".

    Market frames rarely do (only symbol names like BNBUSDT), so the exact per-value check of a
    20-level book runs only when needed.
    """
    if isinstance(raw, str):
        return "n" in raw or "N" in raw
    return b"n" in raw or b"N" in raw
