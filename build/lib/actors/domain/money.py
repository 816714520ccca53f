"""Decimal money helpers: parsing, rounding to venue steps and ticks, formatting.

Pure: no I/O, no clock. Every amount in the domain is a :class:`decimal.Decimal`.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal, InvalidOperation

import msgspec

ZERO = Decimal(0)
ONE = Decimal(1)
CENT = Decimal("0.01")
BPS = Decimal(10_000)
EIGHT_PLACES = Decimal("1e-8")


class BadAmount(ValueError):
    """An amount that is not a finite decimal number."""


def to_decimal(value: object, *, what: str = "amount") -> Decimal:
    """Convert a JSON number or string to a finite Decimal, refusing NaN, inf and junk.

    Floats are converted through ``repr`` so that ``0.1`` becomes ``Decimal("0.1")``.
    """
    if isinstance(value, bool):
        raise BadAmount(f"{what} must be a number or a numeric string, got a boolean")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise BadAmount(f"{what} is not a number: {value!r}") from None
    else:
        raise BadAmount(f"{what} must be a number or a numeric string, got {type(value).__name__}")
    if not result.is_finite():
        raise BadAmount(f"{what} must be finite, got {value!r}")
    return result


def round_step_down(quantity: Decimal, step: Decimal) -> Decimal:
    """Round a quantity down to a multiple of ``step`` (what venues do to a LOT_SIZE)."""
    if step <= 0:
        return quantity
    return (quantity / step).to_integral_value(rounding=ROUND_DOWN) * step


def round_to_tick(price: Decimal, tick: Decimal, *, up: bool | None = None) -> Decimal:
    """Round a price to the tick grid: nearest by default, or up/down when asked."""
    if tick <= 0:
        return price
    rounding = ROUND_HALF_EVEN if up is None else (ROUND_UP if up else ROUND_DOWN)
    return (price / tick).to_integral_value(rounding=rounding) * tick


def is_multiple(value: Decimal, step: Decimal) -> bool:
    if step <= 0:
        return True
    return (value % step) == 0


def fmt(value: Decimal | None) -> str | None:
    """Render a Decimal for the wire: plain notation, no exponent, no trailing zeros."""
    if value is None:
        return None
    text = str(value)
    if "E" in text:
        text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def fmt8(value: Decimal) -> str:
    """A number for messages and audit details: plain notation, at most 8 decimals."""
    if value.is_finite() and value.as_tuple().exponent < -8:  # type: ignore[operator]
        value = value.quantize(EIGHT_PLACES, rounding=ROUND_HALF_EVEN)
    return fmt(value) or "0"


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


def bps_between(a: Decimal, b: Decimal) -> Decimal:
    """|a - b| / b in basis points."""
    if b == 0:
        return Decimal("Infinity")
    return abs(a - b) / b * BPS


def plain(value: object) -> object:
    """JSON-ready copy of nested builtins/Structs with every Decimal rendered by :func:`fmt`."""
    if isinstance(value, msgspec.Struct):
        value = msgspec.structs.asdict(value)
    if isinstance(value, Decimal):
        return fmt(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
