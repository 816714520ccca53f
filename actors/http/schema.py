"""The OpenAPI document of the front door, generated from the msgspec Structs the routes decode
and answer (``msgspec.json.schema_components``), with every status each route can answer.

What the Structs cannot say is added here, once: the rules across fields of a decision (an
``open`` takes a side and exactly one of quantity or notional; a ``close`` takes neither a side
nor a notional nor TP/SL; a limit order takes a price, a market order none), the path parameters'
shapes, the venues this service runs, the websocket routes, ``/metrics``'s text format, and the
bearer-token security scheme. ``tests/http/test_contract.py`` runs schemathesis against a live
service with this document: every answer must be declared and match its schema, every
schema-valid request must be accepted (or refused for a business reason: ``409``/``422``), and
every schema-invalid one refused.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..domain.decisions import DecisionIn
from ..domain.views import DecisionResult
from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from . import shapes as s
from .accounts import AccountIn, ProtectionIn, StateChange
from .shapes import POSITIVE_DECIMAL

REF = "#/components/schemas/{name}"
ACCOUNT_ID = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}
DECISION_ID = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"}
SYMBOL = {"type": "string", "pattern": r"^[A-Za-z0-9]{1,30}$"}
ORDER_ID = {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,200}$"}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                               "schema": {"type": "string", "pattern": r"^[0-9]+$"}}}

_STRUCTS: list[Any] = [
    DecisionIn, DecisionResult, s.Pending, s.ErrorBody, AccountIn, s.AccountSummary, s.AccountList, s.Inspection,
    s.PositionList, s.OrderList, s.FillList, s.AuditList, s.PerformanceView, s.RestartAnswer, s.RiskAnswer,
    s.RiskOverrides, StateChange, ProtectionIn, s.AccountStateAnswer, s.GlobalStateAnswer, s.CloseAllAnswer,
    s.CloseAllAccountsAnswer, s.Health, s.Readiness, s.Whoami, s.Event, s.TwinReport,
]


def _ref(struct: Any) -> dict[str, str]:
    return {"$ref": REF.format(name=struct.__name__)}


def _json(description: str, struct: Any | None = None, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"description": description}
    if struct is not None:
        body["content"] = {"application/json": {"schema": _ref(struct) if isinstance(struct, type) else struct}}
    if headers:
        body["headers"] = headers
    return body


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return _json(description, s.ErrorBody, headers)


def _param(name: str, where: str, schema: dict[str, Any], required: bool = False,
           description: str = "") -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema,
            **({"description": description} if description else {})}


_ACCOUNT = _param("account_id", "path", ACCOUNT_ID)
_PAGE = [_param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}),
         _param("cursor", "query", {"type": "string", "pattern": r"^([0-9]{1,18})?$"},
                description="the next_cursor of the previous page (empty: the first page)")]


def _op(summary: str, ok: dict[str, Any], *, access: str, body: Any = None, params: list[dict[str, Any]] = (),
        account: bool = False, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    """One operation: its success answers ``ok``, and the errors that follow from what it takes
    (a body: 400 and 413; an account: 404; a token: 401 and 403) plus ``errors``."""
    responses = dict(ok)
    parameters = ([_ACCOUNT] if account else []) + list(params)
    if body is not None:
        responses["400"] = _error("malformed: not JSON, a wrong type, an unknown or missing field (named in field)")
        responses["413"] = _error("the body is larger than the service accepts")
    if parameters and "400" not in responses and any(p["in"] == "query" for p in parameters):
        responses["400"] = _error("a query parameter is malformed (named in field)")
    if account:
        responses["404"] = _error("no such account")
    if access != "public":
        responses["401"] = _error("no valid bearer token", {"WWW-Authenticate": {"schema": {"type": "string"}}})
        responses["403"] = _error("outside the token's role or accounts")
    responses.update(errors or {})
    op: dict[str, Any] = {"summary": summary, "responses": dict(sorted(responses.items())),
                          "x-required-access": access}
    if access == "public":
        op["security"] = []
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return op


STREAM_DESCRIPTION = (
    "A websocket (RFC 6455); a plain GET answers 426 Upgrade Required to anyone. Each text frame in is "
    "{\"account_id\": <account>, \"decision\": <a DecisionIn, as POST /v1/accounts/{account_id}/decisions "
    "takes it>}; each frame out answers one decision as that POST would: {\"decision_id\", \"account_id\", "
    "\"status\": <the HTTP status>, \"retry_after\": <seconds, with a 503 only>, \"body\": <the HTTP body: "
    "a DecisionResult (200, 422), a Pending (202, followed by the result once it commits) or an Error (400, 403 "
    "outside the token's accounts, 404, 409, 503)>}. Results go out as they commit, not necessarily in the "
    "order sent; correlate them by decision_id. The same validation, roles, idempotency (decision_id and the "
    "fingerprint of the decision's canonical JSON, shared with HTTP) and audit as HTTP. At most "
    "server.stream_max_in_flight decisions (default 64) are in flight per connection; beyond that the server "
    "stops reading the socket until one is answered (nothing is dropped).")

_UNAVAILABLE = {"503": _error("the account is restarting, busy or its inbox is full; retry later", RETRY_AFTER)}
_PAPER_TWIN = _error("the account is a live account's paper twin (PAPER_TWIN): it cannot be traded directly")


def _not_upgraded() -> dict[str, Any]:
    return {"426": _error("a plain GET (no Upgrade: websocket): the stream is a websocket",
                          {"Upgrade": {"schema": {"const": "websocket"}}})}


def _websocket_handshake() -> list[dict[str, Any]]:
    """The headers of a websocket handshake (RFC 6455), as the two websocket routes declare them."""
    return [
        _param("Upgrade", "header", {"const": "websocket"}, required=True),
        _param("Connection", "header", {"const": "Upgrade"}, required=True),
        _param("Sec-WebSocket-Version", "header", {"const": "13"}, required=True),
        _param("Sec-WebSocket-Key", "header", {"type": "string", "pattern": r"^[A-Za-z0-9+/]{22}==$"},
               required=True),
    ]


def _paths() -> dict[str, Any]:
    """The OpenAPI ``paths``: one entry per route, in the order the document lists them.

    Longer than the house rule on purpose: it is a declarative table (one ``_op`` per route,
    built from the shared helpers above), read top to bottom like the API reference it produces;
    split into pieces it would only be harder to check against the routes.
    """
    decision_id = _param("decision_id", "path", DECISION_ID)
    return {
        "/v1/accounts/{account_id}/decisions": {"post": _op(
            "Submit a decision", {
                "200": _json("executed: the stored result (filled, partially filled, resting)", DecisionResult),
                "202": _json("still running after the request timeout; poll result_url", s.Pending,
                             {"Location": {"schema": {"type": "string"}}}),
            }, access="trade", body=DecisionIn, account=True, errors={
                "409": _error("the same decision_id with another body (IDEMPOTENCY_CONFLICT), or the account is a "
                              "live account's paper twin, which cannot be traded directly (PAPER_TWIN)"),
                "422": _json("rejected by the risk gate or the venue: the stored result, with its error",
                             DecisionResult),
                **_UNAVAILABLE})},
        "/v1/accounts/{account_id}/decisions/{decision_id}": {"get": _op(
            "The stored result of a decision", {
                "200": _json("the stored result (a rejected one too)", DecisionResult),
                "202": _json("still in flight", s.Pending)},
            access="read", account=True, params=[decision_id, _param(
                "fingerprint", "query", {"type": "string", "pattern": r"^[0-9a-f]{64}$"},
                description="answer only for the body with this fingerprint (from result_url)")],
            errors={"404": _error("no such account, or no such decision on it"),
                    "409": _error("the decision was stored with another body")})},
        "/v1/accounts": {
            "get": _op("List accounts (a scoped token sees its accounts)", {"200": _json("accounts", s.AccountList)},
                       access="read"),
            "post": _op("Create a paper account", {"201": _json("created", s.AccountSummary,
                                                                {"Location": {"schema": {"type": "string"}}})},
                        access="admin", body=AccountIn, errors={
                            "409": _error("an account with this id exists"),
                            "422": _error("the risk limits contradict each other")})},
        "/v1/accounts/{account_id}": {"get": _op(
            "Inspect an account and its actor", {"200": _json("inspection", s.Inspection)}, access="read",
            account=True)},
        "/v1/accounts/{account_id}/restart": {"post": _op(
            "Restart an account actor left failed", {"200": _json("restarting", s.RestartAnswer)}, access="admin",
            account=True, errors={"409": _error("the actor is not failed")})},
        "/v1/accounts/{account_id}/positions": {"get": _op(
            "Positions (open: live marks; closed, all: newest first)", {"200": _json("positions", s.PositionList)},
            access="read", account=True, params=[*_PAGE, _param("status", "query", {"enum": ["open", "closed", "all"]})])},
        "/v1/accounts/{account_id}/positions/{symbol}/protection": {"put": _op(
            "Set or move take-profit / stop-loss", {"200": _json("the position", s.PositionView)}, access="trade",
            body=ProtectionIn, account=True, params=[_param("symbol", "path", SYMBOL)],
            errors={"409": _PAPER_TWIN,
                    "422": _error("no such open position, or levels on the wrong side of the mark"),
                    "502": _error("live: the venue would not cancel the level being moved; it stays in force"),
                    **_UNAVAILABLE})},
        "/v1/accounts/{account_id}/orders": {"get": _op(
            "Orders, newest first", {"200": _json("orders", s.OrderList)}, access="read", account=True, params=_PAGE)},
        "/v1/accounts/{account_id}/orders/{order_id}": {"delete": _op(
            "Cancel an open order", {"200": _json("the cancelled order", s.OrderView)}, access="trade", account=True,
            params=[_param("order_id", "path", ORDER_ID)],
            errors={"404": _error("no such account, or no such open order"), "409": _PAPER_TWIN,
                    "502": _error("live: the venue would not cancel the order; it is still working"),
                    **_UNAVAILABLE})},
        "/v1/accounts/{account_id}/trades": {"get": _op(
            "Trades (fills), newest first", {"200": _json("fills", s.FillList)}, access="read", account=True,
            params=_PAGE)},
        "/v1/accounts/{account_id}/audit": {"get": _op(
            "Risk evaluations, newest first", {"200": _json("audit", s.AuditList)}, access="read", account=True,
            params=_PAGE)},
        "/v1/accounts/{account_id}/performance": {"get": _op(
            "Performance of the closed round trips", {"200": _json("statistics", s.PerformanceView)}, access="read",
            account=True)},
        "/v1/accounts/{account_id}/twin": {"get": _op(
            "A live account against its paper twin, decision by decision (newest first) and in aggregate",
            {"200": _json("the divergence report", s.TwinReport)}, access="read", account=True, params=_PAGE,
            errors={"404": _error("no such account, or it has no paper twin (NO_PAPER_TWIN)")})},
        "/v1/accounts/{account_id}/risk": {"put": _op(
            "Change risk limits (DESIGN.md §6 names)", {"200": _json("the limits now", s.RiskAnswer)},
            access="admin", body=s.RiskOverrides, account=True,
            errors={"422": _error("limits that contradict each other or the account"), **_UNAVAILABLE})},
        "/v1/accounts/{account_id}/trading-state": {"put": _op(
            "Set the account's trading state (kill switch)", {"200": _json("the state", s.AccountStateAnswer)},
            access="admin", body=StateChange, account=True, errors=_UNAVAILABLE)},
        "/v1/trading-state": {"put": _op(
            "Set the global trading state (kill switch)", {"200": _json("the state", s.GlobalStateAnswer)},
            access="admin", body=StateChange)},
        "/v1/accounts/{account_id}/close-all": {"post": _op(
            "Emergency close of one account: cancel its orders, close its positions",
            {"200": _json("what was cancelled and closed", s.CloseAllAnswer)}, access="admin", account=True,
            errors=_UNAVAILABLE)},
        "/v1/close-all": {"post": _op(
            "Emergency close of every account", {"200": _json("per account", s.CloseAllAccountsAnswer)},
            access="admin")},
        "/v1/events": {"get": {**_op(
            "The event stream: a websocket (resume with ?after=seq); each text frame is one Event", {
                "101": {"description": "switching to the websocket (subprotocol execd when offered; a browser "
                                       "sends its token as the subprotocol bearer.<base64url of the token>)"}},
            access="read", params=[
                _param("after", "query", {"type": "integer", "minimum": 0}),
                _param("tail", "query", {"type": "integer", "minimum": 0, "maximum": 1000},
                       description="start with the last N events instead"),
                *_websocket_handshake()],
            errors=_not_upgraded()),
            "description": "A websocket (RFC 6455). A plain GET answers 426 Upgrade Required to anyone."}},
        "/v1/decisions/stream": {"get": {**_op(
            "The decision stream: a websocket carrying decisions in and their results out, several in flight", {
                "101": {"description": "switching to the websocket (Authorization: Bearer <token> of a trader or "
                                       "an admin; a browser may send it as the subprotocol bearer.<base64url>)"}},
            access="trade", params=_websocket_handshake(),
            errors=_not_upgraded()),
            "description": STREAM_DESCRIPTION}},
        "/v1/whoami": {"get": _op("The caller's role and accounts", {"200": _json("the caller", s.Whoami)},
                                  access="read")},
        "/health": {"get": _op("Liveness and the feeds' states", {"200": _json("ok or draining", s.Health)},
                               access="public")},
        "/ready": {"get": _op("Readiness: accounts loaded, market data fresh", {
            "200": _json("ready", s.Readiness), "503": _json("not ready, and why", s.Readiness)}, access="public")},
        "/metrics": {"get": _op("Prometheus metrics", {"200": {
            "description": "Prometheus text exposition format 0.0.4",
            "content": {METRICS_CONTENT_TYPE: {"schema": {"type": "string"}}}}},
            access="read")},
        "/openapi.json": {"get": _op("This document", {"200": _json("OpenAPI 3.1", {"type": "object"})},
                                     access="public")},
        "/": {"get": _op("The dashboard", {"200": {"description": "the page", "content": {
            "text/html; charset=utf-8": {"schema": {"type": "string"}}}}}, access="public")},
        "/dashboard/{filename}": {"get": _op("The dashboard's assets", {"200": {"description": "a file", "content": {
            "*/*": {"schema": {"type": "string"}}}}}, access="public", params=[_param(
                "filename", "path", {"enum": ["app.js", "app.css"]})], errors={"404": _error("no such file")})},
    }


def _amount(component: dict[str, Any]) -> dict[str, Any]:
    """A positive amount of a decision: a decimal string or a number (null: not given)."""
    return {"anyOf": [{"type": "string", "pattern": POSITIVE_DECIMAL},
                      {"type": "number", "exclusiveMinimum": 0, "maximum": s.MAX_AMOUNT}, {"type": "null"}],
            "default": None}


def _decision_rules(decision: dict[str, Any]) -> None:
    """What ``validate_decision`` checks across fields, said in JSON Schema."""
    props = decision["properties"]
    props["decision_id"] = DECISION_ID
    props["symbol"] = {"type": "string", "pattern": r"^\s*[A-Za-z0-9]{2,30}\s*$",
                       "description": "the venue's symbol (case and surrounding spaces ignored)"}
    for name in ("quantity", "notional", "take_profit", "stop_loss", "price", "reference_price", "max_slippage_bps"):
        props[name] = _amount(props[name])
    props["leverage"] = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 25}, {"type": "null"}],
                         "default": None}
    given = {"not": {"type": "null"}}
    absent = {"type": "null"}
    decision["allOf"] = [
        {"oneOf": [
            {"properties": {"action": {"const": "open"}, "side": given}, "required": ["side"],
             "oneOf": [{"properties": {"quantity": given, "notional": absent}, "required": ["quantity"]},
                       {"properties": {"notional": given, "quantity": absent}, "required": ["notional"]}]},
            {"properties": {"action": {"const": "close"}, "side": absent, "notional": absent,
                            "take_profit": absent, "stop_loss": absent}},
        ]},
        {"oneOf": [
            {"properties": {"order_type": {"const": "limit"}, "price": given}, "required": ["order_type", "price"]},
            {"properties": {"order_type": {"const": "market"}, "price": absent}},
        ]},
    ]


def openapi_document(venues: list[str], *, auth: bool = True) -> dict[str, Any]:
    """The document for a service running ``venues``; without ``auth`` (no token configured: the
    service serves loopback only) no operation needs a token, and none answers 401 or 403."""
    _, components = msgspec.json.schema_components(_STRUCTS, ref_template=REF)
    _decision_rules(components["DecisionIn"])
    components["AccountIn"]["properties"]["venue"] = {"enum": sorted(venues), "default": "sim"}
    components["ProtectionIn"]["anyOf"] = [
        {"properties": {"take_profit": {"not": {"type": "null"}}}, "required": ["take_profit"]},
        {"properties": {"stop_loss": {"not": {"type": "null"}}}, "required": ["stop_loss"]}]
    paths = _paths()
    if not auth:
        for operations in paths.values():
            for operation in operations.values():
                operation["responses"].pop("401", None)
                operation["responses"].pop("403", None)
                operation["security"] = []
    document = {
        "openapi": "3.1.0",
        "info": {"title": "execd: trading execution service", "version": "0.1.0",
                 "description": "Money is a decimal string. Every error is {\"error\": {code, message, field}}. "
                                "Lists are {items, next_cursor}. Roles: admin, trader (its accounts), viewer "
                                "(reads); x-required-access on each operation says which it needs."},
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }
    return document
