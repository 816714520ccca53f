"""Take-profit and stop-loss: the one home of their rules.

* **Sides.** A long needs ``stop_loss < reference < take_profit`` (and ``stop_loss < take_profit``),
  a short the reverse; the reference is the entry reference (mark, or a limit order's price) when
  a decision opens, the mark when protection is moved (:func:`tpsl_problem`).
* **Trigger direction.** A long's take-profit fires when the price rises to it, its stop-loss when
  the price falls to it; a short's the reverse (:func:`trigger_direction`). ``price >= threshold``
  fires an ``above`` trigger, ``price <= threshold`` a ``below`` one (:func:`is_crossed`) — the
  venues' rule (STOP SELL when price <= stopPrice, TAKE_PROFIT SELL when price >= stopPrice).
* **Order types.** A stop-loss is a ``STOP_MARKET``, a take-profit a ``TAKE_PROFIT_MARKET``, both
  ``closePosition``; the stop-loss is placed first.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from .filters import price_bound_crossed
from .market import SymbolFilters
from .money import fmt8

Direction = Literal["above", "below"]
ProtectivePurpose = Literal["take_profit", "stop_loss"]
ORDER_TYPES: dict[str, str] = {"stop_loss": "STOP_MARKET", "take_profit": "TAKE_PROFIT_MARKET"}


def trigger_direction(side: str, purpose: str) -> Direction:
    """Which way the price must cross a position's protective trigger for it to fire."""
    long = side == "long"
    if purpose == "take_profit":
        return "above" if long else "below"
    return "below" if long else "above"


def is_crossed(direction: str, threshold: Decimal, price: Decimal) -> bool:
    """``price >= threshold`` fires ``above``; ``price <= threshold`` fires ``below``."""
    return price >= threshold if direction == "above" else price <= threshold


def tpsl_problem(side: str, reference: Decimal | None, take_profit: Decimal | None, stop_loss: Decimal | None,
                 *, reference_name: str = "mark", filters: SymbolFilters | None = None) -> str | None:
    """What is wrong with these levels for a ``side`` position, or None when they are valid.

    ``filters``: the symbol's on the venue. A level beyond its price bounds is one the venue would
    refuse, after the entry filled: the position would be closed again, unprotected, at a cost."""
    long = side == "long"
    if filters is not None:
        for name, level in (("take_profit", take_profit), ("stop_loss", stop_loss)):
            crossed = price_bound_crossed(filters, level) if level is not None else None
            if crossed == "minimum":
                return f"{name} {fmt8(level)} is below the venue's minimum price {fmt8(filters.min_price)}"
            if crossed == "maximum":
                return f"{name} {fmt8(level)} is above the venue's maximum price {fmt8(filters.max_price)}"
    if take_profit is not None and stop_loss is not None and (stop_loss >= take_profit if long
                                                              else stop_loss <= take_profit):
        relation = "below" if long else "above"
        return f"{side} stop_loss {fmt8(stop_loss)} must be {relation} take_profit {fmt8(take_profit)}"
    if reference is None:
        return None
    if take_profit is not None and (take_profit <= reference if long else take_profit >= reference):
        relation = "above" if long else "below"
        return f"{side} take_profit {fmt8(take_profit)} must be {relation} the {reference_name} {fmt8(reference)}"
    if stop_loss is not None and (stop_loss >= reference if long else stop_loss <= reference):
        relation = "below" if long else "above"
        return f"{side} stop_loss {fmt8(stop_loss)} must be {relation} the {reference_name} {fmt8(reference)}"
    return None
