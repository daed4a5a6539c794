"""Realtime translations' client-secret body, session object, data-channel rules and
transcript, as OpenAI's SDK types describe them."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from openai.types.realtime.realtime_translation_client_secret_create_response import (
    RealtimeTranslationClientSecretCreateResponse,
)

from gateway.emulator.translation import TranslationSession
from gateway.emulator.vad import VadConfig
from gateway.errors import InvalidRequest
from gateway.protocol import translation
from gateway.transcripts import conversation
from gateway.transcripts.translation import TranslationTranscript

MODEL = "gpt-realtime-translate"
AUDIO: dict[str, Any] = {
    "input": {
        "transcription": {"model": "gpt-realtime-whisper"},
        "noise_reduction": {"type": "far_field", "strength": 0.5},
    },
    "output": {"language": "es"},
}


def refused(call: Any, *args: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        call(*args)
    error = caught.value
    assert error.status == 400
    assert set(error.to_body()["error"]) == {"message", "type", "code", "param"}
    return error


class TestClientSecretRequest:
    def test_the_body_the_sdk_sends_is_read(self) -> None:
        """model and audio are kept as sent; expires_after sets the lifetime."""
        ttl, session = translation.parse_client_secret_request(
            {"session": {"model": MODEL, "audio": AUDIO}, "expires_after": {"seconds": 60}}, 600
        )
        assert ttl == 60
        assert session == {"model": MODEL, "audio": AUDIO}

    def test_the_default_lifetime_applies_and_audio_is_optional(self) -> None:
        """A body with only the model is a whole request."""
        assert translation.parse_client_secret_request({"session": {"model": MODEL}}, 600) == (
            600,
            {"model": MODEL},
        )

    @pytest.mark.parametrize(
        ("body", "code", "param"),
        [
            (None, "missing_required_parameter", "session"),
            ({"session": None}, "invalid_type", "session"),
            ({"session": {"model": ""}}, "invalid_type", "session.model"),
            ({"session": {"model": MODEL, "instructions": "x"}}, "unknown_parameter", None),
            ({"session": {"model": MODEL}, "expires_after": []}, "invalid_type", None),
            (
                {"session": {"model": MODEL, "audio": {"input": {"format": "pcm16"}}}},
                "unknown_parameter",
                "session.audio.input.format",
            ),
            (
                {
                    "session": {
                        "model": MODEL,
                        "audio": {
                            "input": {"noise_reduction": {"type": "near_field", "strength": True}}
                        },
                    }
                },
                "invalid_type",
                "session.audio.input.noise_reduction.strength",
            ),
            (
                {"session": {"model": MODEL, "audio": {"output": {"language": ""}}}},
                "invalid_type",
                "session.audio.output.language",
            ),
        ],
    )
    def test_bad_bodies_are_400s_naming_the_field(
        self, body: Any, code: str, param: str | None
    ) -> None:
        """Each fault is the 400 OpenAI answers, naming the parameter."""
        error = refused(translation.parse_client_secret_request, body, 600)
        assert error.code == code
        if param is not None:
            assert error.param == param

    def test_the_answer_is_openais_shape(self) -> None:
        """The session view fills every audio field, and OpenAI's SDK type reads it."""
        bound = translation.bound_session("sess_abc", {"model": MODEL})
        assert translation.is_translation(bound) and not translation.is_translation({})
        view = translation.session_view(bound, 1_900_000_000)
        assert view == {
            "id": "sess_abc",
            "type": "translation",
            "model": MODEL,
            "audio": {
                "input": {"transcription": None, "noise_reduction": None},
                "output": {"language": None},
            },
            "expires_at": 1_900_000_000,
        }
        answer = {"value": "ek_x", "expires_at": 1_900_000_000, "session": view}
        pydantic.TypeAdapter(RealtimeTranslationClientSecretCreateResponse).validate_python(answer)
        assert translation.upstream_request(bound) == {"model": MODEL}


