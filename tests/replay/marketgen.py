"""Write combined-stream market messages (Binance/Aster wire shapes) for replay tests."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path


def depth_message(symbol: str, at_ms: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]], update_id: int) -> dict:
    return {"stream": f"{symbol.lower()}@depth20@100ms", "data": {
        "e": "depthUpdate", "E": at_ms, "T": at_ms, "s": symbol, "U": update_id, "u": update_id, "pu": update_id - 1,
        "b": [list(level) for level in bids], "a": [list(level) for level in asks]}}


def mark_message(symbol: str, at_ms: int, mark: str, funding_rate: str = "0.0001", next_funding_ms: int = 0) -> dict:
    return {"stream": f"{symbol.lower()}@markPrice@1s", "data": {
        "e": "markPriceUpdate", "E": at_ms, "s": symbol, "p": mark, "i": mark, "P": mark,
        "r": funding_rate, "T": next_funding_ms}}


def ladder(mid: Decimal, tick: Decimal, sizes: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    bids = [(str(mid - tick * (i + 1)), size) for i, size in enumerate(sizes)]
    asks = [(str(mid + tick * (i + 1)), size) for i, size in enumerate(sizes)]
    return bids, asks


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows))
    return path
