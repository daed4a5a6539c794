"""ToolCoordinator: hides server tool calls, answers once, never over an active response."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.emulator.errors import InvalidRequest as EmulatorInvalidRequest
from gateway.emulator.items import Context, Items
from gateway.errors import InvalidRequest
from gateway.tools import Tool, ToolRegistry, ToolResult, tool
from gateway.tools.coordinator import ToolCoordinator


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


def user_item(item_id: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "user", "content": []}


def conversation_with_a_server_call(tools: ToolCoordinator) -> None:
    """item_user → item_fc (server call) → item_out (its output, injected by the gateway)."""
    tools.server_event(
        {
            "type": "conversation.item.added",
            "previous_item_id": None,
            "item": user_item("item_user"),
        }
    )
    for event in call_events():
        if event["type"] == "conversation.item.added":
            event = {**event, "previous_item_id": "item_user"}
        tools.server_event(event)
    output = {"id": "item_out", "type": "function_call_output", "call_id": "call_1"}
    for kind in ("conversation.item.added", "conversation.item.done"):
        event = {"type": kind, "previous_item_id": "item_fc", "item": output}
        assert tools.server_event(event) is None


class TestHiddenItemIds:
    """Hidden items' ids never reach the browser, and the browser cannot name them."""

    @pytest.mark.parametrize(
        "kind", ["conversation.item.added", "conversation.item.done", "conversation.item.created"]
    )
    async def test_previous_item_id_skips_hidden_items(self, kind: str) -> None:
        """The next visible item follows the last visible one, not the hidden call or output."""
        tools, _ = coordinator()
        conversation_with_a_server_call(tools)
        answer = {"type": kind, "previous_item_id": "item_out", "item": user_item("item_answer")}
        assert tools.server_event(answer) == {**answer, "previous_item_id": "item_user"}
        await tools.aclose()

    async def test_any_event_naming_a_hidden_predecessor_is_rewritten(self) -> None:
        """input_audio_buffer.committed carries previous_item_id too."""
        tools, _ = coordinator()
        conversation_with_a_server_call(tools)
        committed = {
            "type": "input_audio_buffer.committed",
            "previous_item_id": "item_fc",
            "item_id": "item_next",
        }
        assert tools.server_event(committed) == {**committed, "previous_item_id": "item_user"}
        await tools.aclose()

    async def test_visible_predecessors_pass_untouched(self) -> None:
        tools, _ = coordinator()
        conversation_with_a_server_call(tools)
        event = {
            "type": "conversation.item.added",
            "previous_item_id": "item_user",
            "item": user_item("item_2"),
        }
        assert tools.server_event(event) is event
        await tools.aclose()

    async def test_no_visible_predecessor_is_null(self) -> None:
        """A hidden item first in the conversation, or of unknown place, leaves null."""
        tools, _ = coordinator()
        item = {"id": "item_fc", "type": "function_call", "name": "weather", "call_id": "call_1"}
        tools.server_event(
            {"type": "conversation.item.added", "previous_item_id": None, "item": item}
        )
        tools.server_event({"type": "response.output_item.added", "item": {**item, "id": "fc_2"}})
        for hidden in ("item_fc", "fc_2"):
            event = {
                "type": "conversation.item.added",
                "previous_item_id": hidden,
                "item": user_item("item_x"),
            }
            shown = tools.server_event(event)
            assert shown is not None and shown["previous_item_id"] is None
        await tools.aclose()

    def test_a_loop_in_the_upstreams_chain_ends(self) -> None:
        """Items that name each other as predecessors cannot hang the call."""
        tools, _ = coordinator()
        for item_id, previous in (("fc_a", "fc_b"), ("fc_b", "fc_a")):
            item = {"id": item_id, "type": "function_call", "name": "weather", "call_id": item_id}
            tools.server_event(
                {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
            )
        event = {"type": "conversation.item.added", "previous_item_id": "fc_a", "item": {}}
        shown = tools.server_event(event)
        assert shown is not None and shown["previous_item_id"] is None

    @pytest.mark.parametrize(
        "kind",
        ["conversation.item.retrieve", "conversation.item.delete", "conversation.item.truncate"],
    )
    @pytest.mark.parametrize("hidden", ["item_fc", "item_out"])
    async def test_naming_a_hidden_item_looks_like_naming_a_missing_one(
        self, kind: str, hidden: str
    ) -> None:
        """The refusal is word for word what the upstream (the emulator) says for an unknown
        item."""
        tools, _ = coordinator()
        conversation_with_a_server_call(tools)
        event = {"type": kind, "item_id": hidden, "content_index": 0, "audio_end_ms": 0}
        with pytest.raises(InvalidRequest) as ours:
            tools.client_event(event)
        with pytest.raises(EmulatorInvalidRequest) as upstream:
            getattr(Items(Context()), kind.rsplit(".", 1)[1])(event)
        assert ours.value.to_body() == upstream.value.body()
        assert ours.value.code == "item_not_found"
        visible = {**event, "item_id": "item_user"}
        assert tools.client_event(visible) is visible
        await tools.aclose()

    async def test_adding_an_item_after_a_hidden_one_is_refused(self) -> None:
        tools, _ = coordinator()
        conversation_with_a_server_call(tools)
        event = {
            "type": "conversation.item.create",
            "previous_item_id": "item_out",
            "item": user_item("item_new"),
        }
        with pytest.raises(InvalidRequest) as info:
            tools.client_event(event)
        assert (info.value.code, info.value.param) == ("item_not_found", "previous_item_id")
        visible = {**event, "previous_item_id": "item_user"}
        assert tools.client_event(visible) is visible
        await tools.aclose()

    @pytest.mark.parametrize(
        ("entry", "param"),
        [
            ({"type": "item_reference", "id": "item_fc"}, "response.input[1].id"),
            (
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "see"},
                        {"type": "item_reference", "id": "item_out"},
                    ],
                },
                "response.input[1].content[1].id",
            ),
        ],
    )
    async def test_referencing_a_hidden_item_in_a_response_is_refused(
        self, entry: dict[str, Any], param: str
    ) -> None:
        tools, _ = coordinator()
        conversation_with_a_server_call(tools)
        visible = {"type": "item_reference", "id": "item_user"}
        event = {"type": "response.create", "response": {"input": [visible, entry]}}
        with pytest.raises(InvalidRequest) as info:
            tools.client_event(event)
        assert (info.value.code, info.value.param) == ("item_not_found", param)
        fine = {"type": "response.create", "response": {"input": [visible]}}
        assert tools.client_event(fine) is fine
        await tools.aclose()

    def test_odd_values_are_not_hidden_items(self) -> None:
        """Ids that are not strings (unhashable, even) pass on for the upstream to refuse."""
        tools, _ = coordinator()
        for event in (
            {"type": "conversation.item.retrieve", "item_id": {"a": 1}},
            {"type": "conversation.item.create", "previous_item_id": [1], "item": []},
            {"type": "response.create", "response": {"input": [{"id": {}}, "x", None]}},
        ):
            assert tools.client_event(event) is event
        shown = {"type": "conversation.item.added", "previous_item_id": {}, "item": {"id": []}}
        assert tools.server_event(shown) is shown


