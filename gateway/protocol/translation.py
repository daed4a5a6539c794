"""Realtime translations' contract as a relay needs it: the client-secret body, the session
object, and what a browser may send on a translation call's data channel.

Pure: no I/O. Shapes follow OpenAI's SDK types (``RealtimeTranslationSession``,
``RealtimeTranslationSessionCreateRequestParam``, ``RealtimeTranslationSessionUpdateRequest``,
``realtime.translations.ClientSecretCreateParams``): a translation session has a ``model`` fixed
at creation and an ``audio`` object, of which ``audio.input.transcription``,
``audio.input.noise_reduction`` and ``audio.output.language`` are all a client sets, at creation
or with ``session.update``. Events live in a ``session.*`` namespace; there is no
``response.create`` (the model translates continuously, it is never asked for a response).
"""

from __future__ import annotations

import copy
import math
import secrets
from collections.abc import Mapping
from typing import Any, Final

from gateway.errors import InvalidRequest
from gateway.protocol.events import MAX_NESTING, nesting, too_deep
from gateway.protocol.paths import MISSING, get_path
from gateway.protocol.session import parse_expires_after

SESSION_TYPE: Final = "translation"

CLIENT_EVENTS: Final = frozenset({"session.update", "session.close"})
"""What a browser may send on a WebRTC translation call's data channel."""

NOT_ON_WEBRTC: Final = {
    "session.input_audio_buffer.append": "Audio goes on the media track of a WebRTC "
    "translation call; 'session.input_audio_buffer.append' is for WebSocket sessions.",
}
"""Client events of the API that a WebRTC call does not take, and why."""

KNOWN_CLIENT_EVENTS: Final = CLIENT_EVENTS | frozenset(NOT_ON_WEBRTC)

SERVER_EVENTS: Final = frozenset(
    {
        "error",
        "session.created",
        "session.updated",
        "session.closed",
        "session.input_transcript.delta",
        "session.output_transcript.delta",
        "session.output_audio.delta",
    }
)

NOISE_REDUCTION_TYPES: Final = ("near_field", "far_field")

UPDATABLE_PATHS: Final = (
    ("audio", "input", "transcription"),
    ("audio", "input", "noise_reduction"),
    ("audio", "output", "language"),
)
"""Everything of a translation session a client chooses (at creation or by update)."""


def new_session_id() -> str:
    return "sess_" + secrets.token_hex(12)


def _unknown(param: str) -> InvalidRequest:
    return InvalidRequest(f"Unknown parameter: '{param}'.", code="unknown_parameter", param=param)


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", code="missing_required_parameter", param=param
    )


def _wrong_type(param: str, expected: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}.", code="invalid_type", param=param
    )


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _wrong_type(param, "an object")
    return value


def _only(value: Mapping[str, Any], allowed: frozenset[str] | set[str], prefix: str) -> None:
    for key in value:
        if key not in allowed:
            raise _unknown(f"{prefix}.{key}" if prefix else key)


def check_audio(value: Any, param: str) -> dict[str, Any]:
    """A translation session's ``audio`` object (a copy), checked field by field."""
    audio = copy.deepcopy(_object(value, param))
    _only(audio, {"input", "output"}, param)
    if "input" in audio:
        where = f"{param}.input"
        audio_input = _object(audio["input"], where)
        _only(audio_input, {"transcription", "noise_reduction"}, where)
        transcription = audio_input.get("transcription")
        if transcription is not None:
            here = f"{where}.transcription"
            _only(_object(transcription, here), {"model"}, here)
            model = transcription.get("model")
            if model is None:
                raise _missing(f"{here}.model")
            if not isinstance(model, str) or not model:
                raise _wrong_type(f"{here}.model", "a non-empty string")
        noise = audio_input.get("noise_reduction")
        if noise is not None:
            here = f"{where}.noise_reduction"
            _only(_object(noise, here), {"type", "strength"}, here)
            if "type" not in noise:
                raise _missing(f"{here}.type")
            if noise["type"] not in NOISE_REDUCTION_TYPES:
                raise InvalidRequest(
                    f"Invalid value for '{here}.type': expected one of "
                    + ", ".join(repr(t) for t in NOISE_REDUCTION_TYPES)
                    + ".",
                    code="invalid_value",
                    param=f"{here}.type",
                )
            strength = noise.get("strength")
            if "strength" in noise and (
                isinstance(strength, bool)
                or not isinstance(strength, int | float)
                or not math.isfinite(strength)
            ):
                raise _wrong_type(f"{here}.strength", "a number")
    if "output" in audio:
        where = f"{param}.output"
        output = _object(audio["output"], where)
        _only(output, {"language"}, where)
        if "language" in output and (
            not isinstance(output["language"], str) or not output["language"]
        ):
            raise _wrong_type(f"{where}.language", "a non-empty string")
    return audio


def parse_client_secret_request(body: Any, default_ttl: int) -> tuple[int, dict[str, Any]]:
    """``POST /v1/realtime/translations/client_secrets``'s body → (ttl seconds, the session
    asked for: ``model`` and ``audio``), as strictly as OpenAI reads it."""
    if body is None:
        raise _missing("session")
    if nesting(body, MAX_NESTING + 1) > MAX_NESTING:
        raise too_deep("request body")
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    _only(body, {"session", "expires_after"}, "")
    if "session" not in body:
        raise _missing("session")
    session = _object(body["session"], "session")
    _only(session, {"model", "audio"}, "session")
    model = session.get("model")
    if model is None:
        raise _missing("session.model")
    if not isinstance(model, str) or not model:
        raise _wrong_type("session.model", "a non-empty string")
    requested: dict[str, Any] = {"model": model}
    if session.get("audio") is not None:
        requested["audio"] = check_audio(session["audio"], "session.audio")
    return parse_expires_after(body, default_ttl), requested


