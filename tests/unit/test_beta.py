"""Beta ⇄ GA translation (gateway.protocol.beta), tested with literal event shapes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.protocol.beta import (
    BETA_RENAMES,
    beta_session_paths,
    client_event_to_ga,
    client_secret_request_from_beta,
    client_secret_response_to_beta,
    item_to_beta,
    item_to_ga,
    server_event_to_beta,
    session_from_beta,
    session_to_beta,
)

PCM = {"type": "audio/pcm", "rate": 24000}
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
SERVER_VAD = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "create_response": True,
    "interrupt_response": True,
}

# Every field of the beta /v1/realtime/sessions body (openai-python beta session_create_params).
FULL_BETA: dict[str, Any] = {
    "model": "gpt-4o-realtime-preview-2025-06-03",
    "modalities": ["text", "audio"],
    "instructions": "Be brief.",
    "voice": "verse",
    "input_audio_format": "pcm16",
    "output_audio_format": "g711_ulaw",
    "input_audio_transcription": {"model": "whisper-1", "language": "en", "prompt": ""},
    "input_audio_noise_reduction": {"type": "near_field"},
    "turn_detection": SERVER_VAD,
    "tools": [TOOL],
    "tool_choice": "auto",
    "temperature": 0.8,
    "max_response_output_tokens": 1024,
    "speed": 1.1,
    "tracing": "auto",
}

FULL_GA: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-4o-realtime-preview-2025-06-03",
    "output_modalities": ["audio"],
    "instructions": "Be brief.",
    "audio": {
        "output": {"voice": "verse", "format": {"type": "audio/pcmu"}, "speed": 1.1},
        "input": {
            "format": PCM,
            "transcription": {"model": "whisper-1", "language": "en", "prompt": ""},
            "noise_reduction": {"type": "near_field"},
            "turn_detection": SERVER_VAD,
        },
    },
    "tools": [TOOL],
    "tool_choice": "auto",
    "max_output_tokens": 1024,
    "tracing": "auto",
}

# A GA session as session.created carries it (openai-python realtime_session_create_response).
GA_SESSION: dict[str, Any] = {
    "id": "sess_C9Cc2tJ5FOsO2vGmVvyTm",
    "object": "realtime.session",
    "type": "realtime",
    "model": "gpt-realtime",
    "output_modalities": ["audio"],
    "instructions": "Be brief.",
    "audio": {
        "input": {
            "format": PCM,
            "transcription": None,
            "noise_reduction": None,
            "turn_detection": {**SERVER_VAD, "idle_timeout_ms": None},
        },
        "output": {"format": PCM, "voice": "marin", "speed": 1.0},
    },
    "tools": [],
    "tool_choice": "auto",
    "max_output_tokens": "inf",
    "tracing": None,
    "truncation": "auto",
    "prompt": None,
    "expires_at": 0,
    "include": None,
}


def assistant_item(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": list(parts)}


class TestSessionFromBeta:
    def test_full_body(self) -> None:
        """Every beta field lands at its GA place, and temperature is dropped."""
        assert session_from_beta(FULL_BETA) == FULL_GA

    def test_always_typed_realtime(self) -> None:
        """An empty beta session still yields a valid GA session with type realtime."""
        assert session_from_beta({}) == {"type": "realtime"}

    def test_partial_update_sets_only_given_fields(self) -> None:
        """A partial session.update gets no defaults, so it changes nothing else upstream."""
        assert session_from_beta({"instructions": "Hi."}) == {
            "type": "realtime",
            "instructions": "Hi.",
        }

    def test_voice_and_speed_go_to_audio_output(self) -> None:
        """voice and speed move under audio.output without creating audio.input."""
        assert session_from_beta({"voice": "alloy", "speed": 0.9}) == {
            "type": "realtime",
            "audio": {"output": {"voice": "alloy", "speed": 0.9}},
        }

    @pytest.mark.parametrize(
        ("beta", "ga"),
        [
            ("pcm16", {"type": "audio/pcm", "rate": 24000}),
            ("g711_ulaw", {"type": "audio/pcmu"}),
            ("g711_alaw", {"type": "audio/pcma"}),
        ],
    )
    def test_audio_formats(self, beta: str, ga: dict[str, Any]) -> None:
        """Beta format names map to GA format objects, for input and output."""
        got = session_from_beta({"input_audio_format": beta, "output_audio_format": beta})
        assert got["audio"] == {"input": {"format": ga}, "output": {"format": ga}}

    def test_unknown_audio_format_is_left_for_openai_to_reject(self) -> None:
        """A format beta never had is forwarded as is, so the client sees OpenAI's error."""
        got = session_from_beta({"input_audio_format": "mp3"})
        assert got["audio"]["input"]["format"] == "mp3"

    @pytest.mark.parametrize(
        ("beta", "ga"),
        [(["text", "audio"], ["audio"]), (["audio", "text"], ["audio"]), (["text"], ["text"])],
    )
    def test_modalities(self, beta: list[str], ga: list[str]) -> None:
        """Any modality set with audio becomes ["audio"] (GA allows one); text-only stays text."""
        assert session_from_beta({"modalities": beta})["output_modalities"] == ga

    def test_input_fields(self) -> None:
        """Transcription, noise reduction and turn detection move under audio.input."""
        got = session_from_beta(
            {
                "input_audio_transcription": {"model": "gpt-4o-mini-transcribe"},
                "input_audio_noise_reduction": {"type": "far_field"},
                "turn_detection": {"type": "semantic_vad", "eagerness": "low"},
            }
        )
        assert got["audio"] == {
            "input": {
                "transcription": {"model": "gpt-4o-mini-transcribe"},
                "noise_reduction": {"type": "far_field"},
                "turn_detection": {"type": "semantic_vad", "eagerness": "low"},
            }
        }

    def test_null_turn_detection_stays_null(self) -> None:
        """turn_detection null (push-to-talk) is kept as null, not dropped."""
        got = session_from_beta({"turn_detection": None})
        assert got["audio"] == {"input": {"turn_detection": None}}

    def test_null_transcription_and_noise_reduction_stay_null(self) -> None:
        """Turning transcription or noise reduction off with null survives translation."""
        got = session_from_beta(
            {"input_audio_transcription": None, "input_audio_noise_reduction": None}
        )
        assert got["audio"]["input"] == {"transcription": None, "noise_reduction": None}

    def test_max_tokens_renamed(self) -> None:
        """max_response_output_tokens becomes max_output_tokens, "inf" included."""
        assert session_from_beta({"max_response_output_tokens": "inf"})["max_output_tokens"] == (
            "inf"
        )

    def test_nested_function_tool_choice_flattened(self) -> None:
        """The beta-documented {"function": {"name"}} tool_choice becomes GA's flat form."""
        got = session_from_beta({"tool_choice": {"type": "function", "function": {"name": "f"}}})
        assert got["tool_choice"] == {"type": "function", "name": "f"}

    @pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "f"}])
    def test_other_tool_choices_unchanged(self, choice: Any) -> None:
        """String modes and the flat function form pass unchanged."""
        assert session_from_beta({"tool_choice": choice})["tool_choice"] == choice

    def test_drops_fields_ga_lacks(self) -> None:
        """temperature, session identity, client_secret and unknown keys are dropped."""
        got = session_from_beta(
            {
                "id": "sess_1",
                "object": "realtime.session",
                "temperature": 0.7,
                "client_secret": {"expires_after": {"anchor": "created_at", "seconds": 60}},
                "expires_at": 0,
                "bogus": 1,
            }
        )
        assert got == {"type": "realtime"}

    def test_input_not_mutated_and_not_aliased(self) -> None:
        """The input is left as it was, and editing the result cannot reach it."""
        flat = copy.deepcopy(FULL_BETA)
        got = session_from_beta(flat)
        assert flat == FULL_BETA
        got["tools"][0]["name"] = "changed"
        got["audio"]["input"]["turn_detection"]["threshold"] = 0.9
        assert flat == FULL_BETA


