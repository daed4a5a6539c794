from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import InvalidOffer, InvalidRequest, UpstreamError
from gateway.protocol.events import (
    UndecodableText,
    encode_event,
    error_event,
    nesting,
    parse_client_event,
    parse_event,
)
from gateway.protocol.sdp import call_id_from_location, inspect_offer
from gateway.protocol.session import deep_merge, default_session, parse_client_secret_request

OFFER = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=fingerprint:sha-256 AB:CD\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef01234567\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sctp-port:5000\r\n"
)


class TestEvents:
    def test_parse_keeps_everything(self) -> None:
        """Unknown types and extra fields come through untouched."""
        event = parse_event('{"type":"x.unknown","event_id":"e1","extra":[1,2]}')
        assert event == {"type": "x.unknown", "event_id": "e1", "extra": [1, 2]}

    @pytest.mark.parametrize(
        ("raw", "code"),
        [
            ("not json", "invalid_json"),
            ("[1,2]", "invalid_event"),
            ('{"no":"type"}', "missing_required_parameter"),
            ('{"type":""}', "missing_required_parameter"),
            (b"\x00\x01", "invalid_event"),
        ],
    )
    def test_bad_messages(self, raw: str | bytes, code: str) -> None:
        """Each malformed message gets its own error code."""
        with pytest.raises(InvalidRequest) as info:
            parse_event(raw)
        assert info.value.code == code

    def test_undecodable_text(self) -> None:
        """Text that was not UTF-8 is refused as such, not as a binary message."""
        for parse in (parse_event, parse_client_event):
            with pytest.raises(InvalidRequest) as info:
                parse(UndecodableText(b'{"type":"\xff"}'))
            assert info.value.code == "invalid_json"
            assert info.value.message == (
                "The message is not valid UTF-8 text; every event must be a JSON object in UTF-8."
            )

    def test_undecodable_text_is_bytes(self) -> None:
        """The marker is bytes, so code that only knows bytes still treats it as binary."""
        assert isinstance(UndecodableText(b"\xff"), bytes)
        assert UndecodableText(b"\xff") == b"\xff"

    @pytest.mark.parametrize(
        ("raw", "key"),
        [
            ('{"type":"session.update","type":"x"}', "type"),
            (
                '{"type":"session.update","session":{"instructions":"a","instructions":"b"}}',
                "instructions",
            ),
            ('{"type":"x","list":[{"a":1},{"b":1,"b":2}]}', "b"),
        ],
    )
    def test_client_event_with_a_duplicate_key_is_refused(self, raw: str, key: str) -> None:
        """A repeated key at any level is refused, naming the key: the upstream might read the
        other copy."""
        with pytest.raises(InvalidRequest) as info:
            parse_client_event(raw)
        assert info.value.code == "invalid_json"
        assert repr(key) in info.value.message

    def test_a_long_duplicate_key_is_shortened_in_the_message(self) -> None:
        """The error quotes at most the start of a browser's key."""
        key = "k" * 10_000
        with pytest.raises(InvalidRequest) as info:
            parse_client_event(f'{{"type":"x","{key}":1,"{key}":2}}')
        assert len(info.value.message) < 200

    def test_same_key_in_different_objects_is_fine(self) -> None:
        """Only a key twice in the same object counts."""
        raw = '{"type":"x","a":{"id":1},"b":{"id":2},"c":[{"id":3},{"id":4}]}'
        assert parse_client_event(raw) == parse_event(raw)

    def test_server_events_keep_json_semantics(self) -> None:
        """Server events are trusted: parse_event keeps the last duplicate, as json does."""
        assert parse_event('{"type":"a","type":"b"}') == {"type": "b"}

    @pytest.mark.parametrize(
        ("raw", "code"),
        [
            ("not json", "invalid_json"),
            ("[1,2]", "invalid_event"),
            ('{"no":"type"}', "missing_required_parameter"),
            (b"\x00\x01", "invalid_event"),
        ],
    )
    def test_client_parse_has_the_same_errors(self, raw: str | bytes, code: str) -> None:
        """parse_client_event refuses what parse_event refuses, with the same codes."""
        with pytest.raises(InvalidRequest) as info:
            parse_client_event(raw)
        assert info.value.code == code

    def test_error_event_shape(self) -> None:
        """Error events are OpenAI-shaped and echo the client's event_id."""
        event = error_event(InvalidRequest("bad", code="c", param="p"), client_event_id="e9")
        assert event["type"] == "error"
        assert event["event_id"].startswith("event_")
        assert event["error"] == {
            "message": "bad",
            "type": "invalid_request_error",
            "code": "c",
            "param": "p",
            "event_id": "e9",
        }
        assert json.loads(encode_event(event)) == event


