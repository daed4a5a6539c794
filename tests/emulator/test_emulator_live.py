"""The emulator speaks GPT-Live: ``POST /v1/live/sessions`` over real aiortc peers on loopback,
driven as OpenAI's own Python SDK and a browser drive OpenAI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from gateway.emulator import Emulator, EmulatorSettings
from tests.support.peer import TestPeer

OPENAI_KEY = "sk-live-emulator-test"

SESSION = {
    "model": "gpt-live-1",
    "instructions": "Be brief.",
    "audio": {"output": {"voice": "marin"}},
}


@pytest.fixture(name="emulator")
async def _emulator() -> AsyncIterator[Emulator]:
    emulator = Emulator(
        EmulatorSettings(ice_addresses=("127.0.0.1",), api_key=OPENAI_KEY, record_events=True)
    )
    _BASES[id(emulator)] = await emulator.start()
    yield emulator
    await emulator.aclose()
    del _BASES[id(emulator)]


_BASES: dict[int, str] = {}


def emulator_base(emulator: Emulator) -> str:
    return _BASES[id(emulator)]


@pytest.fixture(name="peers")
async def _peers() -> AsyncIterator[list[TestPeer]]:
    made: list[TestPeer] = []
    yield made
    await asyncio.gather(*(peer.close() for peer in made))


async def create(
    http: aiohttp.ClientSession, base: str, body: Any, *, key: str = OPENAI_KEY
) -> tuple[int, Any]:
    async with http.post(
        base + "/live/sessions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as response:
        return response.status, await response.json()


async def started(
    emulator: Emulator, peers: list[TestPeer], session: dict[str, Any] | None = None
) -> tuple[TestPeer, str]:
    """A browser with a Live session open on the emulator: its data channel has opened."""
    peer = TestPeer()
    peers.append(peer)
    offer = await peer.create_offer()
    async with aiohttp.ClientSession() as http:
        status, body = await create(
            http,
            emulator_base(emulator),
            {"session": session or SESSION, "transport": {"type": "webrtc", "sdp": offer}},
        )
    assert status == 201, body
    assert set(body) == {"session", "transport"}
    assert body["transport"]["type"] == "webrtc"
    session_id = body["session"]["id"]
    assert session_id.startswith("live_")
    await peer.accept_answer(body["transport"]["sdp"])
    await peer.wait_open()
    return peer, session_id


async def test_a_session_starts_listens_and_answers(
    emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, session_id = await started(emulator, peers)
    first = await peer.next_event("session.started")
    assert peer.events[0] is first  # the first event on the channel
    resource = first["session"]
    assert resource["id"] == session_id and resource["status"] == "active"
    assert resource["model"] == "gpt-live-1"
    assert resource["audio"] == {"output": {"voice": "marin"}}
    assert resource["delegation"] == {"type": "client"}
    assert resource["expires_at"] > 0

    mark = peer.received.mark()
    peer.mic.say(0.8, 440.0)
    peer.mic.pause(1.0)
    heard = await peer.next_event("session.input_transcript.delta", timeout=8)
    assert "seconds of speech" in heard["delta"]
    assert 0 <= heard["start_ms"] < heard["end_ms"]
    spoken = await peer.next_event("session.output_transcript.delta", timeout=8)
    assert spoken["start_ms"] >= heard["end_ms"] and spoken["end_ms"] >= spoken["start_ms"]
    usage = await peer.next_event("session.usage.updated")
    assert isinstance(usage["usage"]["seconds"], float)
    await peer.received.wait_energy(since=mark, frames=10, timeout=8)
    # No Realtime events, ever: Live has no turn or response lifecycle.
    assert not [t for t in peer.types() if t.startswith(("response.", "input_audio_buffer."))]
    assert "session.created" not in peer.types()


async def test_session_close_is_answered_then_the_session_ends(
    emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, session_id = await started(emulator, peers)
    await peer.next_event("session.started")
    peer.send({"type": "session.close", "event_id": "evt_close"})
    closed = await peer.next_event("session.closed")
    assert closed["reason"] == "close_requested"
    assert closed["session"]["id"] == session_id
    assert isinstance(closed["usage"]["seconds"], float)
    call = emulator.calls[session_id]
    async with asyncio.timeout(5):
        await call.ended.wait()
    await peer.wait_closed()


async def test_hangup_closes_the_session_and_says_so(
    emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, session_id = await started(emulator, peers)
    await peer.next_event("session.started")
    base = emulator_base(emulator)
    auth = {"Authorization": f"Bearer {OPENAI_KEY}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/live/sessions/{session_id}/hangup", headers=auth) as r:
            assert r.status == 200
            assert await r.read() == b""
        closed = await peer.next_event("session.closed")
        assert closed["reason"] == "close_requested"
        async with http.post(f"{base}/live/sessions/live_nope/hangup", headers=auth) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "session_not_found"
        # A Realtime call id is not a Live session.
        async with http.post(f"{base}/realtime/calls/{session_id}/hangup", headers=auth) as r:
            assert r.status in (200, 404)


async def test_the_creation_body_is_strict(emulator: Emulator) -> None:
    offer = "v=0\r\n"
    base = emulator_base(emulator)
    async with aiohttp.ClientSession() as http:
        cases = [
            (
                {
                    "session": {**SESSION, "voice": "marin"},
                    "transport": {"type": "webrtc", "sdp": offer},
                },
                "unknown_parameter",
                "session.voice",
            ),
            (
                {
                    "session": {**SESSION, "type": "realtime"},
                    "transport": {"type": "webrtc", "sdp": offer},
                },
                "invalid_value",
                "session.type",
            ),
            ({"session": SESSION}, "missing_required_parameter", "transport"),
            (
                {"session": SESSION, "transport": {"type": "webrtc", "sdp": offer}, "model": "x"},
                "unknown_parameter",
                "model",
            ),
        ]
        for body, code, param in cases:
            status, answer = await create(http, base, body)
            assert status == 400, answer
            assert (answer["error"]["code"], answer["error"]["param"]) == (code, param)
        status, answer = await create(http, base, {"session": SESSION}, key="")
        assert status == 401
        async with http.post(
            base + "/live/sessions",
            data=b"{not json",
            headers={"Authorization": f"Bearer {OPENAI_KEY}", "Content-Type": "application/json"},
        ) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "invalid_json"


async def test_commands_follow_lives_rules_on_the_data_channel(
    emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, _ = await started(emulator, peers)
    await peer.next_event("session.started")
    peer.send({"type": "session.start", "event_id": "evt_1", "session": {}})
    error = await peer.next_event("error")
    assert error["error"]["client_event_id"] == "evt_1"
    peer.send({"type": "session.input_audio.append", "audio": ""})
    await peer.next_event("error")
    peer.send({"type": "session.update", "event_id": "evt_2", "session": {"instructions": "x"}})
    error = await peer.next_event("error")
    assert error["error"]["code"] == "immutable_field_update"
    assert error["error"]["param"] == "session.instructions"
    peer.send({"type": "session.update", "session": {"triggers": []}})
    updated = await peer.next_event("session.updated")
    assert updated["session"]["triggers"] == []
    peer.send({"type": "session.input_audio.mute"})
    await peer.next_event("session.input_audio.muted")
    peer.send({"type": "session.input_audio.unmute"})
    await peer.next_event("session.input_audio.unmuted")
    peer.send({"type": "session.commentary.append", "content": "checking", "delegation_id": None})
    appended = await peer.next_event("session.commentary.appended")
    assert appended["start_ms"] <= appended["end_ms"]
    peer.send({"type": "response.create"})
    assert (await peer.next_event("error"))["error"]["code"] == "invalid_delegation"
    peer.send({"type": "conversation.item.create", "item": {}})
    assert (await peer.next_event("error"))["error"]["param"] == "type"


async def test_frontend_permissions_are_announced_and_enforced(
    emulator: Emulator, peers: list[TestPeer]
) -> None:
    restricted = {
        **SESSION,
        "client": {"data_channel": {"allowed_client_events": ["session.close"]}},
    }
    peer, _ = await started(emulator, peers, restricted)
    started_event = await peer.next_event("session.started")
    assert started_event["session"]["client"] == restricted["client"]
    info = await peer.next_event("info")
    assert info["code"] == "data_channel_permissions"
    peer.send({"type": "session.input_audio.mute"})
    assert (await peer.next_event("error"))["error"]["code"] == "event_not_allowed"
    peer.send({"type": "session.close"})
    await peer.next_event("session.closed")


async def test_openais_sdk_creates_and_hangs_up_a_session(
    emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer = TestPeer()
    peers.append(peer)
    offer = await peer.create_offer()
    client = openai.AsyncOpenAI(api_key=OPENAI_KEY, base_url=emulator_base(emulator))
    try:
        created = await client.live.create(
            session={"model": "gpt-live-1"}, transport={"type": "webrtc", "sdp": offer}
        )
        session_id = created.session.id
        await peer.accept_answer(created.transport.sdp)
        await peer.wait_open()
        assert (await peer.next_event("session.started"))["session"]["id"] == session_id
        await client.live.sessions.hangup(session_id)
        await peer.next_event("session.closed")
        with pytest.raises(openai.BadRequestError) as refused:
            await client.live.create(
                session={"model": "gpt-live-1"},
                transport={"type": "webrtc", "sdp": offer},
                extra_body={"tools": []},
            )
        assert refused.value.code == "unknown_parameter"
    finally:
        await client.close()
