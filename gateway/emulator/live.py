"""One emulated GPT-Live session, driven by data-channel commands and microphone audio.

Pure: no I/O; the clock is injected. It plays the same part for a Live session that
:class:`~gateway.emulator.conversation.Conversation` plays for a Realtime call, with Live's
event set (``../shared/live-protocol.md`` §2-4): ``session.started`` first, transcripts as
``session.{input,output}_transcript.delta`` with ``start_ms``/``end_ms`` from the session's
start, cumulative ``session.usage.updated``, no turn or response lifecycle, and
``session.close`` answered by ``session.closed`` before the session ends. Under Responses
delegation, ``response.item.create`` and ``response.create`` drive the delegate
(:mod:`gateway.emulator.delegation`), whose text answers the Live model then speaks.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from gateway.emulator import session as sess
from gateway.emulator.audio import spoken_tones
from gateway.emulator.conversation import Effects
from gateway.emulator.delegation import DelegatedStream, ResponsesDelegate, responses_config
from gateway.emulator.errors import InvalidRequest, OpenAIError
from gateway.emulator.items import event
from gateway.emulator.responses import Response, _chunks, plan
from gateway.emulator.turns import InputTurns, TurnEnded, TurnStarted
from gateway.emulator.vad import Samples, VadConfig
from gateway.errors import InvalidRequest as GatewayInvalidRequest
from gateway.protocol import live as contract
from gateway.types import Event

SESSION_SECONDS = 3600
"""How long a session may last (``expires_at``); OpenAI does not document Live's limit."""


@dataclass
class LiveResponse(Response):
    """An answer spoken in a Live session: its transcript goes out as
    ``session.output_transcript.delta`` timed from the session's start."""

    start_ms: int = 0

    def delta_event(self) -> Event | None:
        if self.sent >= len(self.chunks):
            return None
        count = len(self.chunks)
        step = self.audio_ms / count if count else 0.0
        start = self.start_ms + round(step * self.sent)
        delta = self.chunks[self.sent]
        self.sent += 1
        return event(
            "session.output_transcript.delta",
            delta=delta,
            start_ms=start,
            end_ms=self.start_ms + round(step * self.sent),
        )


@dataclass
class DelegatedResponse(Response):
    """A Responses stream under delegation, paced as a response's deltas are: ``chunks``
    only counts them, the events themselves are the stream's."""

    stream: DelegatedStream | None = None

    def delta_event(self) -> Event | None:
        if self.stream is None or self.sent >= len(self.stream.deltas):
            return None
        delta = self.stream.deltas[self.sent]
        self.sent += 1
        return delta


def _converted(error: GatewayInvalidRequest) -> InvalidRequest:
    return InvalidRequest(error.message, code=error.code or "invalid_request", param=error.param)


