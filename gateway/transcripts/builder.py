"""Server events in, transcript records out: pure, no file or task in sight.

The record kinds are described in :mod:`gateway.transcripts`; the truncation estimate
(:func:`cut_text`, ``MS_PER_AUDIO_TOKEN``, ``CHARS_PER_SECOND``) lives here because only the
builder knows when an assistant turn was cut short.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.transcripts.live import LiveTranscript
from gateway.transcripts.records import Record
from gateway.transcripts.translation import TranslationTranscript

MS_PER_AUDIO_TOKEN: Final = 50.0
"""Assistant audio is billed at one output audio token per 50 ms (protocol.md §4.5)."""
CHARS_PER_SECOND: Final = 15.0
"""Speech rate assumed when a response's usage does not say how long its audio was."""

_WORD_RE: Final = re.compile(r"\S+")
_MAX_ITEMS: Final = 256


@dataclass
class _Turn:
    """An assistant item whose audio may still be cut short."""

    item_id: str
    response_id: str | None
    text: str | None = None
    audio_end_ms: int | None = None
    cut_by: str = "conversation.item.truncated"
    audio_ms: float | None = None
    response_done: bool = False
    corrected: bool = False


class TranscriptBuilder:
    """Server events in, transcript records out. Pure; the clock is injected."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._timer = timer
        self._order: dict[str, int] = {}
        self._users: set[str] = set()
        self._turns: dict[str, _Turn] = {}
        # Playback, for cuts the server does not report: response id → when its audio started,
        # how long it played once it stopped, and which responses were cancelled.
        self._playing: dict[str, float] = {}
        self._played_ms: dict[str, float] = {}
        self._cancelled: dict[str, None] = {}  # an ordered set
        self._handlers: dict[str, Callable[[Mapping[str, Any]], list[Record]]] = {
            "conversation.item.input_audio_transcription.completed": self._transcribed,
            "conversation.item.input_audio_transcription.failed": self._transcription_failed,
            "input_audio_buffer.committed": self._committed,
            "conversation.item.added": self._item_added,
            "conversation.item.created": self._item_added,
            "conversation.item.done": self._item_added,
            "response.output_item.added": self._output_item_added,
            "response.output_audio_transcript.done": self._audio_transcript_done,
            "response.audio_transcript.done": self._audio_transcript_done,
            "response.output_text.done": self._text_done,
            "response.text.done": self._text_done,
            "conversation.item.truncated": self._truncated,
            "response.done": self._response_done,
            "output_audio_buffer.started": self._playback_started,
            "output_audio_buffer.stopped": self._playback_stopped,
            "output_audio_buffer.cleared": self._playback_cleared,
        }

    def _record(self, kind: str, **fields: Any) -> Record:
        return {"ts": self._clock(), "kind": kind, **fields}

    def live(self) -> LiveTranscript:
        """The turns of a GPT-Live session, stamped by this builder's clock."""
        return LiveTranscript(self._record)

    def translation(self) -> TranslationTranscript:
        """The segments of a Realtime translation call, stamped by this builder's clock."""
        return TranslationTranscript(self._record)

    # -- records the relay asks for -----------------------------------------------------------

    def call_started(
        self, call_id: str, upstream_call_id: str | None, session: Mapping[str, Any]
    ) -> Record:
        """The first record; only the session's model and voice are kept."""
        voice = _dig(session, "audio", "output", "voice")
        return self._record(
            "call_started",
            call_id=call_id,
            upstream_call_id=upstream_call_id,
            model=_str_or_none(session.get("model")),
            voice=_str_or_none(voice if voice is not None else session.get("voice")),
        )

    def tool_call(
        self,
        *,
        call_id: str,
        name: str,
        arguments: Any,
        output: Any,
        status: str,
        seconds: float,
    ) -> Record:
        return self._record(
            "tool_call",
            call_id=call_id,
            name=name,
            arguments=arguments,
            output=output,
            status=status,
            seconds=round(seconds, 3),
        )

    def call_ended(
        self,
        *,
        reason: str,
        outcome: str,
        duration_s: float,
        app: str | None = None,
        cost_usd: float | None = None,
    ) -> list[Record]:
        """The last records: corrections still waiting for a ``response.done``, then the end
        (with the call's app and cost, when known)."""
        records = [self._correct(t) for t in self._turns.values() if self._ready(t, final=True)]
        extra: dict[str, Any] = {}
        if app is not None:
            extra["app"] = app
        if cost_usd is not None:
            extra["cost_usd"] = cost_usd
        records.append(
            self._record(
                "call_ended",
                reason=reason,
                outcome=outcome,
                duration_s=round(duration_s, 3),
                **extra,
            )
        )
        return records

    # -- server events ------------------------------------------------------------------------

    def feed(self, event: Mapping[str, Any]) -> list[Record]:
        """The records one server event completes (usually none)."""
        handler = self._handlers.get(str(event.get("type")))
        return handler(event) if handler is not None else []

    def _place(self, item_id: Any) -> None:
        if isinstance(item_id, str) and item_id not in self._order:
            self._order[item_id] = len(self._order)

    def _committed(self, event: Mapping[str, Any]) -> list[Record]:
        self._place(event.get("item_id"))
        return []

    def _item_added(self, event: Mapping[str, Any]) -> list[Record]:
        item = event.get("item")
        if not isinstance(item, Mapping):
            return []
        item_id = item.get("id")
        self._place(item_id)
        if item.get("role") != "user" or not isinstance(item_id, str) or item_id in self._users:
            return []
        texts = [
            part["text"]
            for part in item.get("content") or ()
            if isinstance(part, Mapping)
            and part.get("type") == "input_text"
            and isinstance(part.get("text"), str)
        ]
        if not texts:
            return []
        self._users.add(item_id)
        return [self._user(item_id, "text", "\n".join(texts))]

    def _user(self, item_id: str, source: str, text: str | None, **extra: Any) -> Record:
        return self._record(
            "user",
            item_id=item_id,
            order=self._order.get(item_id),
            source=source,
            text=text,
            **extra,
        )

    def _transcribed(self, event: Mapping[str, Any]) -> list[Record]:
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            return []
        self._place(item_id)
        return [self._user(item_id, "audio", _str_or_none(event.get("transcript")) or "")]

    def _transcription_failed(self, event: Mapping[str, Any]) -> list[Record]:
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            return []
        self._place(item_id)
        error = event.get("error")
        message = error.get("message") if isinstance(error, Mapping) else None
        return [self._user(item_id, "audio", None, error=_str_or_none(message) or "failed")]

    def _output_item_added(self, event: Mapping[str, Any]) -> list[Record]:
        item = event.get("item")
        if isinstance(item, Mapping) and isinstance(item.get("id"), str):
            self._place(item["id"])
            if item.get("type") == "message" and item.get("role", "assistant") == "assistant":
                self._turn(item["id"], _str_or_none(event.get("response_id")))
        return []

    def _turn(self, item_id: str, response_id: str | None) -> _Turn:
        turn = self._turns.get(item_id)
        if turn is None:
            turn = self._turns[item_id] = _Turn(item_id, response_id)
            if len(self._turns) > _MAX_ITEMS:
                # Oldest first: an item that old is not going to be cut short any more.
                del self._turns[next(iter(self._turns))]
        elif turn.response_id is None:
            turn.response_id = response_id
        return turn

    def _done_text(self, event: Mapping[str, Any], field: str, modality: str) -> list[Record]:
        item_id = event.get("item_id")
        text = event.get(field)
        if not isinstance(item_id, str) or not isinstance(text, str):
            return []
        self._place(item_id)
        response_id = _str_or_none(event.get("response_id"))
        records = [
            self._record(
                "assistant",
                item_id=item_id,
                order=self._order.get(item_id),
                response_id=response_id,
                modality=modality,
                text=text,
            )
        ]
        if modality == "audio":
            turn = self._turn(item_id, response_id)
            turn.text = text
            if self._ready(turn):
                records.append(self._correct(turn))
        return records

    def _audio_transcript_done(self, event: Mapping[str, Any]) -> list[Record]:
        return self._done_text(event, "transcript", "audio")

    def _text_done(self, event: Mapping[str, Any]) -> list[Record]:
        return self._done_text(event, "text", "text")

    def _truncated(self, event: Mapping[str, Any]) -> list[Record]:
        item_id = event.get("item_id")
        end = event.get("audio_end_ms")
        if not isinstance(item_id, str) or item_id not in self._turns:
            return []
        if not isinstance(end, int | float) or isinstance(end, bool):
            return []
        turn = self._turns[item_id]
        turn.audio_end_ms = max(0, int(end))
        turn.cut_by = "conversation.item.truncated"
        turn.corrected = False
        return [self._correct(turn)] if self._ready(turn) else []

    def _playback_started(self, event: Mapping[str, Any]) -> list[Record]:
        response_id = event.get("response_id")
        if isinstance(response_id, str):
            self._playing[response_id] = self._timer()
            while len(self._playing) > _MAX_ITEMS:
                del self._playing[next(iter(self._playing))]
        return []

    def _playback_ended(self, response_id: Any) -> str | None:
        """Note how long ``response_id`` (or the one playing) played; its id, if known."""
        rid: str | None = (
            response_id if isinstance(response_id, str) else next(reversed(self._playing), None)
        )
        if rid is None or rid not in self._playing:
            return None
        started = self._playing.pop(rid)
        self._played_ms[rid] = max(0.0, (self._timer() - started) * 1000)
        while len(self._played_ms) > _MAX_ITEMS:
            del self._played_ms[next(iter(self._played_ms))]
        return rid

    def _playback_stopped(self, event: Mapping[str, Any]) -> list[Record]:
        # Stopped is normally "played to the end"; after a cancel it means cut off.
        response_id = self._playback_ended(event.get("response_id"))
        if response_id is None or response_id not in self._cancelled:
            return []
        return self._cut_by_clock(response_id)

    def _playback_cleared(self, event: Mapping[str, Any]) -> list[Record]:
        response_id = self._playback_ended(event.get("response_id"))
        return self._cut_by_clock(response_id) if response_id is not None else []

    def _cut_by_clock(self, response_id: str) -> list[Record]:
        """The audio of ``response_id`` was cut off; estimate the cut from how long it played.

        Only for items the server gave no ``conversation.item.truncated`` for (that one is exact
        and replaces the estimate whenever it comes).
        """
        played = self._played_ms.get(response_id)
        records: list[Record] = []
        for turn in self._turns.values():
            if turn.response_id != response_id or played is None:
                continue
            if turn.audio_end_ms is not None and turn.cut_by == "conversation.item.truncated":
                continue
            turn.audio_end_ms = round(played)
            turn.cut_by = "playback_time"
            turn.corrected = False
            if self._ready(turn):
                records.append(self._correct(turn))
        return records

    def _response_done(self, event: Mapping[str, Any]) -> list[Record]:
        response = event.get("response")
        if not isinstance(response, Mapping):
            return []
        response_id = _str_or_none(response.get("id"))
        usage = response.get("usage")
        turns = [t for t in self._turns.values() if t.response_id == response_id]
        audio_ms = _output_audio_ms(usage)
        if audio_ms:
            # Several audio items in one response share its audio by transcript length.
            weights = [len(t.text or "") for t in turns]
            total = sum(weights)
            for turn, weight in zip(turns, weights, strict=True):
                turn.audio_ms = audio_ms * (weight / total if total else 1 / len(turns))
        records: list[Record] = []
        for turn in turns:
            turn.response_done = True
            if self._ready(turn):
                records.append(self._correct(turn))
        if response.get("status") == "cancelled" and response_id is not None:
            self._cancelled[response_id] = None
            while len(self._cancelled) > _MAX_ITEMS:
                del self._cancelled[next(iter(self._cancelled))]
            if response_id in self._played_ms:  # its audio stopped before response.done
                records += self._cut_by_clock(response_id)
        if isinstance(usage, Mapping):
            records.append(
                self._record(
                    "usage",
                    response_id=response_id,
                    status=_str_or_none(response.get("status")),
                    usage=dict(usage),
                )
            )
        return records

    # -- truncation ---------------------------------------------------------------------------

    @staticmethod
    def _ready(turn: _Turn, *, final: bool = False) -> bool:
        """Whether the correction for ``turn`` can be written now."""
        if turn.corrected or turn.audio_end_ms is None or turn.text is None:
            return False
        return final or turn.response_done or turn.audio_ms is not None

    def _correct(self, turn: _Turn) -> Record:
        assert turn.text is not None and turn.audio_end_ms is not None
        turn.corrected = True
        if turn.audio_ms:
            audio_ms, basis = turn.audio_ms, "audio_tokens"
        else:
            audio_ms, basis = 1000.0 * len(turn.text) / CHARS_PER_SECOND, "speech_rate"
        return self._record(
            "assistant_truncated",
            item_id=turn.item_id,
            response_id=turn.response_id,
            text=cut_text(turn.text, turn.audio_end_ms / audio_ms if audio_ms else 1.0),
            audio_end_ms=turn.audio_end_ms,
            cut_by=turn.cut_by,
            audio_ms=round(audio_ms),
            basis=basis,
        )


def cut_text(text: str, fraction: float) -> str:
    """The part of ``text`` heard when ``fraction`` of its audio was played.

    Without word timings the audio is taken to run evenly over the characters; a word counts as
    heard when more than half of it was.
    """
    if fraction >= 1.0:
        return text
    cut = len(text) * max(0.0, fraction)
    end = 0
    for word in _WORD_RE.finditer(text):
        if (word.start() + word.end()) / 2 >= cut:
            break
        end = word.end()
    return text[:end]


def _dig(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _output_audio_ms(usage: Any) -> float:
    tokens = _dig(usage, "output_token_details", "audio_tokens")
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens <= 0:
        return 0.0
    return tokens * MS_PER_AUDIO_TOKEN
