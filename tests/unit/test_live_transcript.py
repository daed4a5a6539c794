"""A GPT-Live session's transcript deltas made into turns."""

from __future__ import annotations

from typing import Any

from gateway.transcripts import TranscriptBuilder, conversation
from gateway.transcripts.live import MAX_TURN_CHARS


def delta(side: str, text: str, start: int, end: int) -> dict[str, Any]:
    kind = "session.input_transcript.delta" if side == "user" else "session.output_transcript.delta"
    return {"type": kind, "delta": text, "start_ms": start, "end_ms": end}


def test_deltas_of_one_side_make_a_turn_until_the_other_side_speaks() -> None:
    live = TranscriptBuilder(clock=lambda: 1.0).live()
    records = []
    for event in (
        delta("user", "Hello ", 0, 400),
        delta("user", "there.", 400, 900),
        {"type": "session.usage.updated", "usage": {"seconds": 1.0}},
        delta("assistant", "Hi, ", 1200, 1500),
        delta("assistant", "how can I help?", 1500, 2600),
        delta("user", "Bye.", 3000, 3400),
    ):
        records += live.feed(event)
    records += live.flush()
    assert [r["kind"] for r in records] == ["user", "assistant", "user"]
    assert records[0] == {
        "ts": 1.0,
        "kind": "user",
        "source": "audio",
        "item_id": "turn_0",
        "order": 0,
        "text": "Hello there.",
        "start_ms": 0,
        "end_ms": 900,
    }
    assert records[1]["text"] == "Hi, how can I help?" and records[1]["modality"] == "audio"
    assert (records[1]["start_ms"], records[1]["end_ms"]) == (1200, 2600)
    assert [t["text"] for t in conversation(records)] == [
        "Hello there.",
        "Hi, how can I help?",
        "Bye.",
    ]
    assert live.flush() == []


def test_malformed_deltas_are_ignored_and_a_long_turn_is_split() -> None:
    live = TranscriptBuilder().live()
    assert live.feed({"type": "session.input_transcript.delta", "delta": 5}) == []
    assert live.feed({"type": "session.output_transcript.delta"}) == []
    assert (
        live.feed({"type": "session.input_transcript.delta", "delta": "x", "start_ms": "a"}) == []
    )
    chunk = "y" * 10_000
    written = []
    for _ in range(25):
        written += live.feed({"type": "session.input_transcript.delta", "delta": chunk})
    written += live.flush()
    assert sum(len(r["text"]) for r in written) == 1 + 25 * 10_000
    assert all(len(r["text"]) <= MAX_TURN_CHARS for r in written) and len(written) >= 3
    assert written[0]["start_ms"] is None
