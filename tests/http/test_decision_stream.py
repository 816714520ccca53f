"""The decision stream (``/v1/decisions/stream``) over a real socket, with a trio-websocket client.

Each test runs the whole service (real SQLite file, real loopback socket) and talks to it over
one websocket; every wait is bounded by ``trio.fail_after`` and waits for answers (events), not
for time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected, WebSocketConnection, open_websocket_url

from actors.service import Service, run_service
from tests.actors.helpers import wait_until
from tests.conftest import TEST_SETTINGS, db_rows, decision, make_settings
from tests.http.test_roles import AUTH_SETTINGS, TOKENS

pytestmark = pytest.mark.slow

BOUND = 30  # seconds: the ceiling of any single test


def ws_url(service: Service) -> str:
    assert service.url is not None
    return service.url.replace("http://", "ws://") + "/v1/decisions/stream"


def frame(account: str, body: dict[str, Any]) -> str:
    return json.dumps({"account_id": account, "decision": body})


async def answers(ws: WebSocketConnection, count: int) -> list[dict[str, Any]]:
    return [json.loads(await ws.get_message()) for _ in range(count)]


@asynccontextmanager
async def serving(tmp_path: Path, text: str = TEST_SETTINGS, **options: Any) -> AsyncIterator[Service]:
    async with trio.open_nursery() as nursery:
        service: Service = await nursery.start(lambda task_status: run_service(
            make_settings(tmp_path, text), task_status=task_status, **options))
        yield service
        service.request_stop()


async def test_several_in_flight_answered_by_decision_id_as_get_reads_them(
        service: Service, client: httpx.AsyncClient) -> None:
    sent = {f"s-{n}": ("paper-1" if n % 2 else "paper-2", decision(f"s-{n}", symbol=("BTCUSDT", "ETHUSDT")[n % 2],
                                                                     notional="200", leverage=2))
            for n in range(12)}
    with trio.fail_after(BOUND):
        async with open_websocket_url(ws_url(service)) as ws:
            for account, body in sent.values():
                await ws.send_message(frame(account, body))
            got = {a["decision_id"]: a for a in await answers(ws, len(sent))}
        assert set(got) == set(sent)
        for decision_id, answer in got.items():
            account = sent[decision_id][0]
            assert answer["account_id"] == account and answer["status"] == 200, answer
            assert answer["body"]["status"] == "filled"
            stored = await client.get(f"/v1/accounts/{account}/decisions/{decision_id}")
            assert stored.status_code == 200 and stored.json() == answer["body"]
        metrics = (await client.get("/metrics")).text
    assert 'execd_decisions_total{account="paper-1",code="",result="filled"} 6.0' in metrics
    assert "execd_decision_stream_connections 0.0" in metrics


async def test_idempotent_replay_and_conflict_as_on_http(service: Service, client: httpx.AsyncClient) -> None:
    body = decision("idem-1", notional="300", leverage=3)
    with trio.fail_after(BOUND):
        async with open_websocket_url(ws_url(service)) as ws:
            await ws.send_message(frame("paper-1", body))
            (first,) = await answers(ws, 1)
            await ws.send_message(frame("paper-1", body))  # the same id and body: the stored result
            (again,) = await answers(ws, 1)
            await ws.send_message(frame("paper-1", {**body, "notional": "301"}))  # another body
            (conflict,) = await answers(ws, 1)
        over_http = await client.post("/v1/accounts/paper-1/decisions", json=body)  # the same decision
        conflict_http = await client.post("/v1/accounts/paper-1/decisions", json={**body, "notional": "301"})
    assert first["status"] == 200 and again == first
    assert over_http.status_code == 200 and over_http.json() == first["body"]
    assert conflict["status"] == 409 and conflict["decision_id"] == "idem-1"
    assert conflict["body"]["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    assert conflict["body"] == conflict_http.json() and conflict_http.status_code == 409
    rows = await trio.to_thread.run_sync(db_rows, service, "SELECT COUNT(*) FROM orders WHERE decision_id = ?",
                                         ("idem-1",))
    assert rows == [(1,)]  # traded once


async def test_bad_frames_are_answered_by_name_and_the_connection_lives_on(
        service: Service, client: httpx.AsyncClient) -> None:
    bad_leverage = decision("bad-1", leverage="x")
    with trio.fail_after(BOUND):
        async with open_websocket_url(ws_url(service)) as ws:
            await ws.send_message("{not json")
            await ws.send_message(json.dumps({"decision": decision("bad-0")}))
            await ws.send_message(frame("paper-1", bad_leverage))
            await ws.send_message(frame("paper-1", decision("bad-2", action="open", side=None)))
            await ws.send_message(frame("no-such-account", decision("bad-3")))
            await ws.send_message(json.dumps({"account_id": "paper-1", "decision": decision("bad-4"), "x": 1}))
            await ws.send_message(frame("paper-1", decision("big-1", meta={"pad": "x" * 70_000})))
            await ws.send_message(frame("paper-1", decision("good-1")))
            got = await answers(ws, 8)
        http_answer = await client.post("/v1/accounts/paper-1/decisions", json=bad_leverage)
    by_id = {a["decision_id"]: a for a in got if a["decision_id"] is not None}
    nameless = sorted((a["status"], a["body"]["error"]["code"]) for a in got if a["decision_id"] is None)
    # broken JSON, and a frame larger than server.max_body_bytes (not read further, as HTTP's 413)
    assert nameless == [(400, "MALFORMED_JSON"), (413, "BODY_TOO_LARGE")]
    missing = by_id["bad-0"]
    assert missing["status"] == 400 and missing["body"]["error"] == {
        "code": "MISSING_FIELD", "message": "missing required field 'account_id'", "field": "account_id"}
    assert by_id["bad-1"]["status"] == 400 and by_id["bad-1"]["body"] == http_answer.json()
    assert by_id["bad-1"]["body"]["error"]["field"] == "leverage"
    assert by_id["bad-2"]["status"] == 400 and by_id["bad-2"]["body"]["error"]["field"] == "side"
    assert by_id["bad-3"]["status"] == 404 and by_id["bad-3"]["body"]["error"]["code"] == "UNKNOWN_ACCOUNT"
    assert by_id["bad-4"]["body"]["error"] == {"code": "UNKNOWN_FIELD", "message": "unknown field 'x'", "field": "x"}
    assert by_id["good-1"]["status"] == 200 and by_id["good-1"]["body"]["status"] == "filled"
    audited = await trio.to_thread.run_sync(db_rows, service, "SELECT code FROM audit WHERE decision_id = 'bad-1'")
    assert audited == [("INVALID_FIELD",)] * 2  # audited as on HTTP: once sent over the stream, once over HTTP


async def test_roles_at_the_handshake_and_the_account_scope_per_frame(tmp_path: Path) -> None:
    with trio.fail_after(BOUND):
        async with serving(tmp_path, AUTH_SETTINGS) as service:
            for token, status in ((None, 401), ("not-a-token", 401), (TOKENS["viewer"], 403)):
                headers = [("Authorization", f"Bearer {token}")] if token else []
                with pytest.raises(ConnectionRejected) as rejected:
                    async with open_websocket_url(ws_url(service), extra_headers=headers):
                        pass
                assert rejected.value.status_code == status
                assert json.loads(rejected.value.body)["error"]["code"] == ("FORBIDDEN" if status == 403
                                                                            else "UNAUTHENTICATED")
            headers = [("Authorization", f"Bearer {TOKENS['trader']}")]  # a trader of paper-1 only
            async with open_websocket_url(ws_url(service), extra_headers=headers) as ws:
                await ws.send_message(frame("paper-2", decision("r-1")))
                (refused,) = await answers(ws, 1)
                await ws.send_message(frame("paper-1", decision("r-2")))
                (accepted,) = await answers(ws, 1)
    assert refused["status"] == 403 and refused["body"]["error"]["code"] == "FORBIDDEN"
    assert "outside this token's accounts" in refused["body"]["error"]["message"]
    assert accepted["status"] == 200


async def test_backpressure_holds_at_most_the_bound_and_drops_nothing(tmp_path: Path) -> None:
    """Bound 4, slow decisions (20 ms of paper latency each), 60 decisions sent as fast as the
    socket takes them: all 60 answered once, and the server never held more than 4 in flight."""
    text = TEST_SETTINGS.replace("request_timeout_seconds: 5,", "request_timeout_seconds: 5, stream_max_in_flight: 4,")
    count = 60
    with trio.fail_after(BOUND):
        async with serving(tmp_path, text, paper_latency=0.02) as service:
            got: list[dict[str, Any]] = []
            async with open_websocket_url(ws_url(service)) as ws:
                async with trio.open_nursery() as nursery:
                    async def send_all() -> None:
                        for n in range(count):
                            body = decision(f"bp-{n}", notional="100", leverage=2)
                            await ws.send_message(frame(("paper-1", "paper-2")[n % 2], body))

                    nursery.start_soon(send_all)
                    got = await answers(ws, count)
            peak = service.metrics.stream_peak_in_flight
    assert sorted(a["decision_id"] for a in got) == sorted(f"bp-{n}" for n in range(count))
    assert all(a["status"] == 200 for a in got), [a for a in got if a["status"] != 200][:3]
    assert peak == 4  # reached, never passed


async def test_a_slow_decision_gets_the_202_then_its_result(tmp_path: Path) -> None:
    """Past the request timeout (0 s here: every decision is slower) the stream answers what HTTP
    does (202 with the result_url), then the result once it commits."""
    text = TEST_SETTINGS.replace("request_timeout_seconds: 5", "request_timeout_seconds: 0")
    with trio.fail_after(BOUND):
        async with serving(tmp_path, text) as service:
            async with open_websocket_url(ws_url(service)) as ws:
                await ws.send_message(frame("paper-1", decision("slow-1")))
                pending, final = await answers(ws, 2)
            async with httpx.AsyncClient(base_url=service.url) as client:
                stored = await client.get(pending["body"]["result_url"])
    assert pending["status"] == 202 and pending["body"]["status"] == "pending"
    assert pending["body"]["result_url"].startswith("/v1/accounts/paper-1/decisions/slow-1?fingerprint=")
    assert final["status"] == 200 and final["body"] == stored.json()


async def test_a_connection_closed_mid_flight_leaves_its_decisions_to_commit(tmp_path: Path) -> None:
    with trio.fail_after(BOUND):
        async with serving(tmp_path, paper_latency=0.05) as service:
            async with open_websocket_url(ws_url(service)) as ws:
                for n in range(3):
                    await ws.send_message(frame("paper-1", decision(f"gone-{n}", notional="100", leverage=2)))
                await wait_until(lambda: service.metrics.stream_in_flight == 3)  # all three submitted
            # closed before any answer: the decisions still commit
            async with httpx.AsyncClient(base_url=service.url) as client:
                for n in range(3):
                    async def committed(n: int = n) -> bool:
                        return (await client.get(f"/v1/accounts/paper-1/decisions/gone-{n}")).status_code == 200

                    while not await committed():
                        await trio.sleep(0.02)
            await wait_until(lambda: service.metrics.stream_in_flight == 0 and service.metrics.stream_connections == 0)


def test_execd_submit_stream_sends_a_jsonl_file(tmp_path: Path) -> None:
    """``execd submit --stream FILE``: one line per decision; exit 1 when a line could not be sent
    or a decision was refused, 0 when every one was executed."""
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join([frame("paper-1", decision("cli-1", notional="100", leverage=2)),
                               json.dumps(decision("cli-2", symbol="ETHUSDT", notional="100", leverage=2)), ""]))
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join([frame("paper-1", decision("cli-3", notional="100", leverage=2)), "{oops",
                                frame("paper-1", decision("cli-1", notional="999", leverage=2))]))

    async def run() -> list[subprocess.CompletedProcess[str]]:
        async with serving(tmp_path) as service:
            results = []
            for args in (["--stream", str(good), "paper-2"], ["--stream", str(mixed), "--json"],
                         ["--stream", str(good)]):
                results.append(await trio.to_thread.run_sync(lambda a=args: subprocess.run(
                    [sys.executable, "-m", "actors.cli", "submit", "--url", service.url, *a],
                    capture_output=True, text=True, timeout=BOUND,
                    env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})))
            return results

    good_run, mixed_run, no_account = trio.run(run)
    assert good_run.returncode == 0, good_run.stderr
    lines = good_run.stdout.strip().splitlines()
    assert sorted(lines) == sorted(lines) and len(lines) == 2
    assert any(line.startswith("cli-1 on paper-1: 200 filled") for line in lines), lines
    assert any(line.startswith("cli-2 on paper-2: 200 filled") for line in lines), lines
    assert mixed_run.returncode == 1
    assert "line 2: not JSON" in mixed_run.stderr and "(not sent)" in mixed_run.stderr
    answered = {a["decision_id"]: a for a in map(json.loads, mixed_run.stdout.strip().splitlines())}
    assert answered["cli-3"]["status"] == 200 and answered["cli-1"]["status"] == 409
    assert no_account.returncode == 1 and "needs the ACCOUNT argument" in no_account.stderr
