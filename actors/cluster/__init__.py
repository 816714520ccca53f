"""Cluster mode: several ``execd serve`` nodes sharing the accounts on one PostgreSQL database.

``leases`` (shard leases with epochs in the database, and the fence every commit passes), ``node``
(which shards this node holds, starting and stopping their accounts, handing them over), and
``routing`` (any node answers any account: forwarded to its owner, or 503 while it moves).
"""

from .leases import fence_check as fence_check
from .leases import may_send_orders as may_send_orders
from .leases import shard_of as shard_of
from .leases import write_connection_name as write_connection_name
from .node import ClusterNode as ClusterNode
from .routing import install_routing as install_routing

__all__ = ["ClusterNode", "fence_check", "install_routing", "may_send_orders", "shard_of", "write_connection_name"]
