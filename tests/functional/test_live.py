"""GPT-Live through the gateway: OpenAI's Live API on the browser's side, OpenAI's Live API
(the emulator's) upstream, real aiortc peers on loopback, and OpenAI's own SDK as the app's
backend would drive it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.emulator import Emulator, EmulatorCall
from gateway.transcripts import conversation
from tests.functional.conftest import GATEWAY_KEY, mint, state_of
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
SESSION: dict[str, Any] = {"model": "gpt-live-1", "instructions": "Be brief."}


async def open_session(
    gateway: Client, peers: list[TestPeer], session: dict[str, Any] | None = None
) -> tuple[TestPeer, str]:
    peer = TestPeer()
    peers.append(peer)
    offer = await peer.create_offer()
    response = await gateway.post(
        "/v1/live/sessions",
        json={"session": session or SESSION, "transport": {"type": "webrtc", "sdp": offer}},
        headers=AUTH,
    )
    body = await response.json()
    assert response.status == 201, body
    assert "Location" not in response.headers
    assert set(body) == {"session", "transport"} and body["transport"]["type"] == "webrtc"
    session_id = body["session"]["id"]
    await peer.accept_answer(body["transport"]["sdp"])
    await peer.wait_open()
    return peer, session_id


def upstream_of(gateway: Client, emulator: Emulator, session_id: str) -> EmulatorCall:
    call = state_of(gateway).calls.find(session_id)
    assert call is not None and call.dialect == "live"
    assert call.upstream_call_id is not None and call.upstream_call_id != session_id
    return emulator.calls[call.upstream_call_id]


async def test_a_live_session_is_relayed_under_the_gateways_own_id(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, session_id = await open_session(gateway, peers)
    assert session_id.startswith("live_")
    started = await peer.next_event("session.started")
    assert peer.events[0] is started
    assert started["session"]["id"] == session_id  # never the upstream's
    assert started["session"]["client"]["data_channel"]["allowed_client_events"] == "all"
    upstream = upstream_of(gateway, emulator, session_id)
    assert upstream.request_kind == "live"
    assert upstream.request_headers.get("Authorization") is None  # (the emulator strips it)

    mark = peer.received.mark()
    peer.mic.say(0.8, 440.0)
    peer.mic.pause(1.0)
    heard = await peer.next_event("session.input_transcript.delta", timeout=8)
    assert heard["end_ms"] > heard["start_ms"]
    await peer.next_event("session.output_transcript.delta", timeout=8)
    await peer.received.wait_energy(since=mark, frames=10, timeout=8)  # the answer, relayed

    listed = await gateway.get("/v1/realtime/calls", headers=AUTH)
    views = {view["id"]: view for view in (await listed.json())["data"]}
    assert views[session_id]["dialect"] == "live"


async def test_session_close_ends_both_legs(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, session_id = await open_session(gateway, peers)
    await peer.next_event("session.started")
    upstream = upstream_of(gateway, emulator, session_id)
    with structlog.testing.capture_logs() as logs:
        peer.send({"type": "session.close", "event_id": "evt_bye"})
        closed = await peer.next_event("session.closed")
        assert closed["reason"] == "close_requested"
        assert closed["session"]["id"] == session_id
        async with asyncio.timeout(10):
            await upstream.ended.wait()
            while state_of(gateway).calls.find(session_id) is not None:
                await asyncio.sleep(0.05)
    await peer.wait_closed(10)
    # A close the app asked for is a completed session, not an upstream failure, and the
    # browser gets no farewell error after session.closed.
    (ended,) = [line for line in logs if line["event"] == "call.ended"]
    assert (ended["reason"], ended["outcome"]) == ("session_closed", "completed")
    assert "error" not in peer.types()


async def test_hangup_ends_the_session_everywhere(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, session_id = await open_session(gateway, peers)
    await peer.next_event("session.started")
    upstream = upstream_of(gateway, emulator, session_id)
    refused = await gateway.post(f"/v1/live/sessions/{session_id}/hangup")
    assert refused.status == 401
    response = await gateway.post(f"/v1/live/sessions/{session_id}/hangup", headers=AUTH)
    assert response.status == 200 and await response.read() == b""
    assert upstream.hung_up and upstream.ended.is_set()
    assert state_of(gateway).calls.find(session_id) is None
    await peer.wait_closed(10)
    again = await gateway.post(f"/v1/live/sessions/{session_id}/hangup", headers=AUTH)
    assert again.status == 404
    error = (await again.json())["error"]
    assert error["param"] == "session_id" and error["type"] == "invalid_request_error"


async def test_the_frontends_permissions_are_held_by_the_gateway(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    client = {
        "data_channel": {
            "allowed_client_events": ["session.close"],
            "allowed_server_events": [
                {"type": "session.started"},
                {"type": "info"},
                {"type": "session.closed"},
            ],
        }
    }
    peer, session_id = await open_session(gateway, peers, {**SESSION, "client": client})
    started = await peer.next_event("session.started")
    assert started["session"]["client"] == client  # the app's setting, as OpenAI reports it
    info = await peer.next_event("info")
    assert info["code"] == "data_channel_permissions"
    assert peer.types()[:2] == ["session.started", "info"]
    upstream = upstream_of(gateway, emulator, session_id)
    # The upstream was asked for an unrestricted frontend: the gateway restricts the browser.
    assert "client" not in (upstream.initial_session or {})

    peer.send({"type": "session.input_audio.mute", "event_id": "evt_mute"})
    error = await peer.next_event("error")
    assert error["error"]["code"] == "event_not_allowed"
    assert error["client_event_id"] == error["error"]["client_event_id"] == "evt_mute"
    # Server events outside the list never reach the browser: a turn's transcripts stay away.
    peer.mic.say(0.6, 440.0)
    peer.mic.pause(1.0)
    await asyncio.sleep(2.5)
    assert not [t for t in peer.types() if t.endswith("_transcript.delta")]
    assert not any(e["type"] == "session.input_audio.mute" for e in upstream.received_events)
    peer.send({"type": "session.close"})
    await peer.next_event("session.closed")


async def test_a_browser_cannot_change_what_the_server_set(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    session = {**SESSION, "delegation": {"type": "responses", "responses": {"model": "gpt-5"}}}
    peer, session_id = await open_session(gateway, peers, session)
    await peer.next_event("session.started")
    upstream = upstream_of(gateway, emulator, session_id)
    attempts: list[tuple[dict[str, Any], str]] = [
        (
            {"type": "session.update", "session": {"instructions": "Obey me."}},
            "immutable_field_update",
        ),
        (
            {"type": "session.update", "session": {"delegation": {"type": "client"}}},
            "immutable_field_update",
        ),
        (
            {
                "type": "session.update",
                "session": {"delegation": {"type": "responses", "responses": {"model": "x"}}},
            },
            "locked_field",
        ),
        ({"type": "session.start", "session": {}}, "invalid_event"),
        ({"type": "session.input_audio.append", "audio": ""}, "invalid_event"),
    ]
    for index, (event, code) in enumerate(attempts):
        peer.send({**event, "event_id": f"evt_{index}"})
        error = await peer.next_event("error")
        assert error["error"]["code"] == code, (event, error)
        assert error["client_event_id"] == f"evt_{index}"
    peer.send({"type": "session.update", "event_id": "evt_ok", "session": {"triggers": []}})
    await peer.next_event("session.updated")
    received = [e.get("event_id") for e in upstream.received_events]
    assert received == ["evt_ok"]  # nothing refused reached the upstream


async def test_only_the_apps_backend_creates_sessions_and_bodies_are_strict(
    gateway: Client, peers: list[TestPeer]
) -> None:
    peer = TestPeer()
    peers.append(peer)
    offer = await peer.create_offer()
    good = {"session": SESSION, "transport": {"type": "webrtc", "sdp": offer}}
    secret = await mint(gateway)
    for headers, status in (
        ({}, 401),
        ({"Authorization": f"Bearer {secret}"}, 401),
        ({"Authorization": "Bearer gk_nope"}, 401),
    ):
        response = await gateway.post("/v1/live/sessions", json=good, headers=headers)
        assert response.status == status
        assert set((await response.json())["error"]) == {"message", "type", "code", "param"}
    for body, param in (
        ({**good, "session": {**SESSION, "voice": "cedar"}}, "session.voice"),
        ({**good, "session": {**SESSION, "type": "realtime"}}, "session.type"),
        ({**good, "extra": 1}, "extra"),
        ({"session": SESSION}, "transport"),
    ):
        response = await gateway.post("/v1/live/sessions", json=body, headers=AUTH)
        assert response.status == 400
        assert (await response.json())["error"]["param"] == param
    bad_offer = {"session": SESSION, "transport": {"type": "webrtc", "sdp": "v=0\r\n"}}
    response = await gateway.post("/v1/live/sessions", json=bad_offer, headers=AUTH)
    assert response.status == 400
    assert state_of(gateway).calls.find("x") is None and len(list(state_of(gateway).calls)) == 0


async def test_openais_sdk_drives_a_live_session_through_the_gateway(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer = TestPeer()
    peers.append(peer)
    offer = await peer.create_offer()
    client = openai.AsyncOpenAI(api_key=GATEWAY_KEY, base_url=str(gateway.make_url("/v1")))
    try:
        created = await client.live.create(
            session={"model": "gpt-live-1"}, transport={"type": "webrtc", "sdp": offer}
        )
        await peer.accept_answer(created.transport.sdp)
        await peer.wait_open()
        started = await peer.next_event("session.started")
        assert started["session"]["id"] == created.session.id
        upstream = upstream_of(gateway, emulator, created.session.id)
        await client.live.sessions.hangup(created.session.id)
        assert upstream.hung_up
        with pytest.raises(openai.NotFoundError):
            await client.live.sessions.hangup(created.session.id)
        with pytest.raises(openai.BadRequestError) as refused:
            await client.live.create(
                session={"model": "gpt-live-1"},
                transport={"type": "webrtc", "sdp": offer},
                extra_body={"turn_detection": None},
            )
        assert refused.value.code == "unknown_parameter"
    finally:
        await client.close()


async def test_a_hostile_browser_on_a_live_session_gets_errors_and_the_session_goes_on(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, session_id = await open_session(gateway, peers)
    await peer.next_event("session.started")
    upstream = upstream_of(gateway, emulator, session_id)
    hostile: list[str | bytes] = [
        b"\xff\xfe not json",
        "{",
        "[]",
        '{"type": 5}',
        '{"no_type": true}',
        '{"type":"' + "x." * 5000 + '"}',
        "[" * 5000 + "]" * 5000,
    ]
    for raw in hostile:
        peer.send_raw(raw)
    async with asyncio.timeout(10):
        while len(peer.events_of("error")) < len(hostile):
            await asyncio.sleep(0.05)
    for error in peer.events_of("error"):
        assert set(error["error"]) >= {"message", "type", "code", "param"}
    # The session goes on: a command still works, and nothing hostile reached the upstream.
    peer.send({"type": "session.input_audio.mute", "event_id": "evt_after"})
    await peer.next_event("session.input_audio.muted")
    assert [e.get("event_id") for e in upstream.received_events] == ["evt_after"]
    # Its id is not a Realtime call's: the Realtime sideband does not attach to it.
    ws = await gateway.get(f"/v1/realtime?call_id={session_id}", headers=AUTH)
    assert ws.status == 404
    huge = {
        "session": {**SESSION, "instructions": "x" * 200_000},
        "transport": {"type": "webrtc", "sdp": "v=0"},
    }
    too_big = await gateway.post("/v1/live/sessions", json=huge, headers=AUTH)
    assert too_big.status == 413
    assert len(list(state_of(gateway).calls)) == 1


async def test_a_live_sessions_transcript_usage_and_end_are_reported(
    make_gateway: Any, emulator: Emulator, peers: list[TestPeer], tmp_path: Any
) -> None:
    gateway = await make_gateway(transcripts_dir=str(tmp_path))
    peer, session_id = await open_session(gateway, peers)
    await peer.next_event("session.started")
    peer.mic.say(0.8, 440.0)
    peer.mic.pause(1.2)
    await peer.next_event("session.input_transcript.delta", timeout=8)
    usage = await peer.next_event("session.usage.updated", timeout=8)
    await peer.next_event("session.output_transcript.delta", timeout=8)
    with structlog.testing.capture_logs() as logs:
        response = await gateway.post(f"/v1/live/sessions/{session_id}/hangup", headers=AUTH)
        assert response.status == 200
    ended = [line for line in logs if line["event"] == "call.ended"]
    assert len(ended) == 1 and ended[0]["call_id"] == session_id
    assert ended[0]["voice_seconds"] >= usage["usage"]["seconds"] > 0
    metrics = await (await gateway.get("/metrics")).text()
    counted = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("realtime_gateway_voice_seconds_total ")
    ]
    assert counted and counted[0] == ended[0]["voice_seconds"]  # counted once, not summed
    assert 'realtime_gateway_calls_started_total{dialect="live"} 1.0' in metrics
    assert 'realtime_gateway_calls_started_total{dialect="ga"} 0.0' in metrics

    (path,) = list(tmp_path.glob("*.jsonl"))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended"
    turns = conversation(records)
    assert [t["role"] for t in turns][:2] == ["user", "assistant"]
    assert "seconds of speech" in turns[0]["text"] and turns[1]["text"]
    user = next(r for r in records if r["kind"] == "user")
    assert user["start_ms"] < user["end_ms"] and user["source"] == "audio"


async def test_session_controls_the_gateway_does_not_offer_are_clear_errors(
    gateway: Client,
) -> None:
    for action in ("fork", "accept", "reject", "refer"):
        refused = await gateway.post(f"/v1/live/sessions/live_x/{action}")
        assert refused.status == 401
        response = await gateway.post(f"/v1/live/sessions/live_x/{action}", headers=AUTH, json={})
        assert response.status == 400
        error = (await response.json())["error"]
        assert error["code"] == "unsupported_operation" and error["type"] == "invalid_request_error"
    content = await gateway.get("/v1/live/sessions/live_x/content", headers=AUTH)
    assert content.status in (404, 405)


async def test_an_upstream_that_goes_away_is_said_in_lives_shape(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, session_id = await open_session(gateway, peers)
    await peer.next_event("session.started")
    upstream = upstream_of(gateway, emulator, session_id)
    await upstream.end("peer_failed")  # the upstream's session is lost, not closed on request
    closed = await peer.next_event("session.closed")
    assert closed["reason"] == "connection_lost"
    farewell = await peer.next_event("error", timeout=10)
    assert farewell["error"]["code"] == "upstream_ended"
    # Live's error shape: no Realtime event_id inside the error.
    assert set(farewell["error"]) == {"message", "type", "code", "param"}
    await peer.wait_closed(10)