class TestSessionToBeta:
    def test_ga_session(self) -> None:
        """A GA session.created session becomes the flat beta object."""
        assert session_to_beta(GA_SESSION) == {
            "id": "sess_C9Cc2tJ5FOsO2vGmVvyTm",
            "object": "realtime.session",
            "model": "gpt-realtime",
            "modalities": ["text", "audio"],
            "instructions": "Be brief.",
            "voice": "marin",
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "input_audio_transcription": None,
            "input_audio_noise_reduction": None,
            "turn_detection": {**SERVER_VAD, "idle_timeout_ms": None},
            "tools": [],
            "tool_choice": "auto",
            "max_response_output_tokens": "inf",
            "speed": 1.0,
            "tracing": None,
            "temperature": 0.8,
        }

    def test_text_only(self) -> None:
        """output_modalities ["text"] stays ["text"]."""
        assert session_to_beta({"output_modalities": ["text"]})["modalities"] == ["text"]

    @pytest.mark.parametrize(
        ("ga", "beta"),
        [
            ({"type": "audio/pcm", "rate": 24000}, "pcm16"),
            ({"type": "audio/pcm"}, "pcm16"),
            ({"type": "audio/pcmu"}, "g711_ulaw"),
            ({"type": "audio/pcma"}, "g711_alaw"),
        ],
    )
    def test_audio_formats(self, ga: dict[str, Any], beta: str) -> None:
        """GA format objects map back to beta format names."""
        got = session_to_beta({"audio": {"input": {"format": ga}, "output": {"format": ga}}})
        assert (got["input_audio_format"], got["output_audio_format"]) == (beta, beta)

    def test_defaults(self) -> None:
        """A bare GA session still gives object and temperature 0.8, and invents nothing else."""
        assert session_to_beta({}) == {"object": "realtime.session", "temperature": 0.8}

    def test_null_turn_detection_stays_null(self) -> None:
        """GA turn_detection null is reported to the beta client as null."""
        got = session_to_beta({"audio": {"input": {"turn_detection": None}}})
        assert got["turn_detection"] is None

    def test_null_audio_section_is_tolerated(self) -> None:
        """audio.input null yields no input fields instead of raising."""
        got = session_to_beta({"audio": {"input": None, "output": {"voice": "ash"}}})
        assert got == {"object": "realtime.session", "voice": "ash", "temperature": 0.8}

    def test_drops_ga_only_fields(self) -> None:
        """type, truncation, prompt, include, expires_at and the like do not reach beta."""
        got = session_to_beta(GA_SESSION)
        for key in ("type", "truncation", "prompt", "include", "expires_at", "audio"):
            assert key not in got

    def test_input_not_mutated_and_not_aliased(self) -> None:
        """The GA session is left as it was, and editing the result cannot reach it."""
        ga = copy.deepcopy(GA_SESSION)
        got = session_to_beta(ga)
        assert ga == GA_SESSION
        got["turn_detection"]["threshold"] = 0.1
        assert ga == GA_SESSION


