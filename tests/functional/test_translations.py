"""Realtime translations through the gateway: OpenAI's translations API on the browser's side,
the emulator's upstream, real aiortc peers on loopback, and OpenAI's own SDK as the app's
backend would drive it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pydantic
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from openai.types.realtime.realtime_translation_server_event import (
    RealtimeTranslationServerEvent,
)

from gateway.emulator import Emulator, EmulatorCall
from gateway.transcripts import conversation
from tests.functional.conftest import GATEWAY_KEY, mint, state_of
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
MODEL = "gpt-realtime-translate"
SESSION: dict[str, Any] = {
    "model": MODEL,
    "audio": {
        "input": {"transcription": {"model": "gpt-realtime-whisper"}},
        "output": {"language": "fr"},
    },
}
SERVER_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeTranslationServerEvent)


async def mint_translation(gateway: Client, session: dict[str, Any] | None = None) -> str:
    """A translation client secret, minted with OpenAI's SDK pointed at the gateway."""
    client = openai.AsyncOpenAI(api_key=GATEWAY_KEY, base_url=str(gateway.make_url("/v1")))
    try:
        created = await client.realtime.translations.client_secrets.create(
            session=session or SESSION  # type: ignore[arg-type]
        )
    finally:
        await client.close()
    return created.value