class TestSdp:
    def test_good_offer(self) -> None:
        """An offer with audio and a data channel passes, codecs listed."""
        summary = inspect_offer(OFFER)
        assert summary.has_audio and summary.has_data_channel
        assert summary.audio_codecs == ("opus", "pcmu")

    def test_legacy_sctp_line(self) -> None:
        """aiortc's legacy 'DTLS/SCTP 5000' data channel line counts."""
        offer = OFFER.replace("UDP/DTLS/SCTP webrtc-datachannel", "DTLS/SCTP 5000")
        assert inspect_offer(offer).has_data_channel

    @pytest.mark.parametrize(
        ("sdp", "needle"),
        [
            ("hello", "must start with 'v=0'"),
            ("v=0\r\ns=-\r\n", "no media"),
            (OFFER.split("m=application")[0], "no data channel"),
            ("v=0\r\n" + "m=application" + OFFER.split("m=application")[1], "no audio"),
            ("v=0\r\nm=audio\r\n", "malformed media line"),
        ],
    )
    def test_bad_offers(self, sdp: str, needle: str) -> None:
        """Bad offers are refused with a message that says what is missing."""
        with pytest.raises(InvalidOffer, match=needle):
            inspect_offer(sdp)

    @pytest.mark.parametrize(
        ("location", "expected"),
        [
            ("/v1/realtime/calls/rtc_abc", "rtc_abc"),
            ("https://api.openai.com/v1/realtime/calls/rtc_u1_9c?x=1", "rtc_u1_9c"),
            ("/v1/realtime/calls/other", "other"),
            ("", None),
        ],
    )
    def test_call_id_from_location(self, location: str, expected: str | None) -> None:
        """The call id is the rtc_ segment of Location, else its last segment."""
        assert call_id_from_location(location) == expected


class TestSession:
    def test_deep_merge(self) -> None:
        """Objects merge, lists and scalars are replaced, inputs untouched."""
        base: dict[str, Any] = {
            "audio": {"output": {"voice": "marin"}, "input": {"x": 1}},
            "tools": [1],
        }
        merged = deep_merge(base, {"audio": {"output": {"voice": "cedar"}}, "tools": []})
        assert merged == {"audio": {"output": {"voice": "cedar"}, "input": {"x": 1}}, "tools": []}
        assert base["audio"]["output"]["voice"] == "marin"

    def test_default_session(self) -> None:
        """The server default is a GA realtime session."""
        assert default_session("m", "v", None) == {
            "type": "realtime",
            "model": "m",
            "audio": {"output": {"voice": "v"}},
        }

    def test_client_secret_request(self) -> None:
        """expires_after and session are read as OpenAI documents them."""
        ttl, session = parse_client_secret_request(
            {
                "expires_after": {"anchor": "created_at", "seconds": 120},
                "session": {"type": "realtime", "instructions": "hi"},
            },
            600,
        )
        assert ttl == 120 and session == {"type": "realtime", "instructions": "hi"}
        assert parse_client_secret_request(None, 600) == (600, {"type": "realtime"})

    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ({"expires_after": {"seconds": 5}}, "expires_after.seconds"),
            ({"expires_after": {"seconds": 9999}}, "expires_after.seconds"),
            ({"expires_after": {"seconds": "60"}}, "expires_after.seconds"),
            ({"expires_after": {"anchor": "now"}}, "expires_after.anchor"),
            ({"session": {"type": "chat"}}, "session.type"),
            ({"session": []}, "session"),
        ],
    )
    def test_bad_client_secret_request(self, body: dict[str, object], param: str) -> None:
        """Each bad field is named in the error's param."""
        with pytest.raises(InvalidRequest) as info:
            parse_client_secret_request(body, 600)
        assert info.value.param == param


class TestErrors:
    def test_upstream_retryable(self) -> None:
        """4xx upstream errors are not retryable except 408/429; 5xx and no status are."""
        assert not UpstreamError("x", upstream_status=400).retryable
        assert UpstreamError("x", upstream_status=429).retryable
        assert UpstreamError("x", upstream_status=503).retryable
        assert UpstreamError("x").retryable


class TestAnnounceAddress:
    def test_rewrites_host_candidates_and_connection_lines(self) -> None:
        """Host candidates and c= lines get the public address; ports and CRLF are kept."""
        from gateway.protocol.sdp import announce_address

        sdp = (
            "v=0\r\nc=IN IP4 10.0.0.5\r\n"
            "a=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host\r\n"
            "a=candidate:2 1 udp 1694498815 198.51.100.1 5000 typ srflx raddr 10.0.0.5 rport 1\r\n"
        )
        out = announce_address(sdp, "203.0.113.9")
        assert "c=IN IP4 203.0.113.9\r\n" in out
        assert "a=candidate:1 1 udp 2130706431 203.0.113.9 40000 typ host\r\n" in out
        assert "198.51.100.1 5000 typ srflx" in out
        assert announce_address(sdp, "2001:db8::1").count("c=IN IP6 2001:db8::1") == 1


class TestNesting:
    def test_depths(self) -> None:
        values: list[Any] = [1, "s", {}, [], {"a": [1, {"b": {}}]}]
        assert [nesting(v) for v in values] == [0, 0, 1, 1, 4]

    def test_stops_counting_past_the_limit_without_recursing(self) -> None:
        deep: list[object] = []
        for _ in range(100_000):  # far past the recursion limit
            deep = [deep]
        assert nesting(deep, limit=10) == 11
