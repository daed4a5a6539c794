"""GPT-Live's sideband through the gateway: ``/v1/live/sessions/{id}/attach`` on a real Live
session (an aiortc browser, the emulator as OpenAI), driven by aiohttp's client and by OpenAI's
own SDK as the app's server would drive it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
import openai
import pytest
import websockets
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.config import Secret
from gateway.emulator import Emulator, EmulatorCall, EmulatorSettings
from gateway.server.app import create_app
from gateway.server.live_sideband import MAX_SIDEBANDS, Outbox
from tests.functional.conftest import (
    GATEWAY_KEY,
    LOOPBACK,
    OPENAI_KEY,
    gateway_settings,
    mint,
    state_of,
)
from tests.functional.test_live import open_session, upstream_of
from tests.support.peer import TestPeer
from tests.support.servers import free_port, redis_server

Client = TestClient[web.Request, web.Application]
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
SESSION: dict[str, Any] = {"model": "gpt-live-1", "instructions": "Be brief."}
# A frontend that may only hang up, and sees only the session's start and end.
CLOSE_ONLY = {
    "data_channel": {
        "allowed_client_events": ["session.close"],
        "allowed_server_events": [{"type": "session.started"}, {"type": "session.closed"}],
    }
}
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def attach(gateway: Client, session_id: str, query: str = "", **kwargs: Any) -> Any:
    kwargs.setdefault("headers", AUTH)
    return gateway.session.ws_connect(
        gateway.make_url(f"/v1/live/sessions/{session_id}/attach{query}"), **kwargs
    )


class Received:
    """Everything one sideband received: the raw texts and the events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.raw: list[str] = []
        self.events: list[dict[str, Any]] = []

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            msg = await self.ws.receive()
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        self.raw.append(msg.data)
        event: dict[str, Any] = json.loads(msg.data)
        self.events.append(event)
        return event

    async def until(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while (event := await self.next(timeout))["type"] != kind:
                pass
        return event

    async def closed(self, timeout: float = 10.0) -> aiohttp.WSMessage:
        """Read until the gateway closes the socket; the closing message."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.raw.append(msg.data)
                    self.events.append(json.loads(msg.data))
                    continue
                return msg

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


async def open_restricted(
    gateway: Client, emulator: Emulator, peers: list[TestPeer], client: Any = CLOSE_ONLY
) -> tuple[TestPeer, str, EmulatorCall]:
    peer, session_id = await open_session(gateway, peers, {**SESSION, "client": client})
    await peer.next_event("session.started")
    return peer, session_id, upstream_of(gateway, emulator, session_id)


async def refused(gateway: Client, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    response = await gateway.get(path, headers={**UPGRADE, **headers})
    return response.status, await response.json()


async def test_the_sideband_sees_and_does_what_the_frontend_may_not(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, session_id, upstream = await open_restricted(gateway, emulator, peers)
    assert upstream.call_id != session_id
    async with attach(gateway, session_id) as ws:
        sideband = Received(ws)
        # Attached after the start: the latest session.started first, as the app knows it.
        started = await sideband.next()
        assert started["type"] == "session.started"
        assert started["session"]["id"] == session_id
        assert started["session"]["client"] == CLOSE_ONLY

        # A command the browser may not send reaches the upstream and is acknowledged, on the
        # sideband only (the frontend's lists hide the acknowledgement from the browser).
        await ws.send_json({"type": "session.input_audio.mute", "event_id": "evt_sb_mute"})
        await sideband.until("session.input_audio.muted")
        assert "evt_sb_mute" in [e.get("event_id") for e in upstream.received_events]

        await ws.send_json(
            {"type": "session.update", "event_id": "evt_sb_up", "session": {"triggers": []}}
        )
        updated = await sideband.until("session.updated")
        assert updated["session"]["id"] == session_id

        # Live's own rules still hold: the refusal goes to the sideband, never upstream.
        await ws.send_json(
            {
                "type": "session.update",
                "event_id": "evt_sb_bad",
                "session": {"instructions": "Obey me."},
            }
        )
        error = await sideband.until("error")
        assert error["error"]["code"] == "immutable_field_update"
        assert error["client_event_id"] == error["error"]["client_event_id"] == "evt_sb_bad"
        assert "evt_sb_bad" not in [e.get("event_id") for e in upstream.received_events]

        response = await gateway.post(f"/v1/live/sessions/{session_id}/hangup", headers=AUTH)
        assert response.status == 200
        closing = await sideband.closed()
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1000
    assert sideband.types().count("session.started") == 1
    assert not any(upstream.call_id in raw for raw in sideband.raw)
    hidden = {"session.input_audio.muted", "session.updated", "error"}
    assert not hidden & set(peer.types())


async def test_openais_sdk_attaches_and_closes_the_session(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, session_id = await open_session(gateway, peers)
    await peer.next_event("session.started")
    upstream = upstream_of(gateway, emulator, session_id)
    client = openai.AsyncOpenAI(api_key=GATEWAY_KEY, base_url=str(gateway.make_url("/v1")))
    try:
        async with client.live.sideband.connect(
            session_id=session_id, graceful_close=True
        ) as connection:
            started = await connection.recv()
            assert started.type == "session.started"
            assert started.session.id == session_id
            await connection.session.input_audio.mute(event_id="evt_sdk_mute")
            while (event := await connection.recv()).type != "session.input_audio.muted":
                pass
            await upstream.wait_for_event("session.input_audio.mute")
            await connection.session.close(event_id="evt_sdk_close")
            seen: list[Any] = []
            async with asyncio.timeout(10):
                async for event in connection:  # ends without raising: a graceful close
                    seen.append(event)
            closed = seen[-1]
            assert closed.type == "session.closed" and closed.reason == "close_requested"
            assert closed.session.id == session_id
        await peer.next_event("session.closed")
        async with asyncio.timeout(10):
            await upstream.ended.wait()
            while state_of(gateway).calls.find(session_id) is not None:
                await asyncio.sleep(0.05)
        with pytest.raises(websockets.exceptions.InvalidStatus) as gone:
            async with client.live.sideband.connect(session_id=session_id):
                pass
        assert gone.value.response.status_code == 404
    finally:
        await client.close()


async def test_a_session_closed_from_the_sideband_is_said_before_it_closes(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, session_id, upstream = await open_restricted(gateway, emulator, peers)
    async with attach(gateway, session_id, "?graceful_close=false") as ws:
        sideband = Received(ws)
        await sideband.next()
        await ws.send_json({"type": "session.close", "event_id": "evt_bye"})
        closing = await sideband.closed()
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert sideband.types()[-1] == "session.closed"
        assert sideband.events[-1]["session"]["id"] == session_id
    await peer.next_event("session.closed")
    async with asyncio.timeout(10):
        await upstream.ended.wait()


async def test_only_the_gateway_key_attaches_and_only_to_a_live_session(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    _, session_id = await open_session(gateway, peers)
    path = f"/v1/live/sessions/{session_id}/attach"
    secret = await mint(gateway)
    for headers, code in (
        ({}, "missing_api_key"),
        ({"Authorization": f"Bearer {secret}"}, "invalid_api_key"),
        ({"Authorization": "Bearer gk_nope"}, "invalid_api_key"),
        ({"Sec-WebSocket-Protocol": "realtime, openai-insecure-api-key.gk_nope"}, None),
    ):
        status, body = await refused(gateway, path, headers)
        assert status == 401, (headers, body)
        assert set(body["error"]) == {"message", "type", "code", "param"}
        assert code is None or body["error"]["code"] == code
        assert secret not in json.dumps(body)

    # A Realtime call's id is not a Live session's, and an unknown id is unknown.
    realtime = TestPeer()
    peers.append(realtime)
    result = await realtime.connect(
        gateway.session, str(gateway.make_url("/v1/realtime/calls")), await mint(gateway)
    )
    assert result.status == 201 and result.call_id is not None
    for other in (result.call_id, "live_nope"):
        status, body = await refused(gateway, f"/v1/live/sessions/{other}/attach", AUTH)
        assert status == 404
        assert body["error"]["param"] == "session_id"
        assert body["error"]["type"] == "invalid_request_error"
    status, body = await refused(gateway, path + "?graceful_close=maybe", AUTH)
    assert status == 400 and body["error"]["param"] == "graceful_close"

    # A browser's way: the key as a subprotocol, answered with one it may select.
    async with attach(
        gateway,
        session_id,
        headers={},
        protocols=("realtime", f"openai-insecure-api-key.{GATEWAY_KEY}"),
    ) as ws:
        assert ws.protocol == "realtime"
        assert (await Received(ws).next())["type"] == "session.started"
        # Each sideband costs the call a little on every event: a session takes a few at once.
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(MAX_SIDEBANDS - 1):
                await stack.enter_async_context(attach(gateway, session_id))
            status, body = await refused(gateway, path, AUTH)
            assert status == 429 and body["error"]["code"] == "too_many_sidebands"
    async with asyncio.timeout(5):  # room again once they have gone (their handlers ended)
        while True:
            try:
                async with attach(gateway, session_id) as ws:
                    assert (await Received(ws).next())["type"] == "session.started"
                    break
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 429
                await asyncio.sleep(0.05)


async def test_a_hostile_sideband_gets_errors_and_the_session_goes_on(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    peer, session_id = await open_session(gateway, peers)
    await peer.next_event("session.started")
    upstream = upstream_of(gateway, emulator, session_id)
    hostile: list[str | bytes] = [
        "not json",
        "[]",
        '{"type": 5}',
        '{"no_type": true}',
        '{"type":"' + "x." * 5000 + '"}',
        "[" * 5000 + "]" * 5000,
        "x" * 200_000,
        json.dumps({"type": "session.start", "session": {}}),
        json.dumps({"type": "session.input_audio.append", "audio": ""}),
        b"\x00\xff binary",
    ]
    async with attach(gateway, session_id) as ws:
        sideband = Received(ws)
        await sideband.next()  # the replay
        for raw in hostile:
            if isinstance(raw, bytes):
                await ws.send_bytes(raw)
            else:
                await ws.send_str(raw)
        errors = [await sideband.until("error") for _ in hostile]
        for error in errors:
            assert set(error["error"]) >= {"message", "type", "code", "param"}
        assert [e["error"]["code"] for e in errors][-3:] == [
            "invalid_event",
            "invalid_event",
            "invalid_event",
        ]

        # A flood: what the rate allows is acknowledged, the rest refused, every one answered.
        flood = 1000
        for index in range(flood):
            await ws.send_str(
                json.dumps({"type": "session.input_audio.unmute", "event_id": f"f{index}"})
            )
        answers: list[str] = []
        async with asyncio.timeout(15):
            while len(answers) < flood:
                event = await sideband.next()
                if event["type"] == "error":
                    assert event["error"]["code"] == "rate_limit_exceeded"
                    answers.append("refused")
                elif event["type"] == "session.input_audio.unmuted":
                    answers.append("acknowledged")
        assert 0 < answers.count("acknowledged") < flood
        assert answers.count("refused") > flood // 2
        assert not ws.closed
    forwarded = [e for e in upstream.received_events if e["type"] == "session.input_audio.unmute"]
    assert len(forwarded) == answers.count("acknowledged")

    # A frame larger than the gateway takes closes that sideband (1009), nothing else.
    async with attach(gateway, session_id) as ws:
        await ws.send_str("x" * 300_000)
        closing = await Received(ws).closed()
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1009

    # The session goes on: the browser's own command still works, and no error reached it.
    peer.send({"type": "session.input_audio.mute", "event_id": "evt_after"})
    await peer.next_event("session.input_audio.muted")
    assert not peer.events_of("error")
    assert state_of(gateway).calls.find(session_id) is not None


async def test_an_attach_on_another_process_reaches_the_sessions_owner(
    aiohttp_client: AiohttpClient, peers: list[TestPeer]
) -> None:
    """Two gateway processes (in this one) sharing a real redis-server: the sideband of a
    session one runs, attached through the other, is relayed message by message."""
    emulator = Emulator(
        EmulatorSettings(ice_addresses=LOOPBACK, api_key=OPENAI_KEY, record_events=True)
    )
    emulator_url = await emulator.start()
    async with redis_server() as redis:
        gateways: list[Client] = []
        try:
            for name in ("gw0", "gw1"):
                port = free_port()
                settings = gateway_settings(
                    emulator_url,
                    redis_url=Secret(redis.url),
                    node_name=name,
                    node_address=f"http://127.0.0.1:{port}",
                )
                gateways.append(
                    await aiohttp_client(create_app(settings), server_kwargs={"port": port})
                )
            owner, other = gateways
            peer, session_id = await open_session(owner, peers)
            await peer.next_event("session.started")
            upstream = upstream_of(owner, emulator, session_id)
            async with asyncio.timeout(5):
                while await state_of(other).stores.calls.lookup(session_id) is None:
                    await asyncio.sleep(0.02)
            async with attach(other, session_id, "?graceful_close=true") as ws:
                sideband = Received(ws)
                started = await sideband.next()
                assert started["type"] == "session.started"
                assert started["session"]["id"] == session_id
                await ws.send_json({"type": "session.input_audio.mute", "event_id": "evt_relay"})
                await sideband.until("session.input_audio.muted")
                assert "evt_relay" in [e.get("event_id") for e in upstream.received_events]
                hangup = await other.post(f"/v1/live/sessions/{session_id}/hangup", headers=AUTH)
                assert hangup.status == 200
                await sideband.closed()
            assert not any(upstream.call_id in raw for raw in sideband.raw)
            status, body = await refused(other, "/v1/live/sessions/live_nope/attach", AUTH)
            assert status == 404 and body["error"]["param"] == "session_id"
            status, _ = await refused(other, f"/v1/live/sessions/{session_id}/attach", {})
            assert status == 401
            # A browser offering its key as a subprotocol, through the non-owner: the answer
            # names the subprotocol the owner chose, never the key.
            second, second_id = await open_session(owner, peers)
            await second.next_event("session.started")
            async with asyncio.timeout(5):
                while await state_of(other).stores.calls.lookup(second_id) is None:
                    await asyncio.sleep(0.02)
            offered = (f"openai-insecure-api-key.{GATEWAY_KEY}", "realtime")
            async with other.ws_connect(
                f"/v1/live/sessions/{second_id}/attach", protocols=offered
            ) as ws:
                assert ws.protocol == "realtime"
                assert (await ws.receive_json(timeout=5))["type"] == "session.started"
        finally:
            for gateway in gateways:
                await gateway.close()  # while the redis-server they share is still up
            await emulator.aclose()


def test_a_slow_sideband_loses_its_oldest_events_within_its_bounds() -> None:
    outbox = Outbox(max_messages=10, max_bytes=100)
    for index in range(25):
        outbox.put(f"m{index:02d}")
    assert outbox.dropped == 15
    assert list(outbox._items) == [f"m{index:02d}" for index in range(15, 25)]
    outbox.put("x" * 99)  # the bytes bound: only the newest is kept
    assert list(outbox._items) == ["x" * 99] and outbox.dropped == 25
    outbox.finish()
    outbox.put("late")
    assert list(outbox._items) == ["x" * 99]
