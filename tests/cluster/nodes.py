"""``execd serve`` nodes of a cluster on loopback, as separate processes (signals are real): the
helpers of ``execd loadtest --nodes``."""

from actors.tools.cluster_nodes import Node as Node
from actors.tools.cluster_nodes import cluster_view as cluster_view
from actors.tools.cluster_nodes import start_node as start_node
from actors.tools.cluster_nodes import start_nodes as start_nodes
from actors.tools.cluster_nodes import stop_node as stop_node
from actors.tools.cluster_nodes import wait_settled as wait_settled
from actors.tools.cluster_nodes import write_settings as write_settings

__all__ = ["Node", "cluster_view", "start_node", "start_nodes", "stop_node", "wait_settled", "write_settings"]
