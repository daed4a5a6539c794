"""What each app (and each of its end users) spent, by UTC day: the ledger budgets are read from.

Spend is kept per ``(day, app, model, user)``: dollars and tokens by kind. A budget reads the
sum over its window (the UTC day, or the UTC month so far); the usage report sums any range
of days. Three implementations share one interface: in memory (tests, and nothing to keep),
a SQLite file (one process whose spend must survive restarts) and Redis
(:mod:`gateway.stores.redis_spend`, several processes sharing one ledger).

Nothing here is on the media path: the ledger is written once per finished response and read
once per minted secret or opened call.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

Period = Literal["day", "month"]
TOKEN_KINDS: Final = ("input_text", "input_audio", "input_cached", "output_text", "output_audio")
# Longest end-user id kept (the app's backend chooses them); longer ones are cut.
MAX_USER = 128
# Days a report may span: a year and a bit.
MAX_REPORT_DAYS = 400


def day_of(at: float) -> str:
    """The UTC day of Unix time ``at``: ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.gmtime(at))


def days_of(period: Period, at: float) -> list[str]:
    """The days a budget window holds at ``at``: that day, or the month up to that day."""
    today = day_of(at)
    if period == "day":
        return [today]
    month, last = today[:8], int(today[8:])
    return [f"{month}{d:02d}" for d in range(1, last + 1)]


def days_between(start: float, end: float) -> list[str]:
    """The UTC days from ``start``'s to ``end``'s, at most :data:`MAX_REPORT_DAYS`."""
    days: list[str] = []
    at = start
    while at <= end + 86400 and len(days) < MAX_REPORT_DAYS:
        day = day_of(at)
        if day > day_of(end):
            break
        if not days or days[-1] != day:
            days.append(day)
        at += 86400
    return days


@dataclass(frozen=True)
class Spend:
    """One finished response's cost."""

    app: str
    model: str
    usd: float
    """0.0 where the model has no price (its tokens still count)."""
    tokens: Mapping[str, int]
    user: str = ""
    """The end user or tenant the app's backend named (``""``: none)."""


@dataclass
class UsageRow:
    app: str
    model: str
    user: str
    usd: float = 0.0
    tokens: dict[str, int] = field(default_factory=dict)


class SpendLedger(Protocol):
    async def add(self, spend: Spend, at: float) -> None:
        """Count ``spend`` on the UTC day of ``at``."""

    async def spent(self, app: str, period: Period, at: float, user: str | None = None) -> float:
        """Dollars ``app`` (or one of its users) spent in the window holding ``at``."""

    async def usage(self, start: float, end: float) -> list[UsageRow]:
        """Spend and tokens by app, model and user over the days from ``start`` to ``end``."""

    async def aclose(self) -> None: ...


def _user(spend: Spend) -> str:
    return spend.user[:MAX_USER]


def _merge(rows: Iterable[tuple[str, str, str, float, Mapping[str, int]]]) -> list[UsageRow]:
    merged: dict[tuple[str, str, str], UsageRow] = {}
    for app, model, user, usd, tokens in rows:
        row = merged.setdefault((app, model, user), UsageRow(app, model, user))
        row.usd += usd
        for kind, count in tokens.items():
            if count:
                row.tokens[kind] = row.tokens.get(kind, 0) + count
    return sorted(merged.values(), key=lambda r: (r.app, r.model, r.user))


class MemorySpendLedger:
    """In this process's memory: lost at exit."""

    def __init__(self) -> None:
        self._days: dict[str, dict[tuple[str, str, str], tuple[float, dict[str, int]]]] = {}

    async def add(self, spend: Spend, at: float) -> None:
        day = self._days.setdefault(day_of(at), {})
        key = (spend.app, spend.model, _user(spend))
        usd, tokens = day.get(key, (0.0, {}))
        merged = dict(tokens)
        for kind, count in spend.tokens.items():
            merged[kind] = merged.get(kind, 0) + count
        day[key] = (usd + spend.usd, merged)

    async def spent(self, app: str, period: Period, at: float, user: str | None = None) -> float:
        total = 0.0
        for day in days_of(period, at):
            for (a, _, u), (usd, _) in self._days.get(day, {}).items():
                if a == app and (user is None or u == user[:MAX_USER]):
                    total += usd
        return total

    async def usage(self, start: float, end: float) -> list[UsageRow]:
        return _merge(
            (app, model, user, usd, tokens)
            for day in days_between(start, end)
            for (app, model, user), (usd, tokens) in self._days.get(day, {}).items()
        )

    async def aclose(self) -> None:
        pass


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS spend (
    day TEXT NOT NULL, app TEXT NOT NULL, model TEXT NOT NULL, user TEXT NOT NULL,
    usd REAL NOT NULL DEFAULT 0,
    {", ".join(f"{k} INTEGER NOT NULL DEFAULT 0" for k in TOKEN_KINDS)},
    PRIMARY KEY (day, app, model, user)
)
"""
_UPSERT = f"""
INSERT INTO spend (day, app, model, user, usd, {", ".join(TOKEN_KINDS)})
VALUES (?, ?, ?, ?, ?, {", ".join("?" for _ in TOKEN_KINDS)})
ON CONFLICT (day, app, model, user) DO UPDATE SET
    usd = usd + excluded.usd,
    {", ".join(f"{k} = {k} + excluded.{k}" for k in TOKEN_KINDS)}
"""


class FileSpendLedger:
    """A SQLite file: the spend of a gateway running alone survives its restarts.

    SQLite's calls block, so each runs in a worker thread, one at a time (writes are one small
    upsert per finished response).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = asyncio.Lock()
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            self._db = db
        return self._db

    async def _run(self, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        def work() -> list[tuple[Any, ...]]:
            return list(self._connect().execute(sql, args).fetchall())

        async with self._lock:
            return await asyncio.to_thread(work)

    async def add(self, spend: Spend, at: float) -> None:
        tokens = tuple(int(spend.tokens.get(k, 0)) for k in TOKEN_KINDS)
        args = (day_of(at), spend.app, spend.model, _user(spend), float(spend.usd), *tokens)
        await self._run(_UPSERT, args)

    async def spent(self, app: str, period: Period, at: float, user: str | None = None) -> float:
        days = days_of(period, at)
        sql = "SELECT COALESCE(SUM(usd), 0) FROM spend WHERE app = ? AND day >= ? AND day <= ?"
        args: tuple[object, ...] = (app, days[0], days[-1])
        if user is not None:
            sql += " AND user = ?"
            args += (user[:MAX_USER],)
        ((total,),) = await self._run(sql, args)
        return float(total)

    async def usage(self, start: float, end: float) -> list[UsageRow]:
        days = days_between(start, end)
        if not days:
            return []
        rows = await self._run(
            f"SELECT app, model, user, usd, {', '.join(TOKEN_KINDS)} FROM spend "
            "WHERE day >= ? AND day <= ?",
            (days[0], days[-1]),
        )
        return _merge(
            (
                str(r[0]),
                str(r[1]),
                str(r[2]),
                float(r[3]),
                {k: int(v) for k, v in zip(TOKEN_KINDS, r[4:], strict=True)},
            )
            for r in rows
        )

    async def aclose(self) -> None:
        async with self._lock:
            if self._db is not None:
                await asyncio.to_thread(self._db.close)
                self._db = None
