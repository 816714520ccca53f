"""What every route shares: JSON answers, bodies, pages (keyset cursors), waiting on an account.

Every error body is ``{"error": {"code", "message", "field"}}``; money is a JSON string; lists are
``{"items": [...], "next_cursor": ...}`` with keyset cursors, newest first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import trio
from quart import Response, request

from ..messages import Reply
from ..persistence import Reader
from ..persistence.queries import keyset_sql
from .errors import APIError, from_validation_error

_encoder = msgspec.json.Encoder(decimal_format="string")


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``payload`` encoded once (bytes are sent as they are: a stored decision result)."""
    body = payload if isinstance(payload, bytes) else _encoder.encode(payload)
    return Response(body, status=status, headers=headers, content_type="application/json")


def cursor_encode(seq: int) -> str:
    """The cursor after row ``seq`` (opaque to clients: pass back what the page gave)."""
    return str(seq)


def cursor_decode(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
        raise APIError(400, "INVALID_CURSOR", "cursor is not one this API returned", field="cursor")
    return int(cursor)


def page_limit(default: int = 50, maximum: int = 500) -> int:
    raw = request.args.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise APIError(400, "INVALID_FIELD", f"limit must be an integer, got {raw!r}", field="limit") from None
    if not 1 <= value <= maximum:
        raise APIError(400, "INVALID_FIELD", f"limit must be between 1 and {maximum}", field="limit")
    return value


def decode(body: bytes, type_: type, *, limits_status: int | None = None) -> Any:
    """``body`` decoded as ``type_``, or a 400 naming the field. With ``limits_status``, a fault
    in risk limits (the body's own, or its ``risk``) is ``INVALID_LIMIT`` with that status."""
    try:
        return msgspec.json.decode(body, type=type_)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        error = from_validation_error(exc)
        if limits_status is not None and error.field and isinstance(exc, msgspec.ValidationError):
            is_risk = type_.__name__ == "RiskOverrides" or error.field.startswith("risk.")
            if is_risk and error.field != "risk":
                raise APIError(limits_status, "INVALID_LIMIT", error.message, field=error.field) from None
        raise error from None


async def read_body() -> bytes:
    return await request.get_data(cache=False)


async def wait_reply(reply: Reply[Any], timeout: float) -> Any:
    """An account's answer, bounded by the request timeout (decisions have their own 202 path).
    Refusals raised by the account (unavailable, crashed, refused) reach the app's handlers."""
    try:
        with trio.fail_after(timeout):
            return await reply.wait()
    except trio.TooSlowError:
        raise APIError(503, "ACCOUNT_BUSY", f"the account did not answer within {timeout:g} s; retry",
                       headers={"Retry-After": "1"}) from None


async def keyset_page(reader: Reader, account_id: str, table: str, view: Callable[[dict[str, Any]], Any],
                      where: str | None = None) -> Response:
    limit = page_limit()
    before = cursor_decode(request.args.get("cursor"))
    params: list[Any] = [account_id]
    if before is not None:
        params.append(before)
    params.append(limit + 1)
    rows = await reader.fetchall(keyset_sql(table, where, before is not None), params)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = cursor_encode(rows[-1]["seq"]) if more and rows else None
    return json_response({"items": [view(r) for r in rows], "next_cursor": next_cursor})
