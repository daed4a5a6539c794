"""The Responses backend of an emulated Live session under Responses delegation.

Pure: no I/O, no clocks (the caller passes the session time). ``response.item.create`` adds an
input item and ``response.create`` asks for a response (``../shared/live-protocol.md`` §3a);
the answer is a Responses stream, each event wrapped in Live's ``response.event`` with the
delegation's id (§3b), shaped as OpenAI's SDK types them (``openai.types.live.ResponseEvent``
around ``openai.types.responses.ResponseStreamEvent``).

The decision mirrors the Realtime emulator's: a user message naming one of the delegation's
function tools gets a call to it (its arguments are the first JSON object in the text); the
outputs of those calls, once all are in, get a text answer quoting them; any other input gets a
text answer echoing it. A new task opens a delegation (``session.delegation.created``); the
answer to tool outputs continues the delegation that made the calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gateway.emulator.errors import InvalidRequest
from gateway.emulator.items import event, text_tokens
from gateway.emulator.responses import _chunks, find_json_object
from gateway.emulator.session import dig, function_tools, new_id
from gateway.types import Event


@dataclass
class DelegatedStream:
    """One Responses stream, already wrapped: ``opening`` at once, ``deltas`` paced as a
    model's tokens, ``closing`` at the end. ``answer`` is the text the Live model then speaks
    (``None`` for a function call: the delegate waits for its output)."""

    delegation_id: str
    response_id: str
    opening: list[Event] = field(default_factory=list)
    deltas: list[Event] = field(default_factory=list)
    closing: list[Event] = field(default_factory=list)
    answer: str | None = None


@dataclass
class _Builder:
    """The events of one Responses response, numbered as the API numbers them."""

    delegation_id: str
    response_id: str
    config: dict[str, Any]
    previous_response_id: str | None
    created_at: int
    sequence: int = 0

    def wrap(self, kind: str, **fields: Any) -> Event:
        nested = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event("response.event", delegation_id=self.delegation_id, event=nested)

    def snapshot(self, status: str, usage: dict[str, Any] | None) -> dict[str, Any]:
        # Live's lifecycle snapshots "omit input and clear instructions, tools, and output":
        # the granular events carry the content (openai.types.live.ResponseEvent).
        config = self.config
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "completed_at": self.created_at if status == "completed" else None,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "max_output_tokens": config.get("max_output_tokens"),
            "model": config.get("model"),
            "output": [],
            "parallel_tool_calls": config.get("parallel_tool_calls", True),
            "previous_response_id": self.previous_response_id,
            "tool_choice": config.get("tool_choice", "auto"),
            "tools": [],
            "usage": usage,
            "metadata": {},
        }


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _text_of(item: dict[str, Any]) -> str:
    """A message item's text: a string content, or its text parts joined."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return " ".join(
        str(part["text"])
        for part in content
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    )


def _pick_tool(config: dict[str, Any], text: str) -> str | None:
    tools = function_tools(config.get("tools"))
    choice = config.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    names = [str(t["name"]) for t in tools]
    if (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and choice.get("name") in names
    ):
        return str(choice["name"])
    # Longest first, so "get_weather_forecast" wins over "get_weather" when both are named.
    for name in sorted(names, key=len, reverse=True):
        if name in text:
            return name
    return names[0] if choice == "required" else None


