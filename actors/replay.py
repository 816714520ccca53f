"""``execd replay``: a whole paper session offline, on a virtual clock, deterministic.

Inputs:

* ``--market FILE``: JSONL, one combined-stream message per line exactly as AsterDEX and Binance
  send them (``{"stream": "btcusdt@bookTicker", "data": {...}}``, ``@depth<N>`` snapshots,
  ``@markPrice`` with funding), so any websocket recording replays as is.
* ``--decisions FILE``: JSONL of ``{"at": <epoch ms>, "account_id": "...", "decision": {...}}``.
* ``--exchange-info FILE`` (optional): the venue's own exchangeInfo response for filters; without
  it, symbols must be ones the ``sim`` venue profile knows.
* ``--settings FILE`` (optional): accounts (on venue ``replay``) and risk limits; without it,
  every account named in the decisions file trades with 10,000 USDT and the default limits.

The real actors run (persistence, market data, supervisor, account actors, the same paper
adapter); only the clock is virtual and the market-data source is this file. One driver merges
market events and decisions by time (market first on ties, then file order), jumps the virtual
clock to each, and lets every actor settle before the next, so the same inputs give byte-identical
output. Output (JSONL, ``--out``) is described in the README.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import trio
import trio.testing
import yaml

from .clock import ServiceClock
from .domain.decisions import DecisionIn, InvalidDecision, request_fingerprint, validate_decision
from .domain.market import Instrument, MarkPrice
from .domain.money import fmt, plain
from .domain.performance import performance
from .domain.positions import unrealized_total
from .domain.views import as_builtins
from .persistence.queries import fill_view_from_row, position_from_row
from .messages import SubmitDecision
from .service import run_service
from .venues.parsing import ParseError
from .venues.recorded import MarketEvent, RecordingError, load_instruments, load_market
from .venues.recorded import lines as _lines
from .venues.sources import recorded_source
from .settings import Settings, SettingsError, parse_settings

VENUE = "replay"


class ReplayError(RecordingError):
    """A replay that cannot run; the message names the file (and line) at fault."""


@dataclass(frozen=True)
class DecisionEvent:
    at_ms: int
    line: int
    account_id: str
    body: bytes


class _DecisionLine(msgspec.Struct, forbid_unknown_fields=True):
    at: int
    account_id: str
    decision: msgspec.Raw


def load_decisions(path: Path) -> list[DecisionEvent]:
    decoder = msgspec.json.Decoder(_DecisionLine)
    events: list[DecisionEvent] = []
    for number, raw in _lines(path):
        try:
            line = decoder.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ReplayError(f"{path}:{number}: {exc}") from None
        events.append(DecisionEvent(line.at, number, line.account_id, bytes(line.decision)))
    return events


def replay_settings(settings_path: Path | None, decisions: list[DecisionEvent], db: str) -> Settings:
    if settings_path is not None:
        text = _with_replay_venue(settings_path.read_text(), str(settings_path))
        source = str(settings_path)
    else:
        accounts = sorted({d.account_id for d in decisions})
        rows = "\n".join(f'  - {{id: "{a}", mode: paper, venue: replay, balance: "10000"}}' for a in accounts)
        text = f"venues:\n  replay: {{}}\naccounts:\n{rows or '  []'}\n"
        source = "<replay defaults>"
    settings = parse_settings(text, source=source, env={"EXECD_DB": db})
    wrong = [a.id for a in settings.accounts if a.venue != VENUE]
    if wrong:
        raise ReplayError(f"{source}: accounts {', '.join(wrong)} must be on venue 'replay' for a replay")
    known = {a.id for a in settings.accounts}
    unknown = sorted({d.account_id for d in decisions} - known)
    if unknown:
        raise ReplayError(f"decisions name accounts that are not in the settings: {', '.join(unknown)}")
    return msgspec.structs.replace(settings, database=msgspec.structs.replace(settings.database, synchronous="OFF"))


def _with_replay_venue(text: str, source: str) -> str:
    """The settings text with ``venues.replay`` added when it is missing: ``execd replay`` implies
    the replay venue, so a settings file written for it need not declare it."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError:
        return text  # parse_settings names the file and the fault
    if not isinstance(data, dict):
        return text
    venues = data.get("venues")
    if venues is None:
        data["venues"] = {VENUE: {}}
    elif isinstance(venues, dict) and VENUE not in venues:
        data["venues"] = {**venues, VENUE: {}}
    else:
        return text
    return yaml.safe_dump(data, sort_keys=False)


