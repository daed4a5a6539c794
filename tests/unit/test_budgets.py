"""Budgets over the spend ledger: refused with OpenAI's quota error at the limit, warned once."""

from __future__ import annotations

import calendar

import pytest
import structlog
from prometheus_client import CollectorRegistry

from gateway.budgets import Budget, BudgetKeeper
from gateway.errors import InsufficientQuota
from gateway.metrics import Metrics
from gateway.stores.spend import MemorySpendLedger, Spend

NOON = float(calendar.timegm((2026, 3, 15, 12, 0, 0)))


def keeper(at: list[float]) -> tuple[BudgetKeeper, CollectorRegistry]:
    registry = CollectorRegistry()
    return BudgetKeeper(MemorySpendLedger(), Metrics(registry), clock=lambda: at[0]), registry


def cost(app: str, usd: float, user: str = "") -> Spend:
    return Spend(app=app, model="gpt-realtime", usd=usd, tokens={"output_audio": 1}, user=user)


async def test_a_spent_day_refuses_with_openais_quota_error_until_the_next_day() -> None:
    at = [NOON]
    budgets, registry = keeper(at)
    daily = Budget(usd_per_day=1.0)
    await budgets.check("support", daily)
    assert await budgets.record(cost("support", 0.6), daily) is False
    assert await budgets.record(cost("support", 0.4), daily) is True
    with pytest.raises(InsufficientQuota) as refused:
        await budgets.check("support", daily)
    body = refused.value.to_body()["error"]
    assert refused.value.status == 429
    assert (body["type"], body["code"]) == ("insufficient_quota", "insufficient_quota")
    await budgets.check("sales", daily)  # another app is not touched
    assert (
        registry.get_sample_value("realtime_gateway_budget_refused_total", {"app": "support"}) == 1
    )
    at[0] = NOON + 86400
    await budgets.check("support", daily)  # a new day


async def test_a_month_adds_up_its_days() -> None:
    at = [NOON]
    budgets, _ = keeper(at)
    monthly = Budget(usd_per_month=2.0)
    await budgets.record(cost("support", 1.5), monthly)
    at[0] = NOON + 86400
    await budgets.check("support", monthly)
    await budgets.record(cost("support", 0.5), monthly)
    with pytest.raises(InsufficientQuota):
        await budgets.check("support", monthly)


async def test_an_end_user_is_held_to_their_own_share() -> None:
    at = [NOON]
    budgets, _ = keeper(at)
    per_user = Budget(user_usd_per_day=0.5)
    await budgets.record(cost("support", 0.5, user="acme"), per_user)
    with pytest.raises(InsufficientQuota) as refused:
        await budgets.check("support", per_user, user="acme")
    assert "end user" in refused.value.message
    await budgets.check("support", per_user, user="globex")
    await budgets.check("support", per_user)  # no user named: the app itself has no limit


async def test_the_warning_is_said_once_per_window() -> None:
    at = [NOON]
    budgets, registry = keeper(at)
    daily = Budget(usd_per_day=1.0, warn_at=0.5)
    with structlog.testing.capture_logs() as logs:
        for _ in range(4):
            await budgets.record(cost("support", 0.2), daily)
        at[0] = NOON + 86400
        for _ in range(3):
            await budgets.record(cost("support", 0.2), daily)
    warnings = [line for line in logs if line["event"] == "budget.warning"]
    assert len(warnings) == 2  # one each day
    assert (
        registry.get_sample_value("realtime_gateway_budget_warnings_total", {"app": "support"}) == 2
    )


async def test_no_budget_costs_no_reads() -> None:
    at = [NOON]
    budgets, _ = keeper(at)
    assert not Budget().limited
    assert await budgets.record(cost("support", 100.0), Budget()) is False
    await budgets.check("support", Budget())