class LiveConversation:
    """A Live session's state. ``clock`` gives seconds (monotonic); ``playback_position`` the
    milliseconds played of the current answer."""

    def __init__(
        self,
        session_id: str,
        requested: dict[str, Any],
        *,
        vad: VadConfig,
        clock: Callable[[], float] = time.monotonic,
        playback_position: Callable[[], float] = lambda: 0.0,
        max_echo_ms: float = 30_000.0,
        now: float | None = None,
    ) -> None:
        self.id = session_id
        self.requested = copy.deepcopy(requested)
        self.permissions = contract.Permissions.of(requested)
        self._clock = clock
        self._started = clock()
        self._position = playback_position
        created = int(time.time() if now is None else now)
        delegation = requested.get("delegation") or {"type": "client"}
        self.session: dict[str, Any] = {
            "id": session_id,
            "expires_at": created + SESSION_SECONDS,
            "model": requested.get("model"),
            "status": "active",
            "audio": {"output": {"voice": _voice(requested)}},
            "client": requested.get("client")
            or {"data_channel": {"allowed_client_events": "all", "allowed_server_events": "all"}},
            "delegation": delegation,
            "input": requested.get("input") or [],
            "instructions": requested.get("instructions"),
            "safety_identifier": requested.get("safety_identifier"),
            "store": bool(requested.get("store", False)),
            "triggers": requested.get("triggers") or [],
        }
        # Turn detection as a Realtime session with server VAD would have it: Live always
        # listens (wake_policy aside).
        self.turns = InputTurns(
            vad, sess.default_session(str(self.session["model"]), vad), max_ms=max_echo_ms
        )
        self.muted = False
        self.closed = False
        self.active: LiveResponse | None = None
        self.playing: LiveResponse | None = None
        self.delegate = ResponsesDelegate()
        self._handlers: dict[str, Callable[[Event], Effects]] = {
            "session.update": self._update,
            "session.input_audio.mute": lambda e: self._mute(e, True),
            "session.input_audio.unmute": lambda e: self._mute(e, False),
            "session.instructions.append": lambda e: self._append(e, "instructions"),
            "session.thinking.append": lambda e: self._append(e, "thinking"),
            "session.commentary.append": lambda e: self._append(e, "commentary"),
            "response.create": self._response_create,
            "response.item.create": self._response_item_create,
            "session.close": self._close,
        }

    # -- what the call asks of a conversation ---------------------------------------------------

    def created_events(self) -> list[Event]:
        events = [event("session.started", session=copy.deepcopy(self.session))]
        if self.permissions.restricted:
            events.append(
                event(
                    "info",
                    code="data_channel_permissions",
                    message=self.permissions.announcement(),
                )
            )
        return events

    def handle(self, client_event: Event) -> Effects:
        kind = client_event["type"]
        reason = contract.NOT_ON_THE_DATA_CHANNEL.get(kind)
        if reason is not None:
            raise InvalidRequest(reason, code="invalid_event", param="type")
        if self.closed:
            raise InvalidRequest(
                "The session is closing; it takes no more commands.", code="session_closed"
            )
        if not self.permissions.allows_client(kind):
            raise InvalidRequest(
                f"The client event {kind!r} is not allowed on this data channel.",
                code="event_not_allowed",
                param="type",
            )
        handler = self._handlers.get(kind)
        if handler is None:
            raise InvalidRequest(
                f"Invalid value: {kind!r}. Supported values are: "
                + ", ".join(repr(k) for k in self._handlers)
                + ".",
                code="invalid_value",
                param="type",
            )
        return handler(client_event)

    def push_audio(self, samples: Samples, duration_ms: float, level: float) -> Effects | None:
        if self.muted or self.closed:
            return None
        turn = self.turns.push(samples, duration_ms, level)
        if isinstance(turn, TurnStarted) and self.playing is not None:
            # Live has no response lifecycle to cancel: the answer being spoken just stops.
            self.playing = None
            self.active = None
            return Effects(stop_playback=True)
        if isinstance(turn, TurnEnded):
            return self._answer(turn)
        return None

    def complete(self, response: Response) -> Effects:
        if isinstance(response, DelegatedResponse) and response.stream is not None:
            return self._delegation_done(response.stream)
        if self.active is response:
            self.active = None
        return Effects()

    def playback_finished(self, response_id: str) -> list[Event]:
        if self.playing is not None and self.playing.id == response_id:
            self.playing = None
        return []

    def error_event(self, error: OpenAIError, client_event_id: str | None = None) -> Event:
        """Live's shape: the command's id as ``client_event_id``, in the error and beside it."""
        body: dict[str, Any] = dict(error.error_object())
        if client_event_id is not None:
            body["client_event_id"] = client_event_id
        out = event("error", error=body)
        if client_event_id is not None:
            out["client_event_id"] = client_event_id
        return out

    def closed_events(self, reason: str, *, limit_s: float | None = None) -> list[Event]:
        """What the session says as it ends (``session.closed``), once."""
        if self.closed:
            return []
        self.closed = True
        return [
            event(
                "session.closed",
                reason=reason,
                session=copy.deepcopy(self.session),
                usage=self._usage(),
            )
        ]

    # -- turns ---------------------------------------------------------------------------------

    def _ms(self) -> int:
        return round((self._clock() - self._started) * 1000)

    def _usage(self) -> dict[str, Any]:
        return {"seconds": round(self._clock() - self._started, 1)}

    def _answer(self, turn: TurnEnded) -> Effects:
        end_ms = self._ms()
        start_ms = max(0, end_ms - round(turn.utterance.duration_ms))
        heard = f"(emulator) {turn.utterance.speech_ms / 1000:.1f} seconds of speech"
        planned = plan(
            session={"audio": {"output": {"voice": self.session["audio"]["output"]["voice"]}}},
            request={},
            last_input=turn.utterance,
            conversation_id=None,
        )
        response = LiveResponse(
            **{f.name: getattr(planned, f.name) for f in fields(planned)}, start_ms=end_ms
        )
        fx = Effects(
            [
                event(
                    "session.input_transcript.delta",
                    delta=heard,
                    start_ms=start_ms,
                    end_ms=end_ms,
                ),
                event("session.usage.updated", usage=self._usage()),
            ]
        )
        self.active = response
        fx.start = response
        if response.clip is not None:
            if self.playing is not None:
                fx.stop_playback = True
            self.playing = response
            fx.play = response
        return fx

    # -- commands ------------------------------------------------------------------------------

    def _update(self, client_event: Event) -> Effects:
        try:
            patch = contract.check_update(client_event, self.session)
        except GatewayInvalidRequest as exc:
            raise _converted(exc) from None
        self.session = sess.apply_update(self.session, patch)
        return Effects([event("session.updated", session=copy.deepcopy(self.session))])

    def _mute(self, client_event: Event, muted: bool) -> Effects:
        self.muted = muted
        kind = "session.input_audio.muted" if muted else "session.input_audio.unmuted"
        return Effects([event(kind)])

    def _append(self, client_event: Event, what: str) -> Effects:
        content = client_event.get("content")
        if not isinstance(content, str) or not content:
            raise InvalidRequest(
                "Missing required parameter: 'content'.",
                code="missing_required_parameter",
                param="content",
            )
        now = self._ms()
        return Effects([event(f"session.{what}.appended", start_ms=now, end_ms=now)])

    def _responses_only(self, client_event: Event) -> None:
        if self.session["delegation"].get("type") != "responses":
            raise InvalidRequest(
                f"{client_event['type']!r} needs a session with Responses delegation.",
                code="invalid_delegation",
                param="type",
            )

    def _response_item_create(self, client_event: Event) -> Effects:
        self._responses_only(client_event)
        self.delegate.add_item(client_event.get("item"))
        return Effects()  # Live acknowledges an added item only with errors

    def _response_create(self, client_event: Event) -> Effects:
        self._responses_only(client_event)
        stream = self.delegate.respond(responses_config(self.session), offset_ms=self._ms())
        placeholder = sess.new_id("resp_")
        response = DelegatedResponse(
            id=placeholder,
            kind="text",
            text="",
            modalities=["text"],
            voice=None,
            metadata=None,
            conversation_id=None,
            item={},
            chunks=[""] * len(stream.deltas),
            stream=stream,
        )
        return Effects(list(stream.opening), start=response)

    def _delegation_done(self, stream: DelegatedStream) -> Effects:
        """The stream's last events; the Live model then speaks the delegate's answer."""
        self.delegate.finished(stream)
        fx = Effects(list(stream.closing))
        if stream.answer is None or self.closed:
            return fx
        spoken = LiveResponse(
            id=sess.new_id("resp_"),
            kind="audio",
            text=stream.answer,
            modalities=["audio"],
            voice=self.session["audio"]["output"]["voice"],
            metadata=None,
            conversation_id=None,
            item={},
            clip=spoken_tones(stream.answer),
            chunks=_chunks(stream.answer),
            start_ms=self._ms(),
        )
        if self.playing is not None:
            fx.stop_playback = True
        self.active = self.playing = spoken
        fx.start = fx.play = spoken
        return fx

    def _close(self, client_event: Event) -> Effects:
        return Effects(self.closed_events("close_requested"), end="close_requested")


def _voice(requested: dict[str, Any]) -> Any:
    audio = requested.get("audio")
    output = audio.get("output") if isinstance(audio, dict) else None
    voice = output.get("voice") if isinstance(output, dict) else None
    return voice or "marin"
