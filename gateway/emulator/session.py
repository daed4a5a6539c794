"""The emulated session object: GA defaults, ``session.update`` merging and validation.

Pure: no I/O.
"""

from __future__ import annotations

import copy
import secrets
import string
import time
from typing import Any

from gateway.emulator.errors import InvalidRequest
from gateway.emulator.events import MAX_DEPTH, depth, too_deep
from gateway.emulator.vad import VadConfig

Session = dict[str, Any]

DEFAULT_INSTRUCTIONS = (
    "You are the Realtime emulator, a test double with no model behind it. "
    "You play back what the user says and answer text with a few tones."
)
_ALPHABET = string.ascii_letters + string.digits
# semantic_vad has no silence setting; its eagerness decides how long a pause ends a turn.
_EAGERNESS_SILENCE_MS = {"low": 1000.0, "medium": 500.0, "auto": 500.0, "high": 250.0}


def new_id(prefix: str, length: int = 21) -> str:
    """An OpenAI-looking id: ``sess_…``, ``item_…``, ``resp_…``, ``call_…``."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def default_session(
    model: str, vad: VadConfig, *, now: float | None = None, lifetime_s: float = 3600.0
) -> Session:
    now = time.time() if now is None else now
    audio_format = {"type": "audio/pcm", "rate": 24000}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess_"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(now + lifetime_s),
        "include": None,
        "audio": {
            "input": {
                "format": dict(audio_format),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": int(vad.prefix_padding_ms),
                    "silence_duration_ms": int(vad.silence_duration_ms),
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": dict(audio_format), "voice": "alloy", "speed": 1.0},
        },
    }


def merge(base: Session, patch: Session) -> Session:
    """Deep merge; lists and scalars replace. A ``turn_detection`` of another type replaces."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        current = out.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            if key == "turn_detection" and value.get("type", current.get("type")) != current.get(
                "type"
            ):
                out[key] = copy.deepcopy(value)
            else:
                out[key] = merge(current, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Fields the server owns: a client cannot rename the session or pretend to be another model.
_READ_ONLY = ("id", "object", "model", "expires_at")


def apply_update(base: Session, patch: Session) -> Session:
    clean = {k: v for k, v in patch.items() if k not in _READ_ONLY}
    return merge(base, clean)


def check_session_type(session: Any, *, param: str) -> Session:
    """GA requires ``type: "realtime"`` on every session object; raise the API's error if not."""
    if not isinstance(session, dict):
        raise InvalidRequest(
            f"Missing required parameter: '{param}'.",
            code="missing_required_parameter",
            param=param,
        )
    kind = session.get("type")
    if kind is None:
        raise InvalidRequest(
            f"Missing required parameter: '{param}.type'.",
            code="missing_required_parameter",
            param=f"{param}.type",
        )
    if kind != "realtime":
        raise InvalidRequest(
            f"Invalid value: {kind!r}. Supported values are: 'realtime'.",
            code="invalid_value",
            param=f"{param}.type",
        )
    if depth(session) > MAX_DEPTH:  # merge() copies it recursively
        raise too_deep(f"'{param}' object", param)
    return session


def dig(value: Any, *keys: str) -> Any:
    """``value[k1][k2]…``, or ``None`` where a level is missing or not an object.

    Sessions and requests are client JSON: any level may be absent, null or the wrong type.
    """
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def turn_detection(session: Session) -> dict[str, Any] | None:
    detection = dig(session, "audio", "input", "turn_detection")
    return detection if isinstance(detection, dict) else None


def vad_config(session: Session, base: VadConfig) -> VadConfig | None:
    """The energy VAD settings this session asks for, or ``None`` when turn detection is off.

    The API's ``threshold`` (0..1, default 0.5) scales the energy threshold around its default.
    """
    detection = turn_detection(session)
    if detection is None:
        return None
    threshold = base.threshold_rms
    raw_threshold = detection.get("threshold")
    if isinstance(raw_threshold, int | float) and 0 < raw_threshold <= 1:
        threshold = base.threshold_rms * float(raw_threshold) / 0.5
    silence = base.silence_duration_ms
    if detection.get("type") == "semantic_vad":
        silence = _EAGERNESS_SILENCE_MS.get(str(detection.get("eagerness", "auto")), silence)
    raw_silence = detection.get("silence_duration_ms")
    if isinstance(raw_silence, int | float) and raw_silence >= 0:
        silence = float(raw_silence)
    padding = base.prefix_padding_ms
    raw_padding = detection.get("prefix_padding_ms")
    if isinstance(raw_padding, int | float) and raw_padding >= 0:
        padding = float(raw_padding)
    return VadConfig(
        threshold_rms=threshold,
        silence_duration_ms=silence,
        prefix_padding_ms=padding,
        min_speech_ms=base.min_speech_ms,
    )


def flag(session: Session, name: str, default: bool = True) -> bool:
    """A boolean of ``turn_detection`` (``create_response``, ``interrupt_response``)."""
    detection = turn_detection(session)
    if detection is None:
        return False
    value = detection.get(name, default)
    return value if isinstance(value, bool) else default


def function_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        return []
    return [
        t
        for t in tools
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
    ]
