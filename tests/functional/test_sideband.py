"""OpenAI's sideband contract served by the gateway: observe a call and inject into it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.functional.conftest import GATEWAY_KEY, GatewayFactory, mint
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]
TOOLS = ("tests.functional.fixtures.sample_tools",)


async def open_call(gateway: Client, peers: list[TestPeer]) -> tuple[TestPeer, str]:
    peer = TestPeer()
    peers.append(peer)
    result = await peer.connect(
        gateway.session, str(gateway.make_url("/v1/realtime/calls")), await mint(gateway)
    )
    assert result.status == 201
    await peer.wait_open()
    await peer.next_event("session.created")
    return peer, result.headers["Location"].rsplit("/", 1)[1]


async def receive_until(
    ws: aiohttp.ClientWebSocketResponse, kind: str, seen: list[dict[str, Any]]
) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            event = json.loads(msg.data)
            seen.append(event)
            if event["type"] == kind:
                return event


class TestSideband:
    async def test_observe_and_inject(
        self, make_gateway: GatewayFactory, peers: list[TestPeer]
    ) -> None:
        """The sideband sees server tool calls the browser never sees, and can drive the call."""
        gateway = await make_gateway(tools=TOOLS)
        peer, call_id = await open_call(gateway, peers)
        seen: list[dict[str, Any]] = []
        async with gateway.session.ws_connect(
            gateway.make_url(f"/v1/realtime?call_id={call_id}"),
            headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
        ) as ws:
            peer.send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": 'lookup_order {"order_id": "S1"}'}
                        ],
                    },
                }
            )
            peer.send({"type": "response.create"})
            call = await receive_until(ws, "response.function_call_arguments.done", seen)
            assert call["name"] == "lookup_order"
            first = await peer.next_event("response.output_audio_transcript.done", timeout=10)
            assert "shipped-7731" in first["transcript"]
            # Server code injects a message; the model answers and the browser hears it.
            await ws.send_str(
                json.dumps(
                    {
                        "type": "conversation.item.create",
                        "item": {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": "sideband says hi"}],
                        },
                    }
                )
            )
            await ws.send_str(json.dumps({"type": "response.create"}))
            done = await peer.next_event("response.output_audio_transcript.done", timeout=10)
            assert "sideband says hi" in done["transcript"]
            # A refused event is answered on the sideband, not to the browser.
            await ws.send_str("not json")
            error = await receive_until(ws, "error", seen)
            assert error["error"]["code"] == "invalid_json"
        assert not [e for e in peer.events if e["type"] == "error"]

    async def test_auth_and_unknown_calls(self, gateway: Client, peers: list[TestPeer]) -> None:
        """Only the gateway key opens a sideband, only on a live call; the subprotocol works."""
        _, call_id = await open_call(gateway, peers)
        path = f"/v1/realtime?call_id={call_id}"
        token = await mint(gateway)
        response = await gateway.get(
            path,
            headers={
                "Authorization": f"Bearer {token}",
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        )
        assert response.status == 401
        missing = await gateway.get(
            "/v1/realtime?call_id=rtc_nope",
            headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
        )
        assert missing.status == 404
        async with gateway.session.ws_connect(
            gateway.make_url(path),
            protocols=("realtime", f"openai-insecure-api-key.{GATEWAY_KEY}"),
        ) as ws:
            assert ws.protocol == "realtime"

    async def test_call_end_closes_the_sideband(
        self, gateway: Client, peers: list[TestPeer]
    ) -> None:
        """When the call ends, the sideband is closed normally."""
        peer, call_id = await open_call(gateway, peers)
        async with gateway.session.ws_connect(
            gateway.make_url(f"/v1/realtime?call_id={call_id}"),
            headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
        ) as ws:
            await peer.close()
            async with asyncio.timeout(10):
                while not ws.closed:
                    msg = await ws.receive()
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break
            assert ws.close_code == 1000 or ws.closed
