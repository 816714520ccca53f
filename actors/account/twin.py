"""The paper twin of a live account: the same accepted decisions, executed on a paper venue.

A live account with ``paper_twin: true`` runs beside a paper account of its own, its twin
(``<id>-twin``, :func:`paper_twin_settings`): the same venue and market-data board, the same fees,
slippage cap and trigger price, its own book (positions, balance, fees) starting at
``paper_twin_balance`` (default: the live account's ``balance``). The twin is an ordinary
supervised paper account — durable, restarted, inspectable — with two differences: it takes its
decisions from its live account only, and its venue reads the market as the live order went out.

* **Live side** (:class:`PaperTwinLink`, the live account's ``ctx.paper_twin``): when the gate has
  accepted a decision and its order is planned, :meth:`~PaperTwinLink.expect` remembers it; when
  that order goes out (``AccountActor.send``: its intent is durable, the venue is called next),
  :meth:`~PaperTwinLink.order_sent` puts it in the twin's inbox with the quote of that moment.
  Not after the venue answered: both sides see the same market. It never waits: a twin whose
  inbox is full or closed misses the decision (logged); the live account is never slowed by it.
* **Twin side** (:func:`execute_mirrored`): the twin executes what the live gate accepted, whatever
  its own gate would say — the same order (an ``open`` at the live order's quantity, a ``close`` of
  the twin's own position), the same limit price and TP/SL levels — on its paper venue holding the
  quote of the moment the live order went out (:class:`~actors.execution.twin.TwinVenue`). Only a
  book that differs from the live account's stops it (nothing to close, a position on the other
  side), and that is its stored outcome. The result is stored under the same decision id; its
  request is a :class:`~actors.domain.twin.TwinRequest` (when the live account took the decision,
  the reference price, the quote), which ``GET /v1/accounts/{id}/twin`` compares from.

The twin never holds a trading client: it is a paper account (``actors.execution.open_adapter``
gives it the paper venue, which is given the market board and nothing else). Clients cannot trade
it: a decision that does not come from its live account is refused (:func:`refusal`), and the front
door refuses its trading routes (``actors.http.twin``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import msgspec
import trio

from ..domain import planner
from ..domain.book import Changes, marks_of
from ..domain.market import Quote
from ..domain.orders import OrderRecord
from ..domain.risk import CheckResult, Rejection, RiskVerdict
from ..domain.twin import TwinRequest, mirror_refusal
from ..execution.twin import TwinVenue
from ..messages import CommandRefused, Envelope, MirroredDecision, SubmitDecision
from ..settings import AccountSettings, paper_twin_id
from . import decisions
from .mailbox import Mailbox

if TYPE_CHECKING:
    from .actor import AccountActor

log = logging.getLogger("actors.account.twin")
_encode = msgspec.json.Encoder(decimal_format="string").encode


def paper_twin_settings(live: AccountSettings) -> AccountSettings:
    """The paper account that shadows ``live`` (see the module docstring); no credentials."""
    return AccountSettings(
        id=paper_twin_id(live.id), mode="paper", venue=live.venue,
        balance=live.paper_twin_balance if live.paper_twin_balance is not None else live.balance,
        risk=live.risk, max_slippage_bps=live.max_slippage_bps, trigger_price=live.trigger_price,
        default_leverage=live.default_leverage, twin_of=live.id)


def with_paper_twins(accounts: tuple[AccountSettings, ...]) -> list[AccountSettings]:
    """The configured accounts, each live account with ``paper_twin`` followed by its twin."""
    started: list[AccountSettings] = []
    for account in accounts:
        started.append(account)
        if account.mode == "live" and account.paper_twin:
            started.append(paper_twin_settings(account))
    return started


class _HasMailbox(Protocol):
    mailbox: Mailbox


def paper_twin_link(settings: AccountSettings, slots: Mapping[str, _HasMailbox]) -> PaperTwinLink | None:
    """The link of a live account with a paper twin to it (None for any other account).
    ``slots``: the supervisor's accounts, where the twin's mailbox is found when a decision goes."""
    if settings.mode != "live" or not settings.paper_twin:
        return None
    return PaperTwinLink(settings.id, paper_twin_id(settings.id), slots)


class PaperTwinLink:
    """A live account's way to its paper twin (owned by the live account's actor)."""

    def __init__(self, live_account_id: str, twin_account_id: str, slots: Mapping[str, _HasMailbox]) -> None:
        self.live_account_id = live_account_id
        self.twin_account_id = twin_account_id
        self._slots = slots
        self._expected: tuple[str, SubmitDecision] | None = None  # (order id, what the twin gets)

    def expect(self, msg: SubmitDecision, verdict: RiskVerdict, planned: planner.PlannedOrder,
               market: planner.MarketContext, *, received_at: float) -> None:
        """The gate accepted ``msg`` and planned its order: forwarded when that order goes out."""
        decision, order = msg.decision, planned.order
        assert market.quote is not None
        if decision.action == "open":  # the same size, whatever the twin's quote would make of a notional
            decision = msgspec.structs.replace(decision, quantity=order.quantity, notional=None)
        reference = decision.reference_price
        mirror = MirroredDecision(
            live_account_id=self.live_account_id, received_at=received_at,
            reference_price=reference if reference is not None else market.quote.mark_price,
            reference="decision" if reference is not None else "mark", live_order_id=order.id,
            live_order_side=order.side, verdict=verdict, quote=market.quote)  # type: ignore[arg-type]
        self._expected = (order.id, msgspec.structs.replace(msg, decision=decision, mirror=mirror))

    def order_sent(self, order: OrderRecord, quote: Quote | None) -> None:
        """``order`` is about to reach the venue; ``quote``: the market now. If it is the order of
        the decision expected, the twin gets the decision, on that quote."""
        expected = self._expected
        if expected is None or expected[0] != order.id:
            return
        self._expected = None
        message = expected[1]
        assert message.mirror is not None
        if quote is not None:
            message = msgspec.structs.replace(message, mirror=msgspec.structs.replace(message.mirror, quote=quote))
        decision_id = message.decision.decision_id
        slot = self._slots.get(self.twin_account_id)
        if slot is None:
            log.warning("%s: paper twin %s is not running; decision %s not mirrored", self.live_account_id,
                        self.twin_account_id, decision_id)
            return
        try:
            slot.mailbox.offer(Envelope(msg=message, enqueued_at=trio.current_time()),
                               (decision_id, message.fingerprint))
        except trio.WouldBlock:
            log.warning("%s: paper twin %s's inbox is full; decision %s not mirrored", self.live_account_id,
                        self.twin_account_id, decision_id)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            log.warning("%s: paper twin %s is stopping; decision %s not mirrored", self.live_account_id,
                        self.twin_account_id, decision_id)


def refusal(settings: AccountSettings) -> CommandRefused:
    """What a client gets for a decision sent to a paper twin."""
    return CommandRefused(
        "PAPER_TWIN", f"account {settings.id!r} is the paper twin of live account {settings.twin_of!r}: it executes "
        f"the decisions {settings.twin_of!r} accepts and cannot be traded directly; send decisions to "
        f"{settings.twin_of!r}", status=409)


async def execute_mirrored(actor: AccountActor, msg: SubmitDecision) -> bytes:
    """The twin executes a decision its live account accepted (see the module docstring)."""
    decision, mirror = msg.decision, msg.mirror
    assert mirror is not None
    venue = actor.adapter
    if not isinstance(venue, TwinVenue):
        raise TypeError(f"paper twin {actor.account_id} runs on {type(venue).__name__}, not on a TwinVenue")
    board = actor.ctx.market
    quote = mirror.quote
    instrument = board.instrument(decision.symbol)
    market = planner.MarketContext(instrument=instrument, quote=quote, mark_of=marks_of(board))
    changes = actor.changes()
    verdict = _admitted(mirror)
    stored = msgspec.structs.replace(msg, request_json=_encode(TwinRequest(
        twin_of=mirror.live_account_id, received_at=mirror.received_at, reference_price=mirror.reference_price,
        reference=mirror.reference, order_id=mirror.live_order_id, side=mirror.live_order_side,
        best_bid=quote.book.best_bid, best_ask=quote.book.best_ask, mark=quote.mark_price,
        request=msg.request_json)).decode())
    refused = mirror_refusal(decision, changes.open_position(decision.symbol), instrument)
    if refused is None:
        assert instrument is not None
        planned = planner.plan_order(changes, decision, verdict, instrument, quote)
        if not isinstance(planned, Rejection):
            return await _execute(actor, stored, changes, verdict, planned, market, venue)
        refused = planned
    result = planner.reject(changes, decision, refused, verdict.checks, market.mark_of)
    return await decisions._store(actor, stored, changes, result)


async def _execute(actor: AccountActor, msg: SubmitDecision, changes: Changes, verdict: RiskVerdict,
                   planned: planner.PlannedOrder, market: planner.MarketContext, venue: TwinVenue) -> bytes:
    """The decision's own execution, as ``decisions._decide`` runs it once the gate has spoken,
    on the market as the live order went out."""
    decision = msg.decision
    assert market.quote is not None
    with trio.CancelScope() as work:  # an emergency close-all of the twin cancels it, as on any account
        actor.mailbox.work_scope = work
        try:
            with venue.market_as_sent(market.quote):
                result = await decisions._execute(actor, changes, decision, verdict, planned, market)
        finally:
            actor.mailbox.work_scope = None
    if work.cancelled_caught:
        await venue.settle(committed=False)
        changes = actor.changes()
        result = planner.reject(changes, decision, Rejection(
            code="CANCELLED", message="cancelled by an emergency close-all before it was executed"), (),
            market.mark_of)
    return await decisions._store(actor, msg, changes, result)


def _admitted(mirror: MirroredDecision) -> RiskVerdict:
    """The live gate's verdict, its audit naming where it came from."""
    source = CheckResult(name="paper_twin", passed=True, detail={
        "live_account": mirror.live_account_id, "live_order_id": mirror.live_order_id})
    return msgspec.structs.replace(mirror.verdict, checks=(source, *mirror.verdict.checks))

