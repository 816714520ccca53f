"""The service: the root nursery, the start order and graceful shutdown.

Start order (each with ``nursery.start``, so the next starts only once the previous is ready):
persistence → market data (one actor per venue in use) → event bus → supervisor (accounts loaded
from the database) → HTTP front door (hypercorn.trio.serve) → in cluster mode the cluster node
(shard leases; it starts the accounts of the shards it takes) → the broker, when configured
(Redis Streams intake and the outbox relay). The persistence backend is SQLite, or PostgreSQL
when ``database.url`` is set (fenced by the shard leases in cluster mode).

Shutdown (SIGINT/SIGTERM or :meth:`Service.request_stop`): the front door refuses new decisions
(503), hypercorn stops accepting and lets in-flight requests finish, the broker stops reading (what
it submitted is still acknowledged once committed), a cluster node hands its shards over (its
accounts finish what they hold, then the leases are freed), the supervisor closes every
inbox so actors finish what is queued, the persistence actor commits what is left and checkpoints
the WAL, then the rest (market data) is cancelled.
"""

from __future__ import annotations

import logging
import signal
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from .clock import ServiceClock
from .account.context import AdapterFactory
from .account.twin import with_paper_twins
from .cluster import ClusterNode, fence_check, write_connection_name
from .events import EventBus
from .execution import open_adapter
from .http.app import create_app
from .http.keepalive import KeepAliveGuard
from .market_data import MarketData, market_data_actor
from .metrics import ServiceMetrics
from .persistence import Persistence, Reader, persistence_actor
from .runtime import tune_collector
from .persistence.postgres import PostgresBackend, PostgresReader
from .settings import Settings
from .supervisor import Supervisor, supervisor_actor
from .venues.sources import source_for

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("actors.service")


class Service:
    """Handles of the running actors, for the front door and for tests."""

    def __init__(self, settings: Settings, clock: ServiceClock) -> None:
        self.settings = settings
        self.clock = clock
        self.persistence: Persistence = None  # type: ignore[assignment]
        self.reader: Reader = None  # type: ignore[assignment]
        self.markets: dict[str, MarketData] = {}
        self.bus: EventBus = None  # type: ignore[assignment]
        self.supervisor: Supervisor = None  # type: ignore[assignment]
        self.cluster: ClusterNode | None = None  # cluster mode (settings ``cluster:``)
        self.broker: Broker | None = None  # Redis Streams intake and egress (settings ``broker:``)
        self.url: str | None = None
        self.port: int | None = None
        self._stop = trio.Event()
        self.stopped = trio.Event()
        self.metrics = ServiceMetrics(self)

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def readiness_problems(self) -> list[str]:
        problems: list[str] = []
        if self.supervisor is None:
            return ["starting"]
        if self.supervisor.draining:
            problems.append("shutting down")
        not_running = [s.account_id for s in self.supervisor.slots.values() if s.status != "running"]
        if not_running:
            problems.append(f"accounts not running: {', '.join(not_running[:10])}")
        max_age = self.settings.risk_defaults.market_data_max_age_seconds
        for name, market in self.markets.items():
            if not market.is_fresh(max_age):
                problems.append(f"market data of {name} is not fresh ({market.status.state})")
        if self.cluster is not None:
            problems += self.cluster.readiness_problems()
        return problems

    def metrics_text(self) -> bytes:
        """``/metrics``: the Prometheus text format (see ``actors/metrics.py``)."""
        return self.metrics.text()


