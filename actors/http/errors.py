"""API errors: one exception type, one JSON shape ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from ..messages import AccountUnavailable, ActorCrashed, CommandRefused, DecisionConflict, UnknownAccount


class APIError(Exception):
    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.body = body

    def payload(self) -> dict[str, Any]:
        error = {"code": self.code, "message": self.message, "field": self.field}
        if self.body is not None:
            return {**self.body, "error": error}
        return {"error": error}


_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def from_validation_error(exc: msgspec.ValidationError | msgspec.DecodeError) -> APIError:
    """Turn msgspec's message into a 400 that names the field path."""
    text = str(exc)
    match = _AT.match(text)
    message = match.group("message") if match else text
    path = (match.group("path") or "").lstrip(".") if match else ""
    unknown = re.match(r"Object contains unknown field `(.+)`", message)
    missing = re.match(r"Object missing required field `(.+)`", message)
    if unknown:
        field = ".".join(p for p in (path, unknown.group(1)) if p)
        return APIError(400, "UNKNOWN_FIELD", f"unknown field {field!r}", field=field)
    if missing:
        field = ".".join(p for p in (path, missing.group(1)) if p)
        return APIError(400, "MISSING_FIELD", f"missing required field {field!r}", field=field)
    # ValidationError subclasses DecodeError: only a real decode error means the JSON is broken
    if not isinstance(exc, msgspec.ValidationError) and not path:
        return APIError(400, "MALFORMED_JSON", f"the body is not valid JSON: {message}")
    field = path or None
    return APIError(400, "INVALID_FIELD", f"{field}: {message}" if field else message, field=field)


def refusal_error(error: Exception) -> APIError | None:
    """The API error an account's refusal answers (the app's handlers and the decision stream
    share it), or None for an exception that is no refusal."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, UnknownAccount):
        return APIError(404, "UNKNOWN_ACCOUNT", f"no account {error.account_id!r}")
    if isinstance(error, AccountUnavailable):
        retry = str(max(1, int(round(error.retry_after))))
        return APIError(503, "ACCOUNT_UNAVAILABLE", str(error), headers={"Retry-After": retry})
    if isinstance(error, ActorCrashed):
        return APIError(503, "ACCOUNT_RESTARTING", f"{error}; retry with the same id", headers={"Retry-After": "1"})
    if isinstance(error, DecisionConflict):
        return APIError(409, "IDEMPOTENCY_CONFLICT", str(error), field="decision_id")
    if isinstance(error, CommandRefused):
        return APIError(error.status, error.code, error.message, field=error.field)
    return None
