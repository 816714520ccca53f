"""The broker: Redis Streams intake (decisions in) and egress (results and events out).

``intake`` reads decisions from ``execd:decisions`` with a consumer group and acknowledges them
after their commit; ``relay`` relays the outbox to ``execd:events`` and the decisions' results to
``execd:results``, in ``seq`` order. Plain pub/sub is never used: it drops what nobody is
subscribed to at the moment it is published.

The client is coredis, which runs under trio natively (on anyio); it lives in the broker's own
nursery (``async with client``), a child of the service's tree.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import coredis
import trio

from .intake import Intake as Intake
from .relay import Relay as Relay

if TYPE_CHECKING:
    from ..service import Service

log = logging.getLogger("actors.broker")


class Broker:
    """Handles of the broker's two halves (for the service's shutdown, metrics and tests)."""

    def __init__(self, intake: Intake, relay: Relay) -> None:
        self.intake = intake
        self.relay = relay
        self._intake_done = trio.Event()

    async def stop_intake(self) -> None:
        """Stop reading; return once what was in flight is committed and acknowledged."""
        self.intake.stop()
        await self._intake_done.wait()


async def broker_actor(service: Service, *, task_status: trio.TaskStatus[Broker] = trio.TASK_STATUS_IGNORED) -> None:
    settings = service.settings.broker
    assert settings is not None
    client: coredis.Redis[bytes] = coredis.Redis.from_url(settings.redis_url, decode_responses=False)
    async with client:
        intake, relay = Intake(service, client), Relay(service, client)
        broker = Broker(intake, relay)
        async with trio.open_nursery() as nursery:

            async def run_intake(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                try:
                    await intake.run(task_status=task_status)
                finally:
                    broker._intake_done.set()

            await nursery.start(run_intake)
            nursery.start_soon(relay.run)
            log.info("broker on %s: intake %s, results %s, events %s", settings.redis_url,
                     settings.decisions_stream, settings.results_stream, settings.events_stream)
            task_status.started(broker)


__all__ = ["Broker", "Intake", "Relay", "broker_actor"]
