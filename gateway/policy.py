"""What a browser may send: the client-event policy of one call.

Pure: no I/O, the clock is injected. :meth:`ClientPolicy.check` takes one parsed client event
(GA-shaped: check what would be forwarded, after any beta → GA translation) and returns a
:class:`Decision`: forward it as is, forward a rewritten copy, or refuse it with a
:class:`Violation` that :meth:`Violation.to_error` turns into an OpenAI-shaped error.

Rules, in the order a violation is reported when an event breaks several:

1. ``event_type_not_allowed`` — the type is not in the allowlist;
2. ``event_too_large`` — the message is larger than ``max_event_bytes``;
3. ``event_rate`` — a token bucket over every client event of the call;
4. ``response_create_rate`` — a sliding one-minute window over forwarded ``response.create``.

A locked field protects the value **the server set** for the call (``GATEWAY_SESSION``, the
defaults, the client secret's ``session``): a field the server left unset is the browser's to
choose, as it is on OpenAI, so an app whose agent brings its own instructions keeps working
unless the operator decided them.

Locked session fields are not refused but **removed**: a ``session.update`` loses them and the
rest goes through (OpenAI's own browser SDK sends ``model``, and often ``instructions``, in the
update it makes on connect and waits for ``session.updated``; refusing it would break connect).
A locked field also covers the per-response override of the same name in ``response.create``.
The decision names the removal as a ``locked_field`` violation only when a removed value differs
from the call's current session, so an SDK echoing the session it was given stays silent.

While ``instructions`` is locked, what would replace them in all but name is held to the lock too:

* ``prompt`` (a stored prompt reference, ``{id, version, variables}``, that brings its own
  instructions) is removed from ``session.update`` and ``response.create`` like a locked field;
* a message whose role is ``system`` or ``developer`` (in any letter case) is refused, whether
  added to the conversation (``conversation.item.create``) or given as one response's input
  (``response.create``'s ``response.input``);
* ``transcription_session.update`` — a beta event with no GA form on a realtime call, passed on
  as is because an upstream may still accept it — is held to every lock of ``session.update``:
  its ``session`` loses each locked field, under its GA path and under its flat beta name
  (``voice`` for ``audio.output.voice``), and ``prompt`` with ``instructions``. Stripped rather
  than refused, like ``session.update``; every removal is reported, since no SDK echoes a session
  in it. (``input_audio_transcription.prompt`` stays: it guides the transcription model, not the
  assistant, as ``audio.input.transcription.prompt`` does in ``session.update``.)
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.errors import InvalidRequest
from gateway.protocol.beta import beta_session_paths
from gateway.protocol.catalog import CLIENT_EVENT_TYPES
from gateway.protocol.paths import MISSING, get_path
from gateway.types import Event

RULES: Final = (
    "event_type_not_allowed",
    "event_too_large",
    "event_rate",
    "response_create_rate",
    "locked_field",
)

# Session fields that response.create may also set for one response (protocol.md §4.1).
_RESPONSE_OVERRIDES: Final = frozenset(
    {
        "instructions",
        "prompt",
        "tools",
        "tool_choice",
        "output_modalities",
        "max_output_tokens",
        "audio",
    }
)

# A stored prompt carries instructions of its own: a lock on instructions covers it.
_PROMPT: Final = ("prompt",)

# Message roles that speak with the instructions' authority (OpenAI accepts ``developer`` as a
# system-like role, and does not insist on lower case).
_SYSTEM_ROLES: Final = frozenset({"system", "developer"})


@dataclass(frozen=True)
class PolicyConfig:
    allowed_client_events: frozenset[str] = CLIENT_EVENT_TYPES
    locked_session_fields: tuple[str, ...] = ("instructions", "model")
    """Dotted paths into the GA session object, e.g. ``audio.output.voice``."""
    max_event_bytes: int = 256 * 1024
    events_per_second: float = 50.0
    event_burst: int = 200
    response_creates_per_minute: int = 30

    def __post_init__(self) -> None:
        if not all(isinstance(t, str) for t in self.allowed_client_events):
            raise ValueError("'allowed_client_events' must hold event type strings")
        object.__setattr__(self, "allowed_client_events", frozenset(self.allowed_client_events))
        for path in self.locked_session_fields:
            if not isinstance(path, str) or not all(path.split(".")):
                raise ValueError(
                    "'locked_session_fields' must be dotted field paths such as "
                    f"'audio.output.voice' (got {path!r})"
                )
        if self.max_event_bytes < 1:
            raise ValueError(f"'max_event_bytes' must be positive (got {self.max_event_bytes})")
        if not self.events_per_second > 0:
            raise ValueError(f"'events_per_second' must be positive (got {self.events_per_second})")
        if self.event_burst < 1:
            raise ValueError(f"'event_burst' must be at least 1 (got {self.event_burst})")
        if self.response_creates_per_minute < 1:
            raise ValueError(
                "'response_creates_per_minute' must be at least 1 "
                f"(got {self.response_creates_per_minute})"
            )


@dataclass(frozen=True)
class Violation:
    rule: str
    """One of :data:`RULES`; it becomes the error's ``code``."""
    message: str
    param: str | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"'rule' must be one of {list(RULES)} (got {self.rule!r})")

    def to_error(self) -> InvalidRequest:
        return InvalidRequest(self.message, code=self.rule, param=self.param)


