"""The session object and the body of POST /calls, without any network."""

from __future__ import annotations

import json

import pytest

from gateway.emulator.errors import InvalidRequest, UnsupportedMediaType
from gateway.emulator.session import (
    apply_update,
    check_session_type,
    default_session,
    flag,
    merge,
    vad_config,
)
from gateway.emulator.signaling import parse_call_request
from gateway.emulator.vad import VadConfig


class TestSession:
    def test_default_is_a_ga_realtime_session(self) -> None:
        """The shape OpenAI's session.created carries, with the emulator's own model name."""
        session = default_session("realtime-emulator", VadConfig(silence_duration_ms=300))
        assert session["type"] == "realtime"
        assert session["object"] == "realtime.session"
        assert session["id"].startswith("sess_")
        assert session["model"] == "realtime-emulator"
        assert session["output_modalities"] == ["audio"]
        assert session["tools"] == []
        detection = session["audio"]["input"]["turn_detection"]
        assert detection["type"] == "server_vad"
        assert detection["silence_duration_ms"] == 300
        assert session["audio"]["output"]["voice"] == "alloy"

    def test_merge_is_deep_and_replaces_lists(self) -> None:
        base = {"a": {"b": 1, "c": 2}, "tools": [1, 2]}
        assert merge(base, {"a": {"b": 9}, "tools": [3]}) == {"a": {"b": 9, "c": 2}, "tools": [3]}
        assert base == {"a": {"b": 1, "c": 2}, "tools": [1, 2]}

    def test_turn_detection_of_another_type_replaces(self) -> None:
        """semantic_vad does not inherit server_vad's fields; null turns detection off."""
        base = default_session("m", VadConfig())
        semantic = {"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}
        merged = merge(base, semantic)
        assert merged["audio"]["input"]["turn_detection"] == {"type": "semantic_vad"}
        off = merge(base, {"audio": {"input": {"turn_detection": None}}})
        assert off["audio"]["input"]["turn_detection"] is None
        assert vad_config(off, VadConfig()) is None
        assert flag(off, "create_response") is False

    def test_update_cannot_change_model_or_id(self) -> None:
        base = default_session("realtime-emulator", VadConfig())
        updated = apply_update(base, {"type": "realtime", "model": "gpt-realtime", "id": "x"})
        assert updated["model"] == "realtime-emulator"
        assert updated["id"] == base["id"]

    @pytest.mark.parametrize(
        ("session", "code", "param"),
        [
            (None, "missing_required_parameter", "session"),
            ({}, "missing_required_parameter", "session.type"),
            ({"type": "transcription"}, "invalid_value", "session.type"),
        ],
    )
    def test_type_must_be_realtime(self, session: object, code: str, param: str) -> None:
        with pytest.raises(InvalidRequest) as caught:
            check_session_type(session, param="session")
        assert (caught.value.code, caught.value.param) == (code, param)

    def test_vad_config_follows_the_session(self) -> None:
        """threshold scales the energy threshold; eagerness sets semantic_vad's pause."""
        base = VadConfig(threshold_rms=0.02)
        server = {
            "audio": {
                "input": {
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 1.0,
                        "silence_duration_ms": 700,
                    }
                }
            }
        }
        config = vad_config(server, base)
        assert config is not None
        assert config.threshold_rms == pytest.approx(0.04)
        assert config.silence_duration_ms == 700
        semantic = {
            "audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}
        }
        config = vad_config(semantic, base)
        assert config is not None
        assert config.silence_duration_ms == 250


def multipart(parts: list[tuple[str, str]]) -> tuple[str, bytes]:
    boundary = "BOUNDARY123"
    lines = []
    for name, value in parts:
        lines += [f"--{boundary}", f'Content-Disposition: form-data; name="{name}"', "", value]
    lines.append(f"--{boundary}--")
    return f"multipart/form-data; boundary={boundary}", "\r\n".join(lines).encode()


class TestCallRequest:
    def test_raw_sdp(self) -> None:
        request = parse_call_request("application/sdp", b"v=0\r\n")
        assert (request.kind, request.sdp, request.session) == ("sdp", "v=0\r\n", None)

    def test_multipart_with_session(self) -> None:
        content_type, body = multipart(
            [("sdp", "v=0\r\nm=audio 9"), ("session", json.dumps({"type": "realtime"}))]
        )
        request = parse_call_request(content_type, body)
        assert request.kind == "multipart"
        assert request.sdp == "v=0\r\nm=audio 9"
        assert request.session == {"type": "realtime"}

    def test_multipart_without_session(self) -> None:
        request = parse_call_request(*multipart([("sdp", "v=0")]))
        assert request.session is None

    @pytest.mark.parametrize(
        ("parts", "param"),
        [
            ([("session", '{"type":"realtime"}')], "sdp"),
            ([("sdp", "v=0"), ("session", "{not json")], "session"),
            ([("sdp", "v=0"), ("session", '{"model":"gpt-realtime"}')], "session.type"),
        ],
    )
    def test_bad_multipart_is_400(self, parts: list[tuple[str, str]], param: str) -> None:
        with pytest.raises(InvalidRequest) as caught:
            parse_call_request(*multipart(parts))
        assert caught.value.status == 400
        assert caught.value.param == param

    def test_multipart_without_boundary_is_400(self) -> None:
        with pytest.raises(InvalidRequest) as caught:
            parse_call_request("multipart/form-data", b"garbage")
        assert caught.value.status == 400

    @pytest.mark.parametrize("content_type", ["", "application/json", "text/plain"])
    def test_other_content_types_are_415(self, content_type: str) -> None:
        with pytest.raises(UnsupportedMediaType) as caught:
            parse_call_request(content_type, b"v=0")
        assert caught.value.status == 415
