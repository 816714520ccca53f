"""Prometheus metrics of one service, in its own registry (tests run several services in one
process), named by Prometheus' conventions (``execd_`` prefix, ``_total`` counters, base units).

Almost everything is read at scrape time from counters the actors keep anyway (persistence
rounds, feed health, mailboxes, supervisor restarts, the event bus, the venues' REST clients), by
one custom collector: nothing on the hot path. Two things are counted as they happen, at their
owner, with a dict increment and a bisect (about a microsecond a decision, see
``tests/test_metrics.py``):

* decision outcomes and latency, in the decisions route (:meth:`ServiceMetrics.observe_decision`);
* orders by venue, type and status, from the committed events as the event bus publishes them
  (:meth:`ServiceMetrics.observe_events`).

Metrics (labels in braces):

==============================================  =======================================================
``execd_decisions_total``                       {account, result, code}: answered decisions
``execd_decision_latency_seconds``              histogram: front door to stored result
``execd_decision_stream_connections``           open decision-stream websockets
``execd_decision_stream_in_flight``             decisions in flight over them (and the peak per connection)
``execd_orders_total``                          {venue, type, status}: placed, filled, canceled, failed
``execd_venue_requests_total``                  {venue, endpoint, status}: REST answers of the venues
``execd_venue_request_seconds_total``           {venue, endpoint}: time spent in those requests
``execd_venue_weight_used``                     {venue}: request weight used this minute
``execd_feed_state``                            {venue, state}: 1 for the feed's current state
``execd_feed_message_age_seconds``              {venue}: age of the last market-data message
``execd_feed_messages_total``                   {venue}
``execd_price_alarms``                          {venue}: alarms resting in the index
``execd_actor_restarts_total``                  {account}
``execd_actor_state``                           {account, state}: 1 for the actor's current state
``execd_actor_inbox_depth``                     {account}: queued messages
``execd_persistence_round_batches``             summary: batches per group-commit round
``execd_persistence_round_seconds``             summary: time per round (worker thread included)
``execd_persistence_largest_round_batches``     the largest round so far
``execd_persistence_failed_total``              batches that failed
``execd_event_subscribers``                     live event-stream subscribers
``execd_event_subscribers_dropped_total``       subscribers cut off for being too slow
``execd_events_published_total``
``execd_global_trading_state``                  {state}: 1 for the global trading state
==============================================  =======================================================
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .persistence import CommittedEvent
    from .service import Service

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FEED_STATES = ("connecting", "connected", "reconnecting", "polling", "stale")
ACTOR_STATES = ("starting", "running", "restarting", "failed", "stopped")
TRADING_STATES = ("active", "reducing", "halted")
_ORDER_STATUS = {"order.placed": "placed", "order.filled": "filled", "order.canceled": "canceled",
                 "order.failed": "failed"}


class _OrderType(msgspec.Struct):
    order_type: str = ""
    status: str = ""  # order.filled: FILLED once the order is done


_order_type = msgspec.json.Decoder(_OrderType)


class ServiceMetrics:
    """The metrics of one service: its registry, and the few counters kept as things happen."""

    def __init__(self, service: Service) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: above every bound
        self.latency_sum = 0.0
        self.orders: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self._order_types: dict[str, str] = {}  # order id -> type (its later events do not repeat it)
        #: the decision stream (``/v1/decisions/stream``), kept by its connections
        self.stream_connections = 0
        self.stream_in_flight = 0  # decisions submitted over the stream and not yet answered
        self.stream_peak_in_flight = 0  # the most any one connection held at once
        self.registry.register(_ServiceCollector(self, service))
        self._venue_of = lambda account_id: _venue_of(service, account_id)

    # ---- counted as it happens

    def observe_decision(self, account_id: str, result: str, code: str, seconds: float) -> None:
        """A decision answered: its result (status), rejection code ("" if none), latency."""
        self.decisions[(account_id, result, code)] += 1
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def observe_events(self, events: Iterable[CommittedEvent]) -> None:
        """Orders by venue, type and status, from the events of a commit."""
        for event in events:
            status = _ORDER_STATUS.get(event.type)
            if status is None or event.account_id is None:
                continue
            payload = bytes(event.payload_json)
            order_id = _order_id(payload)
            if status == "placed":
                order_type = _order_type.decode(payload).order_type or "unknown"
                if len(self._order_types) > 100_000:
                    self._order_types.clear()  # bounded: a later event of an old order counts as "unknown"
                self._order_types[order_id] = order_type
            elif status == "canceled" or (status == "filled" and _order_type.decode(payload).status == "FILLED"):
                order_type = self._order_types.pop(order_id, "unknown")  # done: its type is not needed again
            else:
                order_type = self._order_types.get(order_id, "unknown")
            self.orders[(self._venue_of(event.account_id), order_type, status)] += 1

    def stream_gauges(self) -> Iterator[Any]:
        yield GaugeMetricFamily("execd_decision_stream_connections", "Open decision-stream websockets",
                                value=self.stream_connections)
        yield GaugeMetricFamily("execd_decision_stream_in_flight", "Decisions submitted over the decision stream "
                                "and not yet answered", value=self.stream_in_flight)
        yield GaugeMetricFamily("execd_decision_stream_peak_in_flight", "The most decisions one decision-stream "
                                "connection held in flight at once (at most server.stream_max_in_flight)",
                                value=self.stream_peak_in_flight)

    def publishing(self, publish: Callable[[list[CommittedEvent]], None]) -> Callable[[list[CommittedEvent]], None]:
        """``publish`` (the event bus's), counting the orders of each commit first."""

        def counted(events: list[CommittedEvent]) -> None:
            self.observe_events(events)
            publish(events)

        return counted

    # ---- scraping

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _OrderId(msgspec.Struct):
    order_id: str = ""


_order_id_decoder = msgspec.json.Decoder(_OrderId)


def _order_id(payload: bytes) -> str:
    return _order_id_decoder.decode(payload).order_id


def _venue_of(service: Service, account_id: str) -> str:
    slot = service.supervisor.slots.get(account_id) if service.supervisor is not None else None
    return slot.settings.venue if slot is not None else "unknown"


def _enum(name: str, help_: str, labels: list[str], current: Iterable[tuple[tuple[str, ...], str]],
          states: tuple[str, ...]) -> GaugeMetricFamily:
    """A state as a gauge per possible state: 1 for the current one, 0 for the others."""
    family = GaugeMetricFamily(name, help_, labels=[*labels, "state"])
    for label_values, state in current:
        for candidate in states if state in states else (*states, state):
            family.add_metric([*label_values, candidate], 1.0 if candidate == state else 0.0)
    return family


class _ServiceCollector(Collector):
    """Reads the service's own counters at scrape time."""

    def __init__(self, metrics: ServiceMetrics, service: Service) -> None:
        self.metrics = metrics
        self.service = service

    def describe(self) -> Iterable[Any]:
        return []  # families vary with the service's accounts and venues

    def collect(self) -> Iterator[Any]:
        yield from self._decisions_and_orders()
        if self.service.persistence is not None:
            yield from self._persistence()
        yield from self._venues()
        if self.service.supervisor is not None:
            yield from self._actors()
        if self.service.bus is not None:
            yield from self._events()

    def _decisions_and_orders(self) -> Iterator[Any]:
        m = self.metrics
        decisions = CounterMetricFamily("execd_decisions", "Decisions answered, by account, result and rejection code",
                                        labels=["account", "result", "code"])
        for (account, result, code), count in sorted(m.decisions.items()):
            decisions.add_metric([account, result, code], count)
        yield decisions
        buckets, cumulative = [], 0
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), m.latency_counts):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily("execd_decision_latency_seconds",
                                    "Time from the front door to the decision's stored result",
                                    buckets=buckets, sum_value=m.latency_sum)
        orders = CounterMetricFamily("execd_orders", "Orders by venue, type and status (placed, filled, canceled, "
                                     "failed)", labels=["venue", "type", "status"])
        for (venue, order_type, status), count in sorted(m.orders.items()):
            orders.add_metric([venue, order_type, status], count)
        yield orders
        yield from m.stream_gauges()

    def _persistence(self) -> Iterator[Any]:
        stats = self.service.persistence.stats
        yield SummaryMetricFamily("execd_persistence_round_batches", "Batches (commits and reads) per group-commit "
                                  "round", count_value=stats.rounds, sum_value=stats.commits + stats.queries)
        yield SummaryMetricFamily("execd_persistence_round_seconds", "Time per group-commit round, worker thread "
                                  "included", count_value=stats.rounds, sum_value=stats.round_seconds)
        yield GaugeMetricFamily("execd_persistence_largest_round_batches", "The largest group-commit round so far",
                                value=stats.largest_round)
        yield CounterMetricFamily("execd_persistence_failed", "Batches that failed to commit", value=stats.failed)

    def _venues(self) -> Iterator[Any]:
        markets = self.service.markets
        healths = {venue: market.health() for venue, market in markets.items()}
        yield _enum("execd_feed_state", "Market-data feed state per venue (1: current)", ["venue"],
                    [((venue, ), health["state"]) for venue, health in healths.items()], FEED_STATES)
        age = GaugeMetricFamily("execd_feed_message_age_seconds", "Age of the venue's last market-data message",
                                labels=["venue"])
        messages = CounterMetricFamily("execd_feed_messages", "Market-data messages received", labels=["venue"])
        alarms = GaugeMetricFamily("execd_price_alarms", "Price alarms resting in the index", labels=["venue"])
        requests = CounterMetricFamily("execd_venue_requests", "REST requests to the venue, by endpoint and HTTP status",
                                       labels=["venue", "endpoint", "status"])
        seconds = CounterMetricFamily("execd_venue_request_seconds", "Time spent in REST requests to the venue",
                                      labels=["venue", "endpoint"])
        weight = GaugeMetricFamily("execd_venue_weight_used", "Request weight used in the venue's current minute",
                                   labels=["venue"])
        for venue, market in markets.items():
            health = healths[venue]
            if health["last_message_age_seconds"] is not None:
                age.add_metric([venue], health["last_message_age_seconds"])
            messages.add_metric([venue], market.status.messages)
            alarms.add_metric([venue], len(market.alarms))
            stats = market.rest_stats
            if stats is not None:
                for key, count in sorted(stats.answers.items()):
                    endpoint, _, status = key.rpartition(" ")
                    requests.add_metric([venue, endpoint, status], count)
                for endpoint, spent in sorted(stats.seconds.items()):
                    seconds.add_metric([venue, endpoint], spent)
                weight.add_metric([venue], stats.used_weight_1m)
        yield from (age, messages, alarms, requests, seconds, weight)

    def _actors(self) -> Iterator[Any]:
        supervisor = self.service.supervisor
        slots = list(supervisor.slots.values())
        restarts = CounterMetricFamily("execd_actor_restarts", "Account actor restarts", labels=["account"])
        inbox = GaugeMetricFamily("execd_actor_inbox_depth", "Messages queued in the account's inbox",
                                  labels=["account"])
        for slot in slots:
            restarts.add_metric([slot.account_id], slot.restarts)
            inbox.add_metric([slot.account_id], slot.mailbox.inbox_depth)
        yield restarts
        yield inbox
        yield _enum("execd_actor_state", "Account actor state (1: current)", ["account"],
                    [((slot.account_id,), slot.status) for slot in slots], ACTOR_STATES)
        yield _enum("execd_global_trading_state", "Global trading state (1: current)", [],
                    [((), supervisor.global_state)], TRADING_STATES)

    def _events(self) -> Iterator[Any]:
        bus = self.service.bus
        yield GaugeMetricFamily("execd_event_subscribers", "Live event-stream subscribers", value=bus.subscribers)
        yield CounterMetricFamily("execd_event_subscribers_dropped", "Event-stream subscribers cut off for being "
                                  "too slow", value=bus.dropped_subscribers)
        yield CounterMetricFamily("execd_events_published", "Events published after their commit",
                                  value=bus.published)