class ResponsesDelegate:
    """The delegated Responses conversation of one Live session."""

    def __init__(self) -> None:
        self._tokens = 0  # the conversation so far, as the next response's input
        self._new_text: str | None = None  # the newest user text since the last response
        self._calls: dict[str, str] = {}  # call_id → tool name, of the waiting delegation
        self._outputs: dict[str, str] = {}  # call_id → output, as they come in
        self._waiting: str | None = None  # the delegation waiting for tool outputs
        self._previous: str | None = None  # the last response's id
        self.active: DelegatedStream | None = None

    def add_item(self, item: Any) -> None:
        """``response.item.create``'s item; raises the error the command gets."""
        if not isinstance(item, dict):
            raise InvalidRequest(
                "Missing required parameter: 'item'.",
                code="missing_required_parameter",
                param="item",
            )
        kind = item.get("type", "message")
        if kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or call_id not in self._calls:
                # The Responses API's words for an output that answers no call.
                raise InvalidRequest(
                    f"No tool call found for function call output with call_id {call_id}.",
                    code="invalid_value",
                    param="item.call_id",
                )
            output = item.get("output")
            self._outputs[call_id] = output if isinstance(output, str) else str(output)
            self._tokens += text_tokens(self._outputs[call_id])
            return
        if kind == "message":
            text = _text_of(item)
            self._tokens += text_tokens(text)
            if item.get("role", "user") == "user":
                self._new_text = text

    def respond(self, config: Any, *, offset_ms: int, now: float | None = None) -> DelegatedStream:
        """``response.create``: the stream that answers what came since the last one."""
        if self.active is not None:
            raise InvalidRequest(
                "Conversation already has an active response in progress.",
                code="conversation_already_has_active_response",
            )
        config = config if isinstance(config, dict) else {}
        created_at = int(time.time() if now is None else now)
        if self._waiting is not None and self._outputs:
            missing = [c for c in self._calls if c not in self._outputs]
            if missing:
                raise InvalidRequest(
                    f"No tool output found for function call {missing[0]}.",
                    code="invalid_value",
                    param="item.call_id",
                )
            builder = _Builder(
                self._waiting, new_id("resp_", 24), config, self._previous, created_at
            )
            quoted = "; ".join(self._outputs.values())
            stream = self._text(builder, f"(emulator) The tool returned: {quoted}")
            self._calls, self._outputs, self._waiting = {}, {}, None
        else:
            builder = _Builder(
                new_id("del_", 24), new_id("resp_", 24), config, self._previous, created_at
            )
            text = self._new_text
            tool = _pick_tool(config, text) if text is not None else None
            opened = event(
                "session.delegation.created",
                delegation={
                    "id": builder.delegation_id,
                    "type": "delegation",
                    "target": "responses",
                    "response_id": builder.response_id,
                },
                offset_ms=offset_ms,
            )
            if tool is not None:
                assert text is not None
                stream = self._call(builder, tool, find_json_object(text) or "{}")
            elif text is not None:
                stream = self._text(builder, f"(emulator) You said: {text}")
            else:
                stream = self._text(
                    builder, "(emulator) Hello! This is the Live emulator's Responses delegate."
                )
            stream.opening.insert(0, opened)
        self._new_text = None
        self._previous = builder.response_id
        self.active = stream
        return stream

    def finished(self, stream: DelegatedStream) -> None:
        if self.active is stream:
            self.active = None

    def _call(self, b: _Builder, name: str, arguments: str) -> DelegatedStream:
        call_id = new_id("call_", 24)
        item: dict[str, Any] = {
            "id": new_id("fc_", 24),
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": call_id,
            "name": name,
        }
        where = {"item_id": item["id"], "output_index": 0}
        stream = DelegatedStream(b.delegation_id, b.response_id)
        stream.opening = [
            b.wrap("response.created", response=b.snapshot("in_progress", None)),
            b.wrap("response.in_progress", response=b.snapshot("in_progress", None)),
            b.wrap("response.output_item.added", output_index=0, item=dict(item)),
        ]
        stream.deltas = [
            b.wrap("response.function_call_arguments.delta", **where, delta=piece)
            for piece in _chunks(arguments, 4)
        ]
        done = {**item, "status": "completed", "arguments": arguments}
        usage = _usage(self._tokens, text_tokens(arguments))
        stream.closing = [
            b.wrap("response.function_call_arguments.done", **where, arguments=arguments),
            b.wrap("response.output_item.done", output_index=0, item=done),
            b.wrap("response.completed", response=b.snapshot("completed", usage)),
        ]
        self._tokens += text_tokens(arguments)
        self._calls = {call_id: name}
        self._outputs = {}
        self._waiting = b.delegation_id
        return stream

    def _text(self, b: _Builder, text: str) -> DelegatedStream:
        item: dict[str, Any] = {
            "id": new_id("msg_", 24),
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        stream = DelegatedStream(b.delegation_id, b.response_id, answer=text)
        stream.opening = [
            b.wrap("response.created", response=b.snapshot("in_progress", None)),
            b.wrap("response.in_progress", response=b.snapshot("in_progress", None)),
            b.wrap("response.output_item.added", output_index=0, item=dict(item)),
            b.wrap("response.content_part.added", **where, part=part),
        ]
        stream.deltas = [
            b.wrap("response.output_text.delta", **where, delta=piece, logprobs=[])
            for piece in _chunks(text)
        ]
        full = {**part, "text": text}
        usage = _usage(self._tokens, text_tokens(text))
        stream.closing = [
            b.wrap("response.output_text.done", **where, text=text, logprobs=[]),
            b.wrap("response.content_part.done", **where, part=full),
            b.wrap(
                "response.output_item.done",
                output_index=0,
                item={**item, "status": "completed", "content": [full]},
            ),
            b.wrap("response.completed", response=b.snapshot("completed", usage)),
        ]
        self._tokens += text_tokens(text)
        return stream


def responses_config(session: dict[str, Any]) -> Any:
    """The session's ``delegation.responses`` settings (``None`` if it has none)."""
    return dig(session, "delegation", "responses")