class TestGate:
    def test_audio_updates_pass_and_the_rest_is_refused(self) -> None:
        """session.update may change audio fields only; model and type are immutable."""
        gate = translation.TranslationGate({"model": MODEL})
        current = {"model": MODEL, "audio": AUDIO}
        gate.client({"type": "session.update", "session": {"audio": AUDIO}}, current)
        gate.client({"type": "session.close"}, current)
        for session, code in [
            ({"model": "other"}, "immutable_field_update"),
            ({"type": "realtime"}, "immutable_field_update"),
            ({"tools": []}, "unknown_parameter"),
        ]:
            error = refused(gate.client, {"type": "session.update", "session": session}, current)
            assert error.code == code
        assert refused(gate.client, {"type": "session.update"}, current).param == "session"

    def test_types_a_webrtc_translation_does_not_take_are_refused(self) -> None:
        """Audio appends belong to WebSocket sessions; there is no response.create."""
        gate = translation.TranslationGate({})
        error = refused(gate.client, {"type": "session.input_audio_buffer.append"}, {})
        assert (error.code, error.param) == ("invalid_event", "type")
        error = refused(gate.client, {"type": "response.create"}, {})
        assert (error.code, error.param) == ("invalid_value", "type")
        assert "'session.close', 'session.update'" in error.message

    def test_a_locked_field_the_server_set_cannot_change(self) -> None:
        """Only locks on fields the server set hold, and the same value is no change."""
        server = {"model": MODEL, "audio": {"output": {"language": "fr"}}}
        gate = translation.TranslationGate(
            server, ("model", "audio.output.language", "audio.input.transcription")
        )
        assert gate.locked == (("audio", "output", "language"),)
        update = {"type": "session.update", "session": {"audio": {"output": {"language": "de"}}}}
        error = refused(gate.client, update, server)
        assert (error.code, error.param) == ("locked_field", "session.audio.output.language")
        same = {"type": "session.update", "session": {"audio": {"output": {"language": "fr"}}}}
        gate.client(same, server)
        transcribe = {
            "type": "session.update",
            "session": {"audio": {"input": {"transcription": {"model": "m"}}}},
        }
        gate.client(transcribe, server)

    def test_the_browser_sees_the_id_its_secret_named(self) -> None:
        """session.created and session.updated carry the gateway's session id."""
        gate = translation.TranslationGate({}, session_id="sess_gateway")
        created: dict[str, Any] = {
            "type": "session.created",
            "session": {"id": "sess_upstream", "model": MODEL},
        }
        assert gate.shown(created)["session"]["id"] == "sess_gateway"
        assert created["session"]["id"] == "sess_upstream"  # a copy, not changed in place
        delta: dict[str, Any] = {"type": "session.output_transcript.delta", "delta": "hola"}
        assert gate.shown(delta) is delta


class TestTranscript:
    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"kind": kind, **fields}

    def test_both_streams_become_segments_cut_at_sentence_ends(self) -> None:
        """The two sides run side by side; each is written when a sentence ends."""
        transcript = TranslationTranscript(self.record)
        out = []
        for kind, delta, elapsed in [
            ("session.input_transcript.delta", "Hello ", 0),
            ("session.output_transcript.delta", "Hola ", 200),
            ("session.input_transcript.delta", "friend.", 400),
            ("session.output_transcript.delta", "amigo.", 600),
            ("session.output_transcript.delta", "Adiós", 800),
        ]:
            out += transcript.feed({"type": kind, "delta": delta, "elapsed_ms": elapsed})
        out += transcript.flush()
        assert [(r["kind"], r["text"]) for r in out] == [
            ("user", "Hello friend."),
            ("assistant", "Hola amigo."),
            ("assistant", "Adiós"),
        ]
        assert (out[0]["start_ms"], out[0]["end_ms"]) == (0, 400)
        turns = conversation(out)
        assert [t["role"] for t in turns] == ["user", "assistant", "assistant"]

    def test_other_events_write_nothing(self) -> None:
        """Events without transcript text are ignored."""
        transcript = TranslationTranscript(self.record)
        assert transcript.feed({"type": "session.created", "session": {}}) == []
        assert transcript.feed({"type": "session.output_transcript.delta", "delta": 5}) == []
        assert transcript.flush() == []


class TestEmulatorSession:
    def make(self, **session: Any) -> TranslationSession:
        return TranslationSession(
            {"id": "sess_x", "model": MODEL, **session},
            vad=VadConfig(),
            lifetime_s=60,
            clock=lambda: 0.0,
            now=1_000,
        )

    def test_created_update_and_close(self) -> None:
        """session.created first; updates answer session.updated; close ends the session."""
        emulated = self.make(audio={"output": {"language": "fr"}})
        (created,) = emulated.created_events()
        assert created["session"]["type"] == "translation"
        assert created["session"]["id"] == "sess_x" and created["session"]["expires_at"] == 1_060
        update = {"type": "session.update", "session": {"audio": {"output": {"language": "it"}}}}
        (updated,) = emulated.handle(update).events
        assert updated["session"]["audio"]["output"]["language"] == "it"
        closing = emulated.handle({"type": "session.close"})
        assert [e["type"] for e in closing.events] == ["session.closed"]
        assert closing.end == "close_requested"
        assert emulated.closed_events("connection_lost") == []

    def test_expiry_says_why_before_closing(self) -> None:
        """At the time limit the session sends Realtime's session_expired, then closes."""
        emulated = self.make()
        closing = emulated.closed_events("expired", limit_s=3600)
        assert [e["type"] for e in closing] == ["error", "session.closed"]
        assert closing[0]["error"]["code"] == "session_expired"