async def run_service(
    settings: Settings,
    *,
    clock: ServiceClock | None = None,
    paper_latency: float = 0.0,
    serve_http: bool = True,
    sources: dict[str, Any] | None = None,
    inline_persistence: bool = False,
    adapter_factory: AdapterFactory | None = None,
    task_status: trio.TaskStatus[Service] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the whole actor tree until :meth:`Service.request_stop` is called.

    ``sources`` replaces the market-data source of a venue (``execd replay`` drives its own);
    ``adapter_factory`` replaces how accounts get their execution adapter (tests drive a double);
    ``inline_persistence`` commits on the trio thread (deterministic under a virtual clock).
    """
    clock = clock or ServiceClock()
    service = Service(settings, clock)
    database = settings.database
    async with trio.open_nursery() as root:
        backend = await _postgres_backend(settings)
        service.persistence = await root.start(partial(
            persistence_actor, database.path, synchronous=database.synchronous,
            max_batch=database.max_batch, inline=inline_persistence, backend=backend,
        ))
        service.reader = (PostgresReader(database.url, database.read_threads) if database.url is not None
                          else Reader(database.path, database.read_threads))
        async with trio.open_nursery() as background:
            venues = {a.venue for a in settings.accounts} | ({"sim"} if "sim" in settings.venues else set())
            for name in sorted(venues):
                source = (sources or {}).get(name) or source_for(name, settings, clock)
                service.markets[name] = await background.start(partial(market_data_actor, name, source, clock))
            service.bus = EventBus(service.reader)
            service.persistence.on_committed = service.metrics.publishing(service.bus.publish)  # orders counted
            supervisor = Supervisor(settings.supervisor, service.persistence, service.markets, clock,
                                    paper_latency=paper_latency, global_limits=settings.global_limits,
                                    adapter_factory=adapter_factory or open_adapter, service_settings=settings)
            service.supervisor = supervisor
            accounts = [(a, settings.account_limits(a)) for a in with_paper_twins(settings.accounts)]
            if settings.cluster is not None:  # the node runs the accounts of the shards it will hold
                service.cluster = ClusterNode(service)
                accounts = []
            await background.start(supervisor_actor, supervisor, accounts)
            http_stop = trio.Event()
            if serve_http:
                await _serve_http(background, service, settings, http_stop)
            if service.cluster is not None:
                await background.start(service.cluster.run)
            if settings.broker is not None:
                from .broker import broker_actor  # Redis only when configured (coredis is slow to import)

                service.broker = await background.start(broker_actor, service)
            task_status.started(service)
            await service._stop.wait()
            log.info("shutting down: refusing new decisions, finishing in-flight ones")
            supervisor.draining = True
            with trio.move_on_after(settings.server.shutdown_grace_seconds + 5) as grace:
                http_stop.set()
                if service.broker is not None:
                    await service.broker.stop_intake()
                if service.cluster is not None:  # finish in-flight work, then free the leases at once
                    await service.cluster.leave()
                await supervisor.stop()
            if grace.cancelled_caught:
                log.error("graceful shutdown took longer than its grace period; cancelling")
            service.bus.close()
            background.cancel_scope.cancel()
        await service.persistence.aclose()  # the actor commits what is queued, then returns
    service.reader.close()
    service.stopped.set()
    log.info("stopped")


async def _postgres_backend(settings: Settings) -> PostgresBackend | None:
    """The PostgreSQL backend when the settings name a database URL (None: SQLite); fenced by the
    shard leases in cluster mode."""
    database = settings.database
    backend = None
    if database.url is not None:  # PostgreSQL; fenced by the shard leases in cluster mode
        cluster = settings.cluster
        backend = await trio.to_thread.run_sync(partial(
            PostgresBackend, database.url, fence=fence_check(cluster.node_id) if cluster is not None else None,
            idle_in_transaction_seconds=cluster.lease_seconds / 2 if cluster is not None else None,
            application_name=write_connection_name(cluster.node_id) if cluster is not None else "execd",
        ))
    return backend


async def _serve_http(background: trio.Nursery, service: Service, settings: Settings, stop: trio.Event) -> None:
    """Start the HTTP front door (hypercorn) in ``background`` until ``stop`` is set; record its URL
    and port on ``service``."""
    config = HypercornConfig()
    config.bind = [f"{settings.server.host}:{settings.server.port}"]
    config.graceful_timeout = settings.server.shutdown_grace_seconds
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    # answers given before a request's body has arrived must not stall the connection
    app = KeepAliveGuard(create_app(service), drain_limit=settings.server.max_body_bytes,
                         drain_seconds=settings.server.request_timeout_seconds)
    binds = await background.start(partial(serve, app, config, shutdown_trigger=stop.wait))
    service.url = binds[0] if binds else None
    if service.url:
        service.port = int(service.url.rsplit(":", 1)[1])
    log.info("execd listening on %s", service.url)


async def serve_until_signalled(settings: Settings) -> None:
    """``execd serve``: run the service until SIGINT or SIGTERM."""
    async with trio.open_nursery() as nursery:
        service: Service = await nursery.start(run_service, settings)
        tune_collector()  # what start-up built is frozen; the collector's passes spaced out
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                service.request_stop()
                break
