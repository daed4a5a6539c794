"""Realtime events on the ``oai-events`` data channel: parsing, encoding and ``error`` events.

Pure: no I/O. Unknown event types are never rejected here — a relay passes them through.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from gateway.errors import GatewayError, InvalidRequest

Event = dict[str, Any]


def new_event_id() -> str:
    return "event_" + secrets.token_hex(11)


# Deeper than any real event or session (a tool's JSON Schema nests a few dozen levels at most),
# and far enough below Python's recursion limit that copying or merging one cannot hit it.
MAX_NESTING = 100


def nesting(value: Any, limit: int = MAX_NESTING) -> int:
    """How deeply ``value``'s objects and lists nest (a scalar is 0); stops counting past
    ``limit``. Iterative, so no input can exhaust the stack."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def too_deep(what: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(
        f"The {what} is nested too deeply (more than {MAX_NESTING} levels).",
        code="invalid_value" if param else "invalid_json",
        param=param,
    )


def parse_event(raw: str | bytes) -> Event:
    """Parse one data-channel message into an event object, or raise :class:`InvalidRequest`."""
    if isinstance(raw, bytes):
        raise InvalidRequest(
            "Binary data-channel messages are not supported; send JSON text events.",
            code="invalid_event",
        )
    try:
        event = json.loads(raw)
    except ValueError:
        raise InvalidRequest(
            "The message is not valid JSON; every event must be a JSON object.",
            code="invalid_json",
        ) from None
    except RecursionError:
        raise too_deep("event") from None
    if not isinstance(event, dict):
        raise InvalidRequest("An event must be a JSON object.", code="invalid_event")
    if nesting(event) > MAX_NESTING:
        raise too_deep("event")
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidRequest(
            "Missing required parameter: 'type'.", code="missing_required_parameter", param="type"
        )
    return event


def encode_event(event: Event) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def error_event(error: GatewayError, *, client_event_id: str | None = None) -> Event:
    """An OpenAI-shaped ``error`` server event; ``client_event_id`` echoes the offending event."""
    body = error.to_body()["error"]
    body["event_id"] = client_event_id
    return {"type": "error", "event_id": new_event_id(), "error": body}


def client_event_id(event: Event) -> str | None:
    value = event.get("event_id")
    return value if isinstance(value, str) else None