def bound_session(session_id: str, requested: Mapping[str, Any]) -> dict[str, Any]:
    """What a translation client secret carries: the session asked for, marked as a
    translation (so a Realtime call refuses the secret) under the gateway's session id."""
    return {**copy.deepcopy(dict(requested)), "type": SESSION_TYPE, "id": session_id}


def is_translation(session: Mapping[str, Any] | None) -> bool:
    return session is not None and session.get("type") == SESSION_TYPE


def upstream_request(session: Mapping[str, Any]) -> dict[str, Any]:
    """The session as the upstream's client-secret request takes it: ``model`` and
    ``audio`` only (the type and the gateway's id are the gateway's own)."""
    out: dict[str, Any] = {"model": session.get("model")}
    if isinstance(session.get("audio"), dict):
        out["audio"] = copy.deepcopy(session["audio"])
    return out


def session_view(session: Mapping[str, Any], expires_at: int) -> dict[str, Any]:
    """A ``RealtimeTranslationSession`` object: every audio field present, unset ones null."""
    audio = session.get("audio") if isinstance(session.get("audio"), dict) else {}
    assert isinstance(audio, dict)
    audio_input = audio.get("input") if isinstance(audio.get("input"), dict) else {}
    output = audio.get("output") if isinstance(audio.get("output"), dict) else {}
    assert isinstance(audio_input, dict) and isinstance(output, dict)
    return {
        "id": session.get("id"),
        "type": SESSION_TYPE,
        "model": session.get("model"),
        "audio": {
            "input": {
                "transcription": copy.deepcopy(audio_input.get("transcription")),
                "noise_reduction": copy.deepcopy(audio_input.get("noise_reduction")),
            },
            "output": {"language": output.get("language")},
        },
        "expires_at": expires_at,
    }


def check_update(
    event: Mapping[str, Any],
    current: Mapping[str, Any],
    locked: tuple[tuple[str, ...], ...] = (),
) -> dict[str, Any]:
    """The ``session`` of a ``session.update`` (a copy) if it may be applied to a running
    session (``current``): audio fields only, none of ``locked`` changed."""
    if "session" not in event:
        raise _missing("session")
    session = _object(event["session"], "session")
    for key in session:
        if key in ("model", "type"):
            raise InvalidRequest(
                f"'session.{key}' is set when the translation session is created and cannot "
                "be changed with session.update.",
                code="immutable_field_update",
                param=f"session.{key}",
            )
        if key != "audio":
            raise _unknown(f"session.{key}")
    patch: dict[str, Any] = {}
    if "audio" in session:
        patch["audio"] = check_audio(session["audio"], "session.audio")
    for path in locked:
        asked = get_path(patch, path)
        if asked is not MISSING and asked != get_path(current, path):
            name = ".".join(("session", *path))
            raise InvalidRequest(
                f"This gateway does not let clients change '{name}': the app's server set it.",
                code="locked_field",
                param=name,
            )
    return patch


class TranslationGate:
    """The gateway's rules for a translation call's browser data channel.

    ``locked_fields`` are the operator's locked session paths (dotted); those the app's server
    set in the client secret are held, as a Realtime call holds its own. Unlike Realtime's
    ``session.update``, which loses a locked field and goes on, a translation update that
    would change one is refused whole: it carries nothing but audio settings, so what would be
    left is rarely what the browser meant. The session the browser is shown carries the id the
    client secret's answer gave it."""

    def __init__(
        self,
        server_session: Mapping[str, Any],
        locked_fields: tuple[str, ...] = (),
        session_id: str | None = None,
    ) -> None:
        self.session_id = session_id
        paths = (tuple(dotted.split(".")) for dotted in locked_fields)
        self.locked = tuple(
            path
            for path in paths
            if path in UPDATABLE_PATHS and get_path(server_session, path) is not MISSING
        )

    def client(self, event: Mapping[str, Any], current: Mapping[str, Any]) -> None:
        """Raises the error the browser gets for an event it may not send."""
        kind = str(event.get("type"))
        reason = NOT_ON_WEBRTC.get(kind)
        if reason is not None:
            raise InvalidRequest(reason, code="invalid_event", param="type")
        if kind not in CLIENT_EVENTS:
            raise InvalidRequest(
                f"Invalid value: '{kind[:100]}'. Supported values are: "
                + ", ".join(f"'{name}'" for name in sorted(CLIENT_EVENTS))
                + ".",
                code="invalid_value",
                param="type",
            )
        if kind == "session.update":
            check_update(event, current, self.locked)

    def shown(self, event: dict[str, Any]) -> dict[str, Any]:
        """``event`` with its session under the gateway's id (the one the client secret's
        answer named); ``event`` itself if there is nothing to change."""
        session = event.get("session")
        if (
            self.session_id is None
            or event.get("type") not in ("session.created", "session.updated")
            or not isinstance(session, dict)
            or session.get("id") == self.session_id
        ):
            return event
        return {**event, "session": {**session, "id": self.session_id}}