class TestForgedServerItems:
    """A browser may not pass its own items off as a server tool's."""

    def test_function_call_named_like_a_server_tool(self) -> None:
        tools, _ = coordinator()
        item = {"type": "function_call", "name": "weather", "call_id": "c9", "arguments": "{}"}
        with pytest.raises(InvalidRequest) as info:
            tools.client_event({"type": "conversation.item.create", "item": item})
        assert (info.value.code, info.value.param) == ("tool_name_reserved", "item.name")
        with pytest.raises(InvalidRequest) as info:
            tools.client_event({"type": "response.create", "response": {"input": [item]}})
        assert (info.value.code, info.value.param) == (
            "tool_name_reserved",
            "response.input[0].name",
        )

    async def test_output_for_a_server_call(self) -> None:
        tools, _ = coordinator()
        for event in call_events():
            tools.server_event(event)
        output = {"type": "function_call_output", "call_id": "call_1", "output": "lies"}
        with pytest.raises(InvalidRequest) as info:
            tools.client_event({"type": "conversation.item.create", "item": output})
        assert (info.value.code, info.value.param) == ("tool_call_reserved", "item.call_id")
        with pytest.raises(InvalidRequest) as info:
            tools.client_event({"type": "response.create", "response": {"input": [output]}})
        assert info.value.param == "response.input[0].call_id"
        call = {"type": "function_call", "name": "door", "call_id": "call_1"}
        with pytest.raises(InvalidRequest) as info:
            tools.client_event({"type": "conversation.item.create", "item": call})
        assert info.value.code == "tool_call_reserved"
        await tools.aclose()

    def test_browser_tool_items_pass(self) -> None:
        """The browser's own calls and outputs are the browser's business."""
        tools, _ = coordinator()
        for item in (
            {"type": "function_call", "name": "door", "call_id": "c1", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "open"},
        ):
            event = {"type": "conversation.item.create", "item": item}
            assert tools.client_event(event) is event

    def test_unhashable_tool_name_is_not_a_crash(self) -> None:
        """A browser tool whose name is an object passes on for the upstream to refuse."""
        tools, _ = coordinator()
        event = {"type": "session.update", "session": {"tools": [{"name": {"x": 1}}]}}
        assert tools.client_event(event)["session"]["tools"][0] == {"name": {"x": 1}}
        item = {"type": "function_call", "name": ["weather"], "call_id": {}}
        event = {"type": "conversation.item.create", "item": item}
        assert tools.client_event(event) is event


