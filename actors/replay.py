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
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import msgspec
import trio
import trio.testing

from .clock import ServiceClock
from .domain.decisions import DecisionIn, InvalidDecision, request_fingerprint, validate_decision
from .domain.market import Instrument, MarkPrice, OrderBook
from .domain.money import fmt, plain
from .messages import SubmitDecision
from .settings import Settings, SettingsError, parse_settings

VENUE = "replay"


class ReplayError(Exception):
    pass


@dataclass(frozen=True)
class MarketEvent:
    at_ms: int
    line: int
    update: OrderBook | MarkPrice


@dataclass(frozen=True)
class DecisionEvent:
    at_ms: int
    line: int
    account_id: str
    body: bytes


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of a JSONL file with their line numbers."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            raw = raw.strip()
            if raw:
                yield number, raw


def load_market(path: Path) -> list[MarketEvent]:
    from .venues.parsing import ParseError, parse_stream_message

    events: list[MarketEvent] = []
    for number, raw in _lines(path):
        try:
            update = parse_stream_message(raw, 0.0)
        except ParseError as exc:
            raise ReplayError(f"{path}:{number}: not a market message: {exc}") from None
        if update is None:
            continue
        update = msgspec.structs.replace(update, received_at=update.venue_ms / 1000)
        events.append(MarketEvent(update.venue_ms, number, update))
    if not events:
        raise ReplayError(f"{path}: no market data")
    return events


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


def load_instruments(market: list[MarketEvent], exchange_info: Path | None) -> dict[str, Instrument]:
    symbols = sorted({e.update.symbol for e in market})
    if exchange_info is not None:
        from .venues.parsing import build_instruments
        from .venues.profiles import get_profile

        instruments = build_instruments(exchange_info.read_bytes(), profile=get_profile("asterdex"), symbols=symbols)
        missing = [s for s in symbols if s not in instruments]
        if missing:
            raise ReplayError(f"{exchange_info}: exchangeInfo has no symbol {', '.join(missing)}")
        return instruments
    from .venues.sim import SIM_SYMBOLS, sim_instrument

    unknown = [s for s in symbols if s not in SIM_SYMBOLS]
    if unknown:
        raise ReplayError(f"no filters for {', '.join(unknown)}: pass --exchange-info with the venue's exchangeInfo")
    return {s: sim_instrument(s) for s in symbols}


def replay_settings(settings_path: Path | None, decisions: list[DecisionEvent], db: str) -> Settings:
    if settings_path is not None:
        text = settings_path.read_text()
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


def _replay_source(instruments: dict[str, Instrument], feed: trio.MemoryReceiveChannel[Any]) -> Any:
    async def run(handle: Any, symbol_commands: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        handle.set_instruments(instruments)
        handle.set_feed_state("connected", "replay")
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, symbol_commands)
            async for update in feed:
                if isinstance(update, OrderBook):
                    handle.publish_book(update)
                else:
                    handle.publish_mark(update)

    return run


async def _drain(channel: Any) -> None:
    async for _ in channel:
        pass


async def run_session(market: list[MarketEvent], decisions: list[DecisionEvent], settings: Settings,
                      instruments: dict[str, Instrument], clock: trio.testing.MockClock) -> dict[str, Any]:
    from .service import run_service

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
            sources={VENUE: _replay_source(instruments, feed_receive)}, task_status=task_status))
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
    import sqlite3

    from .domain.performance import performance
    from .records import fill_view_from_row, position_from_row

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
        view = fill_view_from_row(dict(row))
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
        unrealized = sum((p.unrealized_pnl(last_marks[p.symbol]) for p in open_ if p.symbol in last_marks), Decimal(0))
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
    import logging

    from .venues.parsing import ParseError

    logging.basicConfig(level="WARNING")
    try:
        report = replay(Path(args.market), Path(args.decisions), Path(args.out),
                        settings_path=Path(args.settings) if args.settings else None,
                        exchange_info=Path(args.exchange_info) if args.exchange_info else None)
    except (ReplayError, OSError, SettingsError, ParseError) as exc:
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
