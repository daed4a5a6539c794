"""Shared fixtures: no test may leave an asyncio task behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


@pytest.fixture(autouse=True)
async def fail_on_leaked_tasks() -> AsyncIterator[None]:
    before = set(asyncio.all_tasks())
    yield
    # Let tasks that are finishing (closing peers, cancelled pumps) get there.
    for _ in range(50):
        leaked = {t for t in asyncio.all_tasks() - before if not t.done()}
        leaked.discard(asyncio.current_task())  # type: ignore[arg-type]
        if not leaked:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"Test leaked tasks: {sorted(repr(t.get_coro()) for t in leaked)}")
