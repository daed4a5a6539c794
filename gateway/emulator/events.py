"""Events on the emulator's data channel: JSON objects with a ``type``, parsed and made here
(not with the gateway's code, which the emulator is a check on)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from gateway.emulator.errors import InvalidRequest, OpenAIError

# Deeper than any real session or event; far below Python's recursion limit.
MAX_DEPTH = 100


def new_event_id() -> str:
    return "event_" + secrets.token_hex(11)


def depth(value: Any) -> int:
    """How deeply ``value``'s objects and lists nest, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        children: Any
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def too_deep(what: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(
        f"The {what} is nested too deeply.",
        code="invalid_value" if param else "invalid_json",
        param=param,
    )


def parse(raw: str | bytes) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raise InvalidRequest("Binary messages are not supported.", code="invalid_event")
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidRequest(
            "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None
    if not isinstance(event, dict):
        raise InvalidRequest("The event must be a JSON object.", code="invalid_event")
    if depth(event) > MAX_DEPTH:
        raise too_deep("event")
    if not isinstance(event.get("type"), str) or not event["type"]:
        raise InvalidRequest(
            "Missing required parameter: 'type'.", code="missing_required_parameter", param="type"
        )
    return event


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def error_event(error: OpenAIError, client_event_id: str | None = None) -> dict[str, Any]:
    return {
        "type": "error",
        "event_id": new_event_id(),
        "error": {**error.error_object(), "event_id": client_event_id},
    }


def client_event_id(event: dict[str, Any]) -> str | None:
    value = event.get("event_id")
    return value if isinstance(value, str) else None
