"""Errors a commit can fail with, the same whichever backend ran it.

Writers catch these, never a driver's own exceptions: the account catches :class:`IntegrityError`
for a resent decision id (SQLite and PostgreSQL both refuse the second row of a unique key), and
:class:`Fenced` tells an account actor that its node no longer owns the account's shard.
"""

from __future__ import annotations


class IntegrityError(Exception):
    """A constraint refused the write (a duplicate key: e.g. a decision id sent twice)."""


class Fenced(Exception):
    """The commit carried a lease claim (name, epoch) that its node no longer holds: another node
    took the shard over (or the lease was handed back). Nothing of the commit was written."""

    def __init__(self, lease: str, epoch: int, detail: str = "") -> None:
        super().__init__(f"lease {lease} at epoch {epoch} is no longer held by this node"
                         + (f" ({detail})" if detail else ""))
        self.lease = lease
        self.epoch = epoch
