"""The HTTP front door: a small Quart-Trio app whose routes are grouped in blueprints
(``decisions``, ``accounts``, ``operations``) and share one set of error handlers.

Routes are thin: parse, send the account's actor a message (or read its committed snapshot),
answer. Every error body is ``{"error": {"code", "message", "field"}}``.
"""

from __future__ import annotations

import logging
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..cluster import install_routing
from ..messages import AccountUnavailable, ActorCrashed, CommandRefused, DecisionConflict, UnknownAccount
from .accounts import accounts_blueprint
from .auth import install_auth
from .dashboard import dashboard_blueprint
from .common import json_response
from .decisions import decisions_blueprint
from .errors import APIError, refusal_error
from .faults import faults_enabled, faults_blueprint
from .operations import operations_blueprint
from .stream import stream_blueprint
from .twin import install_twin_guard, twin_blueprint

log = logging.getLogger("actors.http")


def create_app(service: Any) -> QuartTrio:
    """Build the app around a running service (supervisor, reader, markets, bus, settings)."""
    app = QuartTrio("execd", static_folder=None)  # the dashboard serves its own assets
    app.config["MAX_CONTENT_LENGTH"] = service.settings.server.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False

    @app.errorhandler(APIError)
    async def _api_error(error: APIError) -> Response:
        return json_response(error.payload(), error.status, error.headers)

    async def _refused(error: Exception) -> Response:
        return await _api_error(refusal_error(error))  # type: ignore[arg-type]

    for refusal in (UnknownAccount, AccountUnavailable, ActorCrashed, DecisionConflict, CommandRefused):
        app.register_error_handler(refusal, _refused)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "BODY_TOO_LARGE"}.get(error.code or 500, "HTTP_ERROR")
        message = error.description or error.name
        if error.code == 413:
            message = f"the body is larger than {service.settings.server.max_body_bytes} bytes"
        headers = None
        if isinstance(error, MethodNotAllowed) and error.valid_methods:  # RFC 9110 §15.5.6: a 405 names them
            headers = {"Allow": ", ".join(sorted(error.valid_methods))}
        return json_response({"error": {"code": code, "message": message, "field": None}}, error.code or 500,
                             headers)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_response({"error": {"code": "INTERNAL", "message": "internal error; see the service log",
                                        "field": None}}, 500)

    install_auth(app, service.settings)  # roles: one before_request / before_websocket hook

    if getattr(service, "cluster", None) is not None:  # cluster mode: other nodes' accounts are forwarded
        install_routing(app, service.cluster)
    install_twin_guard(app, service)  # a live account's paper twin is not traded directly
    app.register_blueprint(decisions_blueprint(service))
    app.register_blueprint(stream_blueprint(service))
    app.register_blueprint(accounts_blueprint(service))
    app.register_blueprint(twin_blueprint(service))
    app.register_blueprint(operations_blueprint(service))
    app.register_blueprint(dashboard_blueprint())
    if faults_enabled():
        app.register_blueprint(faults_blueprint(service))
    return app
