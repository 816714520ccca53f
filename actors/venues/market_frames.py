"""Pure parsers of websocket market-stream frames (AsterDEX / Binance USDⓈ-M combined streams,
raw ``/ws/<stream>`` events, SUBSCRIBE replies) into the domain's market types.

No I/O and no clock: the caller passes ``received_at``. The hot path (a combined-stream market
event) is decoded in one pass by a cached :class:`msgspec.json.Decoder`. Split out of
:mod:`actors.venues.parsing` (REST payloads), which re-exports every public name here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

import msgspec

from actors.domain.market import MarkPrice, OrderBook

from .parse_common import (
    ParseError, Raw, _decode, _finite_book, _finite_mark, _Levels, _may_be_non_finite, _optional_decimal, _Payload,
)

__all__ = ["ControlReply", "StreamFrame", "parse_frame", "parse_stream_message"]


# websocket events (``gc=False``: short-lived and acyclic, so the collector need not track them)


class _WsBookTicker(msgspec.Struct, frozen=True, gc=False, tag_field="e", tag="bookTicker"):
    s: str
    b: Decimal
    B: Decimal
    a: Decimal
    A: Decimal
    E: int = 0
    T: int = 0
    u: int = 0


class _WsMarkPrice(msgspec.Struct, frozen=True, gc=False, tag_field="e", tag="markPriceUpdate"):
    s: str
    p: Decimal
    E: int = 0
    i: str = ""
    r: str = ""  # "" on delivery contracts
    T: int = 0


class _WsDepth(msgspec.Struct, frozen=True, gc=False, tag_field="e", tag="depthUpdate"):
    s: str
    b: _Levels
    a: _Levels
    E: int = 0
    T: int = 0
    u: int = 0


class _MarketFrame(msgspec.Struct, frozen=True, gc=False):
    """The hot path: a combined-stream market event, decoded in one pass (``e`` picks the type)."""

    stream: str
    data: _WsBookTicker | _WsMarkPrice | _WsDepth


class _WsError(msgspec.Struct, frozen=True):
    code: int | str = 0
    msg: str = ""


_NO_RAW: Final = msgspec.Raw()


class _Envelope(msgspec.Struct, frozen=True):
    """Any frame on a market stream: combined-stream data, a raw event, or a control reply."""

    stream: str | None = None
    data: msgspec.Raw = _NO_RAW  # empty when absent
    e: str | None = None  # raw ``/ws/<stream>`` events carry their type at the top level
    id: int | str | None = None
    result: msgspec.Raw = _NO_RAW
    error: _WsError | None = None
    code: int | str | None = None  # Binance's flat control errors: {"code": 2, "msg": ..., "id": n}
    msg: str | None = None


class ControlReply(msgspec.Struct, frozen=True, kw_only=True):
    """A reply to SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS (``{"result": null, "id": 1}``)."""

    id: int | str | None
    result: Any = None
    error_code: int | str | None = None
    error_msg: str = ""

    @property
    def ok(self) -> bool:
        return self.error_code is None


StreamFrame = OrderBook | MarkPrice | ControlReply | None

_dec_envelope: Final = msgspec.json.Decoder(_Envelope)
_dec_market_frame: Final = msgspec.json.Decoder(_MarketFrame)
_dec_ws_book_ticker: Final = msgspec.json.Decoder(_WsBookTicker)
_dec_ws_mark: Final = msgspec.json.Decoder(_WsMarkPrice)
_dec_ws_depth: Final = msgspec.json.Decoder(_WsDepth)
_dec_any: Final = msgspec.json.Decoder()


def _ticker_book(t: _WsBookTicker, received_at: float) -> OrderBook:
    return OrderBook(
        symbol=t.s,
        bids=((t.b, t.B),),
        asks=((t.a, t.A),),
        venue_ms=t.E or t.T,
        received_at=received_at,
        depth=False,
        update_id=t.u,
    )


def _update_mark(m: _WsMarkPrice, received_at: float, what: str) -> MarkPrice:
    return MarkPrice(
        symbol=m.s,
        mark=m.p,
        index=_optional_decimal(m.i, what),
        funding_rate=_optional_decimal(m.r, what) or Decimal(0),
        next_funding_ms=m.T,
        venue_ms=m.E,
        received_at=received_at,
    )


def _depth_book(d: _WsDepth, received_at: float) -> OrderBook:
    return OrderBook(
        symbol=d.s,
        bids=d.b,
        asks=d.a,
        venue_ms=d.E or d.T,
        received_at=received_at,
        depth=True,
        update_id=d.u,
    )


def _is_partial_depth(stream: str) -> bool:
    # <symbol>@depth<N>[@speed] is a partial book; <symbol>@depth[@speed] a diff update, which is
    # not a book and must never be published as one
    kind = stream.partition("@")[2]
    return kind.startswith("depth") and kind[5:6].isdigit()


def _market_item(
    data: _WsBookTicker | _WsMarkPrice | _WsDepth, stream: str, received_at: float
) -> OrderBook | MarkPrice | None:
    if type(data) is _WsBookTicker:
        return _ticker_book(data, received_at)
    if type(data) is _WsMarkPrice:
        return _update_mark(data, received_at, stream)
    return _depth_book(data, received_at) if _is_partial_depth(stream) else None


def parse_frame(raw: Raw, received_at: float) -> StreamFrame:
    """Parse one websocket frame of a market stream.

    Returns an :class:`OrderBook` (``bookTicker``: top of book, ``depth<N>``: partial L2), a
    :class:`MarkPrice` (``markPriceUpdate``), a :class:`ControlReply` (answer to SUBSCRIBE...),
    or ``None`` for a well-formed frame we do not use.

    The common case, a combined-stream market event, is decoded in a single pass; anything else
    (control replies, raw events, other streams, malformed frames) takes a slower path that
    classifies the frame and explains what is wrong with it.

    Raises:
        ParseError: the frame is not JSON, or a market event lacks a field or has a bad value.
    """
    try:
        frame: _MarketFrame = _dec_market_frame.decode(raw)
    except msgspec.DecodeError:
        return _parse_other_frame(raw, received_at)
    item = _market_item(frame.data, frame.stream, received_at)
    if item is not None and _may_be_non_finite(raw):
        return _finite_item(item, frame.stream)
    return item


def _finite_item(item: OrderBook | MarkPrice, what: str) -> OrderBook | MarkPrice:
    return _finite_book(item, what) if isinstance(item, OrderBook) else _finite_mark(item, what)


def _parse_other_frame(raw: Raw, received_at: float) -> StreamFrame:
    env: _Envelope = _decode(_dec_envelope, raw, "stream frame")
    item: OrderBook | MarkPrice | None
    if env.stream is not None:
        if not env.data:
            raise ParseError(f"stream {env.stream}", "combined-stream message without data", raw)
        item = _parse_stream_data(env.stream, env.data, received_at)
        what = env.stream
    elif env.e is not None:
        item = _parse_raw_event(env.e, raw, received_at)
        what = env.e
    else:
        return _control_reply(env)
    return _finite_item(item, what) if item is not None else None


def _parse_stream_data(stream: str, data: _Payload, received_at: float) -> OrderBook | MarkPrice | None:
    # dispatch on the stream name: <symbol>@bookTicker, <symbol>@markPrice[@1s], <symbol>@depth<N>...
    kind = stream.partition("@")[2]
    if kind == "bookTicker":
        return _ticker_book(_decode(_dec_ws_book_ticker, data, stream), received_at)
    if kind.startswith("markPrice"):
        return _update_mark(_decode(_dec_ws_mark, data, stream), received_at, stream)
    if _is_partial_depth(stream):
        return _depth_book(_decode(_dec_ws_depth, data, stream), received_at)
    return None


def _parse_raw_event(event: str, raw: Raw, received_at: float) -> OrderBook | MarkPrice | None:
    # an un-enveloped event (``/ws/<stream>``): partial and diff depth share ``depthUpdate``, so a
    # raw depth event cannot be told apart and is not handled (use the combined stream)
    if event == "bookTicker":
        return _ticker_book(_decode(_dec_ws_book_ticker, raw, event), received_at)
    if event == "markPriceUpdate":
        return _update_mark(_decode(_dec_ws_mark, raw, event), received_at, event)
    return None


def _control_reply(env: _Envelope) -> ControlReply | None:
    if env.error is not None:
        return ControlReply(id=env.id, error_code=env.error.code, error_msg=env.error.msg)
    if env.code is not None:
        return ControlReply(id=env.id, error_code=env.code, error_msg=env.msg or "")
    if env.id is not None or env.result:
        result = _dec_any.decode(env.result) if env.result else None
        return ControlReply(id=env.id, result=result)
    return None


def parse_stream_message(raw: Raw, received_at: float) -> OrderBook | MarkPrice | None:
    """Parse one combined-stream market message; anything that is not market data gives None.

    This is the entry point of the replay venue (a JSONL file of combined-stream messages).

    Raises:
        ParseError: a malformed frame (to be counted and skipped by the caller).
    """
    frame = parse_frame(raw, received_at)
    return None if isinstance(frame, ControlReply) else frame
