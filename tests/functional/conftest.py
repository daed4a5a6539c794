"""A real gateway (aiohttp test server) in front of a real emulator, both on loopback."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.config import Secret, Settings
from gateway.emulator import Emulator, EmulatorCall, EmulatorSettings
from gateway.server.app import create_app
from gateway.server.state import STATE, GatewayState
from tests.support.peer import TestPeer

OPENAI_KEY = "sk-test-UPSTREAM-8f3a9c1d2e4b"
GATEWAY_KEY = "gk_test-GATEWAY-5b7c9d1e3f"
LOOPBACK = ("127.0.0.1",)


_URLS: dict[int, str] = {}


@pytest.fixture(name="emulator")
async def _emulator() -> AsyncIterator[Emulator]:
    emulator = Emulator(
        EmulatorSettings(ice_addresses=LOOPBACK, api_key=OPENAI_KEY, record_events=True)
    )
    _URLS[id(emulator)] = await emulator.start()
    yield emulator
    await emulator.aclose()
    _URLS.pop(id(emulator), None)


def gateway_settings(emulator_url: str, **overrides: Any) -> Settings:
    """The gateway as deployed against OpenAI, but pointed at the emulator."""
    values: dict[str, Any] = {
        "openai_api_key": Secret(OPENAI_KEY),
        "openai_base_url": emulator_url,
        "gateway_api_key": Secret(GATEWAY_KEY),
        "ice_addresses": LOOPBACK,
        "upstream_ice_addresses": LOOPBACK,
        "upstream_timeout": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


GatewayFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture(name="make_gateway")
def _make_gateway(emulator: Emulator, aiohttp_client: AiohttpClient) -> GatewayFactory:
    async def make(**overrides: Any) -> TestClient[web.Request, web.Application]:
        settings = gateway_settings(emulator_base(emulator), **overrides)
        return await aiohttp_client(create_app(settings))

    return make


def emulator_base(emulator: Emulator) -> str:
    return _URLS[id(emulator)]


@pytest.fixture(name="gateway")
async def _gateway(make_gateway: GatewayFactory) -> TestClient[web.Request, web.Application]:
    return await make_gateway()


def state_of(client: TestClient[web.Request, web.Application]) -> GatewayState:
    return client.app[STATE]


@pytest.fixture(name="peers")
async def _peers() -> AsyncIterator[list[TestPeer]]:
    """Browser peers made by a test; all closed at the end whatever happened."""
    made: list[TestPeer] = []
    yield made
    for peer in made:
        await peer.close()


async def mint(client: TestClient[web.Request, web.Application], **body: Any) -> str:
    response = await client.post(
        "/v1/realtime/client_secrets",
        json=body,
        headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
    )
    assert response.status == 200, await response.text()
    data = await response.json()
    return str(data["value"])


async def flushed(peer: TestPeer, upstream: EmulatorCall, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Return once everything ``peer`` sent before has reached ``upstream`` or been refused.

    A sentinel event goes last on the same ordered channel; once the upstream has it, whatever
    was sent before it has been through the gateway. Asserting that something did *not* arrive
    is then exact, with no sleep to guess at.
    """
    marker = f"flush_{secrets.token_hex(4)}"
    peer.send({"type": "input_audio_buffer.clear", "event_id": marker})
    async with asyncio.timeout(timeout):
        while not any(e.get("event_id") == marker for e in upstream.received_events):
            await asyncio.sleep(0.01)
