"""The gateway's server tools in a GPT-Live session under Responses delegation: declared to the
delegate upstream, run by the gateway, never seen by the browser; real aiortc peers, a real
gateway and the emulator's delegate (which calls a declared tool when the user's text names
it)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.emulator import Emulator, EmulatorCall
from tests.functional.conftest import GATEWAY_KEY, GatewayFactory, state_of
from tests.functional.fixtures import sample_tools
from tests.support.peer import TestPeer

TOOLS = ("tests.functional.fixtures.sample_tools",)
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
BROWSER_TOOL = {
    "type": "function",
    "name": "show_map",
    "description": "Show a map in the page.",
    "parameters": {"type": "object", "properties": {}},
}
SESSION: dict[str, Any] = {
    "model": "gpt-live-1",
    "delegation": {"type": "responses", "responses": {"model": "gpt-5", "tools": [BROWSER_TOOL]}},
}


async def create(gateway: Any, peer: TestPeer, session: dict[str, Any]) -> tuple[int, Any]:
    offer = await peer.create_offer()
    response = await gateway.post(
        "/v1/live/sessions",
        json={"session": session, "transport": {"type": "webrtc", "sdp": offer}},
        headers=AUTH,
    )
    return response.status, await response.json()


async def open_session(gateway: Any, peers: list[TestPeer]) -> tuple[TestPeer, str]:
    peer = TestPeer()
    peers.append(peer)
    status, body = await create(gateway, peer, SESSION)
    assert status == 201, body
    await peer.accept_answer(body["transport"]["sdp"])
    await peer.wait_open()
    return peer, str(body["session"]["id"])


def upstream_of(gateway: Any, emulator: Emulator, session_id: str) -> EmulatorCall:
    call = state_of(gateway).calls.find(session_id)
    assert call is not None and call.upstream_call_id is not None
    return emulator.calls[call.upstream_call_id]


def ask(peer: TestPeer, text: str) -> None:
    peer.send(
        {
            "type": "response.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            },
        }
    )
    peer.send({"type": "response.create"})


def nested(peer: TestPeer) -> list[dict[str, Any]]:
    return [e["event"] for e in peer.events_of("response.event")]


async def next_nested(peer: TestPeer, kind: str, after: int = 0, timeout: float = 8.0) -> Any:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while True:
            found = [e for e in nested(peer)[after:] if e["type"] == kind]
            if found:
                return found[0]
            await asyncio.sleep(0.02)


async def test_a_server_tool_runs_for_the_delegate_and_the_browser_never_sees_it(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer], tmp_path: Path
) -> None:
    sample_tools.CALLS.clear()
    gateway = await make_gateway(tools=TOOLS, transcripts_dir=str(tmp_path))
    peer, session_id = await open_session(gateway, peers)
    started = await peer.next_event("session.started")
    # The browser is shown the app's tools only; the delegate upstream was given both.
    assert started["session"]["delegation"]["responses"]["tools"] == [BROWSER_TOOL]
    upstream = upstream_of(gateway, emulator, session_id)
    assert upstream.initial_session is not None
    declared = [t["name"] for t in upstream.initial_session["delegation"]["responses"]["tools"]]
    assert declared == ["show_map", "lookup_order", "slow_report"]

    ask(peer, 'Where is my order? lookup_order {"order_id": "A17"}')
    await peer.next_event("session.delegation.created", timeout=8)
    answer = await next_nested(peer, "response.output_text.done")
    assert "shipped-7731" in answer["text"]
    assert sample_tools.CALLS == ["A17"]  # run once, on the server
    # The upstream got the output, then was asked to continue.
    outputs = [
        e
        for e in upstream.received_events
        if e["type"] == "response.item.create" and e["item"]["type"] == "function_call_output"
    ]
    assert len(outputs) == 1 and json.loads(outputs[0]["item"]["output"]) == {
        "order_id": "A17",
        "status": "shipped-7731",
    }
    types = [e["type"] for e in upstream.received_events]
    assert types[types.index("response.item.create", 1) + 1] == "response.create"
    # Nothing of the call reached the browser; its own answer did, and the Live model spoke it.
    seen = nested(peer)
    assert not [e for e in seen if e["type"].startswith("response.function_call_arguments")]
    assert not [e for e in seen if e.get("item", {}).get("type") == "function_call"]
    assert [e["type"] for e in seen].count("response.completed") == 2
    assert "lookup_order" not in json.dumps(peer.events)
    await peer.next_event("session.output_transcript.delta", timeout=8)
    call = state_of(gateway).calls.find(session_id)
    assert call is not None and call.pipeline.stats.tool_calls == 1
    # The delegate's tokens (both responses, the hidden one included) are billed and counted.
    completed = [
        e["event"]["response"]["usage"]
        for e in upstream.sent_events
        if e["type"] == "response.event" and e["event"]["type"] == "response.completed"
    ]
    assert len(completed) == 2
    tokens = call.pipeline.stats.tokens
    assert tokens["input_text"] == sum(u["input_tokens"] for u in completed) > 0
    assert tokens["output_text"] == sum(u["output_tokens"] for u in completed) > 0
    metrics = await (await gateway.get("/metrics")).text()
    assert (
        'realtime_gateway_tokens_total{app="default",kind="output_text",model="other"} '
        f"{float(tokens['output_text'])}" in metrics
    )
    # The transcript has the call as a Realtime call's has it.
    async with asyncio.timeout(5):
        while not (files := list(tmp_path.glob("*.jsonl"))) or '"tool_call"' not in (
            text := files[0].read_text()
        ):
            await asyncio.sleep(0.05)
    records = [json.loads(line) for line in text.splitlines()]
    (record,) = [r for r in records if r["kind"] == "tool_call"]
    assert (record["name"], record["status"]) == ("lookup_order", "ok")
    assert "shipped-7731" in record["output"]

    # The browser may not answer the server's call for it, nor call the server's tool itself.
    call_id = outputs[0]["item"]["call_id"]
    for index, (item, code) in enumerate(
        [
            (
                {"type": "function_call_output", "call_id": call_id, "output": "{}"},
                "tool_call_reserved",
            ),
            (
                {
                    "type": "function_call",
                    "call_id": "call_x",
                    "name": "lookup_order",
                    "arguments": "{}",
                },
                "tool_name_reserved",
            ),
        ]
    ):
        peer.send({"type": "response.item.create", "event_id": f"evt_forged_{index}", "item": item})
        error = await peer.next_event("error")
        assert (error["error"]["code"], error["client_event_id"]) == (code, f"evt_forged_{index}")
    assert not [
        e for e in upstream.received_events if str(e.get("event_id")).startswith("evt_forged")
    ]


async def test_the_browsers_own_tools_still_reach_it(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
) -> None:
    gateway = await make_gateway(tools=TOOLS)
    peer, session_id = await open_session(gateway, peers)
    await peer.next_event("session.started")
    ask(peer, "Please show_map")
    added = await next_nested(peer, "response.output_item.added")
    assert added["item"]["name"] == "show_map"
    await next_nested(peer, "response.function_call_arguments.done")
    done = await next_nested(peer, "response.output_item.done")
    peer.send(
        {
            "type": "response.item.create",
            "item": {
                "type": "function_call_output",
                "call_id": done["item"]["call_id"],
                "output": "shown",
            },
        }
    )
    peer.send({"type": "response.create"})
    answer = await next_nested(peer, "response.output_text.done")
    assert "shown" in answer["text"]


async def test_an_app_tool_named_like_a_server_tool_is_refused_at_creation(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
) -> None:
    gateway = await make_gateway(tools=TOOLS)
    peer = TestPeer()
    peers.append(peer)
    clash = {**BROWSER_TOOL, "name": "lookup_order"}
    session = {
        **SESSION,
        "delegation": {"type": "responses", "responses": {"model": "gpt-5", "tools": [clash]}},
    }
    status, body = await create(gateway, peer, session)
    assert status == 400
    assert body["error"]["code"] == "tool_name_reserved"
    assert body["error"]["param"] == "session.delegation.responses.tools[0].name"
    assert not emulator.calls  # nothing was opened upstream
