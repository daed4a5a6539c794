"""Older beta-era browser code, and the zero-config emulator mode the README starts with."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.config import Settings
from gateway.emulator import Emulator
from gateway.server.app import create_app
from tests.functional.conftest import GATEWAY_KEY, state_of
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]


class TestBetaFlow:
    async def test_beta_app_works_unchanged(
        self, gateway: Client, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """/v1/realtime/sessions + /v1/realtime?model=: beta shapes out, GA upstream."""
        response = await gateway.post(
            "/v1/realtime/sessions",
            json={
                "model": "gpt-4o-realtime-preview-2024-12-17",
                "voice": "verse",
                "instructions": "Old app.",
            },
            headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
        )
        assert response.status == 200
        session = await response.json()
        assert session["object"] == "realtime.session"
        assert session["id"].startswith("sess_")
        assert session["voice"] == "verse"
        token = session["client_secret"]["value"]
        assert token.startswith("ek_")

        peer = TestPeer()
        peers.append(peer)
        url = str(gateway.make_url("/v1/realtime?model=gpt-4o-realtime-preview-2024-12-17"))
        result = await peer.connect(gateway.session, url, token)
        assert result.status == 201
        await peer.wait_open()
        (call,) = emulator.calls.values()
        assert call.initial_session is not None
        assert call.initial_session["type"] == "realtime"
        assert call.initial_session["audio"]["output"]["voice"] == "verse"
        assert call.initial_session["instructions"] == "Old app."

        created = await peer.next_event("session.created")
        assert "voice" in created["session"] and "type" not in created["session"]
        # A beta session.update (flat) reaches the upstream in GA shape.
        peer.send(
            {
                "type": "session.update",
                "event_id": "evt_b1",
                "session": {"turn_detection": None, "voice": "verse"},
            }
        )
        update = await call.wait_for_event("session.update")
        assert update["session"]["type"] == "realtime"
        assert update["session"]["audio"]["input"]["turn_detection"] is None
        await peer.next_event("session.updated")
        # Server events come back under their beta names.
        peer.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hello there"}],
                },
            }
        )
        peer.send({"type": "response.create"})
        done = await peer.next_event("response.audio_transcript.done", timeout=8)
        assert "hello there" in done["transcript"]
        ga_only = (
            "response.output_audio_transcript.",
            "response.output_text.",
            "response.output_audio.",
            "conversation.item.added",
        )
        assert not [e for e in peer.events if e["type"].startswith(ga_only)]


class TestEmulatorMode:
    async def test_zero_config_gateway(
        self, aiohttp_client: AiohttpClient, peers: list[TestPeer]
    ) -> None:
        """No key set: a built-in emulator answers, the demo token endpoint and page are on."""
        settings = Settings.from_env({"GATEWAY_ICE_ADDRESSES": "127.0.0.1"})
        assert settings.uses_emulator
        gateway = await aiohttp_client(create_app(settings))
        page = await gateway.get("/")
        assert page.status == 200 and "/static/app.js" in await page.text()
        script = await gateway.get("/static/app.js")
        assert script.status == 200 and "javascript" in script.headers["Content-Type"]
        token = (await (await gateway.post("/demo/token")).json())["value"]
        peer = TestPeer()
        peers.append(peer)
        result = await peer.connect(
            gateway.session, str(gateway.make_url("/v1/realtime/calls")), token
        )
        assert result.status == 201
        await peer.wait_open()
        created = await peer.next_event("session.created")
        assert "emulator" in created["session"]["model"]
        peer.mic.say(0.6)
        await peer.next_event("output_audio_buffer.stopped", timeout=10)
        assert peer.received.energy_frames(threshold=0.02) >= 10
        emulator = state_of(gateway).emulator
        assert emulator is not None
        (call,) = emulator.calls.values()
        await peer.close()
        await asyncio.wait_for(call.ended.wait(), 10)

    async def test_demo_endpoint_off_with_a_real_key(self, aiohttp_client: AiohttpClient) -> None:
        """With a real OpenAI key the demo token endpoint does not exist unless enabled."""
        settings = Settings.from_env(
            {"OPENAI_API_KEY": "sk-test-x1234567", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
        )
        gateway = await aiohttp_client(create_app(settings))
        assert (await gateway.post("/demo/token")).status in (404, 405)
