"""Who may call what: bearer tokens with roles, enforced in one place for HTTP and websockets.

Roles (DESIGN.md §8):

* ``admin``: everything, including kill switches (trading states, close-all), risk limits,
  account creation and restarts;
* ``trader``: decisions, protection and order cancels, and every read, on its accounts only;
* ``viewer``: reads only (its accounts only when the token lists some).

Tokens are configured by the hex SHA-256 of the token (``auth.tokens`` in the settings,
``EXECD_AUTH_TOKENS``; ``EXECD_API_TOKEN`` in clear is one admin token). A presented token is
hashed and compared with every configured hash in constant time. Without a valid token a
protected route answers ``401``; outside the token's role or account scope, ``403``.

:data:`ACCESS` maps every endpoint to what it needs; an endpoint missing from it needs ``admin``
(closed by default). The account scope comes from the URL's ``account_id``. Websockets carry the
token in the ``Authorization`` header or, from a browser (which cannot set headers on a
websocket), as the subprotocol ``bearer.<token in base64url>`` next to the subprotocol ``execd``,
which the server then accepts. Without any configured token every caller is an admin, and the
settings refuse a non-loopback ``server.host`` (see ``actors.settings``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from typing import Any, Literal

import msgspec
from quart import Blueprint, Response, g, request, websocket
from quart_trio import QuartTrio

from ..settings import Role, Settings
from .common import json_response
from .errors import APIError

log = logging.getLogger("actors.http.auth")

Access = Literal["public", "read", "trade", "admin"]
SUBPROTOCOL = "execd"
BEARER_SUBPROTOCOL_PREFIX = "bearer."

#: What each endpoint needs. ``read``: any valid token; ``trade``: trader or admin; ``admin``:
#: admin only. Routes with an ``account_id`` are also limited to the token's accounts.
ACCESS: dict[str, Access] = {
    # operations: probes and the contract are public; metrics and the event stream are reads
    "operations.health": "public",
    "operations.ready": "public",
    "operations.openapi": "public",
    "operations.metrics": "read",
    "operations.events_socket": "read",
    "operations.events_without_upgrade": "public",
    # the dashboard page and its assets hold no data (the page asks for a token)
    "dashboard.index": "public",
    "dashboard.static": "public",
    "auth.whoami": "read",
    # decisions
    "decisions.submit_decision": "trade",
    "decisions.get_decision": "read",
    "stream.decision_stream": "trade",  # the websocket; each frame's account is checked against the token's
    "stream.decision_stream_without_upgrade": "public",
    # accounts: reads
    "accounts.list_accounts": "read",
    "accounts.inspect_account": "read",
    "accounts.list_positions": "read",
    "accounts.list_orders": "read",
    "accounts.list_trades": "read",
    "accounts.list_audit": "read",
    "accounts.performance": "read",
    "twin.twin_report": "read",
    # accounts: a trader's own hand on its positions and orders
    "accounts.set_protection": "trade",
    "accounts.cancel_order": "trade",
    # accounts: the operator's levers
    "accounts.create_account": "admin",
    "accounts.restart_account": "admin",
    "accounts.put_risk": "admin",
    "accounts.put_account_state": "admin",
    "accounts.put_global_state": "admin",
    "accounts.close_all": "admin",
    "accounts.close_all_accounts": "admin",
    "faults.crash": "admin",
}

_ALLOWED: dict[Role, frozenset[Access]] = {
    "admin": frozenset({"read", "trade", "admin"}),
    "trader": frozenset({"read", "trade"}),
    "viewer": frozenset({"read"}),
}


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The caller a token stands for."""

    role: Role
    accounts: frozenset[str] | None = None  # None: every account
    name: str = ""

    def may(self, access: Access) -> bool:
        return access == "public" or access in _ALLOWED[self.role]

    def sees(self, account_id: str | None) -> bool:
        """Whether this caller may see ``account_id`` (``None``: events of no account: global)."""
        return self.accounts is None or account_id is None or account_id in self.accounts


