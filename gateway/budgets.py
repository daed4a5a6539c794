"""Budgets: an app (or one of its end users) stops spending the key where the operator says.

Each finished response's cost goes into the spend ledger (:mod:`gateway.stores.spend`). Before
a secret is minted or a call is opened, the app's spend in each of its windows (the UTC day,
the UTC month so far; per end user, the day) is read back: at or over the budget, the request is
refused with OpenAI's own ``insufficient_quota`` error (429). Crossing the warning share of a
budget logs ``budget.warning`` and counts it once per window.

Spend is counted when a response is done, so a call under way may take an app past its budget
by what that call spends; whether live calls are then ended is the operator's choice
(:attr:`Budget.end_calls`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from gateway.config.apps import App
from gateway.errors import InsufficientQuota
from gateway.metrics import Metrics
from gateway.stores.spend import Period, Spend, SpendLedger, day_of

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Budget:
    usd_per_day: float | None = None
    usd_per_month: float | None = None
    user_usd_per_day: float | None = None
    """What each end user of the app (named by the session's ``tracing.group_id``) may spend
    in a day."""
    warn_at: float = 0.8
    """The share of a budget at which ``budget.warning`` is logged."""
    end_calls: bool = False
    """End the app's live calls once it is over budget (an ``error`` event first)."""

    @property
    def limited(self) -> bool:
        return any(
            v is not None for v in (self.usd_per_day, self.usd_per_month, self.user_usd_per_day)
        )


def budget_of(app: App) -> Budget:
    return Budget(
        usd_per_day=app.budget_usd_per_day,
        usd_per_month=app.budget_usd_per_month,
        user_usd_per_day=app.budget_usd_per_user_per_day,
        warn_at=app.budget_warn_at,
        end_calls=app.end_calls_at_budget,
    )


def end_user(session: Mapping[str, Any] | None) -> str:
    """The end user or tenant the app's backend named for a session: OpenAI's own
    ``tracing.group_id`` (so the request stays OpenAI-shaped); ``""`` for none."""
    tracing = session.get("tracing") if isinstance(session, Mapping) else None
    group = tracing.get("group_id") if isinstance(tracing, Mapping) else None
    return group if isinstance(group, str) else ""


@dataclass(frozen=True)
class _Window:
    period: Period
    limit: float
    user: str | None


def _windows(budget: Budget, user: str) -> list[_Window]:
    windows = []
    if budget.usd_per_day is not None:
        windows.append(_Window("day", budget.usd_per_day, None))
    if budget.usd_per_month is not None:
        windows.append(_Window("month", budget.usd_per_month, None))
    if budget.user_usd_per_day is not None and user:
        windows.append(_Window("day", budget.user_usd_per_day, user))
    return windows


class BudgetKeeper:
    def __init__(
        self, ledger: SpendLedger, metrics: Metrics, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._ledger = ledger
        self._metrics = metrics
        self._clock = clock
        # (app, user, period, window) already warned about: once per window. Only the current
        # day's and month's entries are kept.
        self._warned: set[tuple[str, str, str, str]] = set()
        self._warned_day = ""

    @property
    def ledger(self) -> SpendLedger:
        return self._ledger

    async def check(self, app: str, budget: Budget, user: str = "") -> None:
        """Raise :class:`InsufficientQuota` if ``app`` (or ``user``) has spent a budget."""
        now = self._clock()
        for window in _windows(budget, user):
            spent = await self._ledger.spent(app, window.period, now, window.user)
            if spent >= window.limit:
                self._metrics.budget_refused(app)
                log.info(
                    "budget.refused",
                    app=app,
                    period=window.period,
                    per_user=window.user is not None,
                    spent_usd=round(spent, 6),
                    budget_usd=window.limit,
                )
                who = "this end user's" if window.user is not None else "this app's"
                raise InsufficientQuota(
                    f"You exceeded your current quota: {who} budget for the "
                    f"{'day' if window.period == 'day' else 'month'} is spent. New sessions "
                    "are refused until it renews (00:00 UTC)."
                )

    async def record(self, spend: Spend, budget: Budget) -> bool:
        """Count ``spend``; True if it took its app (or user) to a budget's limit."""
        now = self._clock()
        await self._ledger.add(spend, now)
        if not budget.limited:
            return False
        over = False
        today = day_of(now)
        if today != self._warned_day:
            self._warned = {w for w in self._warned if w[2] == "month" and w[3] == today[:7]}
            self._warned_day = today
        for window in _windows(budget, spend.user):
            spent = await self._ledger.spent(spend.app, window.period, now, window.user)
            if spent >= window.limit:
                over = True
            if spent >= window.limit * budget.warn_at and math.isfinite(spent):
                key = (
                    spend.app,
                    window.user or "",
                    window.period,
                    today[:7] if window.period == "month" else today,
                )
                if key not in self._warned:
                    self._warned.add(key)
                    self._metrics.budget_warning(spend.app)
                    log.warning(
                        "budget.warning",
                        app=spend.app,
                        period=window.period,
                        per_user=window.user is not None,
                        spent_usd=round(spent, 6),
                        budget_usd=window.limit,
                    )
        return over
