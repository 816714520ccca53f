"""A method a route does not serve gets 405 with an ``Allow`` header naming the ones it does.

RFC 9110 §15.5.6 requires the header; schema checkers (schemathesis' unsupported-method check)
look for it. The list must match the OpenAPI document, plus HEAD wherever GET is served.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
import trio

from actors.http.schema import openapi_document
from actors.service import Service

pytestmark = pytest.mark.slow

BOUND = 15
SAMPLE = {"account_id": "paper-1", "decision_id": "d-1", "symbol": "BTCUSDT", "order_id": "o-1",
          "filename": "app.js"}


def documented_methods() -> list[tuple[str, set[str]]]:
    """Each documented HTTP path (the websocket excepted), filled in, with its methods."""
    routes = []
    for path, operations in openapi_document(["sim"])["paths"].items():
        methods = {method.upper() for method in operations}
        if "GET" in methods:
            methods.add("HEAD")
        routes.append((re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path), methods))
    return routes


@pytest.mark.parametrize("method", ["PATCH", "QUERY"])
async def test_405_names_the_allowed_methods(service: Service, client: httpx.AsyncClient, method: str) -> None:
    routes = documented_methods()
    assert len(routes) >= 20
    with trio.fail_after(BOUND):
        for path, allowed in routes:
            response = await client.request(method, path, content=b'{"id": null}',
                                            headers={"content-type": "application/json"})
            assert response.status_code == 405, (path, response.text)
            assert json.loads(response.content) == {"error": {
                "code": "METHOD_NOT_ALLOWED", "message": "The method is not allowed for the requested URL.",
                "field": None}}
            assert set(response.headers["allow"].split(", ")) == allowed, path
