"""The event bus: the persisted outbox (``events`` table) fanned out to live subscribers.

Events are written by the persistence actor in the same transaction as the state they describe;
once committed, they are published here. A subscriber is a bounded channel fed with
``send_nowait``: a subscriber too slow to keep up is cut off (and counted) instead of slowing the
service, and resumes from the database with ``?after=<last seq>``.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from .persistence import CommittedEvent, Reader

log = logging.getLogger("actors.events")


class EventBus:
    def __init__(self, reader: Reader | None = None, buffer: int = 1024) -> None:
        self._reader = reader
        self._buffer = buffer
        self._subscribers: set[trio.MemorySendChannel[CommittedEvent]] = set()
        self.published = 0
        self.dropped_subscribers = 0
        self.last_seq = 0

    def publish(self, events: list[CommittedEvent]) -> None:
        """Called by the persistence actor after a commit (never blocks)."""
        for event in events:
            self.last_seq = max(self.last_seq, event.seq)
            self.published += 1
            for channel in list(self._subscribers):
                try:
                    channel.send_nowait(event)
                except trio.WouldBlock:
                    self._subscribers.discard(channel)
                    self.dropped_subscribers += 1
                    channel.close()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._subscribers.discard(channel)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> trio.MemoryReceiveChannel[CommittedEvent]:
        send, receive = trio.open_memory_channel[CommittedEvent](self._buffer)
        self._subscribers.add(send)
        return receive

    def unsubscribe(self, receive: trio.MemoryReceiveChannel[CommittedEvent]) -> None:
        receive.close()

    async def history(self, after: int, limit: int = 1000, account_id: str | None = None) -> list[dict[str, Any]]:
        assert self._reader is not None
        sql = "SELECT seq, type, account_id, is_paper, ts, payload FROM events WHERE seq > ?"
        params: list[Any] = [after]
        if account_id is not None:
            sql += " AND account_id = ?"
            params.append(account_id)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        return await self._reader.fetchall(sql, params)

    def close(self) -> None:
        for channel in list(self._subscribers):
            channel.close()
        self._subscribers.clear()
