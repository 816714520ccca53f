"""A client of the decision stream (``/v1/decisions/stream``): ``execd submit --stream FILE`` and
the stream benchmark. Imports no part of the service (the CLI's client commands stay light).

:func:`stream_decisions` sends frames as fast as the connection takes them (the server holds at
most ``server.stream_max_in_flight`` in flight and stops reading beyond that, so the sends block
on TCP) while another task receives the answers; every frame sent is answered once with a final
status (a ``202`` notice of a slow decision is followed by its result).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url


class StreamError(Exception):
    pass


def stream_url(url: str) -> str:
    """``http(s)://host:port`` -> ``ws(s)://host:port/v1/decisions/stream``."""
    base = url.rstrip("/")
    if base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    elif base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    return base + "/v1/decisions/stream"


def frames_of_jsonl(lines: Iterable[str], account: str | None) -> tuple[list[str], list[str]]:
    """The frames to send from JSONL lines, and what is wrong with the lines that cannot be sent.

    A line is a frame (``{"account_id": ..., "decision": {...}}``), or, with ``account``, a bare
    decision sent to that account. Blank lines are skipped."""
    frames: list[str] = []
    problems: list[str] = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            item = json.loads(text)
        except ValueError as exc:
            problems.append(f"line {number}: not JSON: {exc}")
            continue
        if not isinstance(item, dict):
            problems.append(f"line {number}: expected a JSON object, got {type(item).__name__}")
        elif "decision" in item or "account_id" in item:
            frames.append(text)
        elif account is not None:
            frames.append(json.dumps({"account_id": account, "decision": item}, separators=(",", ":")))
        else:
            problems.append(f"line {number}: a bare decision needs the ACCOUNT argument "
                            '(or write the line as {"account_id": ..., "decision": {...}})')
    return frames, problems


async def stream_decisions(url: str, frames: list[str], on_answer: Callable[[dict[str, Any]], Awaitable[None] | None],
                           *, token: str | None = None, pending: Callable[[dict[str, Any]], None] | None = None,
                           window: int | None = None) -> int:
    """Send ``frames`` over one decision-stream connection; ``on_answer`` gets each final answer
    (``pending`` each ``202`` notice). ``window``: at most that many unanswered at once (None:
    as many as the connection takes; the server's bound then holds the sends). Returns the number
    of final answers."""
    room = trio.Semaphore(window) if window is not None else None
    headers = [("Authorization", f"Bearer {token}")] if token else []
    answered = 0
    try:
        async with open_websocket_url(stream_url(url), extra_headers=headers) as ws:
            async with trio.open_nursery() as nursery:
                async def send_all() -> None:
                    for frame in frames:
                        if room is not None:
                            await room.acquire()
                        await ws.send_message(frame)

                nursery.start_soon(send_all)
                while answered < len(frames):
                    answer = json.loads(await ws.get_message())
                    if answer["status"] == 202:
                        if pending is not None:
                            pending(answer)
                        continue
                    answered += 1
                    if room is not None:
                        room.release()
                    result = on_answer(answer)
                    if result is not None:
                        await result
    except ConnectionRejected as exc:
        body = (exc.body or b"").decode(errors="replace")
        try:
            error = json.loads(body)["error"]
            body = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            pass
        raise StreamError(f"the service refused the decision stream ({exc.status_code}) {body}".rstrip()) from None
    except ConnectionClosed as exc:
        raise StreamError(f"the decision stream closed after {answered} of {len(frames)} answers: "
                          f"{exc.reason}") from None
    except OSError as exc:
        raise StreamError(f"cannot reach the service at {url}: {exc}") from None
    return answered


def render_answer(answer: dict[str, Any]) -> str:
    """One line per answer: decision, account, HTTP status, and the outcome or the error."""
    body = answer.get("body") or {}
    head = f"{answer.get('decision_id') or '-'} on {answer.get('account_id') or '-'}: {answer['status']}"
    if "error" in body and body.get("status") != "rejected":
        error = body["error"]
        field = f" (field: {error['field']})" if error.get("field") else ""
        return f"{head} {error['code']}: {error['message']}{field}"
    text = f"{head} {body.get('status')}"
    if body.get("rejection"):
        text += f" {body['rejection']['code']}: {body['rejection']['message']}"
    order = body.get("order")
    if order and order.get("filled_quantity") not in (None, "0"):
        text += f"; {order['side']} {order['filled_quantity']} {order['symbol']} @ {order['avg_price']}"
    return text
