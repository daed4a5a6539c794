"""GPT-Live's contract as a relay needs it: the session-creation body, the frontend's
data-channel permissions, and what a browser may send on its data channel.

Pure: no I/O. Shapes follow OpenAI's Live API (``../shared/live-protocol.md``): creation is
``POST /v1/live/sessions`` with JSON ``{session, transport:{type:"webrtc", sdp}}``, answered
``201`` with ``{session:{id}, transport:{type:"webrtc", sdp}}``; the body is strict (an unknown
field is a 400 ``unknown_parameter`` naming it), and the session is fixed once started but for
``delegation`` (same type) and ``triggers``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.errors import GatewayError, InvalidRequest
from gateway.protocol.events import MAX_NESTING, nesting, new_event_id, too_deep

SESSION_FIELDS: Final = frozenset(
    {
        "type",  # "live": what OpenAI's accept body carries; harmless on creation
        "model",
        "instructions",
        "audio",
        "client",
        "delegation",
        "input",
        "store",
        "idle_timeout_s",
        "safety_identifier",
        "triggers",
        "wake_policy",
    }
)
"""The fields of a Live session (OpenAI's ``MediaSessionConfig``)."""

UPDATABLE_FIELDS: Final = frozenset({"delegation", "triggers"})
"""What ``session.update`` may change once the session runs."""

DELEGATION_TYPES: Final = ("client", "responses", "decisions")

NOT_ON_THE_DATA_CHANNEL: Final = {
    "session.start": "The session was started by its creation request; do not send "
    "'session.start' on the data channel.",
    "session.input_audio.append": "Audio goes on the media track, not the data channel.",
    "session.output_audio.fixture.play": "Audio fixtures are played from a trusted server "
    "(the sideband), not the data channel.",
    "transport.dtmf.send": "DTMF is for SIP sessions only.",
}
"""Commands OpenAI takes only elsewhere than a WebRTC data channel, and why."""

DATA_CHANNEL_COMMANDS: Final = frozenset(
    {
        "session.update",
        "session.input_audio.mute",
        "session.input_audio.unmute",
        "session.instructions.append",
        "session.thinking.append",
        "session.commentary.append",
        "decision.create",
        "decision.item.create",
        "decision.item.delete",
        "response.item.create",
        "response.create",
        "session.close",
    }
)
"""The commands a frontend may send on a WebRTC data channel (OpenAI's ``ClientEvent`` set)."""

_EVENT_TYPE: Final = re.compile(r"^(?:error|info|[a-z][a-z0-9_-]*(?:\.[a-z0-9_-]+)+)$")
MAX_ALLOWED: Final = 256


def _unknown(param: str) -> InvalidRequest:
    return InvalidRequest(f"Unknown parameter: '{param}'.", code="unknown_parameter", param=param)


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", code="missing_required_parameter", param=param
    )


def _invalid(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_value", param=param)


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"Invalid type for '{param}': expected an object.", code="invalid_type", param=param
        )
    return value


def _only(value: Mapping[str, Any], allowed: frozenset[str] | set[str], prefix: str) -> None:
    for key in value:
        if key not in allowed:
            raise _unknown(f"{prefix}.{key}" if prefix else key)


@dataclass(frozen=True)
class LiveCreate:
    """A parsed creation request: the session asked for and the browser's SDP offer."""

    session: dict[str, Any]
    sdp: str


def parse_create_request(body: Any) -> LiveCreate:
    """``POST /v1/live/sessions``'s JSON body, checked as strictly as OpenAI checks it."""
    if body is None:
        raise _missing("session")
    if nesting(body, MAX_NESTING + 1) > MAX_NESTING:
        raise too_deep("The request body")
    top = _object(body, "body")
    _only(top, {"session", "transport"}, "")
    if "session" not in top:
        raise _missing("session")
    if "transport" not in top:
        raise _missing("transport")
    transport = _object(top["transport"], "transport")
    _only(transport, {"type", "sdp"}, "transport")
    if transport.get("type") != "webrtc":
        raise _invalid(
            "transport.type",
            "Invalid value for 'transport.type': this endpoint takes 'webrtc' sessions.",
        )
    sdp = transport.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise _missing("transport.sdp")
    session = check_live_session(top["session"])
    if not isinstance(session.get("model"), str) or not session["model"]:
        raise _missing("session.model")
    return LiveCreate(session=session, sdp=sdp)


