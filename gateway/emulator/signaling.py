"""The body of ``POST /v1/realtime/calls`` (a raw SDP offer, or multipart ``sdp`` +
``session``) and of GPT-Live's ``POST /v1/live/sessions`` (JSON).

Pure: no I/O. Raises the gateway's errors, which the server turns into OpenAI-shaped bodies.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import secrets
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from gateway.emulator.errors import InvalidRequest, UnsupportedMediaType
from gateway.emulator.events import too_deep
from gateway.emulator.session import check_session_type
from gateway.errors import InvalidRequest as GatewayInvalidRequest
from gateway.protocol import live


@dataclass(frozen=True)
class CallRequest:
    kind: str
    """``"sdp"`` or ``"multipart"``."""
    sdp: str
    session: dict[str, Any] | None


def request_kind(content_type: str) -> str:
    """``"sdp"`` or ``"multipart"``; any other content type is refused (415)."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "application/sdp":
        return "sdp"
    if mime == "multipart/form-data":
        return "multipart"
    raise UnsupportedMediaType(
        f"Unsupported content type: {mime or 'none'!r}. Send the SDP offer as "
        "'application/sdp', or as 'multipart/form-data' with an 'sdp' part and an optional "
        "'session' part."
    )


def parse_call_request(content_type: str, body: bytes) -> CallRequest:
    """``content_type`` is the whole header (a multipart boundary is one of its parameters)."""
    if request_kind(content_type) == "sdp":
        return CallRequest("sdp", _text(body, "body"), None)
    return _multipart(content_type, body)


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"The {what} is not valid UTF-8.", param=what) from None


def _multipart(content_type: str, body: bytes) -> CallRequest:
    # The stdlib MIME parser reads multipart/form-data as it reads any multipart message.
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        raise InvalidRequest("The multipart body is malformed.", code="invalid_multipart")
    parts: dict[str, bytes] = {}
    assert isinstance(message, EmailMessage)
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts[name] = payload
    if "sdp" not in parts:
        raise InvalidRequest(
            "Missing required parameter: 'sdp'.", code="missing_required_parameter", param="sdp"
        )
    session: dict[str, Any] | None = None
    if "session" in parts:
        try:
            decoded = json.loads(_text(parts["session"], "session"))
        except ValueError:
            raise InvalidRequest(
                "The 'session' part is not valid JSON.", code="invalid_json", param="session"
            ) from None
        except RecursionError:
            raise too_deep("'session' object", "session") from None
        session = check_session_type(decoded, param="session")
    return CallRequest("multipart", _text(parts["sdp"], "sdp"), session)


def check_offer(sdp: str) -> None:
    """Refuse an offer that cannot make a Realtime call: audio, a data channel, DTLS, ICE."""
    lines = [line.strip() for line in sdp.strip().splitlines()]
    if not lines or lines[0] != "v=0":
        raise InvalidRequest("Invalid SDP offer: it must begin with v=0.", code="invalid_offer")
    media = [line[2:].split(" ", 1)[0] for line in lines if line.startswith("m=")]
    attributes = {line.partition(":")[0] for line in lines if line.startswith("a=")}
    missing = [
        what
        for what, present in (
            ("an audio section", "audio" in media),
            ("a data channel section", "application" in media),
            ("a DTLS fingerprint", "a=fingerprint" in attributes),
            ("ICE credentials", {"a=ice-ufrag", "a=ice-pwd"} <= attributes),
        )
        if not present
    ]
    if missing:
        raise InvalidRequest(
            f"Invalid SDP offer: it has no {', no '.join(missing)}.", code="invalid_offer"
        )


def new_live_id() -> str:
    return "live_" + secrets.token_hex(16)


def parse_live_request(body: bytes) -> live.LiveCreate:
    """A Live creation body, as strictly as OpenAI reads it."""
    try:
        decoded = json.loads(_text(body, "body"))
    except ValueError:
        raise InvalidRequest("The body is not valid JSON.", code="invalid_json") from None
    except RecursionError:
        raise too_deep("request body") from None
    try:
        return live.parse_create_request(decoded)
    except GatewayInvalidRequest as exc:
        raise InvalidRequest(
            exc.message, code=exc.code or "invalid_request", param=exc.param
        ) from None
