"""The state of one emulated Realtime conversation, driven by client events and audio.

Pure: no I/O, no clocks. Every input (a client event, a chunk of audio, the end of a playback,
the end of a response's streaming) returns :class:`Effects`: the server events to send and what
the call must do with its audio and its streaming task.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.emulator import session as sess
from gateway.emulator.errors import InvalidRequest, OpenAIError
from gateway.emulator.events import error_event
from gateway.emulator.items import Context, Input, Items, event, input_from_item, text_tokens
from gateway.emulator.responses import Response, plan
from gateway.emulator.turns import InputTurns, TurnEnded, TurnStarted
from gateway.emulator.vad import Samples, VadConfig
from gateway.types import Event

DEFAULT_VAD = VadConfig()
_RATE_LIMITS = [
    {"name": "requests", "limit": 10000, "remaining": 9999, "reset_seconds": 0.006},
    {"name": "tokens", "limit": 200000, "remaining": 199000, "reset_seconds": 0.3},
]


@dataclass
class Effects:
    events: list[Event] = field(default_factory=list)
    start: Response | None = None
    """A response began: stream its deltas, then call :meth:`Conversation.complete`."""
    play: Response | None = None
    """Play ``play.clip``; report its end with :meth:`Conversation.playback_finished`."""
    stop_playback: bool = False
    cancelled: Response | None = None
    """Stop streaming this response: its final events are already in ``events``."""
    end: str | None = None
    """End the call for this reason once ``events`` are out (a Live ``session.close``)."""

    def merge(self, other: Effects) -> Effects:
        self.events += other.events
        self.start = other.start or self.start
        self.play = other.play or self.play
        self.stop_playback = self.stop_playback or other.stop_playback
        self.cancelled = other.cancelled or self.cancelled
        self.end = other.end or self.end
        return self


class Conversation:
    def __init__(
        self,
        *,
        model: str,
        vad: VadConfig = DEFAULT_VAD,
        initial_session: sess.Session | None = None,
        playback_position: Callable[[], float] = lambda: 0.0,
        max_echo_ms: float = 30_000.0,
        lifetime_s: float = 3600.0,
    ) -> None:
        self.session = sess.default_session(model, vad, lifetime_s=lifetime_s)
        if initial_session:
            self.session = sess.apply_update(self.session, initial_session)
        self.id = sess.new_id("conv_")
        self.turns = InputTurns(vad, self.session, max_ms=max_echo_ms)
        self.context = Context()
        self.items = Items(self.context)
        self.active: Response | None = None
        self.playing: Response | None = None
        self._position = playback_position
        self._input: Input | None = None
        self._handlers: dict[str, Callable[[Event], Effects]] = {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit,
            "input_audio_buffer.clear": self._clear,
            "conversation.item.create": self._item_create,
            "conversation.item.retrieve": lambda e: Effects(self.items.retrieve(e)),
            "conversation.item.delete": lambda e: Effects(self.items.delete(e)),
            "conversation.item.truncate": lambda e: Effects(self.items.truncate(e)),
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
            "output_audio_buffer.clear": self._output_clear,
        }

    def created_events(self) -> list[Event]:
        return [event("session.created", session=copy.deepcopy(self.session))]

    def closed_events(self, reason: str, *, limit_s: float | None = None) -> list[Event]:
        """A Realtime call says nothing as it ends, but at its maximum duration: then OpenAI
        sends ``session_expired`` before it closes."""
        if reason != "expired" or limit_s is None:
            return []
        minutes = f"{limit_s / 60:g} minute" + ("" if limit_s == 60 else "s")
        error = InvalidRequest(
            f"Your session hit the maximum duration of {minutes}.", code="session_expired"
        )
        return [error_event(error)]

    def error_event(self, error: OpenAIError, client_event_id: str | None = None) -> Event:
        return error_event(error, client_event_id)

    def handle(self, client_event: Event) -> Effects:
        """Answer one parsed client event; a bad one raises :class:`InvalidRequest`."""
        kind = client_event["type"]
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

    # --- input audio -------------------------------------------------------------------------

    def push_audio(self, samples: Samples, duration_ms: float, level: float) -> Effects | None:
        """The next chunk of microphone audio (mono 48 kHz) and its RMS."""
        return self._turn(self.turns.push(samples, duration_ms, level))

    def _turn(self, turn: TurnStarted | TurnEnded | None) -> Effects | None:
        if isinstance(turn, TurnStarted):
            return self._speech_started(turn)
        if isinstance(turn, TurnEnded):
            return self._speech_stopped(turn)
        return None

    def _speech_started(self, turn: TurnStarted) -> Effects:
        fx = Effects(
            [
                event(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=turn.audio_start_ms,
                    item_id=turn.item_id,
                )
            ]
        )
        if sess.flag(self.session, "interrupt_response"):
            if self.active is not None:
                fx.merge(self._cancel("turn_detected"))
            playing = self.playing
            if playing is not None:
                fx.merge(self._stop_playback(truncate=True))
                fx.events.append(event("output_audio_buffer.cleared", response_id=playing.id))
        return fx

    def _speech_stopped(self, turn: TurnEnded) -> Effects:
        fx = Effects(
            [
                event(
                    "input_audio_buffer.speech_stopped",
                    audio_end_ms=turn.audio_end_ms,
                    item_id=turn.item_id,
                )
            ]
        )
        fx.events += self._commit_item(turn)
        if sess.flag(self.session, "create_response") and self.active is None:
            fx.merge(self._respond({}))
        return fx

    def _commit_item(self, turn: TurnEnded) -> list[Event]:
        previous = self.items.last_id
        content: dict[str, Any] = {"type": "input_audio", "transcript": None}
        item: dict[str, Any] = {
            "id": turn.item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [content],
        }
        self.items.add(item, previous)
        utterance = turn.utterance
        self._input = utterance
        self.context.audio_tokens += math.ceil(utterance.duration_ms / 100)
        events = [
            event("input_audio_buffer.committed", previous_item_id=previous, item_id=item["id"]),
            *self.items.added_events(item),
        ]
        if sess.dig(self.session, "audio", "input", "transcription"):
            transcript = f"(emulator) {utterance.speech_ms / 1000:.1f} seconds of speech"
            # As OpenAI does, a later conversation.item.retrieve returns the transcript; the
            # added/done events above were copies, taken before transcription finished.
            content["transcript"] = transcript
            events.append(
                event(
                    "conversation.item.input_audio_transcription.completed",
                    item_id=item["id"],
                    content_index=0,
                    transcript=transcript,
                    usage={"type": "duration", "seconds": round(utterance.duration_ms / 1000, 2)},
                )
            )
        return events

    def _append(self, client_event: Event) -> Effects:
        return self._turn(self.turns.append_base64(client_event.get("audio"))) or Effects()

    def _commit(self, client_event: Event) -> Effects:
        return Effects(self._commit_item(self.turns.commit()))

    def _clear(self, client_event: Event) -> Effects:
        self.turns.clear()
        return Effects([event("input_audio_buffer.cleared")])

    # --- session and items -------------------------------------------------------------------

    def _session_update(self, client_event: Event) -> Effects:
        patch = sess.check_session_type(client_event.get("session"), param="session")
        self.session = sess.apply_update(self.session, patch)
        self.turns.configure(self.session)
        return Effects([event("session.updated", session=copy.deepcopy(self.session))])

    def _item_create(self, client_event: Event) -> Effects:
        events, new_input = self.items.create(client_event)
        if new_input is not None:
            self._input = new_input
        return Effects(events)

    # --- responses ---------------------------------------------------------------------------

    def _response_create(self, client_event: Event) -> Effects:
        if self.active is not None:
            raise InvalidRequest(
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
            )
        request = client_event.get("response") or {}
        if not isinstance(request, dict):
            raise InvalidRequest(
                "Invalid type for 'response': expected an object.",
                code="invalid_type",
                param="response",
            )
        return self._respond(request)

    def _respond(self, request: dict[str, Any]) -> Effects:
        out_of_band = request.get("conversation") == "none"
        last_input = self._input
        given = request.get("input")
        if isinstance(given, list):
            found = [i for i in (input_from_item(x) for x in given if isinstance(x, dict)) if i]
            last_input = found[-1] if found else None
        elif not out_of_band:
            self._input = None
        response = plan(
            session=self.session,
            request=request,
            last_input=last_input,
            conversation_id=None if out_of_band else self.id,
        )
        previous = self.items.last_id
        if not out_of_band:
            self.items.add(response.item, previous)
        self.active = response
        fx = Effects(start=response)
        # One output buffer: a new response's audio replaces what is still playing.
        still_playing = self.playing
        if response.clip is not None and still_playing is not None:
            fx.merge(self._stop_playback(truncate=False))
            fx.events.append(event("output_audio_buffer.stopped", response_id=still_playing.id))
        start = response.start_events(previous if not out_of_band else None)
        start.insert(1, event("rate_limits.updated", rate_limits=copy.deepcopy(_RATE_LIMITS)))
        fx.events += start
        if response.clip is not None:
            self.playing = response
            fx.play = response
        return fx

    def _base_text_tokens(self) -> int:
        instructions = str(self.session.get("instructions") or "")
        tools = self.session.get("tools") or []
        return text_tokens(instructions) + text_tokens(str(tools) if tools else "")

    def _finish(self, response: Response, status: str, reason: str | None) -> list[Event]:
        self.active = None
        return response.finish_events(
            self.context,
            status=status,
            reason=reason,
            previous_item_id=self.items.previous_of(response.item["id"]),
            base_text_tokens=self._base_text_tokens(),
        )

    def complete(self, response: Response) -> Effects:
        """Its streaming ended: send ``response.done`` (unless it was cancelled meanwhile)."""
        if self.active is not response:
            return Effects()
        events = self._finish(response, "completed", None)
        if response.drained:
            events.append(event("output_audio_buffer.stopped", response_id=response.id))
        return Effects(events)

    def _cancel(self, reason: str) -> Effects:
        response = self.active
        assert response is not None
        return Effects(self._finish(response, "cancelled", reason), cancelled=response)

    def _response_cancel(self, client_event: Event) -> Effects:
        wanted = client_event.get("response_id")
        if self.active is None or (isinstance(wanted, str) and wanted != self.active.id):
            raise InvalidRequest(
                "Cancellation failed: no active response found", code="response_cancel_not_active"
            )
        response = self.active
        fx = self._cancel("client_cancelled")
        if self.playing is response:
            fx.merge(self._stop_playback(truncate=False))
            fx.events.append(event("output_audio_buffer.stopped", response_id=response.id))
        return fx

    def _output_clear(self, client_event: Event) -> Effects:
        playing = self.playing
        fx = self._stop_playback(truncate=True) if playing else Effects()
        fx.events.append(
            event("output_audio_buffer.cleared", response_id=playing.id if playing else None)
        )
        return fx

    def _stop_playback(self, *, truncate: bool) -> Effects:
        response = self.playing
        assert response is not None
        self.playing = None
        fx = Effects(stop_playback=True)
        item_id = response.item["id"]
        if truncate and item_id in self.items:
            played = min(self._position(), response.audio_ms)
            fx.events.append(
                event(
                    "conversation.item.truncated",
                    item_id=item_id,
                    content_index=0,
                    audio_end_ms=int(played),
                )
            )
        return fx

    def playback_finished(self, response_id: str) -> list[Event]:
        """The clip of ``response_id`` has been played to the end."""
        response = self.playing
        if response is None or response.id != response_id:
            return []
        self.playing = None
        if self.active is response:
            response.drained = True
            return []
        return [event("output_audio_buffer.stopped", response_id=response_id)]
