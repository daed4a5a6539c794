"""Server tools in GPT-Live sessions, the pure parts: the delegate's tools at creation, the
Live coordinator on synthetic streams, and the emulator's Responses delegate against OpenAI's
SDK types."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pydantic
import pytest
from openai.types.live import ResponseEvent
from openai.types.live.delegation_created_event import DelegationCreatedEvent
from openai.types.responses import ResponseStreamEvent

from gateway.emulator.delegation import DelegatedStream, ResponsesDelegate
from gateway.emulator.errors import InvalidRequest as EmulatorInvalidRequest
from gateway.emulator.live import DelegatedResponse, LiveConversation
from gateway.emulator.vad import VadConfig
from gateway.errors import InvalidRequest
from gateway.protocol import live
from gateway.tools import Tool, ToolRegistry, ToolResult, tool
from gateway.tools.live import LiveToolCoordinator

STREAM_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


@tool
def weather(city: str) -> str:
    """Weather in a city."""
    return f"sunny in {city}"


SERVER = ToolRegistry([weather]).definitions()
APP_TOOL = {"type": "function", "name": "show_map", "parameters": {"type": "object"}}
CONFIG: dict[str, Any] = {"model": "gpt-5", "tools": [APP_TOOL, *SERVER]}


def delegated(tools: list[Any] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {"model": "gpt-5"}
    if tools is not None:
        responses["tools"] = tools
    return {"model": "gpt-live-1", "delegation": {"type": "responses", "responses": responses}}


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def every(stream: DelegatedStream) -> list[dict[str, Any]]:
    return [*stream.opening, *stream.deltas, *stream.closing]


# -- the session sent upstream -------------------------------------------------------------------


class TestServerToolsAtCreation:
    def test_server_tools_follow_the_apps_in_the_delegates_tools(self) -> None:
        app = {**delegated([APP_TOOL]), "client": {"data_channel": {"allowed_client_events": []}}}
        upstream = live.upstream_session(app, SERVER)
        assert upstream["delegation"]["responses"]["tools"] == [APP_TOOL, *SERVER]
        assert "client" not in upstream
        assert app["delegation"]["responses"]["tools"] == [APP_TOOL]  # the app's is untouched
        assert (
            live.upstream_session(delegated(), SERVER)["delegation"]["responses"]["tools"] == SERVER
        )

    def test_only_a_responses_delegate_gets_them(self) -> None:
        for session in (
            {"model": "gpt-live-1"},
            {"model": "m", "delegation": {"type": "client"}},
            {"model": "m", "delegation": {"type": "responses", "responses": "odd"}},
        ):
            assert live.upstream_session(session, SERVER) == session

    def test_an_app_tool_with_a_server_tools_name_is_refused(self) -> None:
        clash = {"type": "function", "name": "weather"}
        with pytest.raises(InvalidRequest) as caught:
            live.upstream_session(delegated([APP_TOOL, clash]), SERVER)
        assert caught.value.code == "tool_name_reserved"
        assert caught.value.param == "session.delegation.responses.tools[1].name"
        assert caught.value.status == 400

    def test_the_browser_is_shown_the_session_without_them(self) -> None:
        session = live.upstream_session(delegated([APP_TOOL]), SERVER)
        shown = live.without_tools(session, frozenset({"weather"}))
        assert shown["delegation"]["responses"]["tools"] == [APP_TOOL]
        assert session["delegation"]["responses"]["tools"] == [APP_TOOL, *SERVER]
        assert live.without_tools({"model": "m"}, frozenset({"weather"})) == {"model": "m"}


# -- the gateway's Live coordinator ------------------------------------------------------------


def coordinator(
    runs: list[str] | None = None,
) -> tuple[LiveToolCoordinator, list[dict[str, Any]], list[tuple[str, str]]]:
    sent: list[dict[str, Any]] = []
    results: list[tuple[str, str]] = []

    async def runner(t: Tool, args: str) -> ToolResult:
        if runs is not None:
            runs.append(args)
        return ToolResult(output=json.dumps({"args": json.loads(args)}), status="ok", seconds=0.0)

    tools = LiveToolCoordinator(
        ToolRegistry([weather]),
        sent.append,
        runner=runner,
        on_result=lambda call, result: results.append((call.call_id, result.output)),
    )
    return tools, sent, results


def server_call_stream(text: str = 'weather {"city":"Oslo"}') -> DelegatedStream:
    delegate = ResponsesDelegate()
    delegate.add_item(user(text))
    return delegate.respond(CONFIG, offset_ms=0)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class TestLiveToolCoordinator:
    async def test_a_server_call_is_hidden_run_once_and_answered_after_the_response(self) -> None:
        runs: list[str] = []
        tools, sent, results = coordinator(runs)
        stream = server_call_stream()
        shown = [e for e in every(stream) if tools.server_event(e) is not None]
        kinds = [e["event"]["type"] if e["type"] == "response.event" else e["type"] for e in shown]
        assert kinds == [
            "session.delegation.created",
            "response.created",
            "response.in_progress",
            "response.completed",
        ]
        await settle()
        assert runs == ['{"city":"Oslo"}']  # once, though both the done events carry it
        (output, create) = sent
        call_id = output["item"]["call_id"]
        assert output["type"] == "response.item.create"
        assert output["item"] == {
            "type": "function_call_output",
            "call_id": call_id,
            "output": json.dumps({"args": {"city": "Oslo"}}),
        }
        assert create["type"] == "response.create" and set(create) == {"type", "event_id"}
        assert results == [(call_id, output["item"]["output"])]
        # An error answering the gateway's own command reaches no one.
        error = {
            "type": "error",
            "event_id": "evt_e",
            "client_event_id": create["event_id"],
            "error": {"type": "invalid_request_error", "code": "x", "message": "m"},
        }
        assert tools.server_event(error) is None
        assert tools.server_event({**error, "client_event_id": "evt_app"}) is not None

    async def test_the_answer_waits_for_the_response_to_complete(self) -> None:
        tools, sent, _ = coordinator()
        stream = server_call_stream()
        for event in every(stream)[:-1]:
            tools.server_event(event)
        await settle()
        assert sent == []
        tools.server_event(stream.closing[-1])
        await settle()
        assert [e["type"] for e in sent] == ["response.item.create", "response.create"]

    async def test_a_stream_without_arguments_done_still_runs_the_call(self) -> None:
        runs: list[str] = []
        tools, sent, _ = coordinator(runs)
        stream = server_call_stream()
        for event in every(stream):
            if event.get("event", {}).get("type") != "response.function_call_arguments.done":
                tools.server_event(event)
        await settle()
        assert runs == ['{"city":"Oslo"}'] and len(sent) == 2

    async def test_the_apps_own_calls_pass(self) -> None:
        tools, sent, _ = coordinator()
        stream = server_call_stream("please show_map")
        assert all(tools.server_event(e) is e for e in every(stream))
        await settle()
        assert sent == []

    async def test_a_client_may_not_forge_a_server_call(self) -> None:
        tools, _, _ = coordinator()
        stream = server_call_stream()
        for event in every(stream):
            tools.server_event(event)
        call_id = stream.closing[1]["event"]["item"]["call_id"]
        forged = {"type": "function_call_output", "call_id": call_id, "output": "{}"}
        with pytest.raises(InvalidRequest) as caught:
            tools.client_event({"type": "response.item.create", "item": forged})
        assert (caught.value.code, caught.value.param) == ("tool_call_reserved", "item.call_id")
        call = {"type": "function_call", "call_id": "c", "name": "weather", "arguments": "{}"}
        with pytest.raises(InvalidRequest) as caught:
            tools.client_event({"type": "response.item.create", "item": call})
        assert caught.value.code == "tool_name_reserved"
        own = {"type": "response.item.create", "item": {**forged, "call_id": "call_app"}}
        assert tools.client_event(own) is own
        await tools.aclose()

    def test_a_trusted_update_of_the_delegates_tools_keeps_the_servers(self) -> None:
        tools, _, _ = coordinator()
        update = {
            "type": "session.update",
            "session": {"delegation": {"responses": {"tools": [APP_TOOL]}}},
        }
        merged = tools.client_event(update)
        assert merged["session"]["delegation"] == {"responses": {"tools": [APP_TOOL, *SERVER]}}
        clash = {
            "type": "session.update",
            "session": {"delegation": {"responses": {"tools": SERVER}}},
        }
        with pytest.raises(InvalidRequest):
            tools.client_event(clash)
        other = {"type": "session.update", "session": {"triggers": []}}
        assert tools.client_event(other) is other

    def test_sessions_shown_to_the_browser_list_no_server_tool(self) -> None:
        tools, _, _ = coordinator()
        session = live.upstream_session(delegated([APP_TOOL]), SERVER)
        shown = tools.shown({"type": "session.started", "session": session})
        assert shown["session"]["delegation"]["responses"]["tools"] == [APP_TOOL]
        plain = {"type": "session.started", "session": {"model": "m"}}
        assert tools.shown(plain) is plain


# -- the emulator's delegate -------------------------------------------------------------------


def check_shapes(stream: DelegatedStream) -> list[str]:
    """The nested types, each event checked against OpenAI's SDK types."""
    kinds = []
    for event in every(stream):
        if event["type"] == "session.delegation.created":
            DelegationCreatedEvent.model_validate(event)
            continue
        ResponseEvent.model_validate(event)
        STREAM_EVENT.validate_python(event["event"])
        assert event["delegation_id"] == stream.delegation_id
        kinds.append(event["event"]["type"])
    sequence = [e["event"]["sequence_number"] for e in every(stream) if "event" in e]
    assert sequence == list(range(len(sequence)))
    return kinds


