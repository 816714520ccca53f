"""``execd``: run the service and talk to a running one.

    execd serve [--settings FILE]
    execd submit ACCOUNT --symbol BTCUSDT --side long --notional 250 [--leverage 5] [--tp P] [--sl P]
    execd submit --stream FILE [ACCOUNT]     (JSONL of decisions over the decision stream)
    execd close ACCOUNT SYMBOL [--quantity Q]
    execd inspect ACCOUNT | positions ACCOUNT [--status closed] | trades ACCOUNT [--limit N]
    execd halt [ACCOUNT] | resume [ACCOUNT] | close-all [ACCOUNT]
    execd replay --market FILE --decisions FILE --out FILE [--settings FILE] [--exchange-info FILE]
    execd bench | loadtest

Readable output by default, ``--json`` for machines, ``--url`` (or ``EXECD_URL``) for a service
elsewhere. An error from the service is printed plainly and the exit status is non-zero.

The commands that run the service or a tool (``serve``, ``replay``, ``bench``, ``loadtest``) import
it when they run: the service takes about 0.6 s to import, which the client commands (``submit``,
``inspect``...) do not need to pay.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"


class CLIError(Exception):
    pass


# ---------------------------------------------------------------- HTTP client side


def _request(args: argparse.Namespace, method: str, path: str, body: Any = None,
             params: dict[str, Any] | None = None) -> Any:
    import httpx

    headers = {}
    token = os.environ.get("EXECD_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = httpx.request(method, args.url.rstrip("/") + path, json=body, params=params,
                                 headers=headers, timeout=args.timeout)
    except httpx.HTTPError as exc:
        raise CLIError(f"cannot reach the service at {args.url}: {exc}") from None
    try:
        payload = response.json()
    except ValueError:
        payload = {"error": {"code": f"HTTP_{response.status_code}", "message": response.text[:500]}}
    if response.status_code >= 400 and not (response.status_code == 422 and "status" in payload):
        error = payload.get("error", {}) if isinstance(payload, dict) else {}
        field = f" (field: {error['field']})" if error.get("field") else ""
        raise CLIError(f"{response.status_code} {error.get('code', '')}: {error.get('message', '')}{field}")
    return payload, response.status_code


def _emit(args: argparse.Namespace, payload: Any, render: Any) -> None:
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        print(render(payload))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[str(r.get(c) if r.get(c) is not None else "-") for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _render_result(result: dict[str, Any]) -> str:
    lines = [f"decision {result['decision_id']}: {result['status']}" + (" (paper)" if result.get("is_paper") else "")]
    if result.get("rejection"):
        lines.append(f"  rejected {result['rejection']['code']}: {result['rejection']['message']}")
    order = result.get("order")
    if order and order.get("filled_quantity") not in (None, "0"):
        lines.append(f"  {order['side']} {order['filled_quantity']} {order['symbol']} @ {order['avg_price']}"
                     f"  fee {order['fee']}")
    position = result.get("position")
    if position:
        lines.append(f"  position {position['side']} {position['quantity']} @ {position['entry_price']}"
                     f" ({position['status']}), realized {position['realized_pnl']}")
    if result.get("balance"):
        lines.append(f"  balance {result['balance']}")
    return "\n".join(lines)


def _render_inspection(body: dict[str, Any]) -> str:
    actor = body.get("actor", {})
    lines = [
        f"account {body['id']} ({body['mode']} on {body['venue']})",
        f"  actor: {actor.get('state')}, restarts {actor.get('restarts')}, inbox {actor.get('inbox_depth')}"
        + (f", last error: {actor['last_error']}" if actor.get("last_error") else ""),
    ]
    if "balance" in body:
        lines += [
            f"  trading: {body['effective_trading_state']}" + (f" ({body['state_reason']})" if body.get("state_reason") else "")
            + f", cooldown {body['cooldown_seconds_left']} s",
            f"  balance {body['balance']}  equity {body['equity']}  available {body['available_balance']}",
            f"  realized {body['realized_pnl']}  unrealized {body['unrealized_pnl']}  fees {body['fees']}"
            f"  funding {body['funding']}",
            "  positions:",
            "    " + _table(body["positions"], ["symbol", "side", "quantity", "entry_price", "mark_price",
                                                "unrealized_pnl", "leverage", "liquidation_price",
                                                "take_profit", "stop_loss"]).replace("\n", "\n    "),
        ]
    if body.get("performance"):
        perf = body["performance"]
        lines.append(f"  performance: {perf.get('trades')} trades, win rate {perf.get('win_rate')},"
                     f" profit factor {perf.get('profit_factor')}, max drawdown {perf.get('max_drawdown')}")
    return "\n".join(lines)


def cmd_submit(args: argparse.Namespace) -> int:
    if args.stream is not None:
        return _submit_stream(args)
    missing = [flag for flag, value in (("ACCOUNT", args.account), ("--symbol", args.symbol), ("--side", args.side))
               if value is None]
    if args.quantity is None and args.notional is None:
        missing.append("--quantity or --notional")
    if missing:
        raise CLIError(f"submit needs {', '.join(missing)} (or --stream FILE for a JSONL file of decisions)")
    body: dict[str, Any] = {"decision_id": args.id or f"cli-{uuid.uuid4().hex[:12]}", "symbol": args.symbol,
                            "action": "open", "side": args.side}
    for name, value in (("quantity", args.quantity), ("notional", args.notional), ("leverage", args.leverage),
                        ("take_profit", args.tp), ("stop_loss", args.sl), ("reference_price", args.reference_price)):
        if value is not None:
            body[name] = value
    payload, status = _request(args, "POST", f"/v1/accounts/{args.account}/decisions", body)
    _emit(args, payload, _render_result)
    return 0 if status < 400 else 1


def _submit_stream(args: argparse.Namespace) -> int:
    """Every decision of a JSONL file over one decision-stream connection, one line per answer.
    Exit status 0 when every decision was accepted and executed (200), 1 when a line could not be
    sent (not JSON, no account) or an answer was an error or a rejection (any status >= 400)."""
    from functools import partial

    import trio

    from .stream_client import StreamError, frames_of_jsonl, render_answer, stream_decisions

    for flag, value in (("--symbol", args.symbol), ("--side", args.side), ("--quantity", args.quantity),
                        ("--notional", args.notional), ("--id", args.id)):
        if value is not None:
            raise CLIError(f"--stream takes its decisions from the file: {flag} does not go with it")
    try:
        with open(args.stream, encoding="utf-8") if args.stream != "-" else sys.stdin as source:
            frames, problems = frames_of_jsonl(source, args.account)
    except OSError as exc:
        raise CLIError(f"cannot read {args.stream}: {exc.strerror or exc}") from None
    for problem in problems:
        print(f"execd: {args.stream}: {problem} (not sent)", file=sys.stderr)
    failed = 0

    def show(answer: dict[str, Any]) -> None:
        nonlocal failed
        failed += answer["status"] >= 400
        print(json.dumps(answer, separators=(",", ":")) if args.json else render_answer(answer), flush=True)

    try:
        trio.run(partial(stream_decisions, args.url, frames, show, token=os.environ.get("EXECD_API_TOKEN")))
    except StreamError as exc:
        raise CLIError(str(exc)) from None
    return 1 if failed or problems else 0


def cmd_close(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"decision_id": args.id or f"cli-{uuid.uuid4().hex[:12]}", "symbol": args.symbol,
                            "action": "close"}
    if args.quantity is not None:
        body["quantity"] = args.quantity
    payload, status = _request(args, "POST", f"/v1/accounts/{args.account}/decisions", body)
    _emit(args, payload, _render_result)
    return 0 if status < 400 else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    payload, _ = _request(args, "GET", f"/v1/accounts/{args.account}")
    try:
        perf, _ = _request(args, "GET", f"/v1/accounts/{args.account}/performance")
        payload["performance"] = perf
    except CLIError:
        pass
    _emit(args, payload, _render_inspection)
    return 0


def cmd_positions(args: argparse.Namespace) -> int:
    payload, _ = _request(args, "GET", f"/v1/accounts/{args.account}/positions", params={"status": args.status})
    _emit(args, payload, lambda p: _table(p["items"], ["symbol", "side", "status", "quantity", "entry_price",
                                                       "exit_price", "realized_pnl", "fees", "net_pnl",
                                                       "close_reason"]))
    return 0


def cmd_trades(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.cursor:
        params["cursor"] = args.cursor
    payload, _ = _request(args, "GET", f"/v1/accounts/{args.account}/trades", params=params)

    def render(p: dict[str, Any]) -> str:
        text = _table(p["items"], ["id", "symbol", "side", "quantity", "price", "fee", "realized_pnl", "liquidity"])
        return text + (f"\nnext page: --cursor {p['next_cursor']}" if p.get("next_cursor") else "")

    _emit(args, payload, render)
    return 0


def _state(args: argparse.Namespace, state: str) -> int:
    body = {"state": state, "reason": args.reason}
    path = f"/v1/accounts/{args.account}/trading-state" if args.account else "/v1/trading-state"
    payload, _ = _request(args, "PUT", path, body)
    _emit(args, payload, lambda p: f"{args.account or 'global'} trading state: {p['trading_state']}")
    return 0


def cmd_halt(args: argparse.Namespace) -> int:
    return _state(args, "reducing" if args.reducing else "halted")


def cmd_resume(args: argparse.Namespace) -> int:
    return _state(args, "active")


def cmd_close_all(args: argparse.Namespace) -> int:
    path = f"/v1/accounts/{args.account}/close-all" if args.account else "/v1/close-all"
    payload, _ = _request(args, "POST", path)

    def render(p: dict[str, Any]) -> str:
        items = p.get("items", [p])
        lines = []
        for item in items:
            lines.append(f"{item['account_id']}: cancelled {len(item['cancelled_orders'])} orders, "
                         f"closed {len(item['closed_positions'])} positions"
                         + (f", failed {item['failed']}" if item.get("failed") else ""))
        return "\n".join(lines) or "(no accounts)"

    _emit(args, payload, render)
    return 0


# ---------------------------------------------------------------- local commands


def cmd_serve(args: argparse.Namespace) -> int:
    import trio

    from .logs import configure_logging
    from .service import serve_until_signalled
    from .settings import SettingsError, load_settings

    try:
        settings = load_settings(args.settings)
    except SettingsError as exc:
        print(f"execd: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, args.log_format or settings.log_format)
    trio.run(serve_until_signalled, settings)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """A new random API token, and the settings entry that grants it (the token is shown once;
    the service keeps only its SHA-256)."""
    import hashlib
    import secrets

    token = secrets.token_urlsafe(32)
    entry = f'{{sha256: "{hashlib.sha256(token.encode()).hexdigest()}", role: {args.role}'
    if args.accounts:
        entry += f", accounts: [{', '.join(args.accounts.split(','))}]"
    if args.name:
        entry += f", name: {json.dumps(args.name)}"
    entry += "}"
    if args.json:
        print(json.dumps({"token": token, "settings_entry": entry}))
    else:
        print(f"token (give it to its holder; it is not stored):\n  {token}\n"
              f"add under auth: tokens: in the settings file:\n  - {entry}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import run_replay_cli

    return run_replay_cli(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from .tools.bench import run_bench_cli

    return run_bench_cli(args)


def cmd_loadtest(args: argparse.Namespace) -> int:
    from .tools.loadtest import run_loadtest_cli

    return run_loadtest_cli(args)


def build_parser() -> argparse.ArgumentParser:
    """The ``execd`` command line: one subparser per command.

    Longer than the house rule on purpose: a declarative list of every command and its options,
    read top to bottom like ``execd --help``; the commands themselves live in their own functions.
    """
    parser = argparse.ArgumentParser(prog="execd", description="Trading execution service (paper and live).")
    sub = parser.add_subparsers(dest="command", required=True)

    def client(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--url", default=os.environ.get("EXECD_URL", DEFAULT_URL), help="service URL")
        p.add_argument("--json", action="store_true", help="print the raw JSON answer")
        p.add_argument("--timeout", type=float, default=30.0)
        return p

    p = sub.add_parser("serve", help="run the service")
    p.add_argument("--settings", help="settings file (default: the shipped settings.yaml)")
    p.add_argument("--log-format", choices=["text", "json"],
                   help="text (default) or JSON lines (settings log_format, EXECD_LOG_FORMAT)")
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("token", help="make a new API token and its settings entry")
    p.add_argument("--role", required=True, choices=["admin", "trader", "viewer"])
    p.add_argument("--accounts", help="comma-separated accounts the token may see (required for a trader)")
    p.add_argument("--name", help="who holds it (shown in logs)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_token)

    p = client("submit", "submit an open decision (or a JSONL file of decisions with --stream)")
    p.add_argument("account", nargs="?", help="the account (with --stream: for lines that are bare decisions)")
    p.add_argument("--stream", metavar="FILE", help="send every decision of a JSONL file ('-': stdin) over the "
                   'decision stream; a line is {"account_id": ..., "decision": {...}} or a bare decision for ACCOUNT')
    p.add_argument("--symbol")
    p.add_argument("--side", choices=["long", "short"])
    group = p.add_mutually_exclusive_group()
    group.add_argument("--quantity")
    group.add_argument("--notional")
    p.add_argument("--leverage", type=int)
    p.add_argument("--tp", help="take-profit price")
    p.add_argument("--sl", help="stop-loss price")
    p.add_argument("--reference-price")
    p.add_argument("--id", help="decision id (default: a new random one)")
    p.set_defaults(fn=cmd_submit)

    p = client("close", "close (all or part of) a position")
    p.add_argument("account")
    p.add_argument("symbol")
    p.add_argument("--quantity")
    p.add_argument("--id")
    p.set_defaults(fn=cmd_close)

    p = client("inspect", "inspect an account")
    p.add_argument("account")
    p.set_defaults(fn=cmd_inspect)

    p = client("positions", "list positions")
    p.add_argument("account")
    p.add_argument("--status", default="open", choices=["open", "closed", "all"])
    p.set_defaults(fn=cmd_positions)

    p = client("trades", "list trades (fills), newest first")
    p.add_argument("account")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--cursor")
    p.set_defaults(fn=cmd_trades)

    for name, fn, help_ in (("halt", cmd_halt, "halt an account (or all)"),
                            ("resume", cmd_resume, "resume trading on an account (or all)")):
        p = client(name, help_)
        p.add_argument("account", nargs="?")
        p.add_argument("--reason")
        if name == "halt":
            p.add_argument("--reducing", action="store_true", help="reduce-only instead of halted")
        p.set_defaults(fn=fn)

    p = client("close-all", "emergency: cancel orders and close positions of an account (or all)")
    p.add_argument("account", nargs="?")
    p.set_defaults(fn=cmd_close_all)

    p = sub.add_parser("replay", help="run a paper session offline from recorded market data")
    p.add_argument("--market", required=True, help="JSONL of combined-stream messages")
    p.add_argument("--decisions", required=True, help='JSONL of {"at": ms, "account_id": ..., "decision": {...}}')
    p.add_argument("--settings")
    p.add_argument("--exchange-info", help="the venue's exchangeInfo response (JSON)")
    p.add_argument("--out", required=True, help="JSONL output")
    p.set_defaults(fn=cmd_replay)

    p = sub.add_parser("bench", help="run the benchmarks and print ratios to the floors")
    p.add_argument("--out", default="bench-results.json")
    p.add_argument("--quick", action="store_true", help="shorter runs (for a smoke check)")
    p.add_argument("--only", help="comma-separated sections: http,stream,inprocess,memory,memory_position,memory_busy,"
                   "startup,startup_100k,positions,alarms,feed,live")
    p.set_defaults(fn=cmd_bench)

    from .venues.credentials_cli import add_credentials_parser

    add_credentials_parser(sub)

    p = sub.add_parser("loadtest", help="drive a running service with concurrent decisions")
    p.add_argument("--url", default=os.environ.get("EXECD_URL", DEFAULT_URL))
    p.add_argument("--accounts", type=int, default=20)
    p.add_argument("--decisions", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--crash-rate", type=float, default=0.0)
    p.add_argument("--db", help="database of the service (SQLite file or postgresql:// URL), for the invariant check")
    p.add_argument("--nodes", type=int, help="start this many local cluster nodes on --database-url and spread "
                   "the load over them (--url may also list the nodes of a running cluster, comma-separated)")
    p.add_argument("--database-url", default=os.environ.get("EXECD_DATABASE_URL"),
                   help="PostgreSQL URL of the cluster started by --nodes (checked after the run)")
    p.add_argument("--route", choices=["any", "owner"], default="any", help="cluster: send each decision to any "
                   "node (which forwards it to the owner) or straight to its account's owner")
    p.add_argument("--shards", type=int, default=64, help="shards of the cluster started by --nodes")
    p.add_argument("--lease", type=float, default=10.0, help="lease seconds of the cluster started by --nodes")
    p.set_defaults(fn=cmd_loadtest)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except CLIError as exc:
        print(f"execd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
