"""The feed-ingest benchmark runs and reports a consistent breakdown (a smoke test, not a figure)."""

from __future__ import annotations

import pytest
import trio

from actors.tools.bench_feed import measure_feed_ingest


@pytest.mark.slow
async def test_measure_feed_ingest_smoke() -> None:
    with trio.fail_after(30):
        result = await measure_feed_ingest(0.5)
    assert result["messages_per_s"] > 0 and result["published"] > 0
    assert result["dropped_out_of_order"] == 0
    breakdown = result["breakdown"]
    assert set(breakdown["decode_per_s"]) == {"bookTicker", "markPrice", "depth20", "mixed"}
    # end to end can only be slower than the transport alone
    assert breakdown["end_to_end_us"] >= breakdown["ws_receive_us"] * 0.8