def check_live_session(value: Any, *, param: str = "session") -> dict[str, Any]:
    """A Live session object (a copy), its top-level fields and the ones a relay relies on
    checked; raises the 400 OpenAI would."""
    session = copy.deepcopy(_object(value, param))
    _only(session, SESSION_FIELDS, param)
    if "type" in session and session["type"] != "live":
        raise _invalid(f"{param}.type", f"Invalid value for '{param}.type': expected 'live'.")
    audio = session.get("audio")
    if audio is not None:
        audio = _object(audio, f"{param}.audio")
        if "format" in audio:
            raise _invalid(
                f"{param}.audio.format",
                "WebRTC negotiates its audio format through SDP: omit 'audio.format'.",
            )
        _only(audio, {"output"}, f"{param}.audio")
        if "output" in audio:
            _only(
                _object(audio["output"], f"{param}.audio.output"),
                {"voice"},
                f"{param}.audio.output",
            )
    delegation = session.get("delegation")
    if delegation is not None:
        kind = _object(delegation, f"{param}.delegation").get("type")
        if kind not in DELEGATION_TYPES:
            raise _invalid(
                f"{param}.delegation.type",
                f"Invalid value for '{param}.delegation.type': expected one of "
                + ", ".join(repr(t) for t in DELEGATION_TYPES)
                + ".",
            )
    client = session.get("client")
    if client is not None:
        client = _object(client, f"{param}.client")
        _only(client, {"data_channel"}, f"{param}.client")
        if "data_channel" in client:
            Permissions.parse(client["data_channel"], param=f"{param}.client.data_channel")
    return session


def create_response(session_id: str, answer_sdp: str) -> dict[str, Any]:
    """The ``201`` body of a created session."""
    return {"session": {"id": session_id}, "transport": {"type": "webrtc", "sdp": answer_sdp}}


@dataclass(frozen=True)
class Permissions:
    """``session.client.data_channel``: what an untrusted frontend may send and see. ``None``
    lists mean all (the setting left out, or ``"all"``)."""

    client_events: frozenset[str] | None = None
    server_events: frozenset[tuple[str, str | None]] | None = None

    @property
    def restricted(self) -> bool:
        return self.client_events is not None or self.server_events is not None

    @classmethod
    def parse(cls, value: Any, *, param: str = "session.client.data_channel") -> Permissions:
        if value is None:
            return cls()
        config = _object(value, param)
        _only(config, {"allowed_client_events", "allowed_server_events"}, param)
        client = cls._client(
            config.get("allowed_client_events", "all"), f"{param}.allowed_client_events"
        )
        server = cls._server(
            config.get("allowed_server_events", "all"), f"{param}.allowed_server_events"
        )
        return cls(client, server)

    @classmethod
    def of(cls, session: Mapping[str, Any]) -> Permissions:
        client = session.get("client")
        if not isinstance(client, Mapping):
            return cls()
        return cls.parse(client.get("data_channel"))

    @staticmethod
    def _client(value: Any, param: str) -> frozenset[str] | None:
        if value == "all":
            return None
        if not isinstance(value, list) or len(value) > MAX_ALLOWED:
            raise _invalid(
                param, f"'{param}' must be \"all\" or at most {MAX_ALLOWED} event types."
            )
        for index, item in enumerate(value):
            if not isinstance(item, str) or not _EVENT_TYPE.match(item):
                raise _invalid(f"{param}[{index}]", f"'{param}[{index}]' is not an event type.")
        return frozenset(value)

    @staticmethod
    def _server(value: Any, param: str) -> frozenset[tuple[str, str | None]] | None:
        if value == "all":
            return None
        if not isinstance(value, list) or len(value) > MAX_ALLOWED:
            raise _invalid(param, f"'{param}' must be \"all\" or at most {MAX_ALLOWED} selectors.")
        selectors: set[tuple[str, str | None]] = set()
        for index, item in enumerate(value):
            where = f"{param}[{index}]"
            selector = _object(item, where)  # objects, never bare strings
            _only(selector, {"type", "response_event"}, where)
            kind = selector.get("type")
            if not isinstance(kind, str) or not _EVENT_TYPE.match(kind):
                raise _invalid(f"{where}.type", f"'{where}.type' is not an event type.")
            nested = selector.get("response_event")
            if (kind == "response.event") != (nested is not None):
                raise _invalid(
                    f"{where}.response_event",
                    f"'{where}.response_event' is required with 'response.event' and "
                    "allowed with no other type.",
                )
            if nested is not None and not isinstance(nested, str):
                raise _invalid(
                    f"{where}.response_event", f"'{where}.response_event' must be a string."
                )
            selectors.add((kind, nested))
        return frozenset(selectors)

    def allows_client(self, event_type: str) -> bool:
        return self.client_events is None or event_type in self.client_events

    def allows_server(self, event: Mapping[str, Any]) -> bool:
        """Whether the frontend sees this server event. ``error`` always reaches it: a command
        it sent must be answered."""
        if self.server_events is None:
            return True
        kind = event.get("type")
        if kind == "error":
            return True
        if kind == "response.event":
            nested = event.get("event")
            nested_type = nested.get("type") if isinstance(nested, Mapping) else None
            return ("response.event", nested_type) in self.server_events
        return (kind, None) in self.server_events

    def announcement(self) -> str:
        """The ``info`` message of ``data_channel_permissions`` for a restricted frontend."""
        parts = []
        if self.client_events is not None:
            parts.append(f"{len(self.client_events)} client event types allowed")
        if self.server_events is not None:
            parts.append(f"{len(self.server_events)} server event selectors allowed")
        return "Frontend data channel permissions applied: " + ", ".join(parts) + "."


