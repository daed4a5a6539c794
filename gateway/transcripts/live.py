"""A GPT-Live session's transcript: its transcript deltas made into turns.

Pure: server events in, records out. Live has no item ids and no "done" event for a turn
(``../shared/live-protocol.md`` §3b): ``session.input_transcript.delta`` and
``session.output_transcript.delta`` carry pieces of text with ``start_ms``/``end_ms`` from the
session's start. A turn is the run of one side's deltas until the other side speaks (or the
session ends); it is written then, as a ``user`` or ``assistant`` record with a synthetic
``item_id`` (``turn_<n>``), its ``order``, and when it was spoken, so the records read like a
Realtime call's (:func:`gateway.transcripts.conversation` sorts them the same way).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.transcripts.records import Record

_SIDES: Final = {
    "session.input_transcript.delta": "user",
    "session.output_transcript.delta": "assistant",
}
MAX_TURN_CHARS: Final = 100_000
"""A turn longer than this is written and a new one begun: memory stays bounded."""


@dataclass
class _Turn:
    side: str
    order: int
    parts: list[str] = field(default_factory=list)
    chars: int = 0
    start_ms: int | None = None
    end_ms: int | None = None


class LiveTranscript:
    """Live transcript deltas in, ``user``/``assistant`` records out."""

    def __init__(self, record: Callable[..., Record]) -> None:
        """``record(kind, **fields)`` makes a record (the call's builder stamps it)."""
        self._record = record
        self._turn: _Turn | None = None
        self._turns = 0

    def feed(self, event: Mapping[str, Any]) -> list[Record]:
        side = _SIDES.get(str(event.get("type")))
        delta = event.get("delta")
        if side is None or not isinstance(delta, str):
            return []
        out: list[Record] = []
        turn = self._turn
        if turn is None or turn.side != side or turn.chars + len(delta) > MAX_TURN_CHARS:
            out += self.flush()
            turn = self._turn = _Turn(side, self._turns)
            self._turns += 1
        turn.parts.append(delta)
        turn.chars += len(delta)
        start, end = event.get("start_ms"), event.get("end_ms")
        if isinstance(start, int | float) and turn.start_ms is None:
            turn.start_ms = int(start)
        if isinstance(end, int | float):
            turn.end_ms = int(end)
        return out

    def flush(self) -> list[Record]:
        """The turn under way, if any (the session ended, or the other side spoke)."""
        turn, self._turn = self._turn, None
        if turn is None:
            return []
        fields: dict[str, Any] = {
            "item_id": f"turn_{turn.order}",
            "order": turn.order,
            "text": "".join(turn.parts),
            "start_ms": turn.start_ms,
            "end_ms": turn.end_ms,
        }
        if turn.side == "user":
            return [self._record("user", source="audio", **fields)]
        return [self._record("assistant", response_id=None, modality="audio", **fields)]
