"""The spend ledger in Redis: every process of a fleet reads and writes the same budgets.

One hash per UTC day, ``gw:spend:{day}``: a field per ``app / model / user / measure``
(``usd``, then one per token kind), incremented atomically (``HINCRBYFLOAT``/``HINCRBY`` in one
transaction), and a running ``app`` and ``app / user`` total in ``usd`` for the budget checks.
Days expire after :data:`KEEP_DAYS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import redis.asyncio as aioredis

from gateway.stores.redis import RedisHealth, _Base
from gateway.stores.spend import (
    MAX_USER,
    Period,
    Spend,
    UsageRow,
    _merge,
    day_of,
    days_between,
    days_of,
)

KEEP_DAYS: Final = 400
_SEP: Final = "\x1f"  # never in an app name, a model name or a user id the gateway keeps


def _field(*parts: str) -> str:
    return _SEP.join(part.replace(_SEP, " ") for part in parts)


class RedisSpendLedger(_Base):
    def __init__(self, client: aioredis.Redis, health: RedisHealth) -> None:
        super().__init__(client, health)

    @staticmethod
    def _key(day: str) -> str:
        return f"gw:spend:{day}"

    async def add(self, spend: Spend, at: float) -> None:
        key = self._key(day_of(at))
        user = spend.user[:MAX_USER]
        row = (spend.app, spend.model, user)

        async def write() -> None:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hincrbyfloat(key, _field(*row, "usd"), spend.usd)
                for kind, count in spend.tokens.items():
                    if count:
                        pipe.hincrby(key, _field(*row, kind), int(count))
                pipe.hincrbyfloat(key, _field("total", spend.app), spend.usd)
                if user:
                    pipe.hincrbyfloat(key, _field("total", spend.app, user), spend.usd)
                pipe.expire(key, KEEP_DAYS * 86400)
                await pipe.execute()

        await self._do(write)

    async def spent(self, app: str, period: Period, at: float, user: str | None = None) -> float:
        field = _field("total", app) if user is None else _field("total", app, user[:MAX_USER])
        keys = [self._key(day) for day in days_of(period, at)]

        async def read() -> float:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hget(key, field)
                values = await pipe.execute()
            return sum(float(v) for v in values if v is not None)

        return await self._do(read)

    async def usage(self, start: float, end: float) -> list[UsageRow]:
        keys = [self._key(day) for day in days_between(start, end)]

        async def read() -> list[Mapping[bytes | str, bytes | str]]:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                return list(await pipe.execute())

        rows: list[tuple[str, str, str, float, Mapping[str, int]]] = []
        for day in await self._do(read):
            for raw_field, raw_value in day.items():
                field = raw_field.decode() if isinstance(raw_field, bytes) else raw_field
                value = raw_value.decode() if isinstance(raw_value, bytes) else raw_value
                parts = field.split(_SEP)
                if len(parts) != 4:
                    continue  # a running total
                app, model, user, measure = parts
                if measure == "usd":
                    rows.append((app, model, user, float(value), {}))
                else:
                    rows.append((app, model, user, 0.0, {measure: int(float(value))}))
        return _merge(rows)

    async def aclose(self) -> None:
        pass