async def run_session(market: list[MarketEvent], decisions: list[DecisionEvent], settings: Settings,
                      instruments: dict[str, Instrument], clock: trio.testing.MockClock) -> dict[str, Any]:
    start_ms = min(market[0].at_ms, decisions[0].at_ms if decisions else market[0].at_ms)
    service_clock = ServiceClock(epoch_anchor=start_ms / 1000)
    service_clock.now()  # anchor at trio time 0
    feed_send, feed_receive = trio.open_memory_channel[Any](16)
    items: list[tuple[int, int, int, Any]] = [(e.at_ms, 0, e.line, e) for e in market]
    items += [(d.at_ms, 1, d.line, d) for d in decisions]
    items.sort(key=lambda item: item[:3])
    invalid: list[dict[str, Any]] = []
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        service = await nursery.start(lambda task_status: run_service(
            settings, clock=service_clock, serve_http=False, inline_persistence=True,
            sources={VENUE: recorded_source(instruments, feed_receive)}, task_status=task_status))
        for at_ms, kind, line, item in items:
            target = (at_ms - start_ms) / 1000
            if target > trio.current_time():
                clock.jump(target - trio.current_time())
            await trio.testing.wait_all_tasks_blocked()
            if kind == 0:
                await feed_send.send(item.update)
            else:
                try:
                    decision = validate_decision(msgspec.json.decode(item.body, type=DecisionIn))
                except (msgspec.ValidationError, msgspec.DecodeError, InvalidDecision) as exc:
                    invalid.append({"ts": at_ms, "account_id": item.account_id, "type": "decision.invalid",
                                    "line": line, "error": str(exc)})
                    continue
                reply = service.supervisor.submit(item.account_id, SubmitDecision(
                    decision=decision, fingerprint=request_fingerprint(item.body), request_json=item.body.decode()))
                await reply.wait()
            await trio.testing.wait_all_tasks_blocked()
        end_ms = items[-1][0]
        elapsed = time.perf_counter() - started
        service.request_stop()
    return {"invalid": invalid, "elapsed": elapsed, "end_ms": end_ms, "market_events": len(market)}


