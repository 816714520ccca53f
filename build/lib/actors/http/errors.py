"""API errors: one exception type, one JSON shape ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

import re
from typing import Any

import msgspec


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
