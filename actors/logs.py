"""Logs a person or a machine can read: ``text`` (the default) or ``json`` lines.

A JSON line is one object: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, and, when
known, ``account_id``, ``decision_id``, ``client_order_id``, ``venue``, ``latency_ms`` (plus any
other ``extra=`` field of the call, and ``exception`` with the traceback). The context fields come
from the call's ``extra=`` or from :func:`log_context`: a task that serves one account (its actor,
its restart loop) sets them once, and every line it logs carries them (trio tasks inherit the
context of the task that started them).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]
CONTEXT_FIELDS = ("account_id", "decision_id", "client_order_id", "venue", "latency_ms")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("execd_log_context", default={})
# the attributes every LogRecord has: anything else on a record came from ``extra=``
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class log_context:  # noqa: N801 - used as a function: ``with log_context(decision_id=...):``
    """Add ``fields`` to every line logged by this task (and the tasks it starts) in the block.

    A plain class, not a generator context manager: every decision enters one, and this costs a
    third as much."""

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        fields = self._fields
        self._token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})

    def __exit__(self, *exc: object) -> None:
        _context.reset(self._token)


def set_log_context(**fields: Any) -> None:
    """Add ``fields`` to the current task's log context for the rest of the task."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_context.get())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class _ContextText(logging.Formatter):
    """The text format, with the context fields appended as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = {**_context.get(), **{k: getattr(record, k) for k in CONTEXT_FIELDS if getattr(record, k, None)}}
        if fields:
            text += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return text


def configure_logging(level: str = "INFO", log_format: LogFormat = "text", stream: TextIO | None = None) -> None:
    """Send the service's logs to ``stream`` (stderr) in ``log_format``, replacing other handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else _ContextText(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
