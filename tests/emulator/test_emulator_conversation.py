"""The conversation state machine: client events and audio in, GA server events out. No network."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from gateway.emulator.audio import tone
from gateway.emulator.conversation import Conversation, Effects
from gateway.emulator.errors import InvalidRequest
from gateway.emulator.items import Context
from gateway.emulator.responses import Response, find_json_object
from gateway.emulator.vad import VadConfig, rms
from tests.emulator.helpers import user_text

VAD = VadConfig(silence_duration_ms=100.0, prefix_padding_ms=40.0)
LOUD = tone(440.0, 0.1, amplitude=0.3)[960:1920]
QUIET = np.zeros(960, dtype=np.int16)
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


class Harness:
    """A conversation plus a fake playback position, and helpers to drive it."""

    def __init__(self, **session: Any) -> None:
        self.position = 0.0
        self.conversation = Conversation(
            model="realtime-emulator",
            vad=VAD,
            initial_session=session or None,
            playback_position=lambda: self.position,
        )

    def send(self, event: dict[str, Any]) -> Effects:
        return self.conversation.handle(event)

    def audio(self, pattern: list[bool]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for loud in pattern:
            samples = LOUD if loud else QUIET
            effects = self.conversation.push_audio(samples, 20.0, rms(samples))
            if effects is not None:
                events += effects.events
                self.last = effects
        return events

    def stream(self, response: Response) -> list[dict[str, Any]]:
        """Send every delta, then complete: what the call's streaming task does."""
        deltas = []
        while (delta := response.delta_event()) is not None:
            deltas.append(delta)
        return deltas + self.conversation.complete(response).events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def respond_to_text(h: Harness, text: str) -> tuple[Effects, Response]:
    h.send(user_text(text))
    effects = h.send({"type": "response.create"})
    assert effects.start is not None
    return effects, effects.start