@dataclass(frozen=True)
class Decision:
    event: Event | None
    """The event to forward — the input itself, or a new rewritten copy — or ``None``: refuse."""
    violation: Violation | None = None
    """Why it was refused; for a rewrite, the locked values that differed (if any did)."""
    rewritten: bool = False

    @property
    def refused(self) -> bool:
        return self.event is None


class ClientPolicy:
    """The policy state of one call: its rate limits."""

    def __init__(
        self,
        config: PolicyConfig = PolicyConfig(),
        *,
        server_session: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``server_session``: the session the server set up the call with; only the locked
        fields it sets are locked. ``None`` locks every configured field, set or not."""
        self.config = config
        self._clock = clock
        self._tokens = float(config.event_burst)
        self._refilled_at = clock()
        self._creates: deque[float] = deque()
        self._locked = tuple(
            path
            for path in (tuple(p.split(".")) for p in config.locked_session_fields)
            if server_session is None or get_path(server_session, path) is not MISSING
        )
        self._locks_instructions = ("instructions",) in self._locked
        if self._locks_instructions and _PROMPT not in self._locked:
            self._locked += (_PROMPT,)
        self._response_locked = tuple(p for p in self._locked if p[0] in _RESPONSE_OVERRIDES)
        self._transcription_locked = self._locked + tuple(
            beta for path in self._locked for beta in beta_session_paths(path)
        )

    def check(self, event: Event, size: int, *, current_session: Mapping[str, Any]) -> Decision:
        """Decide one client event; ``size`` is its encoded length in bytes, as received."""
        now = self._clock()
        kind = event.get("type")
        # Every event spends a token, even one refused for another reason: the bucket measures
        # what the browser sends, so a flood of refused events is throttled as well.
        within_rate = self._take_token(now)
        if not isinstance(kind, str) or kind not in self.config.allowed_client_events:
            return _refuse(
                "event_type_not_allowed",
                f"Event type {kind!r} is not allowed by this gateway.",
                "type",
            )
        if size > self.config.max_event_bytes:
            return _refuse(
                "event_too_large",
                f"The event is {size} bytes; this gateway accepts events of at most "
                f"{self.config.max_event_bytes} bytes.",
            )
        if not within_rate:
            return _refuse(
                "event_rate",
                "Too many events: this gateway accepts at most "
                f"{self.config.events_per_second:g} events per second per call.",
            )
        if self._locks_instructions and (system := _system_item(kind, event)) is not None:
            return _refuse(
                "locked_field",
                "This gateway does not let clients add system or developer messages: the "
                "session's instructions are set by the server.",
                system,
            )
        if kind == "response.create":
            if not self._take_create(now):
                return _refuse(
                    "response_create_rate",
                    "Too many responses: this gateway accepts at most "
                    f"{self.config.response_creates_per_minute} response.create events per "
                    "minute per call.",
                )
            return self._strip(event, "response", self._response_locked, current_session)
        if kind == "session.update":
            return self._strip(event, "session", self._locked, current_session)
        if kind == "transcription_session.update":
            return self._strip(event, "session", self._transcription_locked, None)
        return Decision(event)

    # -- rates --------------------------------------------------------------------------------

    def _take_token(self, now: float) -> bool:
        elapsed = max(0.0, now - self._refilled_at)
        self._refilled_at = max(self._refilled_at, now)
        self._tokens = min(
            float(self.config.event_burst), self._tokens + elapsed * self.config.events_per_second
        )
        if self._tokens >= 1.0 - 1e-9:  # float time deltas must not lose a whole token
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def _take_create(self, now: float) -> bool:
        while self._creates and self._creates[0] <= now - 60.0:
            self._creates.popleft()
        if len(self._creates) >= self.config.response_creates_per_minute:
            return False
        self._creates.append(now)
        return True

    # -- locked fields ------------------------------------------------------------------------

    def _strip(
        self,
        event: Event,
        key: str,
        paths: tuple[tuple[str, ...], ...],
        current_session: Mapping[str, Any] | None,
    ) -> Decision:
        """Remove ``paths`` from ``event[key]``; without a ``current_session`` to compare with,
        every removal is reported."""
        body = event.get(key)
        found = [p for p in paths if isinstance(body, Mapping) and get_path(body, p) is not MISSING]
        if not found:
            return Decision(event)
        rewritten = copy.deepcopy(event)
        changed: list[str] = []
        for path in found:
            removed = _pop(rewritten[key], path)
            if removed is MISSING:
                continue  # under a field an earlier path already removed
            if current_session is None or removed != get_path(current_session, path):
                changed.append(".".join((key, *path)))
        violation = None
        if changed:
            names = ", ".join(f"'{name}'" for name in changed)
            violation = Violation(
                "locked_field",
                f"This gateway does not let clients change {names}; "
                + ("the field was" if len(changed) == 1 else "the fields were")
                + " removed and the rest of the event applied.",
                changed[0],
            )
        return Decision(rewritten, violation, rewritten=True)


def _system_item(kind: str, event: Event) -> str | None:
    """Where ``event`` carries a system-like message (its ``param``), or ``None``."""
    if kind == "conversation.item.create":
        return "item.role" if _is_system(event.get("item")) else None
    if kind == "response.create":
        response = event.get("response")
        items = response.get("input") if isinstance(response, Mapping) else None
        if isinstance(items, list):
            for index, item in enumerate(items):
                if _is_system(item):
                    return f"response.input[{index}].role"
    return None


def _is_system(item: Any) -> bool:
    role = item.get("role") if isinstance(item, Mapping) else None
    return isinstance(role, str) and role.lower() in _SYSTEM_ROLES


def _refuse(rule: str, message: str, param: str | None = None) -> Decision:
    return Decision(None, Violation(rule, message, param))


def _pop(node: dict[str, Any], path: tuple[str, ...]) -> Any:
    """Remove ``path`` from ``node``, and any parent it leaves empty (``node`` itself stays)."""
    head, rest = path[0], path[1:]
    if not rest:
        return node.pop(head, MISSING)
    child = node.get(head)
    if not isinstance(child, dict):
        return MISSING
    removed = _pop(child, rest)
    if removed is not MISSING and not child:
        del node[head]
    return removed