class TestSessionRoundTrip:
    def test_beta_round_trip(self) -> None:
        """beta → GA → beta keeps every field both can express."""
        assert session_to_beta(session_from_beta(FULL_BETA)) == {
            "object": "realtime.session",
            **FULL_BETA,
        }

    def test_beta_round_trip_loses_temperature(self) -> None:
        """A non-default temperature cannot survive: GA has no temperature."""
        got = session_to_beta(session_from_beta({**FULL_BETA, "temperature": 1.1}))
        assert got["temperature"] == 0.8

    def test_beta_audio_only_modalities_normalised(self) -> None:
        """Beta ["audio"] comes back as ["text", "audio"], the set beta servers reported."""
        got = session_to_beta(session_from_beta({"modalities": ["audio"]}))
        assert got["modalities"] == ["text", "audio"]

    def test_ga_round_trip(self) -> None:
        """GA → beta → GA keeps every field both can express."""
        assert session_from_beta(session_to_beta(FULL_GA)) == FULL_GA

    def test_null_turn_detection_round_trip(self) -> None:
        """Push-to-talk (turn_detection null) survives both directions."""
        got = session_to_beta(session_from_beta({"turn_detection": None}))
        assert got["turn_detection"] is None


class TestClientSecrets:
    def test_request_from_beta(self) -> None:
        """A beta /sessions body becomes a GA client_secrets body with expires_after lifted."""
        body = {
            "model": "gpt-4o-realtime-preview-2025-06-03",
            "voice": "verse",
            "client_secret": {"expires_after": {"anchor": "created_at", "seconds": 600}},
        }
        assert client_secret_request_from_beta(body) == {
            "session": {
                "type": "realtime",
                "model": "gpt-4o-realtime-preview-2025-06-03",
                "audio": {"output": {"voice": "verse"}},
            },
            "expires_after": {"anchor": "created_at", "seconds": 600},
        }

    def test_request_without_expiry(self) -> None:
        """Without client_secret.expires_after the GA default expiry applies."""
        assert client_secret_request_from_beta({"voice": "verse"}) == {
            "session": {"type": "realtime", "audio": {"output": {"voice": "verse"}}}
        }

    def test_response_to_beta(self) -> None:
        """GA {value, expires_at, session} becomes the beta session with client_secret."""
        got = client_secret_response_to_beta(
            {"value": "ek_abc", "expires_at": 1756310470, "session": GA_SESSION}
        )
        assert got["client_secret"] == {"value": "ek_abc", "expires_at": 1756310470}
        assert got["id"] == GA_SESSION["id"]
        assert got["voice"] == "marin"

    def test_response_without_session(self) -> None:
        """A response missing its session still yields a usable beta body."""
        got = client_secret_response_to_beta({"value": "ek_abc", "expires_at": 1})
        assert got == {
            "object": "realtime.session",
            "temperature": 0.8,
            "client_secret": {"value": "ek_abc", "expires_at": 1},
        }


