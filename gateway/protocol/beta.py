"""Translation between the beta (2024-25) and GA shapes of the OpenAI Realtime API.

The gateway always speaks GA to OpenAI. The beta interface was shut down on 2026-05-12, but
browser apps written for it (e.g. openai-realtime-console) still send flat ``session.update``
bodies and listen for ``response.text.delta``. These functions keep such apps working through the
gateway: client events go beta → GA, server events go GA → beta, and the beta
``/v1/realtime/sessions`` exchange maps onto GA ``/v1/realtime/client_secrets``.

Pure: no I/O, stdlib only. No function mutates its input, and results share no mutable values
with it, so callers (policy, inspector) may edit them freely. Shapes follow openai-python
``types/beta/realtime`` (beta) and ``types/realtime`` (GA); see ``protocol.md`` §2 and §4.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from gateway.protocol.paths import MISSING, get_path
from gateway.types import Event

BETA_RENAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "response.output_text.delta": "response.text.delta",
        "response.output_text.done": "response.text.done",
        "response.output_audio.delta": "response.audio.delta",
        "response.output_audio.done": "response.audio.done",
        "response.output_audio_transcript.delta": "response.audio_transcript.delta",
        "response.output_audio_transcript.done": "response.audio_transcript.done",
        "conversation.item.added": "conversation.item.created",
    }
)
"""GA server event type → the beta name a beta client listens for."""

# Beta had one item event, `conversation.item.created`, which `conversation.item.added` becomes.
# The finished item still reaches a beta client the way it always did (response.output_item.done
# for model output, ...input_audio_transcription.completed for user audio), so forwarding `done`
# as well would show clients a second copy of every item (renamed) or a stray event (unrenamed).
_DROPPED_SERVER_EVENTS: Final = frozenset({"conversation.item.done"})


# Beta pcm16 is 24 kHz mono, the only rate GA audio/pcm allows.
_FORMAT_TO_GA: Final[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
    {
        "pcm16": {"type": "audio/pcm", "rate": 24000},
        "g711_ulaw": {"type": "audio/pcmu"},
        "g711_alaw": {"type": "audio/pcma"},
    }
)
_FORMAT_TO_BETA: Final[Mapping[str, str]] = MappingProxyType(
    {fmt["type"]: name for name, fmt in _FORMAT_TO_GA.items()}
)

# Only assistant content was renamed: user/system parts are input_text/input_audio in both versions.
_ASSISTANT_PART_TO_GA: Final[Mapping[str, str]] = MappingProxyType(
    {"text": "output_text", "audio": "output_audio"}
)
_PART_TO_BETA: Final[Mapping[str, str]] = MappingProxyType(
    {ga: beta for beta, ga in _ASSISTANT_PART_TO_GA.items()}
)

# What a beta server reported for an audio session; beta rejected ["audio"] on its own.
_BETA_AUDIO_MODALITIES: Final = ("text", "audio")


def _same(value: Any) -> Any:
    return copy.deepcopy(value)


def _format_to_ga(value: Any) -> Any:
    # Anything unknown goes through as is, so OpenAI reports the bad value instead of us hiding it.
    if isinstance(value, str) and value in _FORMAT_TO_GA:
        return dict(_FORMAT_TO_GA[value])
    return copy.deepcopy(value)


def _format_to_beta(value: Any) -> Any:
    if isinstance(value, Mapping) and value.get("type") in _FORMAT_TO_BETA:
        return _FORMAT_TO_BETA[value["type"]]
    return copy.deepcopy(value)


def _modalities_to_ga(value: Any) -> Any:
    # GA cannot ask for both: ["audio"] already includes a transcript, which is what beta's
    # ["text", "audio"] produced.
    if isinstance(value, list) and "audio" in value:
        return ["audio"]
    return copy.deepcopy(value)


def _modalities_to_beta(value: Any) -> Any:
    if isinstance(value, list) and "audio" in value:
        return list(_BETA_AUDIO_MODALITIES)
    return copy.deepcopy(value)


def _tool_choice_to_ga(value: Any) -> Any:
    # The beta reference documented {"type": "function", "function": {"name": ...}}; GA only takes
    # the flat {"type": "function", "name": ...}.
    if isinstance(value, Mapping) and value.get("type") == "function" and "name" not in value:
        function = value.get("function")
        if isinstance(function, Mapping) and "name" in function:
            return {"type": "function", "name": function["name"]}
    return copy.deepcopy(value)


class _Field(NamedTuple):
    beta: str
    ga_path: tuple[str, ...]
    to_ga: Callable[[Any], Any] = _same
    to_beta: Callable[[Any], Any] = _same


# One table drives both directions, so the two stay inverse by construction.
_SESSION_FIELDS: Final = (
    _Field("model", ("model",)),
    _Field("modalities", ("output_modalities",), _modalities_to_ga, _modalities_to_beta),
    _Field("instructions", ("instructions",)),
    _Field("voice", ("audio", "output", "voice")),
    _Field("input_audio_format", ("audio", "input", "format"), _format_to_ga, _format_to_beta),
    _Field("output_audio_format", ("audio", "output", "format"), _format_to_ga, _format_to_beta),
    _Field("input_audio_transcription", ("audio", "input", "transcription")),
    _Field("input_audio_noise_reduction", ("audio", "input", "noise_reduction")),
    _Field("turn_detection", ("audio", "input", "turn_detection")),
    _Field("tools", ("tools",)),
    _Field("tool_choice", ("tool_choice",), _tool_choice_to_ga),
    _Field("max_response_output_tokens", ("max_output_tokens",)),
    _Field("speed", ("audio", "output", "speed")),
    _Field("tracing", ("tracing",)),
)

_BETA_DEFAULT_TEMPERATURE: Final = 0.8


def _put(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = target
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


def session_from_beta(flat: Mapping[str, Any]) -> dict[str, Any]:
    """A beta session config (``/v1/realtime/sessions`` body or ``session.update`` session) → GA.

    Only the fields present are set, because a beta ``session.update`` is a partial update. ``null``
    stays ``null`` (it turns a feature off). Fields GA lacks (``temperature``, ``id``, ``object``,
    ``client_secret``) and unknown keys are dropped: GA rejects unknown parameters.
    """
    ga: dict[str, Any] = {"type": "realtime"}
    for field in _SESSION_FIELDS:
        if field.beta in flat:
            _put(ga, field.ga_path, field.to_ga(flat[field.beta]))
    return ga


def session_to_beta(ga: Mapping[str, Any]) -> dict[str, Any]:
    """A GA session object → the flat beta session object (``session.created`` and friends).

    ``temperature`` is always 0.8: GA has none, and beta clients expect the field.
    """
    beta: dict[str, Any] = {}
    if "id" in ga:
        beta["id"] = ga["id"]
    beta["object"] = "realtime.session"
    for field in _SESSION_FIELDS:
        value = get_path(ga, field.ga_path)
        if value is not MISSING:
            beta[field.beta] = field.to_beta(value)
    beta["temperature"] = _BETA_DEFAULT_TEMPERATURE
    return beta


def beta_session_paths(ga_path: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """Where a flat beta session sets the GA field ``ga_path``, or any part of it.

    ``("audio", "output", "voice")`` → ``(("voice",),)``; ``("audio",)`` → every beta field that
    lands under ``audio``; ``("audio", "input", "turn_detection", "type")`` →
    ``(("turn_detection", "type"),)``. A GA field beta lacks (``prompt``) gives ``()``.
    """
    found: list[tuple[str, ...]] = []
    for field in _SESSION_FIELDS:
        if ga_path[: len(field.ga_path)] == field.ga_path:
            found.append((field.beta, *ga_path[len(field.ga_path) :]))
        elif field.ga_path[: len(ga_path)] == ga_path:
            found.append((field.beta,))
    return tuple(found)


def client_secret_request_from_beta(body: Mapping[str, Any]) -> dict[str, Any]:
    """A beta ``POST /v1/realtime/sessions`` body → a GA ``/v1/realtime/client_secrets`` body."""
    request: dict[str, Any] = {"session": session_from_beta(body)}
    expires_after = get_path(body, ("client_secret", "expires_after"))
    if isinstance(expires_after, Mapping):
        request["expires_after"] = copy.deepcopy(dict(expires_after))
    return request


def client_secret_response_to_beta(response: Mapping[str, Any]) -> dict[str, Any]:
    """A GA ``{value, expires_at, session}`` → the beta session object with ``client_secret``."""
    session = response.get("session")
    beta = session_to_beta(session if isinstance(session, Mapping) else {})
    beta["client_secret"] = {
        "value": response.get("value"),
        "expires_at": response.get("expires_at"),
    }
    return beta


def _retype_parts(parts: Any, mapping: Mapping[str, str]) -> None:
    if isinstance(parts, list):
        for part in parts:
            _retype_part(part, mapping)


def _retype_part(part: Any, mapping: Mapping[str, str]) -> None:
    if isinstance(part, dict) and part.get("type") in mapping:
        part["type"] = mapping[part["type"]]


def item_to_ga(item: Mapping[str, Any]) -> dict[str, Any]:
    """A beta conversation item → GA: assistant ``text``/``audio`` parts become ``output_*``."""
    out = copy.deepcopy(dict(item))
    if out.get("role") == "assistant":
        _retype_parts(out.get("content"), _ASSISTANT_PART_TO_GA)
    return out


def item_to_beta(item: Mapping[str, Any]) -> dict[str, Any]:
    """A GA conversation item → beta: ``output_text``/``output_audio`` become ``text``/``audio``."""
    out = copy.deepcopy(dict(item))
    _retype_parts(out.get("content"), _PART_TO_BETA)
    return out


def _response_params_to_ga(response: dict[str, Any]) -> None:
    if "modalities" in response:
        response["output_modalities"] = _modalities_to_ga(response.pop("modalities"))
    if "voice" in response:
        _put(response, ("audio", "output", "voice"), response.pop("voice"))
    if "output_audio_format" in response:
        fmt = _format_to_ga(response.pop("output_audio_format"))
        _put(response, ("audio", "output", "format"), fmt)
    if "max_response_output_tokens" in response:
        response["max_output_tokens"] = response.pop("max_response_output_tokens")
    response.pop("temperature", None)
    if "tool_choice" in response:
        response["tool_choice"] = _tool_choice_to_ga(response["tool_choice"])
    items = response.get("input")
    if isinstance(items, list):
        response["input"] = [item_to_ga(i) if isinstance(i, Mapping) else i for i in items]


def _response_to_beta(response: dict[str, Any]) -> None:
    if "output_modalities" in response:
        response["modalities"] = _modalities_to_beta(response.pop("output_modalities"))
    audio_output = get_path(response.pop("audio", None), ("output",))
    if isinstance(audio_output, Mapping):
        if "voice" in audio_output:
            response["voice"] = audio_output["voice"]
        if "format" in audio_output:
            response["output_audio_format"] = _format_to_beta(audio_output["format"])
    items = response.get("output")
    if isinstance(items, list):
        response["output"] = [item_to_beta(i) if isinstance(i, Mapping) else i for i in items]


def _fix_session_update(event: Event) -> None:
    if isinstance(event.get("session"), Mapping):
        event["session"] = session_from_beta(event["session"])


def _fix_response_create(event: Event) -> None:
    if isinstance(event.get("response"), dict):
        _response_params_to_ga(event["response"])


def _fix_item_create(event: Event) -> None:
    if isinstance(event.get("item"), Mapping):
        event["item"] = item_to_ga(event["item"])


def _fix_session(event: Event) -> None:
    if isinstance(event.get("session"), Mapping):
        event["session"] = session_to_beta(event["session"])


def _fix_response(event: Event) -> None:
    if isinstance(event.get("response"), dict):
        _response_to_beta(event["response"])


def _fix_item(event: Event) -> None:
    if isinstance(event.get("item"), Mapping):
        event["item"] = item_to_beta(event["item"])


def _fix_part(event: Event) -> None:
    # openai-python types GA parts as text/audio, but accept output_* in case the server sends them.
    _retype_part(event.get("part"), _PART_TO_BETA)


# transcription_session.update is absent on purpose: it has no GA form on a realtime call.
_CLIENT_FIXES: Final[Mapping[str, Callable[[Event], None]]] = MappingProxyType(
    {
        "session.update": _fix_session_update,
        "response.create": _fix_response_create,
        "conversation.item.create": _fix_item_create,
    }
)

_SERVER_FIXES: Final[Mapping[str, Callable[[Event], None]]] = MappingProxyType(
    {
        "session.created": _fix_session,
        "session.updated": _fix_session,
        "response.created": _fix_response,
        "response.done": _fix_response,
        "conversation.item.added": _fix_item,
        "conversation.item.created": _fix_item,
        "conversation.item.retrieved": _fix_item,
        "response.output_item.added": _fix_item,
        "response.output_item.done": _fix_item,
        "response.content_part.added": _fix_part,
        "response.content_part.done": _fix_part,
    }
)


def client_event_to_ga(event: Event) -> Event:
    """A beta client event → its GA form; events whose shape did not change come back as copies."""
    out = copy.deepcopy(event)
    kind = out.get("type")
    fix = _CLIENT_FIXES.get(kind) if isinstance(kind, str) else None
    if fix is not None:
        fix(out)
    return out


def server_event_to_beta(event: Event) -> Event | None:
    """A GA server event → what a beta client expects, or ``None`` when it must not see it.

    GA-only events (``...input_audio_transcription.segment``, ``mcp_*``...) pass through unchanged:
    beta clients ignore types they do not know.
    """
    kind = event.get("type")
    if not isinstance(kind, str):
        return copy.deepcopy(event)
    if kind in _DROPPED_SERVER_EVENTS:
        return None
    out = copy.deepcopy(event)
    out["type"] = BETA_RENAMES.get(kind, kind)
    fix = _SERVER_FIXES.get(kind)
    if fix is not None:
        fix(out)
    return out
