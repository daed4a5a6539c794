"""The spend ledger, one contract for its three homes: memory, a SQLite file, a real Redis."""

from __future__ import annotations

import asyncio
import calendar
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from gateway.config import Secret
from gateway.errors import StoreUnavailable
from gateway.stores.redis import RedisHealth, redis_client
from gateway.stores.redis_spend import RedisSpendLedger
from gateway.stores.spend import (
    MAX_USER,
    FileSpendLedger,
    MemorySpendLedger,
    Spend,
    SpendLedger,
    days_between,
    days_of,
)
from tests.support.servers import RedisServer, redis_server

# 2026-03-15 12:00 UTC, and the days around it.
NOON = float(calendar.timegm((2026, 3, 15, 12, 0, 0)))
DAY = 86400.0

Make = Callable[[], Awaitable[SpendLedger]]


@pytest.fixture(name="redis")
async def _redis() -> AsyncIterator[RedisServer]:
    async with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", "file", "redis"], name="make")
async def _make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Make]:
    made: list[SpendLedger] = []
    clients = []
    server_cm = redis_server() if request.param == "redis" else None
    server = await server_cm.__aenter__() if server_cm is not None else None

    async def make() -> SpendLedger:
        ledger: SpendLedger
        if request.param == "memory":
            ledger = MemorySpendLedger() if not made else made[0]
        elif request.param == "file":
            ledger = FileSpendLedger(tmp_path / "spend.sqlite3")
        else:
            assert server is not None
            client = redis_client(Secret(server.url))
            clients.append(client)
            ledger = RedisSpendLedger(client, RedisHealth(client))
        made.append(ledger)
        return ledger

    yield make
    for ledger in made:
        await ledger.aclose()
    for client in clients:
        await client.aclose()
    if server_cm is not None:
        await server_cm.__aexit__(None, None, None)


def spend(app: str, usd: float, *, user: str = "", model: str = "gpt-realtime") -> Spend:
    return Spend(
        app=app, model=model, usd=usd, tokens={"input_text": 10, "output_audio": 5}, user=user
    )


async def test_budgets_read_their_window(make: Make) -> None:
    ledger = await make()
    await ledger.add(spend("support", 1.25), NOON)
    await ledger.add(spend("support", 0.75, user="acme"), NOON + 60)
    await ledger.add(spend("support", 2.0), NOON - 3 * DAY)  # same month, another day
    await ledger.add(spend("support", 9.0), NOON - 20 * DAY)  # last month
    await ledger.add(spend("sales", 4.0), NOON)
    assert await ledger.spent("support", "day", NOON) == pytest.approx(2.0)
    assert await ledger.spent("support", "month", NOON) == pytest.approx(4.0)
    assert await ledger.spent("support", "day", NOON, user="acme") == pytest.approx(0.75)
    assert await ledger.spent("support", "day", NOON, user="other") == 0.0
    assert await ledger.spent("sales", "day", NOON) == pytest.approx(4.0)
    assert await ledger.spent("nobody", "month", NOON) == 0.0


async def test_usage_by_app_model_and_user_over_a_range(make: Make) -> None:
    ledger = await make()
    await ledger.add(spend("support", 1.0), NOON)
    await ledger.add(spend("support", 1.0), NOON - DAY)
    await ledger.add(spend("support", 0.5, user="acme"), NOON)
    await ledger.add(spend("support", 0.5, model="gpt-realtime-mini"), NOON)
    await ledger.add(spend("sales", 3.0), NOON - 10 * DAY)  # outside the range
    rows = await ledger.usage(NOON - DAY, NOON)
    shown = [(r.app, r.model, r.user, round(r.usd, 6), r.tokens) for r in rows]
    assert shown == [
        ("support", "gpt-realtime", "", 2.0, {"input_text": 20, "output_audio": 10}),
        ("support", "gpt-realtime", "acme", 0.5, {"input_text": 10, "output_audio": 5}),
        ("support", "gpt-realtime-mini", "", 0.5, {"input_text": 10, "output_audio": 5}),
    ]


async def test_spend_is_shared_and_survives_a_restart(make: Make) -> None:
    """Two processes (or one, restarted) read the same ledger."""
    first = await make()
    await first.add(spend("support", 1.5), NOON)
    await first.aclose()
    second = await make()
    await second.add(spend("support", 1.0), NOON)
    assert await second.spent("support", "day", NOON) == pytest.approx(2.5)


async def test_concurrent_writes_all_count(make: Make) -> None:
    ledger = await make()
    await asyncio.gather(*(ledger.add(spend("support", 0.01), NOON) for _ in range(200)))
    assert await ledger.spent("support", "day", NOON) == pytest.approx(2.0)


async def test_hostile_names_stay_in_their_place(make: Make) -> None:
    """Names with separators, quotes or huge lengths neither break the ledger nor pass for
    another app's spend."""
    ledger = await make()
    odd = "a\x1fb'; DROP TABLE spend; --"
    await ledger.add(spend(odd, 1.0, user="u" * 10_000), NOON)
    await ledger.add(spend("a", 2.0, user="b"), NOON)
    assert await ledger.spent(odd, "day", NOON) == pytest.approx(1.0)
    assert await ledger.spent("a", "day", NOON) == pytest.approx(2.0)
    assert await ledger.spent(odd, "day", NOON, user="u" * MAX_USER) == pytest.approx(1.0)
    users = {r.user for r in await ledger.usage(NOON, NOON)}
    assert "u" * MAX_USER in users and all(len(u) <= MAX_USER for u in users)


async def test_redis_going_away_is_a_clear_503(redis: RedisServer) -> None:
    client = redis_client(Secret(redis.url))
    ledger = RedisSpendLedger(client, RedisHealth(client))
    try:
        await ledger.add(spend("support", 1.0), NOON)
        await redis.stop()
        with pytest.raises(StoreUnavailable):
            await ledger.spent("support", "day", NOON)
    finally:
        await client.aclose()


def test_windows() -> None:
    assert days_of("day", NOON) == ["2026-03-15"]
    month = days_of("month", NOON)
    assert month[0] == "2026-03-01" and month[-1] == "2026-03-15" and len(month) == 15
    assert days_between(NOON - 2 * DAY, NOON) == ["2026-03-13", "2026-03-14", "2026-03-15"]
    assert days_between(NOON, NOON - DAY) == []
    assert len(days_between(0, NOON)) == 400  # a report spans a bounded number of days
