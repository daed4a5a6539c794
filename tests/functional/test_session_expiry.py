"""An upstream session that reaches its time limit: OpenAI says ``session_expired`` (Realtime)
or ``session.closed`` with ``expired`` (Live), then closes. The browser hears that once, and the
call ends as a timeout, not as an upstream failure. The emulator here ends sessions after 2 s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.emulator import Emulator, EmulatorSettings
from gateway.server.app import create_app
from tests.functional.conftest import GATEWAY_KEY, OPENAI_KEY, gateway_settings, mint
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
LIMIT_S = 2.0


@pytest.fixture(name="short_lived")
async def _short_lived(aiohttp_client: AiohttpClient) -> AsyncIterator[tuple[Client, Emulator]]:
    emulator = Emulator(
        EmulatorSettings(ice_addresses=("127.0.0.1",), api_key=OPENAI_KEY, max_call_seconds=LIMIT_S)
    )
    url = await emulator.start()
    try:
        yield await aiohttp_client(create_app(gateway_settings(url))), emulator
    finally:
        await emulator.aclose()


async def ended_line(logs: list[MutableMapping[str, Any]]) -> MutableMapping[str, Any]:
    async with asyncio.timeout(LIMIT_S + 8):
        while not (lines := [line for line in logs if line["event"] == "call.ended"]):
            await asyncio.sleep(0.05)
    return lines[0]


async def test_a_realtime_session_that_expires_is_said_once_and_ends_as_a_timeout(
    short_lived: tuple[Client, Emulator],
) -> None:
    gateway, _ = short_lived
    peer = TestPeer()
    try:
        with structlog.testing.capture_logs() as logs:
            token = await mint(gateway)
            result = await peer.connect(
                gateway.session, str(gateway.make_url("/v1/realtime/calls")), token
            )
            assert result.status == 201
            await peer.wait_open()
            ended = await ended_line(logs)
        assert (ended["reason"], ended["outcome"]) == ("session_expired", "timeout")
        await peer.wait_closed(5)
        errors = peer.events_of("error")
        assert [e["error"]["code"] for e in errors] == ["session_expired"]
        assert errors[0]["error"]["message"] == (
            f"Your session hit the maximum duration of {LIMIT_S / 60:g} minutes."
        )
    finally:
        await peer.close()


async def test_a_live_session_that_expires_says_so_in_session_closed(
    short_lived: tuple[Client, Emulator],
) -> None:
    gateway, _ = short_lived
    peer = TestPeer()
    try:
        with structlog.testing.capture_logs() as logs:
            offer = await peer.create_offer()
            response = await gateway.post(
                "/v1/live/sessions",
                json={
                    "session": {"model": "gpt-live-1"},
                    "transport": {"type": "webrtc", "sdp": offer},
                },
                headers=AUTH,
            )
            assert response.status == 201
            await peer.accept_answer((await response.json())["transport"]["sdp"])
            await peer.wait_open()
            ended = await ended_line(logs)
        assert (ended["reason"], ended["outcome"]) == ("session_expired", "timeout")
        closed = await peer.next_event("session.closed")
        assert closed["reason"] == "expired"
        assert "error" not in peer.types()  # no farewell after session.closed
    finally:
        await peer.close()