#: everyone, when no token is configured (the service then serves loopback only)
ANONYMOUS_ADMIN = Principal(role="admin", name="anyone (no API token configured)")


class Authenticator:
    """The configured tokens, by hash; finds the principal a presented token stands for."""

    def __init__(self, settings: Settings) -> None:
        self._tokens = [(bytes.fromhex(t.sha256), Principal(
            role=t.role, accounts=frozenset(t.accounts) if t.accounts is not None else None,
            name=t.name or f"{t.role} token {t.sha256[:8]}")) for t in settings.auth.tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def principal(self, token: str | None) -> Principal | None:
        """The principal of ``token``, or None. Every configured hash is compared, in constant time."""
        if not self._tokens:
            return ANONYMOUS_ADMIN
        if not token:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        found: Principal | None = None
        for expected, principal in self._tokens:
            if hmac.compare_digest(digest, expected):
                found = principal
        return found


def bearer_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def bearer_from_subprotocols(offered: list[str]) -> str | None:
    """The token a browser put in ``Sec-WebSocket-Protocol`` as ``bearer.<base64url>``."""
    for protocol in offered:
        if protocol.startswith(BEARER_SUBPROTOCOL_PREFIX):
            encoded = protocol[len(BEARER_SUBPROTOCOL_PREFIX):]
            try:
                return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return None
    return None


def current_principal() -> Principal:
    """The caller of the request (or websocket) being served."""
    return g.principal  # type: ignore[no-any-return]


async def accept_websocket() -> None:
    """Accept the websocket, naming ``execd`` when the client offered it (a browser that sent
    its token as a subprotocol requires the server to choose one)."""
    offered = websocket.requested_subprotocols or []
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)


def _check(endpoint: str | None, view_args: dict[str, Any] | None, token: str | None,
           authenticator: Authenticator) -> Principal | None:
    access = ACCESS.get(endpoint or "", "admin")
    principal = authenticator.principal(token)
    if access == "public":
        return principal
    if principal is None:
        raise APIError(401, "UNAUTHENTICATED",
                       "a valid bearer token is required (Authorization: Bearer <token>)",
                       headers={"WWW-Authenticate": 'Bearer realm="execd"'})
    if not principal.may(access):
        raise APIError(403, "FORBIDDEN", f"the {principal.role} role may not do this (it needs {access})")
    account_id = (view_args or {}).get("account_id")
    if account_id is not None and not principal.sees(account_id):
        raise APIError(403, "FORBIDDEN", f"account {account_id!r} is outside this token's accounts")
    return principal


def install_auth(app: QuartTrio, settings: Settings) -> Authenticator:
    """Enforce :data:`ACCESS` before every request and websocket of ``app``."""
    authenticator = Authenticator(settings)
    if not authenticator.enabled:
        log.warning("no API token configured: every caller is an admin; serving on loopback only (%s)",
                    settings.server.host)

    @app.before_request
    async def _authorize_request() -> None:
        if request.url_rule is None:  # 404 / 405: routing answers, nothing to protect
            return
        token = bearer_from_header(request.headers.get("Authorization"))
        g.principal = _check(request.endpoint, request.view_args, token, authenticator)

    @app.before_websocket
    async def _authorize_websocket() -> None:
        if websocket.url_rule is None:
            return
        token = bearer_from_header(websocket.headers.get("Authorization"))
        if token is None:
            token = bearer_from_subprotocols(websocket.requested_subprotocols or [])
        g.principal = _check(websocket.endpoint, websocket.view_args, token, authenticator)

    app.register_blueprint(auth_blueprint(authenticator))
    return authenticator


def auth_blueprint(authenticator: Authenticator) -> Blueprint:
    bp = Blueprint("auth", __name__)

    @bp.get("/v1/whoami")
    async def whoami() -> Response:
        """The caller's role and account scope (the dashboard shows the levers it may pull)."""
        principal = current_principal()
        return json_response({
            "role": principal.role,
            "accounts": sorted(principal.accounts) if principal.accounts is not None else None,
            "name": principal.name,
            "auth_enabled": authenticator.enabled,
        })

    return bp