class TestEmulatorDelegate:
    def test_a_named_tool_is_called_and_its_output_answered(self) -> None:
        delegate = ResponsesDelegate()
        delegate.add_item(user('weather {"city": "Oslo"}'))
        call = delegate.respond(CONFIG, offset_ms=120)
        assert call.opening[0]["delegation"]["response_id"] == call.response_id
        assert call.opening[0]["offset_ms"] == 120
        assert check_shapes(call) == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
        done = call.closing[1]["event"]["item"]
        assert (done["name"], done["arguments"], done["status"]) == (
            "weather",
            '{"city":"Oslo"}',
            "completed",
        )
        assert call.answer is None
        with pytest.raises(EmulatorInvalidRequest):
            delegate.respond(CONFIG, offset_ms=130)  # still streaming
        delegate.finished(call)
        with pytest.raises(EmulatorInvalidRequest) as caught:
            delegate.add_item({"type": "function_call_output", "call_id": "call_no", "output": "x"})
        assert caught.value.param == "item.call_id"
        delegate.add_item(
            {"type": "function_call_output", "call_id": done["call_id"], "output": '"sunny"'}
        )
        answer = delegate.respond(CONFIG, offset_ms=200)
        # The same delegation goes on: no new session.delegation.created.
        assert answer.delegation_id == call.delegation_id
        assert "session.delegation.created" not in [e["type"] for e in answer.opening]
        assert check_shapes(answer)[-1] == "response.completed"
        assert answer.answer is not None and '"sunny"' in answer.answer
        usage = answer.closing[-1]["event"]["response"]["usage"]
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0

    def test_text_without_a_tool_is_echoed(self) -> None:
        delegate = ResponsesDelegate()
        delegate.add_item(user("hello there"))
        stream = delegate.respond({"model": "gpt-5", "tool_choice": "none", **CONFIG}, offset_ms=0)
        assert "response.output_text.done" in check_shapes(stream)
        assert stream.answer == "(emulator) You said: hello there"


