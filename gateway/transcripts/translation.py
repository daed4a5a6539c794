"""A Realtime translation call's transcript: its two streams of deltas made into segments.

Pure: server events in, records out. A translation has no turns: the speaker's words
(``session.input_transcript.delta``, when transcription is on) and their translation
(``session.output_transcript.delta``) are two append-only streams that run side by side, so
unlike a Live session's turns (:mod:`gateway.transcripts.live`) one side does not end the other.
Each side is cut into segments at the end of a sentence (or when a segment grows too long, or
the call ends) and written as a ``user`` record (the source speech) or an ``assistant`` record
(the translation), with a synthetic ``item_id``, its ``order`` and the ``elapsed_ms`` span it
covers, so :func:`gateway.transcripts.conversation` reads it as it reads any call's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.transcripts.live import MAX_TURN_CHARS
from gateway.transcripts.records import Record

_SIDES: Final = {
    "session.input_transcript.delta": "user",
    "session.output_transcript.delta": "assistant",
}
# What ends a sentence in the scripts a translation is most often into; deltas carry their own
# spacing, so the text is never joined with anything added.
_SENTENCE_ENDS: Final = (".", "!", "?", "\u3002", "\uff01", "\uff1f", "\u0964")


@dataclass
class _Segment:
    order: int
    parts: list[str] = field(default_factory=list)
    chars: int = 0
    start_ms: int | None = None
    end_ms: int | None = None


class TranslationTranscript:
    """Translation transcript deltas in, ``user``/``assistant`` records out."""

    def __init__(self, record: Callable[..., Record]) -> None:
        """``record(kind, **fields)`` makes a record (the call's builder stamps it)."""
        self._record = record
        self._open: dict[str, _Segment] = {}
        self._segments = 0

    def feed(self, event: Mapping[str, Any]) -> list[Record]:
        side = _SIDES.get(str(event.get("type")))
        delta = event.get("delta")
        if side is None or not isinstance(delta, str):
            return []
        out: list[Record] = []
        segment = self._open.get(side)
        if segment is not None and segment.chars + len(delta) > MAX_TURN_CHARS:
            out += self._flush(side)
            segment = None
        if segment is None:
            segment = self._open[side] = _Segment(self._segments)
            self._segments += 1
        segment.parts.append(delta)
        segment.chars += len(delta)
        elapsed = event.get("elapsed_ms")
        if isinstance(elapsed, int | float) and not isinstance(elapsed, bool):
            if segment.start_ms is None:
                segment.start_ms = int(elapsed)
            segment.end_ms = int(elapsed)
        if delta.rstrip().endswith(_SENTENCE_ENDS):
            out += self._flush(side)
        return out

    def flush(self) -> list[Record]:
        """The segments under way (the call ended), in the order they began."""
        sides = sorted(self._open, key=lambda side: self._open[side].order)
        return [record for side in sides for record in self._flush(side)]

    def _flush(self, side: str) -> list[Record]:
        segment = self._open.pop(side, None)
        if segment is None:
            return []
        fields: dict[str, Any] = {
            "item_id": f"segment_{segment.order}",
            "order": segment.order,
            "text": "".join(segment.parts),
            "start_ms": segment.start_ms,
            "end_ms": segment.end_ms,
        }
        if side == "user":
            return [self._record("user", source="audio", **fields)]
        return [self._record("assistant", response_id=None, modality="audio", **fields)]