class TestItems:
    def test_assistant_text_to_ga(self) -> None:
        """Assistant text/audio parts become output_text/output_audio."""
        item = assistant_item({"type": "text", "text": "Hi"}, {"type": "audio", "transcript": "x"})
        assert item_to_ga(item)["content"] == [
            {"type": "output_text", "text": "Hi"},
            {"type": "output_audio", "transcript": "x"},
        ]

    def test_user_parts_unchanged_to_ga(self) -> None:
        """User input_text/input_audio parts are already GA."""
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Hi"}, {"type": "input_audio"}],
        }
        assert item_to_ga(item) == item

    def test_function_call_output_unchanged(self) -> None:
        """function_call_output items have no content and pass unchanged."""
        item = {"type": "function_call_output", "call_id": "call_1", "output": "{}"}
        assert item_to_ga(item) == item

    def test_output_parts_to_beta(self) -> None:
        """output_text/output_audio parts become text/audio."""
        item = assistant_item({"type": "output_text", "text": "Hi"}, {"type": "output_audio"})
        assert item_to_beta(item)["content"] == [{"type": "text", "text": "Hi"}, {"type": "audio"}]

    def test_items_not_mutated(self) -> None:
        """Both directions leave the input item as it was."""
        item = assistant_item({"type": "text", "text": "Hi"})
        before = copy.deepcopy(item)
        item_to_ga(item)
        item_to_beta(item)
        assert item == before