class TestEmulatorLiveConversation:
    def test_delegated_commands_stream_and_the_answer_is_spoken(self) -> None:
        conversation = LiveConversation(
            "live_1", {**delegated([APP_TOOL]), "input": []}, vad=VadConfig(), clock=lambda: 0.0
        )
        assert (
            conversation.handle({"type": "response.item.create", "item": user("hi")}).events == []
        )
        fx = conversation.handle({"type": "response.create"})
        assert fx.events[0]["type"] == "session.delegation.created"
        response = fx.start
        assert isinstance(response, DelegatedResponse)
        deltas = [response.delta_event() for _ in response.chunks]
        assert all(d is not None and d["type"] == "response.event" for d in deltas)
        end = conversation.complete(response)
        assert end.events[-1]["event"]["type"] == "response.completed"
        assert end.play is not None and end.play.clip is not None  # the Live model speaks it
        spoken = end.start
        assert spoken is not None and spoken.delta_event() is not None

    def test_without_responses_delegation_the_commands_are_refused(self) -> None:
        conversation = LiveConversation("live_2", {"model": "m"}, vad=VadConfig())
        with pytest.raises(EmulatorInvalidRequest) as caught:
            conversation.handle({"type": "response.create"})
        assert caught.value.code == "invalid_delegation"


class TestOneContinuation:
    """A delegated response that called the app's tool and a server tool continues once."""

    def mixed(self) -> DelegatedStream:
        stream = server_call_stream()
        completed = stream.closing[-1]["event"]
        assert completed["type"] == "response.completed"
        completed["response"]["output"].append(
            {"type": "function_call", "name": "show_map", "call_id": "call_app", "arguments": "{}"}
        )
        return stream

    async def test_the_browsers_response_create_continues_it(self) -> None:
        tools, sent, _ = coordinator()
        for event in every(self.mixed()):
            tools.server_event(event)
        await settle()
        assert [e["type"] for e in sent] == ["response.item.create"]
        tools.client_event({"type": "response.create"})
        await settle()
        assert [e["type"] for e in sent] == ["response.item.create"]
        await tools.aclose()

    async def test_a_silent_browser_is_not_waited_for_long(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("gateway.tools.coordinator.BROWSER_GRACE", 0.05)
        tools, sent, _ = coordinator()
        for event in every(self.mixed()):
            tools.server_event(event)
        await asyncio.sleep(0.15)
        assert [e["type"] for e in sent] == ["response.item.create", "response.create"]
