"""Where each turn of a call's transcript sits in its recording.

Pure: server events in (with the time they reached the gateway), transcript records out with
``offset_s`` (and ``end_s`` where known): seconds from the start of the recording, which is the
start of the call. A user's spoken turn starts at its ``input_audio_buffer.speech_started`` and
ends at ``speech_stopped``; the model's turn starts when its audio starts playing
(``output_audio_buffer.started``, else ``response.created``) and ends when it stops. A record
with no such event (a typed message, a tool call) sits where it was written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

MAX_TRACKED: Final = 10_000
"""Turns remembered per call; a call with more keeps the first ones' times."""


class TurnClock:
    def __init__(self, started_at: float) -> None:
        """``started_at``: Unix time of the start of the call (and of the recording)."""
        self.started_at = started_at
        self._user: dict[str, list[float | None]] = {}
        self._model: dict[str, list[float | None]] = {}

    def observe(self, event: Mapping[str, Any], at: float) -> None:
        """Note the time (Unix) of an event that starts or ends a turn."""
        kind = event.get("type")
        offset = round(at - self.started_at, 3)
        if kind == "input_audio_buffer.speech_started":
            self._mark(self._user, event.get("item_id"), 0, offset, first=False)
        elif kind == "input_audio_buffer.speech_stopped":
            self._mark(self._user, event.get("item_id"), 1, offset, first=False)
        elif kind == "output_audio_buffer.started":
            self._mark(self._model, event.get("response_id"), 0, offset, first=False)
        elif kind == "response.created":
            response = event.get("response")
            if isinstance(response, Mapping):
                self._mark(self._model, response.get("id"), 0, offset, first=True)
        elif kind in ("output_audio_buffer.stopped", "output_audio_buffer.cleared"):
            self._mark(self._model, event.get("response_id"), 1, offset, first=False)

    def _mark(
        self, table: dict[str, list[float | None]], key: Any, index: int, at: float, *, first: bool
    ) -> None:
        if not isinstance(key, str):
            return
        times = table.get(key)
        if times is None:
            if len(table) >= MAX_TRACKED:
                return
            times = table[key] = [None, None]
        if first and times[index] is not None:
            return
        times[index] = at

    def annotate(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """``record`` with its place in the recording."""
        out = dict(record)
        times: list[float | None] | None = None
        if record.get("kind") == "user" and record.get("source") == "audio":
            times = self._user.get(str(record.get("item_id")))
        elif record.get("kind") in ("assistant", "assistant_truncated"):
            times = self._model.get(str(record.get("response_id")))
        if times is not None and times[0] is not None:
            out["offset_s"] = times[0]
            if times[1] is not None:
                out["end_s"] = times[1]
        else:
            written = record.get("ts")
            if isinstance(written, int | float):
                out["offset_s"] = round(max(0.0, written - self.started_at), 3)
        return out
