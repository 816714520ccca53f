from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fake_exchange import FakeExchange, open_fake_exchange


@pytest.fixture
async def fake() -> AsyncIterator[FakeExchange]:
    """An Aster-flavoured fake exchange on loopback (real clock)."""
    async with open_fake_exchange(flavour="aster") as exchange:
        yield exchange