async def post_offer(gateway: Client, token: str | None, sdp: str, path: str = "") -> Any:
    headers = {"Content-Type": "application/sdp"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await gateway.post(
        path or "/v1/realtime/translations/calls", data=sdp.encode(), headers=headers
    )


async def open_call(
    gateway: Client, peers: list[TestPeer], session: dict[str, Any] | None = None
) -> tuple[TestPeer, str]:
    token = await mint_translation(gateway, session)
    peer = TestPeer()
    peers.append(peer)
    response = await post_offer(gateway, token, await peer.create_offer())
    answer = await response.text()
    assert response.status == 201, answer
    assert response.headers["Content-Type"].startswith("application/sdp")
    call_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert response.headers["Location"] == f"/v1/realtime/translations/calls/{call_id}"
    await peer.accept_answer(answer)
    await peer.wait_open()
    return peer, call_id


def upstream_of(gateway: Client, emulator: Emulator, call_id: str) -> EmulatorCall:
    call = state_of(gateway).calls.find(call_id)
    assert call is not None and call.dialect == "translation"
    assert call.upstream_call_id is not None
    upstream = emulator.calls[call.upstream_call_id]
    assert upstream.request_kind == "translation"
    return upstream


async def test_openais_sdk_mints_and_a_browser_hears_its_translation(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    """The SDK's client-secret call gets OpenAI's shape; the browser's call is relayed both
    ways: session.created first, its speech back as the translation, and transcript deltas."""
    client = openai.AsyncOpenAI(api_key=GATEWAY_KEY, base_url=str(gateway.make_url("/v1")))
    try:
        created = await client.realtime.translations.client_secrets.create(
            session=SESSION,  # type: ignore[arg-type]
            expires_after={"anchor": "created_at", "seconds": 120},
        )
    finally:
        await client.close()
    assert created.value.startswith("ek_")
    assert created.session.type == "translation" and created.session.model == MODEL
    assert created.session.id.startswith("sess_")
    assert created.session.audio.output is not None
    assert created.session.audio.output.language == "fr"
    assert created.session.audio.input is not None
    assert created.session.audio.input.noise_reduction is None
    assert created.expires_at == created.session.expires_at
    raw = created.model_dump()
    assert set(raw) == {"value", "expires_at", "session"}
    assert set(raw["session"]) == {"id", "type", "model", "audio", "expires_at"}

    peer = TestPeer()
    peers.append(peer)
    response = await post_offer(gateway, created.value, await peer.create_offer())
    assert response.status == 201, await response.text()
    call_id = response.headers["Location"].rsplit("/", 1)[-1]
    await peer.accept_answer(await response.text())
    await peer.wait_open()

    started = await peer.next_event("session.created")
    assert peer.events[0] is started
    assert started["session"]["type"] == "translation"
    assert started["session"]["id"] == created.session.id  # the id its secret named
    assert started["session"]["audio"]["output"]["language"] == "fr"
    upstream = upstream_of(gateway, emulator, call_id)
    assert upstream.request_headers.get("Content-Type", "").startswith("application/sdp")

    mark = peer.received.mark()
    peer.mic.say(0.8, 440.0)
    peer.mic.pause(1.0)
    heard = await peer.next_event("session.input_transcript.delta", timeout=8)
    said = await peer.next_event("session.output_transcript.delta", timeout=8)
    assert "seconds of speech" in heard["delta"]
    assert said["delta"].startswith("(emulator) fr: ")
    await peer.received.wait_energy(since=mark, frames=10, timeout=8)  # the browser hears it
    assert upstream.input_audio.speech_ms > 0  # and the upstream heard the browser
    for event in peer.events:
        SERVER_EVENT.validate_python(event)  # every event as OpenAI's SDK reads it

    listed = await gateway.get("/v1/realtime/calls", headers=AUTH)
    views = {view["id"]: view for view in (await listed.json())["data"]}
    assert views[call_id]["dialect"] == "translation"
    metrics = await (await gateway.get("/metrics")).text()
    assert 'realtime_gateway_calls_started_total{dialect="translation"} 1.0' in metrics
    assert 'realtime_gateway_calls_started_total{dialect="ga"} 0.0' in metrics


async def test_session_update_changes_audio_settings_and_nothing_else(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, call_id = await open_call(gateway, peers)
    created = await peer.next_event("session.created")
    upstream = upstream_of(gateway, emulator, call_id)

    peer.send(
        {
            "type": "session.update",
            "event_id": "evt_de",
            "session": {
                "audio": {
                    "output": {"language": "de"},
                    "input": {"noise_reduction": {"type": "near_field"}},
                }
            },
        }
    )
    updated = await peer.next_event("session.updated")
    assert updated["session"]["audio"]["output"]["language"] == "de"
    assert updated["session"]["audio"]["input"]["noise_reduction"]["type"] == "near_field"
    assert updated["session"]["id"] == created["session"]["id"]
    SERVER_EVENT.validate_python(updated)

    refused = [
        ({"model": "gpt-realtime-2"}, "immutable_field_update", "session.model"),
        ({"instructions": "Say something else."}, "unknown_parameter", "session.instructions"),
        (
            {"audio": {"output": {"voice": "marin"}}},
            "unknown_parameter",
            "session.audio.output.voice",
        ),
        ({"audio": {"output": {"language": 7}}}, "invalid_type", "session.audio.output.language"),
    ]
    for index, (session, code, param) in enumerate(refused):
        peer.send({"type": "session.update", "event_id": f"evt_bad_{index}", "session": session})
        error = await peer.next_event("error")
        SERVER_EVENT.validate_python(error)
        assert error["error"]["type"] == "invalid_request_error"
        assert (error["error"]["code"], error["error"]["param"]) == (code, param)
        assert error["error"]["event_id"] == f"evt_bad_{index}"
    # None of them reached the upstream; the one update that was allowed did.
    sent = [e.get("event_id") for e in upstream.received_events]
    assert sent == ["evt_de"]


async def test_what_the_server_locked_is_refused(
    make_gateway: Any, emulator: Emulator, peers: list[TestPeer]
) -> None:
    gateway = await make_gateway(locked_session_fields=("model", "audio.output.language"))
    peer, call_id = await open_call(gateway, peers)
    await peer.next_event("session.created")
    upstream = upstream_of(gateway, emulator, call_id)
    peer.send(
        {
            "type": "session.update",
            "event_id": "evt_lang",
            "session": {"audio": {"output": {"language": "es"}}},
        }
    )
    error = await peer.next_event("error")
    assert (error["error"]["code"], error["error"]["param"]) == (
        "locked_field",
        "session.audio.output.language",
    )
    # The same value is no change, and transcription was not locked.
    peer.send(
        {
            "type": "session.update",
            "event_id": "evt_same",
            "session": {"audio": {"output": {"language": "fr"}, "input": {"transcription": None}}},
        }
    )
    updated = await peer.next_event("session.updated")
    assert updated["session"]["audio"]["input"]["transcription"] is None
    assert [e.get("event_id") for e in upstream.received_events] == ["evt_same"]


async def test_session_close_ends_both_legs(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, call_id = await open_call(gateway, peers)
    await peer.next_event("session.created")
    upstream = upstream_of(gateway, emulator, call_id)
    with structlog.testing.capture_logs() as logs:
        peer.send({"type": "session.close", "event_id": "evt_bye"})
        closed = await peer.next_event("session.closed")
        SERVER_EVENT.validate_python(closed)
        async with asyncio.timeout(10):
            await upstream.ended.wait()
            while state_of(gateway).calls.find(call_id) is not None:
                await asyncio.sleep(0.05)
    await peer.wait_closed(10)
    (ended,) = [line for line in logs if line["event"] == "call.ended"]
    assert (ended["reason"], ended["outcome"]) == ("session_closed", "completed")
    assert "error" not in peer.types()
    assert upstream.end_reason in ("close_requested", "peer_closed")


async def test_the_gateways_hangup_ends_a_translation_call(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, call_id = await open_call(gateway, peers)
    await peer.next_event("session.created")
    upstream = upstream_of(gateway, emulator, call_id)
    response = await gateway.post(f"/v1/realtime/calls/{call_id}/hangup", headers=AUTH)
    assert response.status == 200
    assert state_of(gateway).calls.find(call_id) is None
    await peer.wait_closed(10)
    async with asyncio.timeout(10):
        await upstream.ended.wait()
    assert not upstream.hung_up  # no hangup is documented for translations: the peer closed


async def test_credentials_and_bodies_are_checked_in_openais_shape(
    gateway: Client, peers: list[TestPeer]
) -> None:
    peer = TestPeer()
    peers.append(peer)
    offer = await peer.create_offer()

    def shaped(body: dict[str, Any]) -> dict[str, Any]:
        assert set(body) == {"error"}
        assert set(body["error"]) >= {"message", "type", "code", "param"}
        return dict(body["error"])

    # No credentials at all.
    for path in ("/v1/realtime/translations/client_secrets", "/v1/realtime/translations/calls"):
        response = await gateway.post(path, json={"session": SESSION})
        assert response.status == 401
        assert shaped(await response.json())["code"] == "missing_api_key"
    # A browser's secret does not mint; the gateway key does not open a call.
    translation_secret = await mint_translation(gateway)
    response = await gateway.post(
        "/v1/realtime/translations/client_secrets",
        json={"session": SESSION},
        headers={"Authorization": f"Bearer {translation_secret}"},
    )
    assert response.status == 401
    response = await post_offer(gateway, GATEWAY_KEY, offer)
    assert response.status == 400
    assert shaped(await response.json())["code"] == "client_secret_required"

    # A secret opens only its own kind of call, and a refusal does not spend it.
    realtime_secret = await mint(gateway, session={"type": "realtime"})
    response = await post_offer(gateway, realtime_secret, offer)
    assert response.status == 400
    error = shaped(await response.json())
    assert error["code"] == "session_type_mismatch" and "/v1/realtime/calls" in error["message"]
    response = await post_offer(gateway, translation_secret, offer, "/v1/realtime/calls")
    assert response.status == 400
    error = shaped(await response.json())
    assert error["code"] == "session_type_mismatch"
    assert "/v1/realtime/translations/calls" in error["message"]
    assert len(list(state_of(gateway).calls)) == 0
    response = await post_offer(gateway, translation_secret, offer)
    assert response.status == 201, await response.text()

    # Strict bodies, as OpenAI's: unknown fields, wrong types, missing ones.
    bad_bodies: list[tuple[Any, str, str | None]] = [
        ({}, "missing_required_parameter", "session"),
        ({"session": {"audio": {}}}, "missing_required_parameter", "session.model"),
        ({"session": {"model": 5}}, "invalid_type", "session.model"),
        ({"session": {**SESSION, "voice": "marin"}}, "unknown_parameter", "session.voice"),
        ({"session": {**SESSION, "type": "translation"}}, "unknown_parameter", "session.type"),
        ({"session": SESSION, "extra": True}, "unknown_parameter", "extra"),
        ({"session": {"model": MODEL, "audio": []}}, "invalid_type", "session.audio"),
        (
            {"session": {"model": MODEL, "audio": {"input": {"noise_reduction": {"type": "x"}}}}},
            "invalid_value",
            "session.audio.input.noise_reduction.type",
        ),
        (
            {"session": {"model": MODEL, "audio": {"input": {"transcription": {}}}}},
            "missing_required_parameter",
            "session.audio.input.transcription.model",
        ),
        (
            {"session": SESSION, "expires_after": {"seconds": 5}},
            "invalid_value",
            "expires_after.seconds",
        ),
        ([SESSION], "invalid_json", None),
    ]
    for body, code, param in bad_bodies:
        response = await gateway.post(
            "/v1/realtime/translations/client_secrets", json=body, headers=AUTH
        )
        assert response.status == 400, body
        error = shaped(await response.json())
        assert error["type"] == "invalid_request_error"
        assert (error["code"], error["param"]) == (code, param), body

    # The SDK raises them as OpenAI's own errors.
    client = openai.AsyncOpenAI(api_key=GATEWAY_KEY, base_url=str(gateway.make_url("/v1")))
    try:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.realtime.translations.client_secrets.create(
                session={"model": MODEL}, extra_body={"turn_detection": None}
            )
        assert refused.value.code == "unknown_parameter"
    finally:
        await client.close()


async def test_a_hostile_browser_gets_errors_and_the_call_goes_on(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, call_id = await open_call(gateway, peers)
    await peer.next_event("session.created")
    upstream = upstream_of(gateway, emulator, call_id)
    refused: list[tuple[dict[str, Any], str | None]] = [
        ({"type": "response.create", "event_id": "evt_rc"}, "invalid_value"),
        (
            {"type": "session.input_audio_buffer.append", "event_id": "evt_ap", "audio": "AAAA"},
            "invalid_event",
        ),
        ({"type": "input_audio_buffer.append", "event_id": "evt_rt", "audio": "AAAA"}, None),
        ({"type": "conversation.item.create", "event_id": "evt_ci", "item": {}}, None),
    ]
    for event, _ in refused:
        peer.send(event)
    peer.send_raw("not json")
    async with asyncio.timeout(10):
        while len(peer.events_of("error")) < len(refused) + 1:
            await asyncio.sleep(0.05)
    errors = {e["error"]["event_id"]: e["error"] for e in peer.events_of("error")}
    for event, code in refused:
        error = errors[event["event_id"]]
        assert error["param"] == "type" and error["type"] == "invalid_request_error"
        assert error["code"] == (code or "invalid_value")
    assert "session.update" in errors["evt_rc"]["message"]  # it names what is supported
    for error_event in peer.events_of("error"):
        SERVER_EVENT.validate_python(error_event)
    # The call goes on, and nothing refused reached the upstream.
    peer.send({"type": "session.update", "event_id": "evt_ok", "session": {}})
    await peer.next_event("session.updated")
    assert [e.get("event_id") for e in upstream.received_events] == ["evt_ok"]


async def test_a_flood_on_the_data_channel_is_held_to_the_calls_limits(
    make_gateway: Any, emulator: Emulator, peers: list[TestPeer]
) -> None:
    gateway = await make_gateway(events_per_second=5.0, max_event_bytes=2048)
    peer, call_id = await open_call(gateway, peers)
    await peer.next_event("session.created")
    upstream = upstream_of(gateway, emulator, call_id)
    peer.send(
        {
            "type": "session.update",
            "event_id": "evt_big",
            "session": {"audio": {"output": {"language": "x" * 4096}}},
        }
    )
    big = await peer.next_event("error")
    assert big["error"]["code"] == "event_too_large"
    flood = 260
    for index in range(flood):
        peer.send({"type": "session.update", "event_id": f"evt_{index}", "session": {}})
    async with asyncio.timeout(15):
        while len(peer.events_of("error")) + len(peer.events_of("session.updated")) < flood + 1:
            await asyncio.sleep(0.05)
    rated = [e for e in peer.events_of("error") if e["error"]["code"] == "event_rate"]
    assert rated, "the flood was not rate limited"
    forwarded = [e for e in upstream.received_events if e["type"] == "session.update"]
    assert len(forwarded) + len(rated) == flood
    assert len(forwarded) < flood
    assert state_of(gateway).calls.find(call_id) is not None  # the call itself goes on


async def test_the_transcript_holds_both_sides(
    make_gateway: Any, emulator: Emulator, peers: list[TestPeer], tmp_path: Any
) -> None:
    gateway = await make_gateway(transcripts_dir=str(tmp_path))
    peer, call_id = await open_call(gateway, peers)
    await peer.next_event("session.created")
    peer.mic.say(0.8, 440.0)
    peer.mic.pause(1.0)
    await peer.next_event("session.output_transcript.delta", timeout=8)
    peer.send({"type": "session.close"})
    await peer.next_event("session.closed")
    await peer.wait_closed(10)
    async with asyncio.timeout(10):
        while state_of(gateway).calls.find(call_id) is not None:
            await asyncio.sleep(0.05)
    (path,) = list(tmp_path.glob("*.jsonl"))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended"
    assert records[0]["model"] == MODEL
    turns = conversation(records)
    assert [t["role"] for t in turns] == ["user", "assistant"]
    assert "seconds of speech" in turns[0]["text"]
    assert turns[1]["text"].startswith("(emulator) fr: ")