def check_update(event: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The session part of a ``session.update`` that may be applied to a running session
    (``current``); raises ``immutable_field_update`` for anything else, as OpenAI does."""
    session = _object(event.get("session", {}), "session")
    for key in session:
        if key not in UPDATABLE_FIELDS:
            raise InvalidRequest(
                f"'session.{key}' cannot be changed once the session has started.",
                code="immutable_field_update",
                param=f"session.{key}",
            )
    delegation = session.get("delegation")
    if delegation is not None:
        kind = _object(delegation, "session.delegation").get("type")
        current_delegation = current.get("delegation")
        current_kind = (
            current_delegation.get("type", "client")
            if isinstance(current_delegation, Mapping)
            else "client"
        )
        if kind is not None and kind != current_kind:
            raise InvalidRequest(
                "The delegation type cannot be changed once the session has started.",
                code="immutable_field_update",
                param="session.delegation.type",
            )
    return copy.deepcopy(session)


ALL_ALLOWED: Final = {
    "data_channel": {"allowed_client_events": "all", "allowed_server_events": "all"}
}
"""``session.client`` of a session whose frontend is not restricted."""


class LiveGate:
    """The gateway's rules for a Live session's browser data channel.

    OpenAI would see the gateway's upstream channel as the frontend, so the app's
    ``session.client.data_channel`` is held here, at the browser's edge, and the upstream
    session is created without it (:func:`upstream_session`): the allow-lists then hold
    whatever the upstream does, and the session the browser is shown still reports them, with
    the ``info`` OpenAI sends for a restricted frontend. A browser may not change the
    session's delegation, which the app's server chose. The session's id is the gateway's own
    wherever the browser sees it (clients check it against the creation answer)."""

    def __init__(self, app_session: Mapping[str, Any], session_id: str | None = None) -> None:
        self.session_id = session_id
        self.permissions = Permissions.of(app_session)
        client = app_session.get("client")
        self._client_setting = copy.deepcopy(client) if isinstance(client, dict) else ALL_ALLOWED
        self._announced = False
        self.started: dict[str, Any] | None = None
        """The latest ``session.started`` as :meth:`shown`, whatever the frontend may see: the
        short replay a sideband attaching later gets first."""

    def client(
        self, event: Mapping[str, Any], current: Mapping[str, Any], *, frontend: bool = True
    ) -> None:
        """Raises the error the browser gets for a command it may not send. The app's server
        (``frontend=False``, a sideband) is held to Live's rules only, not the allow-lists or
        the delegation lock."""
        kind = str(event.get("type"))
        reason = NOT_ON_THE_DATA_CHANNEL.get(kind)
        if reason is not None:
            raise InvalidRequest(reason, code="invalid_event", param="type")
        if kind not in DATA_CHANNEL_COMMANDS:
            raise InvalidRequest(
                f"Invalid value: '{kind[:100]}'. Supported values are: "
                + ", ".join(f"'{name}'" for name in sorted(DATA_CHANNEL_COMMANDS))
                + ".",
                code="invalid_value",
                param="type",
            )
        if frontend and not self.permissions.allows_client(kind):
            raise InvalidRequest(
                f"The client event '{kind[:100]}' is not allowed on this data channel.",
                code="event_not_allowed",
                param="type",
            )
        if kind == "session.update":
            patch = check_update(event, current)
            if frontend and "delegation" in patch:
                raise InvalidRequest(
                    "The session's delegation is set by the app's server and cannot be "
                    "changed from the browser.",
                    code="locked_field",
                    param="session.delegation",
                )

    def shown(self, event: dict[str, Any]) -> dict[str, Any]:
        """``event`` with its session as the app knows it (the gateway's id, the app's frontend
        setting), for the browser and the sideband alike; ``event`` itself if it has none."""
        session = event.get("session")
        if event.get("type") not in (
            "session.started",
            "session.updated",
            "session.closed",
        ) or not isinstance(session, dict):
            return event
        shown = {**session, "client": copy.deepcopy(self._client_setting)}
        if self.session_id is not None and "id" in shown:
            shown["id"] = self.session_id
        return {**event, "session": shown}

    def server(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """What the browser gets for one server event: nothing, the event (its session
        showing the app's frontend setting), or the event and the permissions ``info``."""
        kind = event.get("type")
        if kind == "info" and event.get("code") == "data_channel_permissions":
            return []  # the upstream's view of its own channel; the browser gets ours
        shown = self.shown(event)
        if kind == "session.started" and shown is not event:
            self.started = copy.deepcopy(shown)  # a hook may yet change the browser's copy
        if not self.permissions.allows_server(event):
            return []
        out = [shown]
        if kind == "session.started" and self.permissions.restricted and not self._announced:
            self._announced = True
            info = {
                "type": "info",
                "event_id": new_event_id(),
                "code": "data_channel_permissions",
                "message": self.permissions.announcement(),
            }
            if self.permissions.allows_server(info):
                out.append(info)
        return out


def delegates_to_responses(session: Mapping[str, Any]) -> bool:
    """Whether the session's delegation is ``responses``: the only one whose model calls
    functions (``delegation.responses.tools``)."""
    delegation = session.get("delegation")
    return isinstance(delegation, Mapping) and delegation.get("type") == "responses"


def with_server_tools(
    session: Mapping[str, Any], server_tools: Sequence[Mapping[str, Any]], *, param: str
) -> dict[str, Any]:
    """``session`` (a session or a ``session.update``'s patch; a copy) with ``server_tools``
    after the app's own in ``delegation.responses.tools`` when it delegates to Responses;
    unchanged otherwise. An app's tool with a server tool's name is refused
    (``tool_name_reserved``): the delegate could not tell the two apart."""
    merged = copy.deepcopy(dict(session))
    if not server_tools or not delegates_to_responses(merged):
        return merged
    delegation = merged["delegation"]
    responses = delegation.get("responses")
    if not isinstance(responses, dict):
        return merged  # not a Responses config: the upstream's to refuse
    current = responses.get("tools")
    if current is not None and not isinstance(current, list):
        return merged
    app_tools = list(current or [])
    reserved = {str(t.get("name")) for t in server_tools}
    for index, entry in enumerate(app_tools):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if isinstance(name, str) and name in reserved:
            raise InvalidRequest(
                f"The tool name '{name[:100]}' is reserved by this gateway's server-side "
                "tools; rename the app's tool.",
                code="tool_name_reserved",
                param=f"{param}.delegation.responses.tools[{index}].name",
            )
    responses["tools"] = app_tools + [copy.deepcopy(dict(t)) for t in server_tools]
    return merged


def without_tools(session: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """``session`` with the function tools called ``names`` left out of
    ``delegation.responses.tools`` (the session a browser is shown); ``session`` itself if it
    lists none of them."""
    tools = session.get("delegation")
    for key in ("responses", "tools"):
        tools = tools.get(key) if isinstance(tools, Mapping) else None
    if not isinstance(tools, list):
        return dict(session)
    kept = [t for t in tools if not (isinstance(t, Mapping) and t.get("name") in names)]
    if len(kept) == len(tools):
        return dict(session)
    delegation = dict(session["delegation"])
    delegation["responses"] = {**delegation["responses"], "tools": kept}
    return {**session, "delegation": delegation}


def upstream_session(
    app_session: Mapping[str, Any], server_tools: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """The session the gateway creates upstream: the app's, its frontend left unrestricted
    (the gateway restricts the browser itself, :class:`LiveGate`), and the gateway's server
    tools declared to its Responses delegate (:func:`with_server_tools`)."""
    session = with_server_tools(app_session, server_tools, param="session")
    client = session.get("client")
    if isinstance(client, dict):
        client.pop("data_channel", None)
        if not client:
            del session["client"]
    return session


def live_error_event(error: GatewayError, *, client_event_id: str | None = None) -> dict[str, Any]:
    """Live's ``error`` event: the offending command's id as ``client_event_id``, in the error
    and beside it."""
    body = error.to_body()["error"]
    event: dict[str, Any] = {"type": "error", "event_id": new_event_id(), "error": body}
    if client_event_id is not None:
        body["client_event_id"] = client_event_id
        event["client_event_id"] = client_event_id
    return event
