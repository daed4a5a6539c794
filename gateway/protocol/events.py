"""Realtime events on the ``oai-events`` data channel: parsing, encoding and ``error`` events.

Pure: no I/O. Unknown event types are never rejected here — a relay passes them through.

A client event (browser → upstream) is parsed more strictly than a server event: a key that
appears twice in one object is refused. ``json.loads`` keeps the last duplicate, and the relay
forwards the bytes it received when nothing was rewritten, so an upstream that keeps the first
would act on a value the policy never saw. Server events come from the upstream, which is
trusted, and do not pay for the check.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

from gateway.errors import GatewayError, InvalidRequest
from gateway.types import Event


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


class UndecodableText(bytes):
    """A text data-channel message whose bytes were not valid UTF-8."""


class OversizedMessage(bytes):
    """Stands for a data-channel message discarded while it arrived because it was larger than
    ``limit`` bytes (the size the gateway advertises); none of its bytes are kept."""

    limit: int

    def __new__(cls, limit: int) -> OversizedMessage:
        marker = super().__new__(cls)
        marker.limit = limit
        return marker


# How much of a duplicate key an error message repeats: the key comes from the browser.
_KEY_SHOWN = 64


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses an object naming one key twice."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                shown = key if len(key) <= _KEY_SHOWN else key[:_KEY_SHOWN] + "…"
                raise InvalidRequest(
                    f"The key {shown!r} appears more than once in one object; every key of "
                    "an event may appear only once.",
                    code="invalid_json",
                )
            seen.add(key)
    return obj


# Stateless, so one serves every call; json.loads with a hook would build a decoder per message.
_CLIENT_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)


def parse_event(raw: str | bytes) -> Event:
    """Parse one data-channel message into an event object, or raise :class:`InvalidRequest`.

    For server events; a client event goes through :func:`parse_client_event`.
    """
    return _parse(raw, json.loads)


def parse_client_event(raw: str | bytes) -> Event:
    """:func:`parse_event`, and a key repeated in any object of the event is refused."""
    return _parse(raw, _CLIENT_DECODER.decode)


def _parse(raw: str | bytes, decode: Callable[[str], Any]) -> Event:
    if isinstance(raw, UndecodableText):
        raise InvalidRequest(
            "The message is not valid UTF-8 text; every event must be a JSON object in UTF-8.",
            code="invalid_json",
        )
    if isinstance(raw, OversizedMessage):
        raise InvalidRequest(
            f"The message was larger than this gateway accepts ({raw.limit} bytes, the "
            "a=max-message-size of its answer) and was discarded.",
            code="event_too_large",
        )
    if isinstance(raw, bytes):
        raise InvalidRequest(
            "Binary data-channel messages are not supported; send JSON text events.",
            code="invalid_event",
        )
    try:
        event = decode(raw)
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
