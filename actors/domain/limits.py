"""Risk limits (DESIGN.md §6): the per-account :class:`RiskLimits`, the service-wide
:class:`GlobalLimits`, their validation, and the parsing and merging of overrides (settings
``risk:``, ``PUT .../risk``) into them. Pure.

Split out of :mod:`actors.domain.risk` (the gate), which re-exports every public name here.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from decimal import Decimal
from typing import Literal

import msgspec

from .decisions import HARD_MAX_LEVERAGE
from .money import ZERO, BadAmount, fmt, to_decimal

__all__ = [
    "HUNDRED",
    "GlobalLimits",
    "InvalidLimits",
    "LossAction",
    "RiskLimits",
    "cooldown_until_after",
    "merge_global_limits",
    "merge_limits",
    "validate_global_limits",
    "validate_limits",
]

LossAction = Literal["reducing", "halted"]
HUNDRED = Decimal(100)


class InvalidLimits(ValueError):
    """A risk limit that cannot be accepted; ``field`` names it (None: the whole object)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class RiskLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-account risk limits (DESIGN §6 names). ``None`` turns a limit off.

    Money and percentages are Decimal (quote units; percent in (0, 100]). The leverage cap is
    never off and never above 25x; market data staleness is never off either. Construction
    validates (``__post_init__``), so an invalid value cannot exist; use :func:`merge_limits`
    to apply settings or API overrides and get an :class:`InvalidLimits` naming the field.
    """

    max_leverage: int = HARD_MAX_LEVERAGE
    cooldown_seconds: float = 0.0
    max_position_notional: Decimal | None = None
    max_total_notional: Decimal | None = None
    max_open_positions: int | None = None
    max_order_notional: Decimal | None = None
    min_notional: Decimal | None = None
    max_price_deviation_bps: Decimal | None = None
    require_stop_loss: bool = False
    daily_loss_limit: Decimal | None = None
    daily_loss_limit_pct: Decimal | None = None
    max_drawdown_pct: Decimal | None = None
    max_orders_per_minute: int | None = None
    max_orders_per_second: int | None = None
    market_data_max_age_seconds: float = 10.0
    on_loss_limit: LossAction = "halted"

    def __post_init__(self) -> None:
        validate_limits(self)


class GlobalLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Service-wide order-rate limits, over ``AccountView.global_recent_order_times``."""

    max_orders_per_second: int | None = None
    max_orders_per_minute: int | None = None

    def __post_init__(self) -> None:
        validate_global_limits(self)


# Field kinds drive both type validation and override parsing.
_Kind = Literal["int", "money", "pct", "seconds", "bool", "loss_action"]
_OPTIONAL = frozenset(
    {
        "max_position_notional",
        "max_total_notional",
        "max_open_positions",
        "max_order_notional",
        "min_notional",
        "max_price_deviation_bps",
        "daily_loss_limit",
        "daily_loss_limit_pct",
        "max_drawdown_pct",
        "max_orders_per_minute",
        "max_orders_per_second",
    }
)
_KINDS: dict[str, _Kind] = {
    "max_leverage": "int",
    "cooldown_seconds": "seconds",
    "max_position_notional": "money",
    "max_total_notional": "money",
    "max_open_positions": "int",
    "max_order_notional": "money",
    "min_notional": "money",
    "max_price_deviation_bps": "money",
    "require_stop_loss": "bool",
    "daily_loss_limit": "money",
    "daily_loss_limit_pct": "pct",
    "max_drawdown_pct": "pct",
    "max_orders_per_minute": "int",
    "max_orders_per_second": "int",
    "market_data_max_age_seconds": "seconds",
    "on_loss_limit": "loss_action",
}
_GLOBAL_KINDS: dict[str, _Kind] = {"max_orders_per_second": "int", "max_orders_per_minute": "int"}
# minimum allowed value per field, and whether it is inclusive
_MINIMA: dict[str, tuple[Decimal, bool]] = {
    "max_leverage": (Decimal(1), True),
    "cooldown_seconds": (ZERO, True),
    "max_position_notional": (ZERO, False),
    "max_total_notional": (ZERO, False),
    "max_open_positions": (Decimal(1), True),
    "max_order_notional": (ZERO, False),
    "min_notional": (ZERO, True),
    "max_price_deviation_bps": (ZERO, False),
    "daily_loss_limit": (ZERO, False),
    "daily_loss_limit_pct": (ZERO, False),
    "max_drawdown_pct": (ZERO, False),
    "max_orders_per_minute": (Decimal(1), True),
    "max_orders_per_second": (Decimal(1), True),
    "market_data_max_age_seconds": (ZERO, False),
}
assert set(_KINDS) == set(RiskLimits.__struct_fields__), "risk limit kinds out of sync"
assert set(_GLOBAL_KINDS) == set(GlobalLimits.__struct_fields__), "global limit kinds out of sync"


