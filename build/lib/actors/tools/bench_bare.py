"""The bare Quart-Trio endpoint the HTTP benchmark compares against: it decodes the same decision
body with the same msgspec type and returns a small JSON, and does nothing else.

Serve: ``hypercorn --worker-class trio -b 127.0.0.1:PORT actors.tools.bench_bare:app``
"""

from __future__ import annotations

import msgspec
from quart import Response, request
from quart_trio import QuartTrio

from ..domain.decisions import DecisionIn

_decoder = msgspec.json.Decoder(DecisionIn)
_encoder = msgspec.json.Encoder()

app = QuartTrio(__name__)


@app.post("/v1/accounts/<account_id>/decisions")
async def decide(account_id: str) -> Response:
    decision = _decoder.decode(await request.get_data())
    return Response(_encoder.encode({"ok": True, "account_id": account_id, "decision_id": decision.decision_id}),
                    content_type="application/json")
