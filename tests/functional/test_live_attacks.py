"""Attacks on GPT-Live's surfaces: from the network with no credentials or a client secret,
with hostile bodies and session ids, from a browser holding a Live session's data channel, and
from an upstream that answers the creation or the session with anything at all.

Every refusal must be OpenAI-shaped, every call must end cleanly (both peers closed, an
upstream session that was created hung up), nothing may raise out of a receive loop, memory
must stay bounded, and no key, nor the upstream's session id, may leak.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from pytest_aiohttp import AiohttpClient, AiohttpServer
from yarl import URL

from gateway.config import Secret, Settings
from gateway.emulator import Emulator
from gateway.rtc.media import MediaPath
from gateway.server.app import create_app
from tests.functional.conftest import (
    GATEWAY_KEY,
    LOOPBACK,
    OPENAI_KEY,
    GatewayFactory,
    mint,
    state_of,
)
from tests.functional.test_live import open_session, upstream_of
from tests.support.fake_upstream import FakeUpstream, FakeUpstreams, Script
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
SESSION: dict[str, Any] = {"model": "gpt-live-1", "instructions": "Be brief."}
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}
SECRETS = (GATEWAY_KEY, OPENAI_KEY)


async def shaped(response: aiohttp.ClientResponse, *statuses: int) -> dict[str, Any]:
    """The OpenAI-shaped error of a refused request, its status one of ``statuses``."""
    text = await response.text()
    assert response.status in statuses, (response.status, text[:300])
    assert response.content_type == "application/json", text[:300]
    body = json.loads(text)
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) >= {"message", "type", "code", "param"}, error
    assert isinstance(error["message"], str) and error["message"]
    for secret in SECRETS:
        assert secret not in text
    return error


def no_secrets(lines: Any) -> None:
    dumped = json.dumps(lines, default=str)
    for secret in SECRETS:
        assert secret not in dumped


def strip_section(sdp: str, kind: str) -> str:
    """``sdp`` without its ``m=<kind>`` sections."""
    head, *sections = sdp.split("\r\nm=")
    kept = [s for s in sections if not s.startswith(kind + " ")]
    return "\r\nm=".join([head, *kept])


async def until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110  # polled with a bound
            await asyncio.sleep(0.02)


async def offer(peers: list[TestPeer]) -> tuple[TestPeer, str]:
    peer = RawPeer()
    peers.append(peer)
    return peer, await peer.create_offer()


class RawPeer(TestPeer):
    """A browser that keeps what is not JSON instead of failing on it."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[str | bytes] = []

    def _on_message(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            self.raw.append(message)
            return
        super()._on_message(message)


# -- from the network --------------------------------------------------------------------------


async def test_without_the_gateway_key_every_live_surface_is_a_shaped_401(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    _, session_id = await open_session(gateway, peers)
    _, sdp = await offer(peers)
    body = {"session": SESSION, "transport": {"type": "webrtc", "sdp": sdp}}
    secret = await mint(gateway)
    base = f"/v1/live/sessions/{session_id}"
    for credentials in (
        None,
        f"Bearer {secret}",  # a browser's client secret is no server key
        "Bearer gk_nope",
        f"Basic {GATEWAY_KEY}",
        f"Bearer {GATEWAY_KEY}x",
        f"Bearer {GATEWAY_KEY[:-1]}",
        f"Bearer {GATEWAY_KEY.upper()}",
        "Bearer " + "é" * 64,
        "Bearer " + "k" * 6000,
    ):
        headers = {} if credentials is None else {"Authorization": credentials}
        requests: list[Awaitable[aiohttp.ClientResponse]] = [
            gateway.post("/v1/live/sessions", json=body, headers=headers),
            gateway.get(base + "/content", headers=headers),
            gateway.get(base + "/attach", headers={**UPGRADE, **headers}),
        ]
        for action in ("hangup", "fork", "accept", "reject", "refer"):
            requests.append(gateway.post(f"{base}/{action}", json={}, headers=headers))
        for request in requests:
            error = await shaped(await request, 401)
            assert secret not in json.dumps(error)
            assert error["type"] == "invalid_request_error"
    # Nothing refused made an upstream session (each costs money), and the session goes on.
    assert len(emulator.calls) == 1
    assert state_of(gateway).calls.find(session_id) is not None


async def test_hostile_creation_bodies_are_refused_before_anything_is_dialled(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    _, sdp = await offer(peers)
    good_transport = {"type": "webrtc", "sdp": sdp}

    def body(session: Any = SESSION, transport: Any = good_transport, **extra: Any) -> bytes:
        return json.dumps({"session": session, "transport": transport, **extra}).encode()

    def with_session(**fields: Any) -> bytes:
        return body({**SESSION, **fields})

    bomb = gzip.compress(b'{"session": {"model": "' + b"a" * 30_000_000 + b'"}}', 9)
    nested: Any = "deep"
    for _ in range(500):
        nested = [nested]
    too_deep = b'{"session": {"model": "m", "input": ' + b"[" * 1000 + b"]" * 1000 + b"}}"
    json_headers = {"Content-Type": "application/json"}
    cases: list[tuple[bytes, dict[str, str], int]] = [
        (b"{", json_headers, 400),
        (b'{"session": "\xff\xfe"}', json_headers, 400),
        (b"\xef\xbb\xbf" + body(), json_headers, 400),  # a BOM is not JSON
        (b"[]", json_headers, 400),
        (b'"session"', json_headers, 400),
        (b"null", json_headers, 400),
        (b"", json_headers, 400),
        (b"1e999999", json_headers, 400),
        (too_deep, json_headers, 400),
        (body({**SESSION, "input": nested}), json_headers, 400),
        (body({**SESSION, "instructions": "x" * 400_000}), json_headers, 413),
        (bomb, {**json_headers, "Content-Encoding": "gzip"}, 413),
        (body(), {**json_headers, "Content-Encoding": "gzip"}, 400),
        (body(), {**json_headers, "Content-Encoding": "br"}, 415),
        (body(), {"Content-Type": "text/plain"}, 415),
        (sdp.encode(), {"Content-Type": "application/sdp"}, 415),
        (body(), {"Content-Type": "multipart/form-data; boundary=x"}, 415),
        # Wrong types at every level.
        (body([]), json_headers, 400),
        (body("gpt-live-1"), json_headers, 400),
        (body(None), json_headers, 400),
        (with_session(model=5), json_headers, 400),
        (with_session(model=""), json_headers, 400),
        (with_session(model=["gpt-live-1"]), json_headers, 400),
        (with_session(audio="marin"), json_headers, 400),
        (with_session(audio={"output": "marin"}), json_headers, 400),
        (with_session(audio={"output": {"voice": "marin", "speed": 2}}), json_headers, 400),
        (with_session(audio={"format": {"type": "audio/pcm"}}), json_headers, 400),
        (with_session(client=[]), json_headers, 400),
        (with_session(client={"data_channel": "all"}), json_headers, 400),
        (with_session(client={"data_channel": {"allowed_client_events": 5}}), json_headers, 400),
        (
            with_session(client={"data_channel": {"allowed_client_events": ["session.close", 5]}}),
            json_headers,
            400,
        ),
        (
            with_session(
                client={"data_channel": {"allowed_client_events": ["a.b"] * 257}},
            ),
            json_headers,
            400,
        ),
        (
            with_session(client={"data_channel": {"allowed_server_events": ["session.started"]}}),
            json_headers,
            400,
        ),
        (
            with_session(
                client={"data_channel": {"allowed_server_events": [{"type": "response.event"}]}}
            ),
            json_headers,
            400,
        ),
        (with_session(client={"data_channel": {}, "evil": 1}), json_headers, 400),
        (with_session(delegation="responses"), json_headers, 400),
        (with_session(delegation={"type": "evil"}), json_headers, 400),
        (with_session(delegation={"type": ["responses"]}), json_headers, 400),
        (with_session(type="realtime"), json_headers, 400),
        (with_session(tools=[]), json_headers, 400),
        (with_session(turn_detection=None), json_headers, 400),
        (body(transport=[]), json_headers, 400),
        (body(transport="webrtc"), json_headers, 400),
        (body(transport={"sdp": sdp}), json_headers, 400),
        (body(transport={"type": "websocket", "sdp": sdp}), json_headers, 400),
        (body(transport={"type": "webrtc"}), json_headers, 400),
        (body(transport={"type": "webrtc", "sdp": 5}), json_headers, 400),
        (body(transport={"type": "webrtc", "sdp": [sdp]}), json_headers, 400),
        (body(transport={"type": "webrtc", "sdp": "  "}), json_headers, 400),
        (body(transport={**good_transport, "ice": []}), json_headers, 400),
        (body(model="gpt-live-1"), json_headers, 400),
        # transport.sdp that is not an offer the gateway can relay.
        (body(transport={"type": "webrtc", "sdp": "hello"}), json_headers, 400),
        (body(transport={"type": "webrtc", "sdp": "v=0\r\n"}), json_headers, 400),
        (body(transport={"type": "webrtc", "sdp": "v=0\x00" + sdp}), json_headers, 400),
        (
            body(transport={"type": "webrtc", "sdp": strip_section(sdp, "audio")}),
            json_headers,
            400,
        ),
        (
            body(transport={"type": "webrtc", "sdp": strip_section(sdp, "application")}),
            json_headers,
            400,
        ),
        # Duplicate keys: whichever one is read, what is read is checked.
        (
            b'{"session": ' + json.dumps(SESSION).encode() + b', "session": {"model": 5}, '
            b'"transport": ' + json.dumps(good_transport).encode() + b"}",
            json_headers,
            400,
        ),
        (
            b'{"session": '
            + json.dumps(SESSION).encode()
            + b', "transport": '
            + json.dumps(good_transport).encode()
            + b', "transport": {"type": "webrtc", "sdp": "hello"}}',
            json_headers,
            400,
        ),
    ]
    with structlog.testing.capture_logs() as logs:
        for index, (data, headers, status) in enumerate(cases):
            response = await gateway.post(
                "/v1/live/sessions", data=data, headers={**AUTH, **headers}
            )
            try:
                await shaped(response, status)
            except AssertionError as exc:
                raise AssertionError(f"case {index}: {exc}") from None
    assert not [line for line in logs if line.get("log_level") in ("error", "critical")]
    no_secrets(logs)
    # Nothing was dialled for any of them: no upstream session, no call, nothing pending.
    assert emulator.calls == {} or len(emulator.calls) == 0
    state = state_of(gateway)
    assert len(state.calls) == 0 and state.pending == 0


async def test_hostile_session_ids_find_nothing_and_touch_no_other_call(
    gateway: Client, emulator: Emulator, peers: list[TestPeer]
) -> None:
    live_peer, session_id = await open_session(gateway, peers)
    realtime = TestPeer()
    peers.append(realtime)
    result = await realtime.connect(
        gateway.session, str(gateway.make_url("/v1/realtime/calls")), await mint(gateway)
    )
    assert result.status == 201 and result.call_id is not None
    rtc_id = result.call_id
    upstream_id = state_of(gateway).calls.find(session_id).upstream_call_id  # type: ignore[union-attr]
    assert upstream_id is not None
    hostile = [
        rtc_id,  # another app's Realtime call
        upstream_id,  # the upstream's own id for this very session
        f"..%2F..%2Frealtime%2Fcalls%2F{rtc_id}",
        f"..%2Fsessions%2F{session_id}",
        f"{session_id}%2F..%2F{session_id}",
        f"{session_id}%00",
        f"{session_id}%20",
        session_id.upper(),
        "%2E%2E",
        "live_%E2%9C%93%C3%BC",
        "live_%0D%0AX-Injected:%201",
        "live_%FF%FE",
        "live_" + "a" * 6000,
    ]
    with structlog.testing.capture_logs() as logs:
        for raw in hostile:
            base = f"/v1/live/sessions/{raw}"
            answers = [
                (await gateway.post(URL(base + "/hangup", encoded=True), headers=AUTH), (404,)),
                (await gateway.get(URL(base + "/content", encoded=True), headers=AUTH), (404,)),
                (
                    await gateway.get(
                        URL(base + "/attach", encoded=True), headers={**UPGRADE, **AUTH}
                    ),
                    (404,),
                ),
                (await gateway.post(URL(base + "/fork", encoded=True), headers=AUTH), (400,)),
                (await gateway.post(URL(base + "/accept", encoded=True), headers=AUTH), (400,)),
            ]
            for response, statuses in answers:
                error = await shaped(response, *statuses)
                assert "X-Injected" not in response.headers
                assert error["type"] == "invalid_request_error"
    no_secrets(logs)
    # Both calls go on, untouched.
    assert state_of(gateway).calls.find(session_id) is not None
    assert state_of(gateway).calls.find(rtc_id) is not None
    live_peer.send({"type": "session.input_audio.mute", "event_id": "evt_alive"})
    await live_peer.next_event("session.input_audio.muted")


# -- from a browser holding a Live session ---------------------------------------------------


async def test_a_browser_flooding_its_live_data_channel_is_held_to_the_calls_limits(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
) -> None:
    gateway = await make_gateway(
        events_per_second=10.0, max_event_bytes=4096, response_creates_per_minute=2
    )
    peer, session_id = await open_session(gateway, peers)
    await peer.next_event("session.started")
    upstream = upstream_of(gateway, emulator, session_id)

    # Commands Live never takes, binary frames, giant messages: each answered, none forwarded.
    never: list[dict[str, Any]] = [
        {"type": "conversation.item.create", "item": {}},
        {"type": "response.cancel"},
        {"type": "input_audio_buffer.append", "audio": "AAAA"},
        {"type": "session.start", "session": {}},
        {"type": "session.output_audio.fixture.play", "audio": "AAAA"},
        {"type": "transport.dtmf.send", "event": "1"},
        {"type": ""},
        {"type": "x." * 2000},
        {"type": "session.update", "session": {"model": "x"}, "event_id": {"nested": True}},
    ]
    for index, event in enumerate(never):
        peer.send({**event, "event_id": f"never_{index}"} if index < 8 else event)
    peer.send_raw(b"\x00\x01binary")
    peer.send_raw('{"type": "session.close", "type": "session.close"}')  # a repeated key
    expected_errors = len(never) + 2
    await until(lambda: len(peer.events_of("error")) >= expected_errors)

    # A message over the call's event size limit (but under the data channel's) is refused.
    big = {
        "type": "session.instructions.append",
        "event_id": "evt_big",
        "delegation_id": None,
        "content": "x" * 8000,
    }
    peer.send(big)
    error = await until_error(peer, "evt_big")
    assert error["error"]["code"] == "event_too_large"

    # A flood: what the rate allows goes upstream, the rest is refused, every one answered.
    started = asyncio.get_running_loop().time()
    flood = 600
    for index in range(flood):
        peer.send({"type": "session.input_audio.mute", "event_id": f"flood_{index}"})
    await until(
        lambda: (
            len([e for e in peer.events if str(e.get("client_event_id", "")).startswith("flood_")])
            + len(peer.events_of("session.input_audio.muted"))
            >= flood
        ),
        20,
    )
    elapsed = asyncio.get_running_loop().time() - started
    forwarded = [e for e in upstream.received_events if e["type"] == "session.input_audio.mute"]
    assert len(forwarded) <= 200 + 10 * elapsed + 5, (len(forwarded), elapsed)
    refused = [
        e for e in peer.events_of("error") if str(e.get("client_event_id", "")).startswith("flood_")
    ]
    assert refused and {e["error"]["code"] for e in refused} == {"event_rate"}

    # response.create is held to its own per-minute budget.
    await asyncio.sleep(1.5)
    for index in range(5):
        peer.send({"type": "response.create", "event_id": f"create_{index}"})
    await until(
        lambda: (
            len(
                [
                    e
                    for e in peer.events_of("error")
                    if str(e.get("client_event_id")).startswith("cre")
                ]
            )
            >= 3
        )
    )
    creates = [e for e in upstream.received_events if e["type"] == "response.create"]
    assert len(creates) <= 2
    # None of the refused reached the upstream, and the session goes on.
    sent_ids = {str(e.get("event_id")) for e in upstream.received_events}
    assert not {f"never_{i}" for i in range(len(never))} & sent_ids
    assert "evt_big" not in sent_ids
    assert state_of(gateway).calls.find(session_id) is not None
    for error in peer.events_of("error"):
        assert set(error["error"]) >= {"message", "type", "code", "param"}


async def until_error(peer: TestPeer, event_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = [e for e in peer.events_of("error") if e.get("client_event_id") == event_id]
        return bool(found)

    await until(seen)
    return found[0]


# -- from a hostile upstream: the session's events -------------------------------------------


@dataclass
class LiveFakes(FakeUpstreams):
    """Fake upstreams that also make Live sessions (``state.live_upstreams``)."""

    made: list[FakeUpstream] = field(default_factory=list)

    def live(self, media: MediaPath) -> FakeUpstream:
        return self(media)


async def fake_live_gateway(
    aiohttp_client: AiohttpClient, **overrides: Any
) -> tuple[Client, LiveFakes, CollectorRegistry]:
    values: dict[str, Any] = {
        "openai_api_key": Secret(OPENAI_KEY),
        "gateway_api_key": Secret(GATEWAY_KEY),
        "ice_addresses": LOOPBACK,
        **overrides,
    }
    fakes = LiveFakes(Script(greet=False))
    registry = CollectorRegistry()
    app = create_app(Settings(**values), registry=registry, upstreams=fakes)
    return await aiohttp_client(app), fakes, registry


async def test_a_hostile_upstreams_events_neither_break_the_session_nor_leak_its_id(
    aiohttp_client: AiohttpClient, peers: list[TestPeer]
) -> None:
    gateway, fakes, registry = await fake_live_gateway(aiohttp_client)
    peer, sdp = await offer(peers)
    response = await gateway.post(
        "/v1/live/sessions",
        json={"session": SESSION, "transport": {"type": "webrtc", "sdp": sdp}},
        headers=AUTH,
    )
    created = await response.json()
    assert response.status == 201, created
    session_id = created["session"]["id"]
    await peer.accept_answer(created["transport"]["sdp"])
    await peer.wait_open()
    fake = fakes.last
    upstream_id = fake.session_id
    assert upstream_id is not None
    other = "live_SOMEONE_ELSES_SESSION"

    with structlog.testing.capture_logs() as logs:
        fake.emit({"type": "session.started", "event_id": "e1", "session": {"id": other}})
        started = await peer.next_event("session.started")
        assert started["session"]["id"] == session_id
        for raw in (
            "not json {",
            "[1, 2]",
            '{"type": 5}',
            '{"type": "' + "z" * 10_000 + '"}',
            json.dumps({"type": "session.updated", "session": "not an object"}),
            json.dumps({"type": "session.updated", "session": {"id": upstream_id}}),
            json.dumps({"type": "session.started", "session": [other]}),
            json.dumps({"type": "response.event", "event": ["x"]}),
            json.dumps({"type": "response.event", "event": {"type": "response.completed"}}),
            json.dumps({"type": "error", "error": 5}),
            json.dumps({"type": "info", "code": "data_channel_permissions", "message": 5}),
            json.dumps({"type": "session.usage.updated", "usage": {"seconds": "12"}}),
            json.dumps({"type": "session.usage.updated", "usage": {"seconds": -5}}),
            json.dumps({"type": "session.usage.updated", "usage": {"seconds": True}}),
            '{"type": "session.usage.updated", "usage": {"seconds": NaN}}',
            '{"type": "session.usage.updated", "usage": {"seconds": Infinity}}',
            json.dumps({"type": "session.usage.updated", "usage": {"seconds": 3.5}}),
            json.dumps({"type": "session.input_transcript.delta", "delta": 5, "start_ms": "a"}),
            json.dumps({"type": "session.output_transcript.delta", "delta": "x" * 60_000}),
            json.dumps({"type": "session.closed", "reason": {"no": 1}, "session": {"id": other}}),
            json.dumps({"type": "session.closed", "reason": "remote_hangup", "session": {}}),
            json.dumps({"type": "session.updated", "session": {"id": other, "client": 5}}),
        ):
            fake.inbox.put_nowait(raw)
        fake.emit({"type": "session.input_audio.muted", "event_id": "evt_last"})
        await peer.next_event("session.input_audio.muted")
        # The session goes on, whatever came before: nothing raised out of the loops.
        call = state_of(gateway).calls.find(session_id)
        assert call is not None and call.end_reason is None
        fake.emit({"type": "session.input_audio.unmuted", "event_id": "evt_still"})
        await peer.next_event("session.input_audio.unmuted")

        hangup = await gateway.post(f"/v1/live/sessions/{session_id}/hangup", headers=AUTH)
        assert hangup.status == 200
    await peer.wait_closed(10)
    assert fake.hung_up and fake.closed
    assert len(state_of(gateway).calls) == 0
    assert not [line for line in logs if line["event"] in ("call.failed", "task.failed")]
    no_secrets(logs)

    # The browser never saw the upstream's id (nor anyone else's) in a session object.
    for event in peer.events:
        session = event.get("session")
        if isinstance(session, dict) and "id" in session:
            assert session["id"] == session_id, event
    assert upstream_id not in json.dumps(peer.events)
    # The voice seconds counted are finite and bounded by what the upstream said last.
    seconds = registry.get_sample_value("realtime_gateway_voice_seconds_total")
    assert seconds is not None and 0 <= seconds <= 3.5
    metrics = await (await gateway.get("/metrics")).text()
    assert session_id not in metrics and upstream_id not in metrics and "zzzz" not in metrics


async def test_an_upstream_event_larger_than_the_browser_takes_does_not_end_the_session(
    aiohttp_client: AiohttpClient, peers: list[TestPeer]
) -> None:
    gateway, fakes, _ = await fake_live_gateway(aiohttp_client)
    peer, sdp = await offer(peers)
    response = await gateway.post(
        "/v1/live/sessions",
        json={"session": SESSION, "transport": {"type": "webrtc", "sdp": sdp}},
        headers=AUTH,
    )
    created = await response.json()
    await peer.accept_answer(created["transport"]["sdp"])
    await peer.wait_open()
    fake = fakes.last
    with structlog.testing.capture_logs() as logs:
        fake.emit({"type": "session.output_transcript.delta", "delta": "x" * 400_000})
        fake.emit({"type": "session.input_audio.muted", "event_id": "evt_after"})
        await peer.next_event("session.input_audio.muted", timeout=10)
    assert state_of(gateway).calls.find(created["session"]["id"]) is not None
    assert not [line for line in logs if line["event"] == "call.failed"]
    await gateway.post(f"/v1/live/sessions/{created['session']['id']}/hangup", headers=AUTH)
    assert fake.hung_up


# -- from a hostile upstream: the creation ---------------------------------------------------


@dataclass
class ScriptedOpenAI:
    """An upstream HTTP API whose answer to ``POST /live/sessions`` a test chooses; records
    every request it gets."""

    answer: Callable[[web.Request], Awaitable[web.StreamResponse]]
    requests: list[tuple[str, str]] = field(default_factory=list)
    streamed: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.raw_path))
        if request.method == "POST" and request.path == "/live/sessions":
            await request.read()
            return await self.answer(request)
        return web.Response(status=200)

    def hangups(self) -> list[str]:
        return [path for method, path in self.requests if path.endswith("/hangup")]


def answer_json(body: Any, status: int = 201) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def answer(request: web.Request) -> web.Response:
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(status=status, text=text, content_type="application/json")

    return answer


async def answer_forever(request: web.Request) -> web.Response:
    await asyncio.sleep(30)
    return web.Response(status=500)


BAD_SDP = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
KEY_ECHO = f"Incorrect API key provided: {OPENAI_KEY}. You can find your API key at …"

CREATION_CASES: dict[str, tuple[Any, int, str | None, list[str]]] = {
    # name: (answer, gateway status, error code, hangups expected)
    "not_json": (answer_json("<html>oops</html>"), 502, "upstream_bad_answer", []),
    "no_session_id": (
        answer_json({"transport": {"type": "webrtc", "sdp": BAD_SDP}}),
        502,
        "upstream_bad_answer",
        [],
    ),
    "id_not_a_string": (
        answer_json({"session": {"id": 7}, "transport": {"sdp": BAD_SDP}}),
        502,
        "upstream_bad_answer",
        [],
    ),
    "sdp_not_sdp": (
        answer_json({"session": {"id": "live_up_1"}, "transport": {"sdp": "hello"}}),
        502,
        "upstream_bad_answer",
        ["/live/sessions/live_up_1/hangup"],
    ),
    "no_transport": (
        answer_json({"session": {"id": "live_up_2"}}),
        502,
        "upstream_bad_answer",
        ["/live/sessions/live_up_2/hangup"],
    ),
    "answer_not_usable": (
        answer_json({"session": {"id": "live_up_3"}, "transport": {"sdp": BAD_SDP}}),
        502,
        "upstream_bad_answer",
        ["/live/sessions/live_up_3/hangup"],
    ),
    "traversal_id": (
        answer_json(
            {"session": {"id": "../../realtime/calls/rtc_victim"}, "transport": {"sdp": BAD_SDP}}
        ),
        502,
        "upstream_bad_answer",
        [],
    ),
    "huge_id": (
        answer_json({"session": {"id": "live_" + "a" * 100_000}, "transport": {"sdp": BAD_SDP}}),
        502,
        "upstream_bad_answer",
        [],
    ),
    "server_error_echoing_the_key": (
        answer_json({"error": {"message": KEY_ECHO, "code": None}}, status=500),
        502,
        "upstream_error",
        [],
    ),
    "refusal_echoing_the_key_everywhere": (
        answer_json(
            {"error": {"message": KEY_ECHO, "code": OPENAI_KEY, "param": OPENAI_KEY}}, status=400
        ),
        400,
        None,
        [],
    ),
    "unauthorized": (
        answer_json({"error": {"message": KEY_ECHO, "code": "invalid_api_key"}}, status=401),
        502,
        "upstream_auth_failed",
        [],
    ),
    "hangs": (answer_forever, 504, "upstream_timeout", []),
}


@pytest.mark.parametrize("case", sorted(CREATION_CASES))
async def test_a_hostile_creation_answer_fails_cleanly(
    case: str,
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    peers: list[TestPeer],
) -> None:
    answer, status, code, hangups = CREATION_CASES[case]
    openai_api = ScriptedOpenAI(answer)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", openai_api.handle)
    server: TestServer = await aiohttp_server(app)
    gateway = await aiohttp_client(
        create_app(
            Settings(
                openai_api_key=Secret(OPENAI_KEY),
                openai_base_url=str(server.make_url("")).rstrip("/"),
                gateway_api_key=Secret(GATEWAY_KEY),
                ice_addresses=LOOPBACK,
                upstream_ice_addresses=LOOPBACK,
                upstream_timeout=1.0,
                ice_port_range=(46000, 46999),
            ),
            registry=CollectorRegistry(),
        )
    )
    _, sdp = await offer(peers)
    with structlog.testing.capture_logs() as logs:
        started = asyncio.get_running_loop().time()
        response = await gateway.post(
            "/v1/live/sessions",
            json={"session": SESSION, "transport": {"type": "webrtc", "sdp": sdp}},
            headers=AUTH,
        )
        error = await shaped(response, status)
        assert asyncio.get_running_loop().time() - started < 5
        if code is not None:
            assert error["code"] == code
        state = state_of(gateway)
        # Nothing left running: the browser leg's sockets closed, no call, no background work.
        await until(lambda: len(state.services.background) == 0 and state.ports.in_use() == 0)
        assert len(state.calls) == 0 and state.pending == 0
    assert openai_api.hangups() == hangups
    assert not [p for _, p in openai_api.requests if "/realtime/" in p]
    no_secrets(logs)
    dumped = json.dumps(logs, default=str)
    assert "a" * 1000 not in dumped  # a giant upstream id is not copied into the logs
    metrics = await (await gateway.get("/metrics")).text()
    for secret in SECRETS:
        assert secret not in metrics


async def test_a_huge_creation_answer_is_not_read_into_memory(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, peers: list[TestPeer]
) -> None:
    total = 64 * 1024 * 1024
    chunk = b" " * (1024 * 1024)

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=201, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            while openai_api.streamed < total:
                await response.write(chunk)
                openai_api.streamed += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return response

    openai_api = ScriptedOpenAI(endless)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", openai_api.handle)
    server: TestServer = await aiohttp_server(app)
    gateway = await aiohttp_client(
        create_app(
            Settings(
                openai_api_key=Secret(OPENAI_KEY),
                openai_base_url=str(server.make_url("")).rstrip("/"),
                gateway_api_key=Secret(GATEWAY_KEY),
                ice_addresses=LOOPBACK,
                upstream_ice_addresses=LOOPBACK,
                upstream_timeout=5.0,
            ),
            registry=CollectorRegistry(),
        )
    )
    _, sdp = await offer(peers)
    response = await gateway.post(
        "/v1/live/sessions",
        json={"session": SESSION, "transport": {"type": "webrtc", "sdp": sdp}},
        headers=AUTH,
    )
    error = await shaped(response, 502)
    assert error["code"] == "upstream_bad_answer"
    # The gateway stopped reading long before the upstream stopped sending.
    assert openai_api.streamed < total // 2, openai_api.streamed


# -- the demo --------------------------------------------------------------------------------


async def test_the_demos_live_endpoint_takes_only_an_offer(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
) -> None:
    gateway = await make_gateway(demo_enabled=True, calls_per_minute_per_ip=1000)
    _, sdp = await offer(peers)
    json_headers = {"Content-Type": "application/json"}
    cases: list[tuple[bytes, dict[str, str], int]] = [
        (b"[]", json_headers, 400),
        (b'"v=0"', json_headers, 400),
        (b"{", json_headers, 400),
        (b'{"sdp": "\xff"}', json_headers, 400),
        (json.dumps({"sdp": 5}).encode(), json_headers, 400),
        (json.dumps({"sdp": [sdp]}).encode(), json_headers, 400),
        (json.dumps({"sdp": ""}).encode(), json_headers, 400),
        (json.dumps({"sdp": "hello"}).encode(), json_headers, 400),
        (json.dumps({"sdp": strip_section(sdp, "audio")}).encode(), json_headers, 400),
        (json.dumps({"sdp": strip_section(sdp, "application")}).encode(), json_headers, 400),
        # The demo's session is the gateway's: a body may not bring its own.
        (json.dumps({"sdp": sdp, "session": {"model": "gpt-5"}}).encode(), json_headers, 400),
        (json.dumps({"sdp": sdp, "x" * 5000: 1}).encode(), json_headers, 400),
        (json.dumps({"sdp": sdp, "transport": {}}).encode(), json_headers, 400),
        (json.dumps({"sdp": "x" * 300_000}).encode(), json_headers, 413),
        (
            gzip.compress(b'{"sdp": "' + b"v" * 20_000_000 + b'"}', 9),
            {**json_headers, "Content-Encoding": "gzip"},
            413,
        ),
        (sdp.encode(), {"Content-Type": "application/sdp"}, 415),
        (json.dumps({"sdp": sdp}).encode(), {**json_headers, "X-Forwarded-For": "8.8.8.8"}, 403),
        (json.dumps({"sdp": sdp}).encode(), {**json_headers, "Forwarded": "for=8.8.8.8"}, 403),
    ]
    for index, (data, headers, status) in enumerate(cases):
        response = await gateway.post("/demo/live", data=data, headers=headers)
        try:
            error = await shaped(response, status)
        except AssertionError as exc:
            raise AssertionError(f"case {index}: {exc}") from None
        assert len(error["message"]) < 1000
    assert len(emulator.calls) == 0 and len(state_of(gateway).calls) == 0
