"""Statements and column values: how a write is described before the persistence actor runs it.

SQL is written once, in the dialect SQLite and PostgreSQL share (``?`` placeholders, ``INSERT ...
ON CONFLICT (...) DO UPDATE SET c = excluded.c``), so a backend only translates placeholders.
Money is TEXT, written exactly (never through a float).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NamedTuple


class Statement(NamedTuple):
    sql: str
    params: Sequence[Any] = ()


def text(value: Decimal | None) -> str | None:
    """Decimals are stored as TEXT, exactly (no float on the way)."""
    if value is None:
        return None
    # str() is plain notation unless the exponent is positive or the number very small; it is
    # then what format "f" gives, at a third of the cost
    rendered = str(value)
    return format(value, "f") if "E" in rendered else rendered


def dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


_SQL_CACHE: dict[tuple[str, tuple[str, ...], tuple[str, ...] | None], str] = {}


def upsert(table: str, row: dict[str, Any], *, key: tuple[str, ...] | None = ("id",)) -> Statement:
    """``INSERT ... ON CONFLICT(key) DO UPDATE`` (a plain insert when ``key`` is None)."""
    columns = tuple(row)
    cache_key = (table, columns, key)
    sql = _SQL_CACHE.get(cache_key)
    if sql is None:
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"
        if key is not None:
            updates = ", ".join(f"{c}=excluded.{c}" for c in columns if c not in key)
            sql += f" ON CONFLICT({', '.join(key)}) DO UPDATE SET {updates}"
        _SQL_CACHE[cache_key] = sql
    return Statement(sql, tuple(row.values()))


def insert(table: str, row: dict[str, Any]) -> Statement:
    return upsert(table, row, key=None)
