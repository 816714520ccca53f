"""What writers hand to the persistence actor, and what comes back.

A :class:`Commit` is statements plus outbox events that must be durable together; a
:class:`Query` is a read on the write connection inside a round (it sees every committed write);
a :class:`Call` runs a function on the connection inside a round (several reads in one thread hop,
e.g. loading an account). Each carries its reply slot beside the payload.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import msgspec

from ..messages import Reply
from .rows import Statement


class EventRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An event to write to the outbox with the state it describes. ``payload`` is a typed event
    Struct (``actors.domain.events``) or a plain mapping; it is encoded once, in the round."""

    type: str
    account_id: str | None
    is_paper: bool
    ts: float
    payload: Any


class CommittedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event after its commit: its ``seq`` and its payload exactly as stored (JSON)."""

    seq: int
    type: str
    account_id: str | None
    is_paper: bool
    ts: float
    payload_json: msgspec.Raw = msgspec.field(name="payload")

    @property
    def payload(self) -> dict[str, Any]:
        return msgspec.json.decode(self.payload_json)


class CommitResult(NamedTuple):
    seqs: list[int]
    payloads: list[bytes]


class Claim(NamedTuple):
    """A lease a commit is made under (cluster mode): the backend checks, in the commit's own
    transaction, that this node still holds ``lease`` at ``epoch``, and refuses the commit if not."""

    lease: str
    epoch: int


class Commit(msgspec.Struct, kw_only=True):
    statements: Sequence[Statement]
    events: Sequence[EventRecord] = ()
    reply: Reply[list[int]] | None = None
    #: the lease this commit is fenced by (None: not fenced; SQLite, one node)
    claim: Claim | None = None
    #: run (synchronously) as soon as the commit landed, before its events are published: the
    #: writer's in-memory state moves with its commit, so no subscriber sees an event ahead of it
    on_commit: Callable[[], None] | None = None


class Query(msgspec.Struct, kw_only=True):
    sql: str
    params: Sequence[Any] = ()
    reply: Reply[list[tuple[Any, ...]]] | None = None


class Call(msgspec.Struct, kw_only=True):
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    reply: Reply[Any] | None = None


Item = Commit | Query | Call
