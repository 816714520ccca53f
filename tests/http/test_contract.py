"""The OpenAPI document is the contract: schemathesis (every check, a bounded number of examples
per operation, a fixed seed) against a live service on loopback, with an admin token.

No failure, no server error, no timeout: every answer is declared and matches its schema, every
schema-valid request is accepted or refused for a declared business reason (409, 422), every
schema-invalid one is refused, requests without a valid token get 401. ``GET /v1/events`` and
``GET /v1/decisions/stream`` are left out of the run: they are websockets (an HTTP fuzzer cannot
hold one); their plain-GET answer (426) and their auth are tested below, in ``test_roles.py`` and
in ``test_decision_stream.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
import trio

from actors.service import Service, run_service
from tests.conftest import TEST_SETTINGS, make_settings

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).parent / "contract" / "schemathesis.toml"
TOKEN = "contract-admin-token"
EXAMPLES = 12
SEED = 20240601


async def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, TEST_SETTINGS, EXECD_API_TOKEN=TOKEN)
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            service: Service = await nursery.start(run_service, settings)
            result = await trio.run_process(
                [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()", "--config-file", str(CONFIG), "run",
                 f"{service.url}/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES),
                 "--seed", str(SEED), "--workers", "1", "--request-timeout", "10", "--no-color",
                 "--header", f"Authorization: Bearer {TOKEN}", "--exclude-path", "/v1/events",
                 "--exclude-path", "/v1/decisions/stream",
                 "--report", "junit", "--report-dir", str(tmp_path / "report")],
                capture_stdout=True, capture_stderr=True, check=False, cwd=tmp_path)
            service.request_stop()
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output[-20000:]
    assert " passed" in output and "failed" not in output.split("SUMMARY")[-1], output[-5000:]


async def test_the_document_declares_what_the_routes_answer(service: Service, client: httpx.AsyncClient) -> None:
    """Spot checks of the generated document: statuses, the websocket, the metrics' content type."""
    with trio.fail_after(20):
        spec = (await client.get("/openapi.json")).json()
        plain_get = await client.get("/v1/events")
        stream_get = await client.get("/v1/decisions/stream")
        metrics = await client.get("/metrics")
    paths = spec["paths"]
    submit = paths["/v1/accounts/{account_id}/decisions"]["post"]["responses"]
    assert {"200", "202", "400", "404", "409", "413", "422", "503"} <= set(submit)
    assert "Retry-After" in submit["503"]["headers"]
    assert "401" not in submit  # no token configured here: nothing answers 401
    events = paths["/v1/events"]["get"]
    assert {"101", "426"} <= set(events["responses"])
    assert plain_get.status_code == 426 and plain_get.headers["upgrade"] == "websocket"
    stream = paths["/v1/decisions/stream"]["get"]
    assert {"101", "426"} <= set(stream["responses"]) and stream["x-required-access"] == "trade"
    assert stream_get.status_code == 426
    (metrics_type,) = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert metrics.headers["content-type"] == metrics_type
    decision = spec["components"]["schemas"]["DecisionIn"]
    assert decision["additionalProperties"] is False and decision["allOf"]
    assert json.dumps(spec)  # plain JSON all through