class TestOneContinuation:
    """A response that called a browser tool and a server tool is continued once."""

    def mixed_done(self, tools: ToolCoordinator) -> None:
        for event in call_events():
            tools.server_event(event)
        tools.server_event(
            {
                "type": "response.done",
                "response": {
                    "id": "resp_1",
                    "output": [
                        {"type": "function_call", "name": "weather"},
                        {"type": "function_call", "name": "open_map", "call_id": "call_b"},
                    ],
                },
            }
        )

    async def test_the_browsers_response_create_continues_it(self) -> None:
        tools, sent = coordinator()
        self.mixed_done(tools)
        for _ in range(50):
            if sent:
                break
            await asyncio.sleep(0.01)
        assert [e["type"] for e in sent] == ["conversation.item.create"]
        # The browser answers its call and asks for the next response: that one is enough.
        tools.client_event({"type": "response.create"})
        await asyncio.sleep(0.05)
        assert [e["type"] for e in sent] == ["conversation.item.create"]
        await tools.aclose()

    async def test_a_browser_that_does_not_continue_is_not_waited_for_long(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("gateway.tools.coordinator.BROWSER_GRACE", 0.05)
        tools, sent = coordinator()
        self.mixed_done(tools)
        for _ in range(50):
            if len(sent) == 2:
                break
            await asyncio.sleep(0.01)
        assert [e["type"] for e in sent] == ["conversation.item.create", "response.create"]

    async def test_a_browser_that_continued_first_gets_the_output_answered_after(self) -> None:
        tools, sent = coordinator()
        gate = asyncio.Event()

        async def slow(t: Tool, args: str) -> ToolResult:
            await gate.wait()
            return ToolResult(output="{}", status="ok", seconds=0.0)

        tools._run = slow
        self.mixed_done(tools)
        tools.client_event({"type": "response.create"})  # before the server tool finished
        gate.set()
        for _ in range(50):
            if len(sent) == 2:
                break
            await asyncio.sleep(0.01)
        assert [e["type"] for e in sent] == ["conversation.item.create", "response.create"]
