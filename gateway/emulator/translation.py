"""One emulated Realtime translation session, driven by its data channel and microphone audio.

Pure: no I/O; the clock is injected. It plays the part for a translation call that
:class:`~gateway.emulator.conversation.Conversation` plays for a Realtime call, with the
translation event set: ``session.created`` (``type: "translation"``) first, no turns or
responses, ``session.update`` answered by ``session.updated`` (audio fields only),
``session.close`` by ``session.closed`` before the call ends. There is no model: each utterance
the turn detector hears is played back as its own "translation", announced by a
``session.output_transcript.delta`` naming the target language and, when the session asks for
transcription, preceded by a ``session.input_transcript.delta``. Deltas carry ``elapsed_ms``
from the session's start in 200 ms steps, as OpenAI's do.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import Any

from gateway.emulator import events
from gateway.emulator import session as sess
from gateway.emulator.conversation import Effects
from gateway.emulator.errors import InvalidRequest, OpenAIError
from gateway.emulator.items import event
from gateway.emulator.responses import Response
from gateway.emulator.turns import InputTurns, TurnEnded
from gateway.emulator.vad import Samples, VadConfig
from gateway.errors import InvalidRequest as GatewayInvalidRequest
from gateway.protocol import translation as contract
from gateway.types import Event

FRAME_MS = 200
"""Translation works in 200 ms frames; ``elapsed_ms`` advances by them."""


def _converted(error: GatewayInvalidRequest) -> InvalidRequest:
    return InvalidRequest(error.message, code=error.code or "invalid_request", param=error.param)


class TranslationSession:
    """A translation session's state. ``clock`` gives seconds (monotonic)."""

    def __init__(
        self,
        session: Mapping[str, Any],
        *,
        vad: VadConfig,
        lifetime_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_echo_ms: float = 30_000.0,
        now: float | None = None,
    ) -> None:
        """``session``: what the client secret bound (``id``, ``model``, ``audio``)."""
        created = int(time.time() if now is None else now)
        self.session: dict[str, Any] = contract.session_view(
            {**session, "id": session.get("id") or sess.new_id("sess_")},
            created + int(lifetime_s),
        )
        self._clock = clock
        self._started = clock()
        # Turn detection as a Realtime session with server VAD has it: a translation listens
        # all the time, and an utterance is what it plays back.
        self.turns = InputTurns(
            vad, sess.default_session(str(self.session["model"]), vad), max_ms=max_echo_ms
        )
        self.closed = False
        self._handlers: dict[str, Callable[[Event], Effects]] = {
            "session.update": self._update,
            "session.close": self._close,
        }

    # -- what the call asks of a dialogue --------------------------------------------------------

    def created_events(self) -> list[Event]:
        return [event("session.created", session=copy.deepcopy(self.session))]

    def handle(self, client_event: Event) -> Effects:
        kind = client_event["type"]
        reason = contract.NOT_ON_WEBRTC.get(kind)
        if reason is not None:
            raise InvalidRequest(reason, code="invalid_event", param="type")
        if self.closed:
            raise InvalidRequest(
                "The session is closing; it takes no more events.", code="session_closed"
            )
        handler = self._handlers.get(kind)
        if handler is None:
            raise InvalidRequest(
                f"Invalid value: {kind!r}. Supported values are: "
                + ", ".join(repr(k) for k in sorted(self._handlers))
                + ".",
                code="invalid_value",
                param="type",
            )
        return handler(client_event)

    def push_audio(self, samples: Samples, duration_ms: float, level: float) -> Effects | None:
        if self.closed:
            return None
        turn = self.turns.push(samples, duration_ms, level)
        return self._translate(turn) if isinstance(turn, TurnEnded) else None

    def complete(self, response: Response) -> Effects:
        return Effects()

    def playback_finished(self, response_id: str) -> list[Event]:
        return []

    def error_event(self, error: OpenAIError, client_event_id: str | None = None) -> Event:
        return events.error_event(error, client_event_id)

    def closed_events(self, reason: str, *, limit_s: float | None = None) -> list[Event]:
        """What the session says as it ends, once: ``session.closed``, after the error a
        Realtime session sends at its time limit when that is why."""
        if self.closed:
            return []
        self.closed = True
        out: list[Event] = []
        if reason == "expired":
            minutes = round((limit_s or 0) / 60)
            out.append(
                events.error_event(
                    InvalidRequest(
                        f"Your session hit the maximum duration of {minutes} minutes.",
                        code="session_expired",
                    )
                )
            )
        out.append(event("session.closed"))
        return out

    # -- translating -----------------------------------------------------------------------------

    def _elapsed_ms(self) -> int:
        elapsed = round((self._clock() - self._started) * 1000)
        return elapsed - elapsed % FRAME_MS

    def _translate(self, turn: TurnEnded) -> Effects:
        seconds = f"{turn.utterance.speech_ms / 1000:.1f} seconds of speech"
        language = self.session["audio"]["output"]["language"] or "auto"
        elapsed = self._elapsed_ms()
        fx = Effects()
        if self.session["audio"]["input"]["transcription"] is not None:
            fx.events.append(
                event(
                    "session.input_transcript.delta",
                    delta=f"(emulator) {seconds}. ",
                    elapsed_ms=elapsed,
                )
            )
        fx.events.append(
            event(
                "session.output_transcript.delta",
                delta=f"(emulator) {language}: {seconds}. ",
                elapsed_ms=elapsed,
            )
        )
        fx.play = Response(
            id=sess.new_id("resp_"),
            kind="audio",
            text="",
            modalities=["audio"],
            voice=None,
            metadata=None,
            conversation_id=None,
            item={},
            clip=turn.utterance.samples,
        )
        return fx

    # -- events ----------------------------------------------------------------------------------

    def _update(self, client_event: Event) -> Effects:
        try:
            patch = contract.check_update(client_event, self.session)
        except GatewayInvalidRequest as exc:
            raise _converted(exc) from None
        self.session = sess.apply_update(self.session, patch)
        return Effects([event("session.updated", session=copy.deepcopy(self.session))])

    def _close(self, client_event: Event) -> Effects:
        # OpenAI flushes pending input and sends what is left of the translation first; the
        # emulator translates as it goes, so nothing is pending.
        return Effects(self.closed_events("close_requested"), end="close_requested")
