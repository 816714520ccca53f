"""What an ``execd loadtest`` run found: the decisions the service acknowledged (:class:`Ack`),
the :class:`LoadReport` of a run and its plain-text form (:func:`format_report`).

Split out of :mod:`actors.tools.loadtest` (the load generator), which re-exports these names;
:mod:`actors.tools.loadtest_checks` reads the acknowledged decisions.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Ack", "LoadReport", "format_report"]


@dataclass
class Ack:
    """A decision the service acknowledged (answered 200 or 422): it must be durable."""

    account_id: str
    decision_id: str
    body: bytes
    http_status: int
    result: dict[str, Any]

    def settled_by(self, later: dict[str, Any]) -> bool:
        """``later`` is this answer's own settlement. A live decision answered ``pending`` (an
        ambiguous venue answer, or an order cut off by a close-all after it may have been sent) is
        provisional by contract: the venue's truth replaces it once asked. So a later result of
        the same decision's same order, and only that, may differ from it."""
        if self.result.get("status") != "pending":
            return False
        first_order, later_order = self.result.get("order") or {}, later.get("order") or {}
        return all(later.get(key) == self.result.get(key)
                   for key in ("decision_id", "account_id", "symbol", "action")) and \
            first_order.get("id") == later_order.get("id")


@dataclass
class LoadReport:
    url: str
    accounts: list[str] = field(default_factory=list)
    accounts_created: int = 0
    concurrency: int = 0
    elapsed: float = 0.0
    decisions: int = 0  # distinct decision ids submitted
    requests: int = 0  # HTTP requests of every kind
    latencies: list[float] = field(default_factory=list)  # per decision, retries included
    final_status: Counter[int] = field(default_factory=Counter)  # the answer each decision ended with
    responses: Counter[int] = field(default_factory=Counter)  # every decision POST/GET response
    rejection_codes: Counter[str] = field(default_factory=Counter)
    acks: dict[tuple[str, str], Ack] = field(default_factory=dict)
    unanswered: list[tuple[str, str]] = field(default_factory=list)  # gave up (service gone?)
    retries_503: int = 0
    followed_202: int = 0
    transport_errors: int = 0
    duplicates: int = 0
    duplicates_same: int = 0
    duplicates_settled: int = 0  # a pending answer re-submitted after it settled
    conflict_probes: int = 0
    conflicts_409: int = 0
    conflicts_via_202: int = 0  # conflict probes answered 202 whose result URL gave the first body's result
    crashes: int = 0
    close_alls: int = 0
    halts: int = 0
    resumes: int = 0
    operator_restarts: int = 0
    problems: list[str] = field(default_factory=list)  # client-side violations
    invariant_problems: list[str] | None = None  # filled when a database was checked
    db_path: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and not self.invariant_problems

    def problem(self, text: str) -> None:
        if len(self.problems) < 1000:
            self.problems.append(text)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms"


def format_report(report: LoadReport) -> str:
    lat = sorted(report.latencies)
    elapsed = max(report.elapsed, 1e-9)
    lines = [
        f"execd loadtest against {report.url}",
        f"  accounts     {len(report.accounts)} ({report.accounts_created} created, "
        f"{len(report.accounts) - report.accounts_created} reused), {report.concurrency} concurrent clients",
        f"  decisions    {report.decisions} in {report.elapsed:.1f} s: {report.decisions / elapsed:.1f} decisions/s"
        f"  ({report.requests} HTTP requests, {report.requests / elapsed:.1f} req/s)",
        f"  latency      p50 {_ms(_percentile(lat, 0.50))}  p90 {_ms(_percentile(lat, 0.90))}  "
        f"p99 {_ms(_percentile(lat, 0.99))}  max {_ms(lat[-1] if lat else math.nan)}  (per decision, retries included)",
        "  answers      " + (", ".join(f"{code}: {n}" for code, n in sorted(report.final_status.items())) or "none")
        + "  (final answer per decision)",
        "  responses    " + (", ".join(f"{code}: {n}" for code, n in sorted(report.responses.items())) or "none")
        + f"  (every decision request; {report.retries_503} retried after 503, {report.followed_202} followed 202)",
        "  rejections   " + (", ".join(f"{code} {n}" for code, n in report.rejection_codes.most_common()) or "none"),
        f"  idempotency  {report.duplicates} re-submitted, {report.duplicates_same} answered the same result"
        f"{f' ({report.duplicates_settled} more its pending answer, settled since)' if report.duplicates_settled else ''}; "
        f"{report.conflict_probes} conflict probes, {report.conflicts_409} answered 409"
        + (f", {report.conflicts_via_202} answered 202 and their result URL the first body's result"
           if report.conflicts_via_202 else ""),
        f"  faults       {report.crashes} actor crashes injected, {report.close_alls} close-all, "
        f"{report.halts} halt / {report.resumes} resume, {report.operator_restarts} operator restarts, "
        f"{report.transport_errors} transport errors, {len(report.unanswered)} unanswered",
    ]
    if report.problems:
        lines.append(f"  client-side  {len(report.problems)} PROBLEMS:")
        lines += [f"    - {p}" for p in report.problems[:30]]
    else:
        lines.append("  client-side  ok (no 409 for a same body, duplicates answered their stored result)")
    if report.invariant_problems is not None:
        if report.invariant_problems:
            lines.append(f"  invariants   {len(report.invariant_problems)} PROBLEMS in {report.db_path}:")
            lines += [f"    - {p}" for p in report.invariant_problems[:50]]
        else:
            lines.append(f"  invariants   ok ({report.db_path}: acknowledged decisions stored once, fills, positions "
                         f"and balances replay exactly, serialized per account, cooldowns honoured)")
    lines.append("RESULT: " + ("OK" if report.ok else "FAILED"))
    return "\n".join(lines)
