"""Call transcripts (gateway.transcripts): records from GA event sequences, and crash-safe files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.transcripts import (
    MAX_QUEUED_RECORDS,
    TranscriptBuilder,
    TranscriptWriter,
    conversation,
    cut_text,
    encode_record,
    prepare_directory,
    spoken_text,
)

ROOT = Path(__file__).resolve().parents[2]
ANSWER = "It is sunny and warm in Paris today, with a light breeze."


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 0.25
        return self.now


def usage(audio_tokens: int, text_tokens: int = 12) -> dict[str, Any]:
    return {
        "total_tokens": 200 + text_tokens + audio_tokens,
        "input_tokens": 200,
        "output_tokens": text_tokens + audio_tokens,
        "input_token_details": {
            "text_tokens": 150,
            "audio_tokens": 50,
            "image_tokens": 0,
            "cached_tokens": 128,
            "cached_tokens_details": {"text_tokens": 128, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
    }


def user_turn(item_id: str, previous: str | None, transcript: str | None) -> list[dict[str, Any]]:
    """Server VAD around one spoken user turn, as OpenAI sends it over WebRTC."""
    item = {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_audio", "transcript": None}],
    }
    events: list[dict[str, Any]] = [
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": 1000, "item_id": item_id},
        {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 2500, "item_id": item_id},
        {"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id},
        {"type": "conversation.item.added", "previous_item_id": previous, "item": item},
        {"type": "conversation.item.done", "previous_item_id": previous, "item": item},
    ]
    if transcript is not None:
        events.append(transcribed(item_id, transcript))
    return events


def transcribed(item_id: str, transcript: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": item_id,
        "content_index": 0,
        "transcript": transcript,
        "usage": {"type": "duration", "seconds": 1.5},
    }


def response_start(response_id: str, item_id: str, previous: str | None) -> list[dict[str, Any]]:
    item = {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
    return [
        {"type": "response.created", "response": {"id": response_id, "status": "in_progress"}},
        {"type": "rate_limits.updated", "rate_limits": []},
        {"type": "response.output_item.added", "response_id": response_id, "output_index": 0,
         "item": item},
        {"type": "conversation.item.added", "previous_item_id": previous, "item": item},
        {"type": "response.content_part.added", **where, "content_index": 0,
         "part": {"type": "audio", "transcript": ""}},
        {"type": "output_audio_buffer.started", "response_id": response_id},
        {"type": "response.output_audio_transcript.delta", **where, "content_index": 0,
         "delta": "It is sunny "},
    ]  # fmt: skip


def transcript_done(response_id: str, item_id: str, text: str) -> list[dict[str, Any]]:
    where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
    return [
        {"type": "response.output_audio.done", **where, "content_index": 0},
        {"type": "response.output_audio_transcript.done", **where, "content_index": 0,
         "transcript": text},
        {"type": "response.content_part.done", **where, "content_index": 0,
         "part": {"type": "audio", "transcript": text}},
    ]  # fmt: skip


def response_done(
    response_id: str, status: str = "completed", audio_tokens: int = 80
) -> dict[str, Any]:
    return {
        "type": "response.done",
        "response": {
            "object": "realtime.response",
            "id": response_id,
            "status": status,
            "status_details": None if status == "completed" else {"type": status},
            "output": [],
            "usage": usage(audio_tokens),
        },
    }


def truncated(item_id: str, audio_end_ms: int) -> dict[str, Any]:
    return {
        "type": "conversation.item.truncated",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": audio_end_ms,
    }


def feed_all(builder: TranscriptBuilder, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for event in events for record in builder.feed(event)]


def strip_ts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert all(isinstance(r["ts"], float) for r in records)
    return [{k: v for k, v in r.items() if k != "ts"} for r in records]


class Timer:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="builder")
def _builder() -> TranscriptBuilder:
    return TranscriptBuilder(clock=Clock())


class TestCutText:
    @pytest.mark.parametrize(
        ("fraction", "expected"),
        [
            (0.0, ""),
            (-1.0, ""),
            (0.5, "one two"),
            (0.52, "one two"),
            (0.6, "one two three"),
            (1.0, "one two three four"),
            (3.0, "one two three four"),
        ],
    )
    def test_cuts_at_word_boundaries(self, fraction: float, expected: str) -> None:
        """A word counts as heard when more than half of it was played."""
        assert cut_text("one two three four", fraction) == expected


class TestTranscriptBuilder:
    def test_call_started_keeps_no_secrets(self, builder: TranscriptBuilder) -> None:
        """call_started keeps model and voice only, from a GA or a beta session."""
        ga = {
            "type": "realtime",
            "model": "gpt-realtime",
            "instructions": "Secret sauce.",
            "audio": {"output": {"voice": "marin"}},
            "client_secret": {"value": "ek_123"},
        }
        record = builder.call_started("rtc_1", "rtc_up", ga)
        assert strip_ts([record]) == [
            {
                "kind": "call_started",
                "call_id": "rtc_1",
                "upstream_call_id": "rtc_up",
                "model": "gpt-realtime",
                "voice": "marin",
            }
        ]
        assert builder.call_started("rtc_1", None, {"voice": "ash"})["voice"] == "ash"

    def test_user_turn(self, builder: TranscriptBuilder) -> None:
        """A transcribed user turn becomes one user record, placed in the conversation."""
        records = feed_all(builder, user_turn("item_u1", None, "What's the weather in Paris?"))
        assert strip_ts(records) == [
            {
                "kind": "user",
                "item_id": "item_u1",
                "order": 0,
                "source": "audio",
                "text": "What's the weather in Paris?",
            }
        ]

    def test_failed_transcription(self, builder: TranscriptBuilder) -> None:
        """A failed transcription still records that the user spoke."""
        records = builder.feed(
            {
                "type": "conversation.item.input_audio_transcription.failed",
                "item_id": "item_u1",
                "content_index": 0,
                "error": {"type": "transcription_error", "message": "Audio unreadable."},
            }
        )
        assert records[0]["text"] is None and records[0]["error"] == "Audio unreadable."

    def test_typed_user_message(self, builder: TranscriptBuilder) -> None:
        """A user text item is recorded once, though added and done both carry it."""
        item = {
            "id": "item_t1",
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Hello there"}],
        }
        records = feed_all(
            builder,
            [
                {"type": "conversation.item.added", "previous_item_id": None, "item": item},
                {"type": "conversation.item.done", "previous_item_id": None, "item": item},
            ],
        )
        assert [(r["kind"], r["source"], r["text"]) for r in records] == [
            ("user", "text", "Hello there")
        ]

    def test_assistant_turn_and_usage(self, builder: TranscriptBuilder) -> None:
        """A full answer gives an assistant record, then the response's usage."""
        events = [
            *user_turn("item_u1", None, "Weather?"),
            *response_start("resp_1", "item_a1", "item_u1"),
            *transcript_done("resp_1", "item_a1", ANSWER),
            response_done("resp_1"),
            {"type": "output_audio_buffer.stopped", "response_id": "resp_1"},
        ]
        records = strip_ts(feed_all(builder, events))
        assert records[1:] == [
            {
                "kind": "assistant",
                "item_id": "item_a1",
                "order": 1,
                "response_id": "resp_1",
                "modality": "audio",
                "text": ANSWER,
            },
            {"kind": "usage", "response_id": "resp_1", "status": "completed", "usage": usage(80)},
        ]
        assert spoken_text(records) == {"item_a1": ANSWER}

    def test_interrupted_after_generation(self, builder: TranscriptBuilder) -> None:
        """Barge-in while the audio still plays cuts the text in proportion to what was played."""
        events = [
            *response_start("resp_1", "item_a1", None),
            *transcript_done("resp_1", "item_a1", ANSWER),
            response_done("resp_1", audio_tokens=80),  # 4000 ms of audio
            {"type": "input_audio_buffer.speech_started", "audio_start_ms": 9000,
             "item_id": "item_u2"},
            truncated("item_a1", 2000),
            {"type": "output_audio_buffer.cleared", "response_id": "resp_1"},
        ]  # fmt: skip
        records = feed_all(builder, events)
        correction = strip_ts(records)[-1]
        assert correction == {
            "kind": "assistant_truncated",
            "item_id": "item_a1",
            "response_id": "resp_1",
            "text": "It is sunny and warm in Paris",
            "audio_end_ms": 2000,
            "cut_by": "conversation.item.truncated",
            "audio_ms": 4000,
            "basis": "audio_tokens",
        }
        assert spoken_text(records) == {"item_a1": "It is sunny and warm in Paris"}

    def test_interrupted_mid_generation(self, builder: TranscriptBuilder) -> None:
        """A response cancelled by barge-in is cut against the audio it had generated."""
        partial = "It is sunny and warm"
        events = [
            *response_start("resp_1", "item_a1", None),
            *transcript_done("resp_1", "item_a1", partial),
            response_done("resp_1", status="cancelled", audio_tokens=30),  # 1500 ms
            truncated("item_a1", 750),
        ]
        records = feed_all(builder, events)
        assert [r["kind"] for r in records] == ["assistant", "usage", "assistant_truncated"]
        assert records[-1]["text"] == "It is sunny"

    def test_truncation_before_response_done(self, builder: TranscriptBuilder) -> None:
        """A truncation that comes first waits for response.done to learn the audio length."""
        events = [
            *response_start("resp_1", "item_a1", None),
            *transcript_done("resp_1", "item_a1", ANSWER),
            truncated("item_a1", 0),
        ]
        assert [r["kind"] for r in feed_all(builder, events)] == ["assistant"]
        records = builder.feed(response_done("resp_1"))
        assert [r["kind"] for r in records] == ["assistant_truncated", "usage"]
        assert records[0]["text"] == ""

    def test_truncation_before_transcript(self, builder: TranscriptBuilder) -> None:
        """A truncation that arrives before the transcript is applied once the text is known."""
        events = [
            *response_start("resp_1", "item_a1", None),
            truncated("item_a1", 10_000),
            response_done("resp_1", status="cancelled"),
        ]
        assert [r["kind"] for r in feed_all(builder, events)] == ["usage"]
        records = feed_all(builder, transcript_done("resp_1", "item_a1", ANSWER))
        assert [r["kind"] for r in records] == ["assistant", "assistant_truncated"]
        assert records[1]["text"] == ANSWER

    def test_speech_rate_fallback(self, builder: TranscriptBuilder) -> None:
        """Without audio tokens in usage, the audio length is estimated from the text."""
        text = "a" * 29 + " " + "b" * 30  # 60 characters = 4 s at 15 characters/s
        events = [
            *response_start("resp_1", "item_a1", None),
            *transcript_done("resp_1", "item_a1", text),
            response_done("resp_1", audio_tokens=0),
            truncated("item_a1", 2100),
        ]
        correction = feed_all(builder, events)[-1]
        assert correction["basis"] == "speech_rate" and correction["audio_ms"] == 4000
        assert correction["text"] == "a" * 29

    def test_pending_truncation_is_written_at_the_end(self, builder: TranscriptBuilder) -> None:
        """A call that ends before response.done still records the cut, estimated."""
        events = [
            *response_start("resp_1", "item_a1", None),
            *transcript_done("resp_1", "item_a1", ANSWER),
            truncated("item_a1", 1000),
        ]
        feed_all(builder, events)
        records = builder.call_ended(reason="browser_closed", outcome="browser_gone", duration_s=9)
        assert [r["kind"] for r in records] == ["assistant_truncated", "call_ended"]
        assert records[0]["basis"] == "speech_rate"
        assert strip_ts(records[1:]) == [
            {
                "kind": "call_ended",
                "reason": "browser_closed",
                "outcome": "browser_gone",
                "duration_s": 9,
            }
        ]

    def test_cancel_then_clear_is_cut_by_playback_time(self) -> None:
        """response.cancel + output_audio_buffer.clear, with no truncation: cut by play time."""
        timer = Timer()
        builder = TranscriptBuilder(clock=Clock(), timer=timer)
        partial = "one two three four five six seven eight"
        feed_all(builder, [*response_start("resp_1", "item_a1", None)])
        timer.now += 0.5
        events = [
            *transcript_done("resp_1", "item_a1", partial),
            response_done("resp_1", status="cancelled", audio_tokens=20),  # 1000 ms generated
            {"type": "output_audio_buffer.stopped", "response_id": "resp_1"},
            {"type": "output_audio_buffer.cleared", "response_id": None},
        ]
        records = feed_all(builder, events)
        assert [r["kind"] for r in records] == ["assistant", "usage", "assistant_truncated"]
        assert records[-1]["cut_by"] == "playback_time"
        assert records[-1]["audio_end_ms"] == 500
        assert records[-1]["text"] == "one two three four"

    def test_stopped_before_cancelled_response_done(self) -> None:
        """Audio stopped before the cancelled response.done still gets its cut."""
        timer = Timer()
        builder = TranscriptBuilder(clock=Clock(), timer=timer)
        feed_all(builder, response_start("resp_1", "item_a1", None))
        feed_all(builder, transcript_done("resp_1", "item_a1", ANSWER))
        timer.now += 0.25
        assert builder.feed({"type": "output_audio_buffer.stopped", "response_id": "resp_1"}) == []
        records = builder.feed(response_done("resp_1", status="cancelled", audio_tokens=20))
        assert [r["kind"] for r in records] == ["assistant_truncated", "usage"]
        assert records[0]["audio_end_ms"] == 250

    def test_cleared_estimate_yields_to_truncation(self) -> None:
        """A play-time estimate is superseded by a truncation event that comes later."""
        timer = Timer()
        builder = TranscriptBuilder(clock=Clock(), timer=timer)
        feed_all(builder, response_start("resp_1", "item_a1", None))
        feed_all(builder, [*transcript_done("resp_1", "item_a1", ANSWER), response_done("resp_1")])
        timer.now += 1.0
        estimate = builder.feed({"type": "output_audio_buffer.cleared", "response_id": "resp_1"})
        exact = builder.feed(truncated("item_a1", 2000))
        assert estimate[0]["cut_by"] == "playback_time" and estimate[0]["audio_end_ms"] == 1000
        assert exact[0]["cut_by"] == "conversation.item.truncated"
        assert spoken_text([*estimate, *exact]) == {"item_a1": "It is sunny and warm in Paris"}

    def test_truncation_wins_over_later_clear(self) -> None:
        """After a truncation event, the cleared that follows adds nothing."""
        timer = Timer()
        builder = TranscriptBuilder(clock=Clock(), timer=timer)
        feed_all(builder, response_start("resp_1", "item_a1", None))
        events = [
            *transcript_done("resp_1", "item_a1", ANSWER),
            response_done("resp_1", status="cancelled"),
            truncated("item_a1", 1000),
            {"type": "output_audio_buffer.cleared", "response_id": "resp_1"},
        ]
        kinds = [r["kind"] for r in feed_all(builder, events)]
        assert kinds == ["assistant", "usage", "assistant_truncated"]

    def test_audio_played_to_the_end(self) -> None:
        """A completed response whose audio drained is not cut."""
        builder = TranscriptBuilder(clock=Clock(), timer=Timer())
        events = [
            *response_start("resp_1", "item_a1", None),
            *transcript_done("resp_1", "item_a1", ANSWER),
            response_done("resp_1"),
            {"type": "output_audio_buffer.stopped", "response_id": "resp_1"},
        ]
        assert [r["kind"] for r in feed_all(builder, events)] == ["assistant", "usage"]

    def test_unknown_truncation_is_ignored(self, builder: TranscriptBuilder) -> None:
        """Truncating an item the builder never saw from the model gives nothing."""
        assert builder.feed(truncated("item_u1", 100)) == []
        assert builder.feed({"type": "conversation.item.truncated", "item_id": "x"}) == []

    def test_text_response(self, builder: TranscriptBuilder) -> None:
        """A text-only answer is an assistant record with modality text."""
        records = builder.feed(
            {
                "type": "response.output_text.done",
                "response_id": "resp_1",
                "item_id": "item_a1",
                "output_index": 0,
                "content_index": 0,
                "text": "Hi!",
            }
        )
        assert records[0]["modality"] == "text" and records[0]["text"] == "Hi!"

    def test_beta_names(self, builder: TranscriptBuilder) -> None:
        """Beta event names are understood as well."""
        records = feed_all(
            builder,
            [
                {"type": "response.audio_transcript.done", "response_id": "resp_1",
                 "item_id": "item_a1", "output_index": 0, "content_index": 0,
                 "transcript": "Beta hello."},
                {"type": "response.text.done", "response_id": "resp_2", "item_id": "item_a2",
                 "output_index": 0, "content_index": 0, "text": "Beta text."},
            ],
        )  # fmt: skip
        assert [(r["modality"], r["text"]) for r in records] == [
            ("audio", "Beta hello."),
            ("text", "Beta text."),
        ]

    def test_tool_call_record(self, builder: TranscriptBuilder) -> None:
        """The relay's tool runs become tool_call records."""
        record = builder.tool_call(
            call_id="call_1",
            name="get_time",
            arguments='{"tz":"Europe/Paris"}',
            output='{"time":"12:00"}',
            status="completed",
            seconds=0.01234,
        )
        assert strip_ts([record]) == [
            {
                "kind": "tool_call",
                "call_id": "call_1",
                "name": "get_time",
                "arguments": '{"tz":"Europe/Paris"}',
                "output": '{"time":"12:00"}',
                "status": "completed",
                "seconds": 0.012,
            }
        ]

    def test_other_events_give_nothing(self, builder: TranscriptBuilder) -> None:
        """Deltas, rate limits and unknown events produce no records."""
        for kind in ("response.output_audio_transcript.delta", "rate_limits.updated", "x.y"):
            assert builder.feed({"type": kind}) == []
        assert builder.feed({}) == []

    def test_conversation_order(self, builder: TranscriptBuilder) -> None:
        """A user transcript that arrives after the answer is still placed before it."""
        events = [
            *user_turn("item_u1", None, None),
            *response_start("resp_1", "item_a1", "item_u1"),
            *transcript_done("resp_1", "item_a1", ANSWER),
            transcribed("item_u1", "Weather?"),
            response_done("resp_1"),
            *user_turn("item_u2", "item_a1", "Stop."),
            *response_start("resp_2", "item_a2", "item_u2"),
            *transcript_done("resp_2", "item_a2", "Okay, stopping now."),
            response_done("resp_2", audio_tokens=40),
            truncated("item_a2", 500),
        ]
        records = feed_all(builder, events)
        assert [r["kind"] for r in records][:2] == ["assistant", "user"]
        assert conversation(records) == [
            {"role": "user", "item_id": "item_u1", "text": "Weather?"},
            {"role": "assistant", "item_id": "item_a1", "text": ANSWER},
            {"role": "user", "item_id": "item_u2", "text": "Stop."},
            {"role": "assistant", "item_id": "item_a2", "text": "Okay,", "interrupted": True},
        ]

    def test_records_are_json(self, builder: TranscriptBuilder) -> None:
        """Every record encodes as a single JSON line."""
        events = [
            *user_turn("item_u1", None, "Line one\nline two"),
            *response_start("resp_1", "item_a1", "item_u1"),
            *transcript_done("resp_1", "item_a1", ANSWER),
            response_done("resp_1"),
        ]
        for record in feed_all(builder, events):
            line = encode_record(record)
            assert line.endswith(b"\n") and line.count(b"\n") == 1
            assert json.loads(line) == record


