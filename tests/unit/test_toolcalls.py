"""ToolCoordinator: hides server tool calls, answers once, never over an active response."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.toolcalls import ToolCoordinator
from gateway.tools import Tool, ToolRegistry, ToolResult, tool


@tool
def weather(city: str) -> str:
    """Weather in a city."""
    return f"sunny in {city}"


def coordinator() -> tuple[ToolCoordinator, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []

    async def runner(t: Tool, args: str) -> ToolResult:
        return ToolResult(output=json.dumps({"args": json.loads(args)}), status="ok", seconds=0.0)

    return ToolCoordinator(ToolRegistry([weather]), sent.append, runner=runner), sent


def call_events(response_id: str = "resp_1") -> list[dict[str, Any]]:
    item = {"id": "item_fc", "type": "function_call", "name": "weather", "call_id": "call_1"}
    return [
        {"type": "response.created", "response": {"id": response_id}},
        {"type": "response.output_item.added", "response_id": response_id, "item": item},
        {"type": "conversation.item.added", "item": item},
        {"type": "response.function_call_arguments.delta", "item_id": "item_fc", "delta": "{"},
        {
            "type": "response.function_call_arguments.done",
            "item_id": "item_fc",
            "call_id": "call_1",
            "name": "weather",
            "arguments": '{"city":"Oslo"}',
            "response_id": response_id,
        },
        {"type": "response.output_item.done", "response_id": response_id, "item": item},
    ]


class TestToolCoordinator:
    async def test_call_is_hidden_run_and_answered(self) -> None:
        """Every event of a server call is hidden; the output and one response.create follow."""
        tools, sent = coordinator()
        for event in call_events():
            assert tools.server_event(event) is None or event["type"] == "response.created"
        done = tools.server_event(
            {
                "type": "response.done",
                "response": {
                    "id": "resp_1",
                    "output": [{"type": "function_call", "name": "weather"}, {"type": "message"}],
                },
            }
        )
        assert done is not None and done["response"]["output"] == [{"type": "message"}]
        for _ in range(20):
            if len(sent) == 2:
                break
            await asyncio.sleep(0.01)
        assert [e["type"] for e in sent] == ["conversation.item.create", "response.create"]
        assert sent[0]["item"] == {
            "type": "function_call_output",
            "call_id": "call_1",
            "output": '{"args": {"city": "Oslo"}}',
        }
        echo = {
            "type": "conversation.item.added",
            "item": {"type": "function_call_output", "call_id": "call_1"},
        }
        assert tools.server_event(echo) is None
        await tools.aclose()

    async def test_active_response_error_is_retried_after_the_next_done(self) -> None:
        """conversation_already_has_active_response for our event is hidden and retried later."""
        tools, sent = coordinator()
        for event in call_events():
            tools.server_event(event)
        tools.server_event({"type": "response.done", "response": {"id": "resp_1"}})
        for _ in range(20):
            if len(sent) == 2:
                break
            await asyncio.sleep(0.01)
        ours = sent[1]["event_id"]
        tools.server_event({"type": "response.created", "response": {"id": "resp_vad"}})
        error = {
            "type": "error",
            "error": {"code": "conversation_already_has_active_response", "event_id": ours},
        }
        assert tools.server_event(error) is None
        assert len(sent) == 2
        tools.server_event({"type": "response.done", "response": {"id": "resp_vad"}})
        assert [e["type"] for e in sent] == [
            "conversation.item.create",
            "response.create",
            "response.create",
        ]
        await tools.aclose()

    async def test_waits_for_an_active_response(self) -> None:
        """If another response started meanwhile, response.create waits for its done."""
        tools, sent = coordinator()
        for event in call_events():
            tools.server_event(event)
        tools.server_event({"type": "response.created", "response": {"id": "resp_2"}})
        tools.server_event({"type": "response.done", "response": {"id": "resp_1"}})
        await asyncio.sleep(0.05)
        # resp_1's done cleared the active flag; our answer went out at once.
        assert [e["type"] for e in sent] == ["conversation.item.create", "response.create"]
        await tools.aclose()

    def test_browser_tools_merge_and_clash(self) -> None:
        """Browser tools keep the server's; a reserved name is refused."""
        tools, _ = coordinator()
        mine = {"type": "function", "name": "door"}
        merged = tools.client_event({"type": "session.update", "session": {"tools": [mine]}})
        assert [t["name"] for t in merged["session"]["tools"]] == ["door", "weather"]
        with pytest.raises(InvalidRequest) as info:
            tools.client_event(
                {"type": "response.create", "response": {"tools": [{"name": "weather"}]}}
            )
        assert info.value.code == "tool_name_reserved"

    def test_sessions_shown_without_server_tools(self) -> None:
        """session.created/updated reach the browser without the server's definitions."""
        tools, _ = coordinator()
        event = {
            "type": "session.updated",
            "session": {"tools": [{"name": "weather"}, {"name": "door"}]},
        }
        assert tools.server_event(event) == {
            "type": "session.updated",
            "session": {"tools": [{"name": "door"}]},
        }
