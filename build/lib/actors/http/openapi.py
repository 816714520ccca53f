"""The OpenAPI description of the front door (kept beside the routes, checked by a test)."""

from __future__ import annotations

from typing import Any

_money = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "description": "decimal as a JSON string"}
_amount = {"oneOf": [{"type": "string"}, {"type": "number"}], "description": "number or decimal string"}
_error = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": ["string", "null"]}},
        "required": ["code", "message", "field"]}},
    "required": ["error"],
}
_list = {"type": "object", "properties": {"items": {"type": "array"}, "next_cursor": {"type": ["string", "null"]}}}


def _op(summary: str, responses: dict[str, str], body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {
        code: {"description": text, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"} if code.startswith(("4", "5")) else {}}}}
        for code, text in responses.items()}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_page = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
         {"name": "cursor", "in": "query", "schema": {"type": "string"}}]
_acct = [_path_param("account_id")]
_state_body = {"type": "object", "properties": {"state": {"enum": ["active", "reducing", "halted"]},
                                                "reason": {"type": "string"}}, "required": ["state"]}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "execd: trading execution service", "version": "0.1.0"},
    "components": {"schemas": {
        "Error": _error,
        "Decision": {
            "type": "object", "additionalProperties": False,
            "required": ["decision_id", "symbol", "action"],
            "properties": {
                "decision_id": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"},
                "symbol": {"type": "string"}, "action": {"enum": ["open", "close"]},
                "side": {"enum": ["long", "short"]}, "quantity": _amount, "notional": _amount,
                "leverage": {"type": "integer", "minimum": 1, "maximum": 25},
                "take_profit": _amount, "stop_loss": _amount, "order_type": {"enum": ["market", "limit"]},
                "price": _amount, "reference_price": _amount, "max_slippage_bps": _amount,
                "meta": {"type": "object"},
            },
        },
        "DecisionResult": {"type": "object", "properties": {
            "decision_id": {"type": "string"}, "status": {"enum": ["filled", "partially_filled", "resting",
                                                                   "rejected", "pending"]},
            "is_paper": {"type": "boolean"}, "rejection": {"type": ["object", "null"]},
            "order": {"type": ["object", "null"]}, "fills": {"type": "array"},
            "position": {"type": ["object", "null"]}, "protective_orders": {"type": "array"},
            "balance": _money}},
    }},
    "paths": {
        "/v1/accounts/{account_id}/decisions": {"post": _op(
            "Submit a decision", {"200": "executed (filled, partially filled)", "202": "still running; poll result_url",
                                  "400": "malformed", "404": "unknown account", "409": "idempotency conflict",
                                  "413": "body too large", "422": "rejected by the risk gate or the venue",
                                  "503": "account restarting or inbox full (Retry-After)"},
            {"$ref": "#/components/schemas/Decision"}, _acct)},
        "/v1/accounts/{account_id}/decisions/{decision_id}": {"get": _op(
            "The stored result of a decision", {"200": "the result", "404": "unknown"},
            params=_acct + [_path_param("decision_id")])},
        "/v1/accounts": {"get": _op("List accounts", {"200": "accounts"}),
                         "post": _op("Create a paper account", {"201": "created", "400": "invalid", "409": "exists"},
                                     {"type": "object", "required": ["id"]})},
        "/v1/accounts/{account_id}": {"get": _op("Inspect an account and its actor", {"200": "inspection",
                                                                                      "404": "unknown"}, params=_acct)},
        "/v1/accounts/{account_id}/restart": {"post": _op("Restart a failed account actor",
                                                          {"200": "restarting", "409": "not failed"}, params=_acct)},
        "/v1/accounts/{account_id}/positions": {"get": _op(
            "Positions", {"200": "list"}, params=_acct + _page + [
                {"name": "status", "in": "query", "schema": {"enum": ["open", "closed", "all"]}}])},
        "/v1/accounts/{account_id}/positions/{symbol}/protection": {"put": _op(
            "Set or move take-profit / stop-loss", {"200": "position", "422": "invalid"},
            {"type": "object", "properties": {"take_profit": _amount, "stop_loss": _amount}},
            _acct + [_path_param("symbol")])},
        "/v1/accounts/{account_id}/orders": {"get": _op("Orders, newest first", {"200": "list"}, params=_acct + _page)},
        "/v1/accounts/{account_id}/orders/{order_id}": {"delete": _op(
            "Cancel an open order", {"200": "cancelled", "404": "unknown"}, params=_acct + [_path_param("order_id")])},
        "/v1/accounts/{account_id}/trades": {"get": _op("Trades (fills), newest first", {"200": "list"},
                                                        params=_acct + _page)},
        "/v1/accounts/{account_id}/audit": {"get": _op("Risk evaluations", {"200": "list"}, params=_acct + _page)},
        "/v1/accounts/{account_id}/performance": {"get": _op("Performance of closed round trips", {"200": "stats"},
                                                             params=_acct)},
        "/v1/accounts/{account_id}/risk": {"put": _op("Change risk limits", {"200": "limits", "400": "malformed",
                                                                             "422": "invalid value"},
                                                      {"type": "object"}, _acct)},
        "/v1/accounts/{account_id}/trading-state": {"put": _op("Set the account trading state", {"200": "state"},
                                                               _state_body, _acct)},
        "/v1/trading-state": {"put": _op("Set the global trading state", {"200": "state"}, _state_body)},
        "/v1/accounts/{account_id}/close-all": {"post": _op("Emergency close of one account", {"200": "done"},
                                                            params=_acct)},
        "/v1/close-all": {"post": _op("Emergency close of every account", {"200": "done"})},
        "/v1/events": {"get": _op("Event stream (websocket), resume with ?after=seq", {"101": "upgrade"})},
        "/health": {"get": _op("Liveness and feed states", {"200": "ok"})},
        "/ready": {"get": _op("Readiness", {"200": "ready", "503": "not ready"})},
        "/metrics": {"get": _op("Prometheus metrics", {"200": "text"})},
        "/openapi.json": {"get": _op("This document", {"200": "OpenAPI 3.1"})},
    },
}