class TestClientEventToGa:
    def test_session_update(self) -> None:
        """session.update's session is translated; event_id is kept."""
        event = {"type": "session.update", "event_id": "e1", "session": FULL_BETA}
        assert client_event_to_ga(event) == {
            "type": "session.update",
            "event_id": "e1",
            "session": FULL_GA,
        }

    def test_response_create(self) -> None:
        """Beta response params map to GA: modalities, audio.output, max tokens; no temperature."""
        event = {
            "type": "response.create",
            "response": {
                "modalities": ["text"],
                "voice": "ash",
                "output_audio_format": "g711_alaw",
                "temperature": 0.9,
                "max_response_output_tokens": 200,
                "instructions": "Say hi.",
                "conversation": "none",
                "metadata": {"topic": "greeting"},
                "tools": [TOOL],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            },
        }
        assert client_event_to_ga(event)["response"] == {
            "output_modalities": ["text"],
            "audio": {"output": {"voice": "ash", "format": {"type": "audio/pcma"}}},
            "max_output_tokens": 200,
            "instructions": "Say hi.",
            "conversation": "none",
            "metadata": {"topic": "greeting"},
            "tools": [TOOL],
            "tool_choice": {"type": "function", "name": "get_weather"},
        }

    def test_response_create_audio_modalities(self) -> None:
        """response.modalities ["text", "audio"] becomes output_modalities ["audio"]."""
        event = {"type": "response.create", "response": {"modalities": ["text", "audio"]}}
        assert client_event_to_ga(event)["response"] == {"output_modalities": ["audio"]}

    def test_response_create_input_items(self) -> None:
        """Out-of-band input items get GA part types; item references pass unchanged."""
        event = {
            "type": "response.create",
            "response": {
                "input": [
                    {"type": "item_reference", "id": "item_1"},
                    assistant_item({"type": "text", "text": "Earlier answer"}),
                ]
            },
        }
        assert client_event_to_ga(event)["response"]["input"] == [
            {"type": "item_reference", "id": "item_1"},
            assistant_item({"type": "output_text", "text": "Earlier answer"}),
        ]

    def test_bare_response_create(self) -> None:
        """response.create with no response body (the console's usual form) is unchanged."""
        assert client_event_to_ga({"type": "response.create"}) == {"type": "response.create"}

    def test_item_create_assistant_text(self) -> None:
        """conversation.item.create assistant text becomes output_text."""
        event = {
            "type": "conversation.item.create",
            "previous_item_id": "item_0",
            "item": assistant_item({"type": "text", "text": "Hello"}),
        }
        assert client_event_to_ga(event) == {
            "type": "conversation.item.create",
            "previous_item_id": "item_0",
            "item": assistant_item({"type": "output_text", "text": "Hello"}),
        }

    def test_item_create_user_text_unchanged(self) -> None:
        """The console's user input_text message needs no change."""
        event = {
            "type": "conversation.item.create",
            "event_id": "3f1d…",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hi"}],
            },
        }
        assert client_event_to_ga(event) == event

    def test_transcription_session_update_unchanged(self) -> None:
        """transcription_session.update is returned as is for the caller to decide."""
        event = {"type": "transcription_session.update", "session": {"input_audio_format": "pcm16"}}
        assert client_event_to_ga(event) == event

    @pytest.mark.parametrize(
        "event",
        [
            {"type": "input_audio_buffer.commit"},
            {"type": "response.cancel", "response_id": "resp_1"},
            {"type": "output_audio_buffer.clear"},
            {"type": "conversation.item.truncate", "item_id": "i", "audio_end_ms": 1500},
            {"type": "something.new", "x": [1]},
            {"no_type": True},
        ],
    )
    def test_other_events_unchanged(self, event: dict[str, Any]) -> None:
        """Events that did not change shape, unknown ones included, pass as equal copies."""
        got = client_event_to_ga(event)
        assert got == event
        assert got is not event

    @pytest.mark.parametrize(
        "event",
        [
            {"type": "session.update", "session": None},
            {"type": "response.create", "response": "oops"},
            {"type": "conversation.item.create", "item": [1]},
            {"type": "response.create", "response": {"input": "oops", "modalities": "audio"}},
        ],
    )
    def test_malformed_payloads_pass_through(self, event: dict[str, Any]) -> None:
        """Payloads of the wrong shape are forwarded for OpenAI to reject, never raise here."""
        got = client_event_to_ga(event)
        assert got["type"] == event["type"]

    def test_input_not_mutated(self) -> None:
        """Translating a client event leaves the original intact."""
        event = {
            "type": "response.create",
            "response": {"modalities": ["text"], "voice": "ash", "temperature": 1.0},
        }
        before = copy.deepcopy(event)
        client_event_to_ga(event)
        assert event == before


