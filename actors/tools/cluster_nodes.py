"""Local cluster nodes: ``execd serve`` processes on loopback sharing one PostgreSQL database.

Used by ``execd loadtest --nodes N`` (and the cluster tests): start nodes, wait until they serve
every shard fairly (ownership is a database state: polled through ``GET /v1/cluster``, bounded),
stop them with a signal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import trio

from ..cluster.leases import shard_of

T = TypeVar("T")

CLUSTER_SETTINGS = """
server: {host: 127.0.0.1, port: 0, request_timeout_seconds: 5, shutdown_grace_seconds: 5}
database: {url: "%(db)s"}
venues:
  sim: {seed: 9, symbols: [BTCUSDT, ETHUSDT, SOLUSDT], tick_interval_seconds: 0.1}
risk: {max_leverage: 25, cooldown_seconds: 0}
supervisor: {inbox_size: 32}
cluster: {node_id: unset, shards: %(shards)d, lease_seconds: %(lease)s}
accounts: %(accounts)s
%(extra)s
"""


def write_settings(path: Path, db: str, accounts: list[str], *, shards: int = 12, lease: float = 1.5,
                   extra: str = "") -> Path:
    """A settings file for every node of a local cluster (each gets its id from EXECD_NODE_ID)."""
    lines = "".join(f'\n  - {{id: {a}, mode: paper, venue: sim, balance: "10000"}}' for a in accounts) or "[]"
    path.write_text(CLUSTER_SETTINGS % {"db": db, "shards": shards, "lease": lease, "accounts": lines,
                                        "extra": extra})
    return path


class Node:
    """One node: its process, URL and log (stderr is drained so that it never blocks)."""

    def __init__(self, node_id: str, process: trio.Process, url: str, log: list[str]) -> None:
        self.node_id = node_id
        self.process = process
        self.url = url
        self.log = log
        self.signalled = False  # a stopping signal was sent

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
            self.signalled = True

    @property
    def text(self) -> str:
        return "".join(self.log)


async def start_node(nursery: trio.Nursery, settings: Path, node_id: str, env: dict[str, str] | None = None) -> Node:
    env = {**os.environ, "EXECD_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1", "EXECD_NODE_ID": node_id, **(env or {})}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "actors.cli", "serve", "--settings", str(settings)], stderr=subprocess.PIPE, env=env)
    assert process.stderr is not None
    log: list[str] = []
    url: str | None = None
    buffer = b""
    with trio.fail_after(30):
        while url is None:
            chunk = await process.stderr.receive_some()
            if not chunk:
                raise AssertionError(f"{node_id} exited before listening:\n" + "".join(log[-50:]))
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                log.append(text + "\n")
                match = re.search(r"execd listening on (http://\S+)", text)
                if match:
                    url = match.group(1)
    nursery.start_soon(_drain, process.stderr, log)
    return Node(node_id, process, url, log)


async def _drain(stream: trio.abc.ReceiveStream, sink: list[str]) -> None:
    async for chunk in stream:
        sink.append(chunk.decode(errors="replace"))


async def start_nodes(nursery: trio.Nursery, settings: Path, count: int,
                      env: dict[str, str] | None = None) -> list[Node]:
    nodes: list[Node | None] = [None] * count

    async def one(index: int) -> None:
        nodes[index] = await start_node(nursery, settings, f"n{index + 1}", env)

    async with trio.open_nursery() as starting:
        for index in range(count):
            starting.start_soon(one, index)
    return [n for n in nodes if n is not None]


async def cluster_view(client: httpx.AsyncClient, node: Node) -> dict[str, Any] | None:
    try:
        answer = await client.get(f"{node.url}/v1/cluster", timeout=2)
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


async def wait_settled(client: httpx.AsyncClient, nodes: list[Node], shards: int, timeout: float) -> dict[str, list[int]]:
    """Until the given nodes together serve every shard, each at most its fair share, and agree
    on it; returns node -> shards. Polled: ownership is a database state, not an event."""
    fair = -(-shards // len(nodes))
    views: list[dict[str, Any] | None] = []
    with trio.move_on_after(timeout):
        while True:
            views = [await cluster_view(client, node) for node in nodes]
            if all(v is not None for v in views):
                held = {v["node_id"]: v["held"] for v in views if v is not None}
                counts = [len(h) for h in held.values()]
                owners = [v["owners"] for v in views if v is not None]
                if (sum(counts) == shards and max(counts) <= fair and all(not v["starting"] for v in views if v)
                        and all(o == held for o in owners)):
                    return held
            await trio.sleep(0.1)
    raise TimeoutError(f"the nodes did not settle within {timeout} s; last views: "
                       + "; ".join(f"{v['node_id']}: held {v['held']} starting {v['starting']} owners {v['owners']} "
                                   f"live {v['live_nodes']}" if v else "no answer" for v in views))


async def stop_node(node: Node, signum: signal.Signals = signal.SIGTERM, timeout: float = 20) -> int:
    """Signal the node (once: a second SIGTERM would find the default handler back) and wait for it."""
    if node.process.returncode is None and not node.signalled:
        node.signal(signum)
    with trio.fail_after(timeout):
        return await node.process.wait()


async def owner_map(client: httpx.AsyncClient, urls: list[str]) -> Any:
    """account -> the URL of the node that owns its shard now (``GET /v1/cluster`` of every node)."""
    owners: dict[int, str] = {}
    shards = 1
    for url in urls:
        view = (await client.get(f"{url}/v1/cluster")).json()
        shards = view["shards"]
        for shard in view["held"]:
            owners[shard] = url
    return lambda account: owners.get(shard_of(account, shards), "")


async def with_local_cluster(nodes: int, database_url: str, load: Callable[[str], Awaitable[T]], *, shards: int,
                             lease: float) -> T:
    """Start ``nodes`` local nodes on the database, run ``load`` against their comma-separated URLs
    once they serve every shard, stop them (``execd loadtest --nodes``)."""
    with tempfile.TemporaryDirectory(prefix="execd-loadtest-") as work:
        settings = write_settings(Path(work) / "cluster.yaml", database_url, [], shards=shards, lease=lease)
        async with trio.open_nursery() as nursery, httpx.AsyncClient(timeout=5) as http:
            started = await start_nodes(nursery, settings, nodes)
            try:
                held = await wait_settled(http, started, shards, timeout=60 + 3 * lease)
                print(f"cluster of {len(started)} node(s): " + ", ".join(
                    f"{n.node_id} {n.url} ({len(held[n.node_id])} shards)" for n in started), file=sys.stderr)
                return await load(",".join(n.url for n in started))
            finally:
                with trio.CancelScope(shield=True):
                    for node in started:
                        await stop_node(node)
                nursery.cancel_scope.cancel()
