"""Test-only fault hooks, mounted only when ``EXECD_TEST_FAULTS=1`` (never in production).

``POST /v1/accounts/{id}/_crash?where=now|next_decision`` makes the account actor raise, so load
tests can check one-for-one restarts under traffic.
"""

from __future__ import annotations

import os
from typing import Any

from quart import Blueprint, Response, request

from ..messages import InjectCrash
from .common import json_response
from .errors import APIError


def faults_enabled() -> bool:
    return os.environ.get("EXECD_TEST_FAULTS") == "1"


def faults_blueprint(service: Any) -> Blueprint:
    bp = Blueprint("faults", __name__)

    @bp.post("/v1/accounts/<account_id>/_crash")
    async def crash(account_id: str) -> Response:
        where = request.args.get("where", "now")
        if where not in ("now", "next_decision"):
            raise APIError(400, "INVALID_FIELD", "where must be now or next_decision", field="where")
        service.supervisor.control(account_id, InjectCrash(where=where))  # type: ignore[arg-type]
        return json_response({"account_id": account_id, "crash": where}, 202)

    return bp
