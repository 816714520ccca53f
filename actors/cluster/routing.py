"""Any node answers any account: requests for an account of another node's shard are forwarded.

A ``before_request`` hook of the front door (cluster mode only) looks at the account a request is
about (``/v1/accounts/{id}...``, or the ``id`` of a ``POST /v1/accounts`` body):

* its shard is ``ready`` here: the request goes on to the routes, as on a single node;
* its shard is starting or leaving here, or nobody holds it right now (the owner died and its lease
  has not run out, or a takeover is under way): ``503`` + ``Retry-After``;
* another node owns it: the request is forwarded to that node's ``advertise_url`` (method, path,
  query, body and the end-to-end headers), and its answer is returned as it is. A forwarded request
  carries ``X-Execd-Forwarded-By``; a node that receives one for a shard it does not serve answers
  503 instead of forwarding again (the two nodes' views differ for a moment; no loops).

``GET /v1/accounts`` lists every account of the cluster (the ``accounts`` table, with each
account's owner). The events websocket stays node-local: its backlog comes from the shared outbox
(every node's events), its live tail only from this node's commits; the cluster-wide live stream
is ``execd:events`` (the broker).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
from quart import Response, request
from quart_trio import QuartTrio

from ..http.common import json_response
from ..http.errors import APIError
from ..http.faults import faults_enabled
from ..messages import UnknownAccount

if TYPE_CHECKING:
    from .node import ClusterNode

log = logging.getLogger("actors.cluster")

FORWARDED_BY = "X-Execd-Forwarded-By"
_ACCOUNT_PATH = re.compile(r"^/v1/accounts/([^/]+)(?:/.*)?$")
#: hop-by-hop headers (RFC 9110 section 7.6.1) and the ones the HTTP stack sets again
_NOT_FORWARDED = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                  "transfer-encoding", "upgrade", "host", "content-length", "date", "server"}


class _AccountId(msgspec.Struct):
    id: str


def unavailable(message: str, retry_after: float, code: str = "SHARD_UNAVAILABLE") -> Response:
    return json_response({"error": {"code": code, "message": message, "field": None}}, 503,
                         {"Retry-After": str(max(1, int(round(retry_after))))})


def install_routing(app: QuartTrio, node: ClusterNode) -> None:
    """Put the cluster's routing in front of the account routes of ``app``."""
    forwarder = Forwarder(node)

    @app.before_request
    async def _route() -> Response | None:
        path = request.path
        if path == "/v1/accounts" and request.method == "GET":
            return await list_accounts(node)
        if path == "/v1/accounts" and request.method == "POST":
            try:
                account_id = msgspec.json.decode(await request.get_data(cache=True), type=_AccountId).id
            except (msgspec.DecodeError, msgspec.ValidationError):
                return None  # malformed: the route answers 400
        else:
            match = _ACCOUNT_PATH.match(path)
            if match is None:
                return None
            account_id = match.group(1)
        return await forwarder.route(account_id)

    @app.errorhandler(UnknownAccount)
    async def _unknown_account(error: UnknownAccount) -> Response:
        # the shard was lost (or handed over) after this request was routed here: it moved, it
        # did not vanish; the client retries and is forwarded to the new owner
        if node.local_status(node.shard_of(error.account_id)) != "ready":
            return unavailable(f"account {error.account_id} moved to another node", 1, code="ACCOUNT_MOVED")
        return json_response(APIError(404, "UNKNOWN_ACCOUNT", f"no account {error.account_id!r}").payload(), 404)

    @app.get("/v1/cluster")
    async def _cluster() -> Response:
        return json_response(node.describe() | {"forwarded": forwarder.forwarded, "refused": forwarder.refused})

    if faults_enabled():  # test-only: stall this node's lease loop (its accounts keep working)
        @app.post("/v1/_cluster/renewal")
        async def _hold_renewal() -> Response:
            node.renewal_held = request.args.get("held") == "1"
            return json_response({"renewal_held": node.renewal_held})

    app.after_serving(forwarder.aclose)


class Forwarder:
    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        timeout = node.settings.forward_timeout_seconds
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=2.0), limits=limits)
        self.forwarded = 0
        self.refused = 0

    async def route(self, account_id: str) -> Response | None:
        node = self.node
        shard = node.shard_of(account_id)
        status = node.local_status(shard)
        if status == "ready":
            return None
        lease = node.settings.lease_seconds
        if status is not None:
            self.refused += 1
            return unavailable(f"shard {shard} of account {account_id} is {status} on this node", 1)
        owner = node.owner(shard)
        if owner is None or not owner.owner_url or owner.owner == node.node_id:
            self.refused += 1
            return unavailable(f"shard {shard} of account {account_id} has no owner right now (moving)", 1)
        if request.headers.get(FORWARDED_BY):
            self.refused += 1
            return unavailable(f"shard {shard} is not served here ({request.headers[FORWARDED_BY]} thought so)", 1)
        try:
            return await self.forward(owner.owner_url)
        except httpx.HTTPError as exc:
            self.refused += 1
            log.info("forwarding to %s (%s) failed: %s", owner.owner, owner.owner_url, exc)
            return unavailable(f"the owner of shard {shard} ({owner.owner}) does not answer; its lease runs out "
                               f"within {lease:g} s", min(lease, 5))

    async def forward(self, base_url: str) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        headers[FORWARDED_BY] = self.node.node_id
        query = request.query_string.decode()
        url = base_url.rstrip("/") + request.path + (f"?{query}" if query else "")
        body = await request.get_data(cache=True)
        answer = await self.client.request(request.method, url, content=body, headers=headers)
        self.forwarded += 1
        out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in _NOT_FORWARDED
                       and k.lower() != "content-encoding"}
        return Response(answer.content, status=answer.status_code, headers=out_headers)

    async def aclose(self) -> None:
        await self.client.aclose()


async def list_accounts(node: ClusterNode) -> Response:
    """Every account of the cluster, with the node that owns its shard now (details: ``GET`` one)."""
    rows = await node.service.reader.fetchall("SELECT id, mode, venue, trading_state, balance FROM accounts ORDER BY id")
    supervisor = node.service.supervisor
    items: list[dict[str, Any]] = []
    for row in rows:
        shard = node.shard_of(row["id"])
        owner = node.owner(shard)
        slot = supervisor.slots.get(row["id"])
        items.append({
            "id": row["id"], "mode": row["mode"], "venue": row["venue"], "is_paper": row["mode"] == "paper",
            "actor_state": slot.status if slot is not None else None, "trading_state": row["trading_state"],
            "balance": row["balance"], "shard": shard, "node": owner.owner if owner is not None else None,
        })
    return json_response({"items": items, "next_cursor": None})
