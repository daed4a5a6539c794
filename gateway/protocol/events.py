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
    if not isinstance(event, dict):
        raise InvalidRequest("An event must be a JSON object.", code="invalid_event")
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
