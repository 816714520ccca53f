"""A position's protection: its stop-loss, then its take-profit, placed on the venue after the
entry fills (or moved by ``PUT .../protection``), and what happens when the venue will not hold one.

* ``-2021`` "Order would immediately trigger": the market is already through the level, so the
  position is closed at once, reduce-only at market (what the trigger would have done).
* Any other refusal, or no confirmation within the protection deadline: the position cannot be
  left unprotected, so it is closed reduce-only at market, ``protection.failed`` is raised and the
  account goes to ``reducing``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

import msgspec

from ..domain import planner
from ..domain.book import Changes
from ..domain.events import ProtectionFailed
from ..domain.filters import VenueReject
from ..domain.orders import OrderRecord
from ..domain.positions import Position

if TYPE_CHECKING:
    from .actor import AccountActor

WOULD_IMMEDIATELY_TRIGGER = -2021


class Protected(NamedTuple):
    position: Position  # as it stands after
    #: levels the venue would not move (the old order's cancel was refused: it stays in force)
    kept: dict[str, VenueReject]


async def protect(actor: AccountActor, changes: Changes, position: Position, take_profit: Decimal | None,
                  stop_loss: Decimal | None, *, decision_id: str | None) -> Protected:
    """Place (or move) the levels. A level whose old order the venue would not cancel is not
    moved (two stops would be working): the old one stays, and is reported in ``kept``."""
    plan = planner.plan_protection(changes, position, take_profit, stop_loss, decision_id=decision_id)
    kept: dict[str, VenueReject] = {}
    for cancel in plan.cancels:
        refusal = await actor.cancel(changes, cancel)
        if refusal is not None:
            old = changes.order(cancel.order_id)
            assert old is not None
            kept[old.purpose] = refusal
    levels = {purpose: getattr(position, purpose) for purpose in kept}
    changes.put_position(msgspec.structs.replace(plan.position, **levels) if levels else plan.position)
    for planned in plan.orders:
        order = planned.order
        if order.purpose in kept:
            continue
        execution = await actor.send(changes, planned, timeout=actor.ctx.protection_deadline_seconds)
        order = execution.order
        if order.status == "REJECTED" or order.status == "PENDING_NEW":
            await _unprotectable(actor, changes, order, execution.rejected.code if execution.rejected else None)
            break
        planner.protection_placed(changes, order)
    return Protected(changes.latest_position(position), kept)


async def _unprotectable(actor: AccountActor, changes: Changes, order: OrderRecord, code: int | None) -> None:
    position = changes.open_position(order.symbol)
    if position is None:
        return
    if code == WOULD_IMMEDIATELY_TRIGGER:
        await actor.flatten(changes, position, purpose=order.purpose, order_id=f"{order.id}:market")
        return
    reason = (f"the venue refused the {order.purpose.replace('_', '-')} ({order.reject_code}: {order.reject_message})"
              if order.status == "REJECTED" else
              f"the {order.purpose.replace('_', '-')} was not confirmed within "
              f"{actor.ctx.protection_deadline_seconds:g} s")
    for other in changes.protective_orders(position.id):
        if other.id != order.id:
            await actor.cancel(changes, planner.cancel_of(other, "protection failed"))
    await actor.flatten(changes, position, purpose="flatten", order_id=f"{position.id}:flatten:{changes.now:.6f}")
    changes.emit(ProtectionFailed(position_id=position.id, symbol=position.symbol, reason=reason,
                                  action="closed reduce-only at market; account set to reducing"))
    planner.set_trading_state(changes, "reducing", f"PROTECTION_FAILED: {reason}", "protection")