def write_output(db: str, settings: Settings, extra: list[dict[str, Any]], out: Path, end_ms: int,
                 last_marks: dict[str, Decimal]) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    lines: list[tuple[int, str, int, int, dict[str, Any]]] = []
    for row in conn.execute("SELECT seq, type, account_id, ts, payload FROM events WHERE account_id IS NOT NULL"):
        if row["type"] in ("account.created",):
            continue
        payload = json.loads(row["payload"])
        ts = round(row["ts"] * 1000)
        lines.append((ts, row["account_id"], row["seq"], 1, {"ts": ts, "account_id": row["account_id"],
                                                            "type": row["type"], **payload}))
    for row in conn.execute("SELECT * FROM fills"):
        view = as_builtins(fill_view_from_row(dict(row)))
        ts = round(view.pop("ts") * 1000)
        lines.append((ts, row["account_id"], row["seq"], 0, {"ts": ts, "account_id": row["account_id"],
                                                            "type": "fill", **view}))
    for item in extra:
        lines.append((item["ts"], item["account_id"], 0, 2, item))
    lines.sort(key=lambda entry: entry[:4])
    summaries = []
    for account in settings.accounts:
        acct = conn.execute("SELECT * FROM accounts WHERE id = ?", (account.id,)).fetchone()
        positions = [position_from_row(dict(r)) for r in conn.execute(
            "SELECT * FROM positions WHERE account_id = ? ORDER BY seq", (account.id,))]
        closed = [p for p in positions if p.status == "closed"]
        open_ = [p for p in positions if p.is_open]
        equity_curve = [(0.0, account.balance)]
        running = account.balance
        for p in sorted(closed, key=lambda p: (p.closed_at or 0, p.id)):
            running += p.net_pnl
            equity_curve.append((p.closed_at or 0.0, running))
        perf = plain(performance(closed, equity_curve))
        balance = Decimal(acct["balance"]) if acct else account.balance
        unrealized = unrealized_total(open_, last_marks.get)
        summaries.append({
            "ts": end_ms, "account_id": account.id, "type": "summary",
            "initial_balance": fmt(account.balance), "final_balance": fmt(balance),
            "realized_pnl": fmt(Decimal(acct["realized_pnl"])) if acct else "0",
            "fees": fmt(Decimal(acct["fees"])) if acct else "0",
            "funding": fmt(Decimal(acct["funding"])) if acct else "0",
            "unrealized_pnl": fmt(unrealized), "equity": fmt(balance + unrealized),
            "open_positions": len(open_), "performance": perf,
        })
    conn.close()
    encoder = msgspec.json.Encoder(order="sorted")
    with out.open("wb") as handle:
        for *_, record in lines:
            handle.write(encoder.encode(record) + b"\n")
        for summary in summaries:
            handle.write(encoder.encode(summary) + b"\n")
    return {"lines": len(lines) + len(summaries), "summaries": summaries}


def replay(market_path: Path, decisions_path: Path, out: Path, *, settings_path: Path | None = None,
           exchange_info: Path | None = None) -> dict[str, Any]:
    market = load_market(market_path)
    decisions = load_decisions(decisions_path)
    instruments = load_instruments(market, exchange_info)
    with tempfile.TemporaryDirectory(prefix="execd-replay-") as work:
        db = str(Path(work) / "replay.sqlite3")
        settings = replay_settings(settings_path, decisions, db)
        clock = trio.testing.MockClock(rate=0)
        session = trio.run(run_session, market, decisions, settings, instruments, clock, clock=clock)
        last_marks: dict[str, Decimal] = {}
        for event in market:
            if isinstance(event.update, MarkPrice):
                last_marks[event.update.symbol] = event.update.mark
        report = write_output(db, settings, session["invalid"], out, session["end_ms"], last_marks)
    report.update({"market_events": session["market_events"], "decisions": len(decisions),
                   "seconds": round(session["elapsed"], 3),
                   "market_events_per_second": round(session["market_events"] / max(session["elapsed"], 1e-9), 1)})
    return report


def run_replay_cli(args: argparse.Namespace) -> int:
    logging.basicConfig(level="WARNING")
    try:
        report = replay(Path(args.market), Path(args.decisions), Path(args.out),
                        settings_path=Path(args.settings) if args.settings else None,
                        exchange_info=Path(args.exchange_info) if args.exchange_info else None)
    except (RecordingError, OSError, SettingsError, ParseError) as exc:
        print(f"execd replay: {exc}", file=sys.stderr)
        return 2
    for summary in report["summaries"]:
        perf = summary["performance"]
        print(f"{summary['account_id']}: balance {summary['initial_balance']} -> {summary['final_balance']}"
              f" (realized {summary['realized_pnl']}, fees {summary['fees']}, funding {summary['funding']}),"
              f" {perf.get('trades')} round trips, {summary['open_positions']} open")
    print(f"{report['market_events']} market events and {report['decisions']} decisions in {report['seconds']} s"
          f" ({report['market_events_per_second']} market events/s); {report['lines']} lines written to {args.out}")
    return 0
