"""Neither key ever appears in a response, an event, a log line or a metric."""

from __future__ import annotations

import json
from typing import Any

from structlog.testing import capture_logs

from gateway.emulator import Emulator
from tests.functional.conftest import GATEWAY_KEY, OPENAI_KEY, GatewayFactory, mint
from tests.support.peer import TestPeer


async def test_no_key_in_responses_events_logs_or_metrics(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
) -> None:
    """A busy call with errors on every path leaks neither key anywhere."""
    texts: list[str] = []
    with capture_logs() as logs:
        gateway = await make_gateway(tools=("tests.functional.fixtures.sample_tools",))

        async def keep(response: Any) -> None:
            texts.append(await response.text())
            texts.append(json.dumps(dict(response.headers)))

        auth = {"Authorization": f"Bearer {GATEWAY_KEY}"}
        await keep(await gateway.post("/v1/realtime/client_secrets", json={}, headers=auth))
        await keep(
            await gateway.post(
                "/v1/realtime/client_secrets",
                json={},
                headers={"Authorization": "Bearer sk-wrong-123456789"},
            )
        )
        emulator.reject_next_call(
            401,
            {
                "message": f"Incorrect API key provided: {OPENAI_KEY}",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            },
        )
        url = str(gateway.make_url("/v1/realtime/calls"))
        rejected = TestPeer()
        peers.append(rejected)
        result = await rejected.connect(gateway.session, url, await mint(gateway))
        texts += [result.body, json.dumps(dict(result.headers))]
        peer = TestPeer()
        peers.append(peer)
        result = await peer.connect(gateway.session, url, await mint(gateway))
        texts += [result.body, json.dumps(dict(result.headers))]
        await peer.wait_open()
        peer.send_raw("not json")
        peer.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": 'lookup_order {"order_id": "K"}'}],
                },
            }
        )
        peer.send({"type": "response.create"})
        await peer.next_event("response.output_audio_transcript.done", timeout=10)
        await keep(await gateway.get("/v1/realtime/calls", headers=auth))
        await keep(await gateway.get("/metrics"))
        await peer.close()
    texts += [json.dumps(e) for e in peer.events]
    texts += [json.dumps(entry, default=str) for entry in logs]
    assert len(texts) > 20 and logs
    for text in texts:
        for secret in (OPENAI_KEY, GATEWAY_KEY, OPENAI_KEY[3:15], GATEWAY_KEY[3:15]):
            assert secret not in text, text[:200]