def _type_error(kind: _Kind, value: object) -> str | None:
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        want = "an integer"
    elif kind in ("money", "pct"):
        ok = isinstance(value, Decimal) and value.is_finite()
        want = "a finite decimal number"
    elif kind == "seconds":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        want = "a finite number of seconds"
    elif kind == "bool":
        ok = isinstance(value, bool)
        want = "true or false"
    else:
        ok = value in typing.get_args(LossAction)
        want = "'reducing' or 'halted'"
    return None if ok else f"must be {want}, got {value!r}"


def _check_fields(limits: msgspec.Struct, kinds: Mapping[str, _Kind], optional: frozenset[str]) -> None:
    for name, kind in kinds.items():
        value = getattr(limits, name)
        if value is None:
            if name in optional:
                continue
            raise InvalidLimits(name, "cannot be turned off")
        problem = _type_error(kind, value)
        if problem:
            raise InvalidLimits(name, problem)
        if kind == "pct" and value > HUNDRED:
            raise InvalidLimits(name, f"must be a percentage in (0, 100], got {fmt(value)}")
        if name in _MINIMA:
            floor, inclusive = _MINIMA[name]
            number = value if isinstance(value, Decimal) else to_decimal(value)
            if number < floor or (number == floor and not inclusive):
                relation = "at least" if inclusive else "greater than"
                raise InvalidLimits(name, f"must be {relation} {fmt(floor)}, got {fmt(number)}")


def validate_limits(limits: RiskLimits) -> None:
    """Raise :class:`InvalidLimits` for a value no account may run with."""
    _check_fields(limits, _KINDS, _OPTIONAL)
    if limits.max_leverage > HARD_MAX_LEVERAGE:
        raise InvalidLimits(
            "max_leverage", f"must be between 1 and {HARD_MAX_LEVERAGE} (hard cap), got {limits.max_leverage}"
        )
    if (
        limits.min_notional is not None
        and limits.max_order_notional is not None
        and limits.min_notional > limits.max_order_notional
    ):
        raise InvalidLimits(
            "min_notional",
            f"min_notional {fmt(limits.min_notional)} is above max_order_notional "
            f"{fmt(limits.max_order_notional)}: no order could pass",
        )


def validate_global_limits(limits: GlobalLimits) -> None:
    _check_fields(limits, _GLOBAL_KINDS, frozenset(_GLOBAL_KINDS))


def _parse(name: str, kind: _Kind, value: object) -> object:
    """Turn one override value (a JSON/YAML scalar) into the field's type, or raise."""
    if kind in ("money", "pct"):
        try:
            return to_decimal(value, what=name)
        except BadAmount as exc:
            raise InvalidLimits(name, str(exc)) from None
    if kind == "seconds":
        try:
            return float(to_decimal(value, what=name))
        except BadAmount as exc:
            raise InvalidLimits(name, str(exc)) from None
    if kind == "int":
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise InvalidLimits(name, f"must be an integer, got {value!r}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise InvalidLimits(name, f"must be true or false, got {value!r}")
    return value  # loss_action: checked by validation


def _merge(struct_type: type, kinds: Mapping[str, _Kind], defaults: msgspec.Struct, overrides: object) -> object:
    if not isinstance(overrides, Mapping):
        raise InvalidLimits(None, f"risk limits must be an object, got {type(overrides).__name__}")
    changes: dict[str, object] = {}
    for name, value in overrides.items():
        if name not in kinds:
            raise InvalidLimits(str(name), f"unknown risk limit {name!r}")
        changes[name] = None if value is None else _parse(name, kinds[name], value)
    candidate = msgspec.structs.replace(defaults, **changes)  # __post_init__ validates
    assert isinstance(candidate, struct_type)
    return candidate


def merge_limits(defaults: RiskLimits, overrides: Mapping[str, object]) -> RiskLimits:
    """Apply a partial dict of overrides (settings ``risk:`` or ``PUT .../risk``) to ``defaults``.

    Money and percentages may be JSON numbers or strings; integers may be integral strings;
    ``null`` turns an optional limit off. Raises :class:`InvalidLimits` naming the field for an
    unknown key, a wrong type or a value out of range (``max_leverage`` above 25 included).
    """
    merged = _merge(RiskLimits, _KINDS, defaults, overrides)
    assert isinstance(merged, RiskLimits)
    return merged


def merge_global_limits(defaults: GlobalLimits, overrides: Mapping[str, object]) -> GlobalLimits:
    merged = _merge(GlobalLimits, _GLOBAL_KINDS, defaults, overrides)
    assert isinstance(merged, GlobalLimits)
    return merged


def cooldown_until_after(now: float, limits: RiskLimits) -> float | None:
    """When a cooldown started at ``now`` ends (None when cooldowns are off)."""
    return now + limits.cooldown_seconds if limits.cooldown_seconds > 0 else None