def read_lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


class TestTranscriptWriter:
    async def test_writes_jsonl(self, tmp_path: Path) -> None:
        """Records queued before and after start land in order, one JSON object per line."""
        directory = tmp_path / "transcripts" / "nested"
        writer = TranscriptWriter(directory, "rtc_abc")
        assert not directory.exists()  # the constructor does no I/O
        writer.write({"ts": 1.0, "kind": "call_started", "text": "héllo\nwörld"})
        await writer.start()
        writer.write({"ts": 2.0, "kind": "call_ended"})
        await writer.aclose()
        assert writer.path == directory / "rtc_abc.jsonl"
        assert read_lines(writer.path) == [
            {"ts": 1.0, "kind": "call_started", "text": "héllo\nwörld"},
            {"ts": 2.0, "kind": "call_ended"},
        ]
        assert writer.path.stat().st_mode & 0o777 == 0o600

    async def test_concurrent_writes_keep_their_order(self, tmp_path: Path) -> None:
        """Writes from many tasks appear in the order write() was called."""
        writer = TranscriptWriter(tmp_path, "rtc_many")
        await writer.start()
        counter = iter(range(10**6))

        async def producer(name: int) -> None:
            for _ in range(100):
                writer.write({"ts": 0.0, "kind": "n", "n": next(counter), "from": name})
                await asyncio.sleep(0)

        await asyncio.gather(*(producer(i) for i in range(8)))
        await writer.aclose()
        numbers = [r["n"] for r in read_lines(writer.path)]
        assert numbers == list(range(800))

    async def test_aclose_is_idempotent(self, tmp_path: Path) -> None:
        """aclose may be called twice (even at once); later writes are dropped."""
        writer = TranscriptWriter(tmp_path, "rtc_close")
        await writer.start()
        writer.write({"ts": 0.0, "kind": "a"})
        await asyncio.gather(writer.aclose(), writer.aclose())
        await writer.aclose()
        writer.write({"ts": 0.0, "kind": "late"})
        assert [r["kind"] for r in read_lines(writer.path)] == ["a"]

    async def test_aclose_without_start(self, tmp_path: Path) -> None:
        """Closing a writer that never started does nothing and creates no file."""
        writer = TranscriptWriter(tmp_path, "rtc_never")
        writer.write({"ts": 0.0, "kind": "a"})
        await writer.aclose()
        assert not writer.path.exists()

    async def test_appends_to_an_existing_file(self, tmp_path: Path) -> None:
        """A second writer for the same call appends rather than overwriting."""
        for kind in ("first", "second"):
            writer = TranscriptWriter(tmp_path, "rtc_again")
            await writer.start()
            writer.write({"ts": 0.0, "kind": kind})
            await writer.aclose()
        assert [r["kind"] for r in read_lines(tmp_path / "rtc_again.jsonl")] == ["first", "second"]

    async def test_cancelled_writer_leaves_whole_lines(self, tmp_path: Path) -> None:
        """Killing the writer task mid-stream leaves a file of whole records, a prefix in order."""
        writer = TranscriptWriter(tmp_path, "rtc_crash")
        await writer.start()
        (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "transcript-writer:rtc_crash"]
        padding = "x" * 2000
        for n in range(3000):
            writer.write({"ts": 0.0, "kind": "n", "n": n, "pad": padding})
            if n == 1500:
                await asyncio.sleep(0.001)  # let a batch start in its thread
                task.cancel()
        await asyncio.sleep(0)
        await writer.aclose()
        numbers = [r["n"] for r in read_lines(writer.path)]
        assert numbers == list(range(len(numbers)))
        assert len(numbers) < 3000

    def test_killed_process_leaves_whole_lines(self, tmp_path: Path) -> None:
        """SIGKILL in the middle of a stream of writes leaves only whole JSON lines."""
        script = (
            "import asyncio, pathlib, sys\n"
            "from gateway.transcripts import TranscriptWriter\n"
            "async def main():\n"
            "    w = TranscriptWriter(pathlib.Path(sys.argv[1]), 'rtc_kill')\n"
            "    await w.start()\n"
            "    n = 0\n"
            "    while True:\n"
            "        for _ in range(10):\n"
            "            w.write({'ts': 0.0, 'kind': 'n', 'n': n, 'pad': 'y' * 5000}); n += 1\n"
            "        await asyncio.sleep(0.001)\n"
            "asyncio.run(main())\n"
        )
        process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT)
        path = tmp_path / "rtc_kill.jsonl"
        reached = False
        try:
            # Generous: on a loaded machine the child's start-up alone can take seconds.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if path.exists() and path.stat().st_size > 500_000:
                    reached = True
                    break
                time.sleep(0.01)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)
        assert reached, "the writer never got 500 kB written in 60 s"
        numbers = [r["n"] for r in read_lines(path)]
        assert len(numbers) > 90 and numbers == list(range(len(numbers)))

    async def test_short_write_is_cut_back(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write that only partly succeeds (disk full) is removed, so the file stays whole."""
        writer = TranscriptWriter(tmp_path, "rtc_full")
        await writer.start()
        writer.write({"ts": 0.0, "kind": "ok"})
        await asyncio.sleep(0.05)
        real_write = os.write

        def half_write(fd: int, data: bytes) -> int:
            return real_write(fd, data[: len(data) // 2])

        monkeypatch.setattr(os, "write", half_write)
        with capture_logs() as logs:
            writer.write({"ts": 0.0, "kind": "torn", "pad": "z" * 100})
            writer.write({"ts": 0.0, "kind": "torn again"})
            await writer.aclose()
        monkeypatch.setattr(os, "write", real_write)
        assert [r["kind"] for r in read_lines(writer.path)] == ["ok"]
        assert [e["event"] for e in logs] == ["transcript.write_failed"]

    async def test_open_failure_is_logged(self, tmp_path: Path) -> None:
        """An unusable directory is logged; the writer then drops records without raising."""
        blocker = tmp_path / "file"
        blocker.write_text("")
        writer = TranscriptWriter(blocker, "rtc_nowhere")
        with capture_logs() as logs:
            await writer.start()
            writer.write({"ts": 0.0, "kind": "a"})
            await writer.aclose()
        assert [e["event"] for e in logs][0] == "transcript.open_failed"

    async def test_unencodable_record_is_dropped(self, tmp_path: Path) -> None:
        """A record that is not valid JSON (NaN) is logged and skipped; the rest go on."""
        writer = TranscriptWriter(tmp_path, "rtc_nan")
        await writer.start()
        with capture_logs() as logs:
            writer.write({"ts": 0.0, "kind": "bad", "seconds": float("nan")})
        writer.write({"ts": 0.0, "kind": "good", "when": Path("/x")})
        await writer.aclose()
        assert [e["event"] for e in logs] == ["transcript.bad_record"]
        assert read_lines(writer.path) == [{"ts": 0.0, "kind": "good", "when": "/x"}]

    async def test_stalled_disk_bounds_what_is_held(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A hung disk holds at most MAX_QUEUED_RECORDS; the rest are dropped, counted, logged."""
        real_write = os.write
        stalled = threading.Event()
        release = threading.Event()

        def hung_write(fd: int, data: bytes) -> int:
            # Only the writer's thread hangs, like a write() on a dead NFS mount.
            if threading.current_thread() is not threading.main_thread():
                stalled.set()
                release.wait(30)
            return real_write(fd, data)

        writer = TranscriptWriter(tmp_path, "rtc_stall")
        await writer.start()
        monkeypatch.setattr(os, "write", hung_write)
        try:
            writer.write({"ts": 0.0, "kind": "n", "n": 0})
            deadline = time.monotonic() + 10
            while not stalled.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert stalled.is_set(), "the writer never reached the disk"
            with capture_logs() as logs:
                for n in range(1, MAX_QUEUED_RECORDS + 500):
                    writer.write({"ts": 0.0, "kind": "n", "n": n})
                    if n % 100 == 0:
                        await asyncio.sleep(0)  # the writer task gets its turns, as in a call
            assert writer.pending == MAX_QUEUED_RECORDS
            assert writer.dropped == 500
            assert [(e["event"], e["log_level"]) for e in logs] == [
                ("transcript.records_dropped", "warning")
            ]
        finally:
            release.set()
            await writer.aclose()
        assert writer.pending == 0
        numbers = [r["n"] for r in read_lines(writer.path)]
        assert numbers == list(range(MAX_QUEUED_RECORDS))

    def test_max_queued_must_be_positive(self, tmp_path: Path) -> None:
        """A writer that could hold no record at all is refused."""
        with pytest.raises(ValueError, match="max_queued"):
            TranscriptWriter(tmp_path, "rtc_zero", max_queued=0)

    @pytest.mark.parametrize("call_id", ["", "../etc/passwd", "a/b", ".hidden", "x" * 200])
    def test_call_id_must_be_a_file_name(self, tmp_path: Path, call_id: str) -> None:
        """A call id that is not a plain file name is refused (no path traversal)."""
        with pytest.raises(ValueError):
            TranscriptWriter(tmp_path, call_id)


class TestPrepareDirectory:
    def test_creates_directory(self, tmp_path: Path) -> None:
        """The directory is created with its parents."""
        prepare_directory(tmp_path / "a" / "b")
        assert (tmp_path / "a" / "b").is_dir()

    def test_not_a_directory(self, tmp_path: Path) -> None:
        """A path that is a file is an error at startup."""
        (tmp_path / "f").write_text("")
        with pytest.raises(OSError):
            prepare_directory(tmp_path / "f")