class TestServerEventToBeta:
    @pytest.mark.parametrize(("ga", "beta"), sorted(BETA_RENAMES.items()))
    def test_renames(self, ga: str, beta: str) -> None:
        """Each renamed GA event reaches the beta client under its beta name, fields kept."""
        event = {
            "type": ga,
            "event_id": "event_1",
            "response_id": "resp_1",
            "item_id": "item_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "Hel",
        }
        assert server_event_to_beta(event) == {**event, "type": beta}

    def test_rename_table(self) -> None:
        """The rename table holds exactly the §4.2 renames plus item.added → item.created."""
        assert dict(BETA_RENAMES) == {
            "response.output_text.delta": "response.text.delta",
            "response.output_text.done": "response.text.done",
            "response.output_audio.delta": "response.audio.delta",
            "response.output_audio.done": "response.audio.done",
            "response.output_audio_transcript.delta": "response.audio_transcript.delta",
            "response.output_audio_transcript.done": "response.audio_transcript.done",
            "conversation.item.added": "conversation.item.created",
        }

    def test_item_added_becomes_created(self) -> None:
        """conversation.item.added becomes created, keeping previous_item_id, with beta parts."""
        event = {
            "type": "conversation.item.added",
            "event_id": "event_2",
            "previous_item_id": "item_0",
            "item": {
                "id": "item_1",
                "object": "realtime.item",
                "status": "in_progress",
                **assistant_item({"type": "output_audio", "transcript": ""}),
            },
        }
        assert server_event_to_beta(event) == {
            "type": "conversation.item.created",
            "event_id": "event_2",
            "previous_item_id": "item_0",
            "item": {
                "id": "item_1",
                "object": "realtime.item",
                "status": "in_progress",
                **assistant_item({"type": "audio", "transcript": ""}),
            },
        }

    def test_item_done_dropped(self) -> None:
        """conversation.item.done is dropped: beta had no such event and it would duplicate."""
        event = {"type": "conversation.item.done", "item": assistant_item()}
        assert server_event_to_beta(event) is None

    @pytest.mark.parametrize("kind", ["session.created", "session.updated"])
    def test_session_events(self, kind: str) -> None:
        """session.created/updated carry the flat beta session."""
        got = server_event_to_beta({"type": kind, "event_id": "event_3", "session": GA_SESSION})
        assert got == {"type": kind, "event_id": "event_3", "session": session_to_beta(GA_SESSION)}

    @pytest.mark.parametrize("kind", ["response.created", "response.done"])
    def test_response_events(self, kind: str) -> None:
        """response.created/done get modalities, voice, format and beta part types."""
        event = {
            "type": kind,
            "event_id": "event_4",
            "response": {
                "id": "resp_1",
                "object": "realtime.response",
                "status": "completed",
                "output_modalities": ["audio"],
                "audio": {"output": {"voice": "marin", "format": PCM}},
                "max_output_tokens": "inf",
                "output": [
                    assistant_item({"type": "output_audio", "transcript": "Hi"}),
                    {"type": "function_call", "name": "f", "call_id": "c", "arguments": "{}"},
                ],
                "usage": {"total_tokens": 10},
            },
        }
        assert server_event_to_beta(event) == {
            "type": kind,
            "event_id": "event_4",
            "response": {
                "id": "resp_1",
                "object": "realtime.response",
                "status": "completed",
                "modalities": ["text", "audio"],
                "voice": "marin",
                "output_audio_format": "pcm16",
                "max_output_tokens": "inf",
                "output": [
                    assistant_item({"type": "audio", "transcript": "Hi"}),
                    {"type": "function_call", "name": "f", "call_id": "c", "arguments": "{}"},
                ],
                "usage": {"total_tokens": 10},
            },
        }

    def test_text_only_response(self) -> None:
        """A text-only response reports modalities ["text"] and text parts."""
        event = {
            "type": "response.done",
            "response": {
                "output_modalities": ["text"],
                "output": [assistant_item({"type": "output_text", "text": "Hi"})],
            },
        }
        got = server_event_to_beta(event)
        assert got is not None
        assert got["response"] == {
            "modalities": ["text"],
            "output": [assistant_item({"type": "text", "text": "Hi"})],
        }

    @pytest.mark.parametrize(
        "kind",
        [
            "response.output_item.added",
            "response.output_item.done",
            "conversation.item.retrieved",
            "conversation.item.created",
        ],
    )
    def test_item_events(self, kind: str) -> None:
        """Item-carrying events get beta part types and keep their name."""
        event = {"type": kind, "item": assistant_item({"type": "output_text", "text": "Hi"})}
        assert server_event_to_beta(event) == {
            "type": kind,
            "item": assistant_item({"type": "text", "text": "Hi"}),
        }

    @pytest.mark.parametrize("kind", ["response.content_part.added", "response.content_part.done"])
    @pytest.mark.parametrize(
        ("ga_part", "beta_part"),
        [("audio", "audio"), ("text", "text"), ("output_audio", "audio"), ("output_text", "text")],
    )
    def test_content_part_events(self, kind: str, ga_part: str, beta_part: str) -> None:
        """Content parts end up text/audio whether GA sends the short or output_* names."""
        event = {"type": kind, "part": {"type": ga_part, "transcript": ""}}
        assert server_event_to_beta(event) == {
            "type": kind,
            "part": {"type": beta_part, "transcript": ""},
        }

    @pytest.mark.parametrize(
        "event",
        [
            {"type": "conversation.item.input_audio_transcription.segment", "text": "hi"},
            {"type": "input_audio_buffer.timeout_triggered", "audio_start_ms": 0},
            {"type": "mcp_list_tools.completed", "item_id": "i"},
            {"type": "response.mcp_call.in_progress", "item_id": "i"},
            {"type": "input_audio_buffer.speech_started", "audio_start_ms": 10},
            {"type": "response.function_call_arguments.done", "arguments": "{}"},
            {"type": "conversation.item.input_audio_transcription.completed", "transcript": "hi"},
            {"type": "error", "error": {"type": "invalid_request_error", "code": None}},
            {"type": "rate_limits.updated", "rate_limits": []},
            {"type": "output_audio_buffer.started", "response_id": "resp_1"},
            {"no_type": True},
            {"type": ["not", "a", "string"]},
        ],
    )
    def test_pass_through(self, event: dict[str, Any]) -> None:
        """Unchanged and GA-only events pass through as equal copies."""
        got = server_event_to_beta(event)
        assert got == event
        assert got is not event

    @pytest.mark.parametrize(
        "event",
        [
            {"type": "session.created", "session": None},
            {"type": "response.done", "response": None},
            {"type": "response.done", "response": {"audio": None, "output": None}},
            {"type": "response.output_item.done", "item": None},
            {"type": "response.content_part.done", "part": None},
        ],
    )
    def test_malformed_payloads_do_not_raise(self, event: dict[str, Any]) -> None:
        """Odd server payloads are forwarded rather than crashing the relay."""
        got = server_event_to_beta(event)
        assert got is not None
        assert got["type"] == event["type"]

    def test_input_not_mutated(self) -> None:
        """Translating a server event leaves the original intact."""
        event = {
            "type": "response.done",
            "response": {
                "output_modalities": ["audio"],
                "audio": {"output": {"voice": "marin", "format": PCM}},
                "output": [assistant_item({"type": "output_audio", "transcript": "Hi"})],
            },
        }
        before = copy.deepcopy(event)
        server_event_to_beta(event)
        assert event == before


class TestBetaSessionPaths:
    @pytest.mark.parametrize(
        ("ga_path", "beta"),
        [
            (("audio", "output", "voice"), (("voice",),)),
            (("instructions",), (("instructions",),)),
            (("audio", "input", "turn_detection", "type"), (("turn_detection", "type"),)),
            (("prompt",), ()),
            (("audio", "output"), (("voice",), ("output_audio_format",), ("speed",))),
        ],
    )
    def test_where_beta_sets_a_ga_field(
        self, ga_path: tuple[str, ...], beta: tuple[tuple[str, ...], ...]
    ) -> None:
        """A GA path maps to the flat beta fields that set it or anything under it."""
        assert beta_session_paths(ga_path) == beta

    def test_whole_audio_block(self) -> None:
        """Every beta field that lands under ``audio`` is named for a lock on ``audio``."""
        names = {path[0] for path in beta_session_paths(("audio",))}
        assert names == {
            "voice",
            "input_audio_format",
            "output_audio_format",
            "input_audio_transcription",
            "input_audio_noise_reduction",
            "turn_detection",
            "speed",
        }
