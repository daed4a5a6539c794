"""Budgets: an app that spent its budget gets OpenAI's insufficient_quota; others go on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from gateway.pricing import Price
from gateway.server.state import STATE
from tests.functional.conftest import GATEWAY_KEY, GatewayFactory
from tests.functional.test_apps import (
    SALES_KEY,
    SUPPORT_KEY,
    auth,
    call,
    mint,
    sha,
    until,
    with_apps,
    write,
)
from tests.functional.test_http_api import assert_error
from tests.support.peer import TestPeer

# The emulator's model is priced like a real one, so its responses cost something.
PRICE = "\n".join(f"{k} = {v}" for k, v in vars(Price(4.0, 0.4, 16.0, 32.0, 0.4, 64.0)).items())
BUDGETED = f"""
[apps.support]
key_sha256 = "{sha(SUPPORT_KEY)}"
budget_usd_per_day = 0.000001
budget_usd_per_user_per_day = 0.000001

[apps.sales]
key = "{SALES_KEY}"
budget_usd_per_user_per_day = 0.000001

[prices."realtime-emulator"]
{PRICE}
"""


async def spend_once(gateway: Any, peers: list[TestPeer], token: str) -> None:
    """One call of ``token``'s app, one response: the emulator's usage is what it costs."""
    peer, status, call_id = await call(gateway, peers, token)
    assert status == 201, call_id
    peer.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hello there."}],
            },
        }
    )
    peer.send({"type": "response.create"})
    await peer.next_event("response.done", timeout=10)


async def spent(gateway: Any, app: str) -> float:
    return float(await gateway.app[STATE].stores.spend.spent(app, "day", time.time()))


async def assert_quota(response: Any) -> None:
    """OpenAI's own quota error: 429, type and code insufficient_quota."""
    await assert_error(response, 429, "insufficient_quota")
    assert (await response.json())["error"]["type"] == "insufficient_quota"


async def test_a_spent_budget_refuses_its_app_only(
    make_gateway: GatewayFactory, peers: list[TestPeer], tmp_path: Path
) -> None:
    spend_file = tmp_path / "spend.sqlite3"
    gateway = await make_gateway(**with_apps(write(tmp_path, BUDGETED)), spend_file=str(spend_file))
    early = await mint(gateway, SUPPORT_KEY)  # minted while the budget still had room
    await spend_once(gateway, peers, await mint(gateway, SUPPORT_KEY))
    await until(lambda: spend_file.exists(), 5)
    async with asyncio.timeout(5):
        while await spent(gateway, "support") == 0:
            await asyncio.sleep(0.05)
    refused = await gateway.post("/v1/realtime/client_secrets", json={}, headers=auth(SUPPORT_KEY))
    await assert_quota(refused)
    _, status, body = await call(gateway, peers, early)
    assert status == 429 and '"insufficient_quota"' in body
    # Another app is not touched.
    assert await mint(gateway, SALES_KEY)

    # The operator reads what was spent; an app's key may not.
    report = await gateway.get("/v1/gateway/usage", headers=auth(GATEWAY_KEY))
    assert report.status == 200
    rows = (await report.json())["data"]
    support = [r for r in rows if r["app"] == "support"]
    assert support and support[0]["cost_usd"] > 0 and support[0]["tokens"]
    forbidden = await gateway.get("/v1/gateway/usage", headers=auth(SUPPORT_KEY))
    assert forbidden.status == 403
    anonymous = await gateway.get("/v1/gateway/usage")
    assert anonymous.status == 401
    bad = await gateway.get("/v1/gateway/usage?start=soon", headers=auth(GATEWAY_KEY))
    await assert_error(bad, 400, "invalid_value")

    # Spend survives a restart: a new gateway on the same file refuses the app at once.
    again = await make_gateway(**with_apps(write(tmp_path, BUDGETED)), spend_file=str(spend_file))
    refused = await again.post("/v1/realtime/client_secrets", json={}, headers=auth(SUPPORT_KEY))
    await assert_quota(refused)


async def test_an_end_user_named_in_tracing_is_held_to_their_own_budget(
    make_gateway: GatewayFactory, peers: list[TestPeer], tmp_path: Path
) -> None:
    gateway = await make_gateway(**with_apps(write(tmp_path, BUDGETED)))
    acme = {"session": {"type": "realtime", "tracing": {"group_id": "acme"}}}
    await spend_once(gateway, peers, await mint(gateway, SALES_KEY, **acme))
    async with asyncio.timeout(5):
        while await spent(gateway, "sales") == 0:
            await asyncio.sleep(0.05)
    refused = await gateway.post("/v1/realtime/client_secrets", json=acme, headers=auth(SALES_KEY))
    await assert_quota(refused)
    globex = {"session": {"type": "realtime", "tracing": {"group_id": "globex"}}}
    assert await mint(gateway, SALES_KEY, **globex)
    report = await gateway.get("/v1/gateway/usage", headers=auth(GATEWAY_KEY))
    users = {(r["app"], r["user"]) for r in (await report.json())["data"]}
    assert ("sales", "acme") in users


async def test_an_app_that_ends_calls_at_its_budget_ends_them_with_a_quota_error(
    make_gateway: GatewayFactory, peers: list[TestPeer], tmp_path: Path
) -> None:
    ending = BUDGETED.replace(
        "budget_usd_per_day = 0.000001\n",
        "budget_usd_per_day = 0.000001\nend_calls_at_budget = true\n",
        1,
    )
    gateway = await make_gateway(**with_apps(write(tmp_path, ending)))
    with capture_logs() as logs:
        await spend_once(gateway, peers, await mint(gateway, SUPPORT_KEY))
        peer = peers[-1]
        error = await peer.next_event("error", timeout=10)
        await peer.wait_closed(10)
        await until(lambda: any(e["event"] == "call.ended" for e in logs), 5)
    assert error["error"]["code"] == "insufficient_quota"
    (ended,) = [e for e in logs if e["event"] == "call.ended"]
    assert ended["reason"] == "budget_spent"
