"""Test-only fault hooks, mounted only when ``EXECD_TEST_FAULTS=1`` (never in production).

``POST /v1/accounts/{id}/_crash?where=now|next_decision`` makes the account actor raise, so load
tests can check one-for-one restarts under traffic.
"""

from __future__ import annotations

import os
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from ..messages import AccountUnavailable, InjectCrash, UnknownAccount
from .errors import APIError


def faults_enabled() -> bool:
    return os.environ.get("EXECD_TEST_FAULTS") == "1"


def mount_faults(app: QuartTrio, service: Any, respond: Any) -> None:
    @app.post("/v1/accounts/<account_id>/_crash")
    async def crash(account_id: str) -> Response:
        where = request.args.get("where", "now")
        if where not in ("now", "next_decision"):
            raise APIError(400, "INVALID_FIELD", "where must be now or next_decision", field="where")
        try:
            service.supervisor.control(account_id, InjectCrash(where=where))  # type: ignore[arg-type]
        except UnknownAccount:
            raise APIError(404, "UNKNOWN_ACCOUNT", f"no account {account_id!r}") from None
        except AccountUnavailable as exc:
            raise APIError(503, "ACCOUNT_UNAVAILABLE", str(exc), headers={"Retry-After": "1"}) from None
        return respond({"account_id": account_id, "crash": where}, 202)