RESPONSE_START = [
    "response.created",
    "rate_limits.updated",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "output_audio_buffer.started",
]
RESPONSE_END = [
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


class TestSessionEvents:
    def test_session_created_merges_the_initial_session(self) -> None:
        h = Harness(type="realtime", instructions="Be brief.", model="gpt-realtime")
        (created,) = h.conversation.created_events()
        assert created["type"] == "session.created"
        assert created["event_id"].startswith("event_")
        assert created["session"]["instructions"] == "Be brief."
        assert created["session"]["model"] == "realtime-emulator"

    def test_session_update_answers_with_the_merged_session(self) -> None:
        h = Harness()
        (updated,) = h.send(
            {"type": "session.update", "session": {"type": "realtime", "instructions": "Hi"}}
        ).events
        assert updated["type"] == "session.updated"
        assert updated["session"]["instructions"] == "Hi"
        assert updated["session"]["audio"]["output"]["voice"] == "alloy"

    def test_session_update_without_type_is_refused(self) -> None:
        with pytest.raises(InvalidRequest) as caught:
            Harness().send({"type": "session.update", "session": {"instructions": "x"}})
        assert caught.value.param == "session.type"

    def test_unknown_event_type_is_refused(self) -> None:
        with pytest.raises(InvalidRequest) as caught:
            Harness().send({"type": "response.explode"})
        assert (caught.value.code, caught.value.param) == ("invalid_value", "type")


class TestTextResponses:
    def test_text_then_response_create_speaks_tones_with_the_text(self) -> None:
        """Items first, then the GA response sequence; stopped only once playback ended."""
        h = Harness()
        added = h.send(user_text("hello there"))
        assert types(added.events) == ["conversation.item.added", "conversation.item.done"]
        effects, response = respond_to_text(h, "hello there")
        assert types(effects.events) == RESPONSE_START
        assert effects.play is response
        assert response.clip is not None and 0.5 <= response.audio_ms / 1000 <= 1.5
        events = h.stream(response)
        deltas = [e for e in events if e["type"] == "response.output_audio_transcript.delta"]
        assert len(deltas) >= 2
        assert types(events[len(deltas) :]) == RESPONSE_END
        transcript = events[len(deltas) + 1]["transcript"]
        assert "hello there" in transcript
        assert "".join(d["delta"] for d in deltas) == transcript
        done = events[-1]["response"]
        assert done["status"] == "completed"
        assert done["output"][0]["content"] == [{"type": "output_audio", "transcript": transcript}]
        usage = done["usage"]
        assert usage["output_token_details"]["audio_tokens"] == -(-int(response.audio_ms) // 50)
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        (stopped,) = h.conversation.playback_finished(response.id)
        assert stopped == {
            **stopped,
            "type": "output_audio_buffer.stopped",
            "response_id": response.id,
        }

    def test_playback_ending_first_defers_stopped_until_done(self) -> None:
        h = Harness()
        _, response = respond_to_text(h, "hi")
        assert h.conversation.playback_finished(response.id) == []
        assert types(h.stream(response))[-2:] == ["response.done", "output_audio_buffer.stopped"]

    def test_response_create_without_input_still_responds(self) -> None:
        h = Harness()
        response = h.send({"type": "response.create"}).start
        assert response is not None
        assert "emulator" in response.text

    def test_second_response_create_while_active_is_refused(self) -> None:
        h = Harness()
        respond_to_text(h, "hi")
        with pytest.raises(InvalidRequest) as caught:
            h.send({"type": "response.create"})
        assert caught.value.code == "conversation_already_has_active_response"

    def test_text_modality_streams_text_without_audio(self) -> None:
        h = Harness()
        h.send(user_text("hi"))
        effects = h.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        response = effects.start
        assert response is not None and effects.play is None
        assert "output_audio_buffer.started" not in types(effects.events)
        events = h.stream(response)
        assert "response.output_text.done" in types(events)
        assert events[-1]["response"]["output"][0]["content"][0]["type"] == "output_text"

    def test_out_of_band_response_stays_out_of_the_conversation(self) -> None:
        h = Harness()
        request = {"conversation": "none", "metadata": {"topic": "x"}}
        effects = h.send({"type": "response.create", "response": request})
        assert "conversation.item.added" not in types(effects.events)
        assert effects.events[0]["response"]["conversation_id"] is None
        assert effects.events[0]["response"]["metadata"] == {"topic": "x"}
        assert len(h.conversation.items) == 0


class TestInterruptions:
    def test_response_cancel_ends_the_response_and_its_audio(self) -> None:
        h = Harness()
        _, response = respond_to_text(h, "hi")
        response.delta_event()
        effects = h.send({"type": "response.cancel"})
        assert effects.cancelled is response and effects.stop_playback
        done = next(e for e in effects.events if e["type"] == "response.done")["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
        assert done["output"][0]["status"] == "incomplete"
        assert types(effects.events)[-1] == "output_audio_buffer.stopped"
        assert h.conversation.complete(response).events == []
        assert h.conversation.playback_finished(response.id) == []

    def test_response_cancel_without_active_response_is_refused(self) -> None:
        with pytest.raises(InvalidRequest) as caught:
            Harness().send({"type": "response.cancel"})
        assert caught.value.code == "response_cancel_not_active"

    def test_output_clear_truncates_what_was_not_played(self) -> None:
        h = Harness()
        _, response = respond_to_text(h, "hi")
        h.stream(response)
        h.position = 240.0
        effects = h.send({"type": "output_audio_buffer.clear"})
        assert effects.stop_playback
        truncated, cleared = effects.events
        assert truncated["type"] == "conversation.item.truncated"
        assert truncated["item_id"] == response.item["id"]
        assert truncated["audio_end_ms"] == 240
        assert cleared == {
            **cleared,
            "type": "output_audio_buffer.cleared",
            "response_id": response.id,
        }
        assert h.conversation.playback_finished(response.id) == []

    def test_speech_during_a_response_cancels_it(self) -> None:
        """Barge-in: speech_started, the cancelled response.done, truncation, cleared."""
        h = Harness()
        _, response = respond_to_text(h, "hi")
        events = h.audio([True] * 3)
        assert types(events) == [
            "input_audio_buffer.speech_started",
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
            "conversation.item.truncated",
            "output_audio_buffer.cleared",
        ]
        assert events[6]["response"]["status_details"]["reason"] == "turn_detected"
        assert h.last.cancelled is response and h.last.stop_playback

    def test_no_barge_in_when_interrupt_response_is_false(self) -> None:
        h = Harness(
            type="realtime",
            audio={
                "input": {"turn_detection": {"type": "server_vad", "interrupt_response": False}}
            },
        )
        respond_to_text(h, "hi")
        assert types(h.audio([True] * 3)) == ["input_audio_buffer.speech_started"]


class TestVoiceTurns:
    def test_a_spoken_turn_is_committed_and_played_back(self) -> None:
        h = Harness()
        events = h.audio([False] * 5 + [True] * 20 + [False] * 6)
        assert types(events)[:6] == [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
            "response.created",
        ]
        item_id = events[0]["item_id"]
        assert {e.get("item_id") for e in events[:3]} == {item_id}
        assert events[3]["item"]["content"] == [{"type": "input_audio", "transcript": None}]
        response = h.last.play
        assert response is not None and response.clip is not None
        assert response.audio_ms == pytest.approx(40 + 400 + 100)
        assert "0.4 seconds" in response.text
        done = h.stream(response)[-1]["response"]
        # 1 token per 100 ms of user audio: 40 padding + 400 speech + 100 silence = 540 ms
        assert done["usage"]["input_token_details"]["audio_tokens"] == 6

    def test_create_response_false_commits_without_responding(self) -> None:
        h = Harness(
            type="realtime",
            audio={"input": {"turn_detection": {"type": "server_vad", "create_response": False}}},
        )
        events = h.audio([True] * 10 + [False] * 6)
        assert types(events)[-1] == "conversation.item.done"
        assert h.conversation.active is None

    def test_manual_commit_and_clear(self) -> None:
        h = Harness(type="realtime", audio={"input": {"turn_detection": None}})
        assert h.audio([True] * 10 + [False] * 5) == []
        committed = h.send({"type": "input_audio_buffer.commit"})
        assert types(committed.events) == [
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
        ]
        assert committed.start is None
        with pytest.raises(InvalidRequest):
            h.send({"type": "input_audio_buffer.commit"})
        h.audio([True] * 10)
        assert types(h.send({"type": "input_audio_buffer.clear"}).events) == [
            "input_audio_buffer.cleared"
        ]
        assert h.conversation.turns.buffer.pending_ms == 0

    def test_transcription_when_enabled(self) -> None:
        h = Harness(type="realtime", audio={"input": {"transcription": {"model": "x"}}})
        events = h.audio([True] * 10 + [False] * 6)
        (done,) = [
            e
            for e in events
            if e["type"] == "conversation.item.input_audio_transcription.completed"
        ]
        assert done["item_id"] == events[0]["item_id"]
        assert "emulator" in done["transcript"]


class TestTools:
    def test_naming_a_tool_calls_it_and_its_output_is_spoken(self) -> None:
        h = Harness(type="realtime", tools=[WEATHER_TOOL])
        effects, response = respond_to_text(h, 'Use get_weather with {"city": "Paris"} please')
        assert effects.play is None
        added = effects.events[2]
        assert added["item"]["type"] == "function_call"
        assert added["item"]["name"] == "get_weather"
        assert added["item"]["call_id"].startswith("call_")
        events = h.stream(response)
        deltas = [e["delta"] for e in events if e["type"].endswith("arguments.delta")]
        (args_done,) = [e for e in events if e["type"] == "response.function_call_arguments.done"]
        assert args_done["arguments"] == '{"city":"Paris"}' == "".join(deltas)
        assert args_done["name"] == "get_weather"
        call_id = args_done["call_id"]
        output = events[-1]["response"]["output"]
        assert output[0]["type"] == "function_call"
        assert output[0]["arguments"] == '{"city":"Paris"}'
        assert "output_audio_buffer.started" not in types(events)
        result = {"type": "function_call_output", "call_id": call_id, "output": '{"temp_c": 21}'}
        h.send({"type": "conversation.item.create", "item": result})
        spoken = h.send({"type": "response.create"}).start
        assert spoken is not None and spoken.kind == "audio"
        assert '{"temp_c": 21}' in spoken.text

    def test_no_json_means_empty_arguments(self) -> None:
        h = Harness(type="realtime", tools=[WEATHER_TOOL])
        _, response = respond_to_text(h, "what does get_weather say")
        assert response.kind == "function_call"
        assert response.text == "{}"

    def test_tool_choice_none_or_unnamed_tool_gives_speech(self) -> None:
        h = Harness(type="realtime", tools=[WEATHER_TOOL], tool_choice="none")
        assert respond_to_text(h, "get_weather")[1].kind == "audio"
        h = Harness(type="realtime", tools=[WEATHER_TOOL])
        assert respond_to_text(h, "what is the time")[1].kind == "audio"


def test_odd_but_valid_json_shapes_do_not_break_the_conversation() -> None:
    """Client JSON may put null or the wrong type anywhere; answers still come."""
    h = Harness()
    h.send({"type": "session.update", "session": {"type": "realtime", "audio": None}})
    h.send({"type": "session.update", "session": {"type": "realtime", "tools": "nope"}})
    request = {"audio": "loud", "output_modalities": "audio", "tools": [None, 3]}
    effects = h.send({"type": "response.create", "response": request})
    assert effects.start is not None and effects.start.kind == "audio"
    assert h.audio([True] * 10 + [False] * 6) == []  # audio: null means no turn detection


class TestItems:
    def test_retrieve_delete_truncate(self) -> None:
        h = Harness()
        item_id = h.send(user_text("hi")).events[0]["item"]["id"]
        (retrieved,) = h.send({"type": "conversation.item.retrieve", "item_id": item_id}).events
        assert retrieved["item"]["id"] == item_id
        (truncated,) = h.send(
            {"type": "conversation.item.truncate", "item_id": item_id, "audio_end_ms": 5}
        ).events
        assert truncated["audio_end_ms"] == 5
        assert (
            h.send({"type": "conversation.item.delete", "item_id": item_id}).events[0]["item_id"]
            == item_id
        )
        with pytest.raises(InvalidRequest) as caught:
            h.send({"type": "conversation.item.retrieve", "item_id": item_id})
        assert caught.value.code == "item_not_found"

    def test_item_create_needs_an_item(self) -> None:
        with pytest.raises(InvalidRequest) as caught:
            Harness().send({"type": "conversation.item.create"})
        assert caught.value.param == "item"


def test_usage_caches_a_long_prefix() -> None:
    """Each response re-reads the conversation; a prefix of 1024+ tokens counts as cached."""
    context = Context(text_tokens=2000)
    first = context.bill(10, out_text=5, out_audio=20)
    assert first["input_tokens"] == 2010
    assert first["input_token_details"]["cached_tokens"] == 0
    second = context.bill(10, out_text=5, out_audio=20)
    assert second["input_tokens"] == 2035
    assert second["input_token_details"]["cached_tokens"] == 2010
    assert second["input_token_details"]["audio_tokens"] == 20


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('call it with {"a": 1, "b": [2]} now', {"a": 1, "b": [2]}),
        ("braces { but } no json", None),
        ('first {bad then {"ok": true}', {"ok": True}),
    ],
)
def test_find_json_object(text: str, expected: dict[str, Any] | None) -> None:
    found = find_json_object(text)
    assert (json.loads(found) if found else None) == expected
