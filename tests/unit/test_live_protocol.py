"""GPT-Live's creation body, frontend permissions and session updates, as OpenAI checks them."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.protocol import live

OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def body(**session: Any) -> dict[str, Any]:
    return {
        "session": {"model": "gpt-live-1", **session},
        "transport": {"type": "webrtc", "sdp": OFFER},
    }


def refused(value: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        live.parse_create_request(value)
    error = caught.value
    assert error.status == 400
    assert set(error.to_body()["error"]) == {"message", "type", "code", "param"}
    return error


def test_a_create_request_as_the_sdk_sends_it() -> None:
    created = live.parse_create_request(
        body(
            instructions="Be brief.",
            audio={"output": {"voice": "marin"}},
            client={"data_channel": {"allowed_client_events": ["session.close"]}},
            delegation={"type": "responses", "responses": {"model": "gpt-5"}},
            input=[{"role": "user", "content": "hi"}],
            store=False,
            idle_timeout_s=30,
            safety_identifier="user-1",
            triggers=[],
            wake_policy={"type": "speech", "vad_threshold": 0.5},
        )
    )
    assert created.sdp == OFFER
    assert created.session["model"] == "gpt-live-1"
    assert created.session["delegation"]["type"] == "responses"


def test_the_session_is_a_copy() -> None:
    request = body(audio={"output": {"voice": "marin"}})
    created = live.parse_create_request(request)
    created.session["audio"]["output"]["voice"] = "cedar"
    assert request["session"]["audio"]["output"]["voice"] == "marin"


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        ({**body(), "model": "gpt-live-1"}, "model"),
        ({**body(), "transport": {"type": "webrtc", "sdp": OFFER, "ice": True}}, "transport.ice"),
        (body(voice="marin"), "session.voice"),
        (body(turn_detection=None), "session.turn_detection"),
        (body(tools=[]), "session.tools"),
        (body(audio={"input": {}}), "session.audio.input"),
        (body(audio={"output": {"voice": "marin", "speed": 1}}), "session.audio.output.speed"),
        (body(client={"sidebands": 1}), "session.client.sidebands"),
        (
            body(client={"data_channel": {"allowed_events": "all"}}),
            "session.client.data_channel.allowed_events",
        ),
    ],
)
def test_unknown_fields_are_named(request_body: dict[str, Any], param: str) -> None:
    error = refused(request_body)
    assert error.code == "unknown_parameter"
    assert error.param == param
    assert error.message == f"Unknown parameter: '{param}'."


@pytest.mark.parametrize(
    ("request_body", "param", "code"),
    [
        (None, "session", "missing_required_parameter"),
        ({"transport": {"type": "webrtc", "sdp": OFFER}}, "session", "missing_required_parameter"),
        ({"session": {"model": "gpt-live-1"}}, "transport", "missing_required_parameter"),
        (
            {**body(), "transport": {"type": "webrtc"}},
            "transport.sdp",
            "missing_required_parameter",
        ),
        (
            {**body(), "transport": {"type": "webrtc", "sdp": " "}},
            "transport.sdp",
            "missing_required_parameter",
        ),
        (
            {**body(), "transport": {"type": "websocket", "sdp": OFFER}},
            "transport.type",
            "invalid_value",
        ),
        ({**body(), "transport": "webrtc"}, "transport", "invalid_type"),
        (
            {"session": {}, "transport": {"type": "webrtc", "sdp": OFFER}},
            "session.model",
            "missing_required_parameter",
        ),
        (body(type="realtime"), "session.type", "invalid_value"),
        (body(audio={"format": {"type": "audio/pcm"}}), "session.audio.format", "invalid_value"),
        (body(delegation={"type": "agents"}), "session.delegation.type", "invalid_value"),
        ([], "body", "invalid_type"),
        ("session", "body", "invalid_type"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(request_body: Any, param: str, code: str) -> None:
    error = refused(request_body)
    assert (error.param, error.code) == (param, code)


def test_a_deeply_nested_body_is_refused_without_recursing() -> None:
    deep: Any = {}
    for _ in range(5000):
        deep = {"a": deep}
    error = refused(body(input=[deep]))
    assert error.status == 400


def test_the_created_answer_has_openais_shape() -> None:
    assert live.create_response("live_abc", "v=0\r\n") == {
        "session": {"id": "live_abc"},
        "transport": {"type": "webrtc", "sdp": "v=0\r\n"},
    }


# -- frontend permissions -----------------------------------------------------------------------


def test_left_out_or_all_allows_everything() -> None:
    for config in (None, {}, {"allowed_client_events": "all", "allowed_server_events": "all"}):
        permissions = live.Permissions.parse(config)
        assert not permissions.restricted
        assert permissions.allows_client("session.close")
        assert permissions.allows_server({"type": "session.output_transcript.delta"})


def test_lists_restrict_both_ways() -> None:
    permissions = live.Permissions.parse(
        {
            "allowed_client_events": ["session.close", "session.input_audio.mute"],
            "allowed_server_events": [
                {"type": "session.output_transcript.delta"},
                {"type": "response.event", "response_event": "response.completed"},
            ],
        }
    )
    assert permissions.restricted
    assert permissions.allows_client("session.close")
    assert not permissions.allows_client("session.update")
    assert permissions.allows_server({"type": "session.output_transcript.delta"})
    assert not permissions.allows_server({"type": "session.input_transcript.delta"})
    assert permissions.allows_server(
        {"type": "response.event", "event": {"type": "response.completed"}}
    )
    assert not permissions.allows_server(
        {"type": "response.event", "event": {"type": "response.output_text.delta"}}
    )
    assert not permissions.allows_server({"type": "response.event", "event": "x"})
    # A command the frontend sent is always answered.
    assert permissions.allows_server({"type": "error", "error": {}})
    assert "2 client event types" in permissions.announcement()


def test_empty_lists_allow_nothing() -> None:
    permissions = live.Permissions.parse({"allowed_client_events": [], "allowed_server_events": []})
    assert not permissions.allows_client("session.close")
    assert not permissions.allows_server({"type": "session.started"})


@pytest.mark.parametrize(
    ("config", "param"),
    [
        ({"allowed_client_events": "none"}, "allowed_client_events"),
        ({"allowed_client_events": ["Session.Close"]}, "allowed_client_events[0]"),
        ({"allowed_client_events": [1]}, "allowed_client_events[0]"),
        ({"allowed_client_events": ["a.b"] * 257}, "allowed_client_events"),
        ({"allowed_server_events": ["session.started"]}, "allowed_server_events[0]"),
        (
            {"allowed_server_events": [{"type": "response.event"}]},
            "allowed_server_events[0].response_event",
        ),
        (
            {"allowed_server_events": [{"type": "session.started", "response_event": "x.y"}]},
            "allowed_server_events[0].response_event",
        ),
        (
            {"allowed_server_events": [{"type": "x.y", "extra": 1}]},
            "allowed_server_events[0].extra",
        ),
    ],
)
def test_malformed_permissions_are_400(config: dict[str, Any], param: str) -> None:
    error = refused(body(client={"data_channel": config}))
    assert error.param == f"session.client.data_channel.{param}"


def test_permissions_of_a_session() -> None:
    session = live.parse_create_request(
        body(client={"data_channel": {"allowed_client_events": ["session.close"]}})
    ).session
    assert live.Permissions.of(session).client_events == frozenset({"session.close"})
    assert not live.Permissions.of({"model": "gpt-live-1"}).restricted


# -- a running session --------------------------------------------------------------------------


def test_only_delegation_and_triggers_change_once_started() -> None:
    current = {"model": "gpt-live-1", "delegation": {"type": "responses"}}
    update = {
        "type": "session.update",
        "session": {"delegation": {"type": "responses", "responses": {"tool_choice": "auto"}}},
    }
    assert live.check_update(update, current) == update["session"]
    assert live.check_update({"session": {"triggers": []}}, current) == {"triggers": []}
    for field in ("instructions", "model", "audio", "input", "store"):
        with pytest.raises(InvalidRequest) as caught:
            live.check_update({"session": {field: "x"}}, current)
        assert (caught.value.code, caught.value.param) == (
            "immutable_field_update",
            f"session.{field}",
        )
    with pytest.raises(InvalidRequest) as caught:
        live.check_update({"session": {"delegation": {"type": "client"}}}, current)
    assert caught.value.param == "session.delegation.type"
    # A session that never said its delegation is client-delegated.
    with pytest.raises(InvalidRequest):
        live.check_update({"session": {"delegation": {"type": "responses"}}}, {"model": "m"})


def test_commands_that_never_go_on_a_data_channel_are_known() -> None:
    assert set(live.NOT_ON_THE_DATA_CHANNEL) == {
        "session.start",
        "session.input_audio.append",
        "session.output_audio.fixture.play",
        "transport.dtmf.send",
    }


# -- the gateway's edge ---------------------------------------------------------------------------


def test_the_upstream_is_asked_for_an_unrestricted_frontend() -> None:
    app: dict[str, Any] = {
        "model": "gpt-live-1",
        "client": {"data_channel": {"allowed_client_events": []}},
    }
    assert live.upstream_session(app) == {"model": "gpt-live-1"}
    assert app["client"] == {"data_channel": {"allowed_client_events": []}}  # not mutated
    assert live.upstream_session({"model": "m"}) == {"model": "m"}


def test_the_gate_shows_the_apps_setting_under_the_gateways_id() -> None:
    client = {"data_channel": {"allowed_server_events": [{"type": "session.started"}]}}
    gate = live.LiveGate({"model": "m", "client": client}, "live_gw")
    upstream_started: dict[str, Any] = {
        "type": "session.started",
        "event_id": "e1",
        "session": {"id": "live_upstream", "client": live.ALL_ALLOWED, "model": "m"},
    }
    shown = gate.server(upstream_started)
    assert [e["type"] for e in shown] == ["session.started"]  # info is not in the list
    assert shown[0]["session"] == {"id": "live_gw", "client": client, "model": "m"}
    assert upstream_started["session"]["id"] == "live_upstream"  # the input is left alone
    assert gate.server({"type": "session.output_transcript.delta", "delta": "x"}) == []
    assert gate.server({"type": "info", "code": "data_channel_permissions"}) == []
    assert gate.server({"type": "error", "error": {}})[0]["type"] == "error"


def test_the_gate_announces_a_restricted_frontend_once() -> None:
    gate = live.LiveGate(
        {"client": {"data_channel": {"allowed_client_events": ["session.close"]}}}, "live_gw"
    )
    started = {"type": "session.started", "session": {"id": "u"}}
    first = gate.server(started)
    assert [e["type"] for e in first] == ["session.started", "info"]
    assert first[1]["code"] == "data_channel_permissions"
    assert [e["type"] for e in gate.server(started)] == ["session.started"]
    unrestricted = live.LiveGate({"model": "m"}, "live_gw")
    assert [e["type"] for e in unrestricted.server(started)] == ["session.started"]


def test_the_gate_refuses_what_a_browser_may_not_send() -> None:
    gate = live.LiveGate(
        {"client": {"data_channel": {"allowed_client_events": ["session.close", "session.update"]}}}
    )
    current = {"delegation": {"type": "responses"}}
    gate.client({"type": "session.close"}, current)
    gate.client({"type": "session.update", "session": {"triggers": []}}, current)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"type": "session.input_audio.mute"}, "event_not_allowed"),
        ({"type": "session.start"}, "invalid_event"),
        ({"type": "conversation.item.create"}, "invalid_value"),
        ({"type": "x." * 5000}, "invalid_value"),
        ({"type": "session.update", "session": {"model": "x"}}, "immutable_field_update"),
        (
            {"type": "session.update", "session": {"delegation": {"type": "responses"}}},
            "locked_field",
        ),
    ]
    for event, code in cases:
        with pytest.raises(InvalidRequest) as caught:
            gate.client(event, current)
        assert caught.value.code == code


def test_lives_error_event_carries_the_commands_id() -> None:
    error = InvalidRequest("no", code="event_not_allowed", param="type")
    event = live.live_error_event(error, client_event_id="evt_1")
    assert event["type"] == "error" and event["client_event_id"] == "evt_1"
    assert event["error"] == {
        "message": "no",
        "type": "invalid_request_error",
        "code": "event_not_allowed",
        "param": "type",
        "client_event_id": "evt_1",
    }
    assert "client_event_id" not in live.live_error_event(error)
