"""``POST /demo/live``: the demo page's GPT-Live session, opened by the gateway with its own
session settings, behind the same switch and protections as ``/demo/token``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.emulator import Emulator
from gateway.server.demo import DEMO_LIVE_INSTRUCTIONS, DEMO_LIVE_MODEL
from tests.functional.conftest import GATEWAY_KEY, OPENAI_KEY, GatewayFactory, state_of
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}


async def offer_of(peers: list[TestPeer]) -> tuple[TestPeer, str]:
    peer = TestPeer()
    peers.append(peer)
    return peer, await peer.create_offer()


async def error_of(response: Any, status: int) -> dict[str, Any]:
    """The OpenAI-shaped error of a refused request."""
    body = await response.json()
    assert response.status == status, body
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert {"message", "type", "code", "param"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"]
    return error


async def no_sessions(gateway: Client) -> None:
    async with asyncio.timeout(10):
        while len(state_of(gateway).calls) > 0:
            await asyncio.sleep(0.05)
    listed = await gateway.get("/v1/realtime/calls", headers=AUTH)
    assert (await listed.json())["data"] == []


async def test_the_demo_opens_a_live_session_with_the_gateways_settings(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
) -> None:
    """No key on the request: the gateway creates the session, with its own model and
    instructions, and answers with Live's 201 body; the session works end to end."""
    gateway = await make_gateway(demo_enabled=True)
    peer, offer = await offer_of(peers)
    response = await gateway.post("/demo/live", json={"sdp": offer})
    text = await response.text()
    assert response.status == 201, text
    assert response.content_type == "application/json"
    assert "Location" not in response.headers
    assert GATEWAY_KEY not in text and OPENAI_KEY not in text
    body = json.loads(text)
    assert set(body) == {"session", "transport"}
    assert body["transport"]["type"] == "webrtc" and body["transport"]["sdp"].startswith("v=0")
    session_id = body["session"]["id"]
    assert session_id.startswith("live_")

    await peer.accept_answer(body["transport"]["sdp"])
    await peer.wait_open()
    started = await peer.next_event("session.started")
    assert peer.events[0] is started
    assert started["session"]["id"] == session_id
    assert started["session"]["model"] == DEMO_LIVE_MODEL

    call = state_of(gateway).calls.find(session_id)
    assert call is not None and call.dialect == "live"
    (upstream,) = emulator.calls.values()
    assert upstream.request_kind == "live"
    assert upstream.initial_session is not None
    assert upstream.initial_session["model"] == DEMO_LIVE_MODEL
    assert upstream.initial_session["instructions"] == DEMO_LIVE_INSTRUCTIONS

    peer.mic.say(0.8, 440.0)
    peer.mic.pause(1.0)
    await peer.next_event("session.input_transcript.delta", timeout=8)
    await peer.next_event("session.output_transcript.delta", timeout=8)

    peer.send({"type": "session.close", "event_id": "evt_bye"})
    closed = await peer.next_event("session.closed")
    assert closed["reason"] == "close_requested"
    await no_sessions(gateway)


# (body as sent, content type, status, code, param)
BAD_BODIES: list[tuple[str, str, int, str, str | None]] = [
    ("", "application/json", 400, "missing_required_parameter", "sdp"),
    ("{", "application/json", 400, "invalid_json", None),
    ("[]", "application/json", 400, "invalid_type", None),
    ('"v=0"', "application/json", 400, "invalid_type", None),
    ("{}", "application/json", 400, "missing_required_parameter", "sdp"),
    ('{"sdp": null}', "application/json", 400, "missing_required_parameter", "sdp"),
    ('{"sdp": 5}', "application/json", 400, "invalid_type", "sdp"),
    ('{"sdp": "  "}', "application/json", 400, "invalid_value", "sdp"),
    ('{"sdp": "hello"}', "application/json", 400, "invalid_offer", None),
    (
        '{"sdp": "OFFER", "model": "gpt-realtime"}',
        "application/json",
        400,
        "unknown_parameter",
        "model",
    ),
    (
        '{"sdp": "OFFER", "session": {"model": "gpt-live-1.1"}}',
        "application/json",
        400,
        "unknown_parameter",
        "session",
    ),
    (
        '{"session": {"model": "gpt-live-1"}, "transport": {"type": "webrtc", "sdp": "OFFER"}}',
        "application/json",
        400,
        "unknown_parameter",
        "session",
    ),
    # The offer as Realtime's flow posts it: the demo's Live endpoint takes JSON only.
    ("OFFER", "application/sdp", 415, "unsupported_content_type", None),
]


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code", "param"),
    BAD_BODIES,
    ids=[f"{i}-{code}" for i, (_, _, _, code, _) in enumerate(BAD_BODIES)],
)
async def test_anything_but_an_offer_is_refused(
    raw: str,
    content_type: str,
    status: int,
    code: str,
    param: str | None,
    make_gateway: GatewayFactory,
    emulator: Emulator,
    peers: list[TestPeer],
) -> None:
    """The body is exactly ``{"sdp": "<offer>"}``: the session is the gateway's to choose."""
    gateway = await make_gateway(demo_enabled=True)
    _, offer = await offer_of(peers)
    response = await gateway.post(
        "/demo/live",
        data=raw.replace("OFFER", json.dumps(offer)[1:-1]),
        headers={"Content-Type": content_type},
    )
    error = await error_of(response, status)
    assert error["code"] == code, error
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"
    assert len(state_of(gateway).calls) == 0
    assert not emulator.calls, "nothing was dialled upstream for a refused request"


async def test_off_unless_the_demo_is_on(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(demo_enabled=False)
    response = await gateway.post("/demo/live", json={"sdp": "v=0"})
    assert response.status == 404
    assert (await response.json())["error"]["type"] == "invalid_request_error"


async def test_with_a_real_key_only_this_machines_page_gets_sessions(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
) -> None:
    """A real key (here to the emulator): a request a proxy relayed, or one a page of another
    site sent from a browser on this machine, is 403 ``demo_local_only`` before anything is
    dialled; this machine's own page is served."""
    gateway = await make_gateway(demo_enabled=True)
    _, offer = await offer_of(peers)
    own_origin = str(gateway.make_url("")).rstrip("/")
    for headers in (
        {"X-Forwarded-For": "203.0.113.5"},
        {"Forwarded": "for=203.0.113.5"},
        {"X-Real-IP": "203.0.113.5"},
        {"Origin": "https://elsewhere.example"},
        {"Origin": own_origin.replace("127.0.0.1", "localhost")},
    ):
        response = await gateway.post("/demo/live", json={"sdp": offer}, headers=headers)
        error = await error_of(response, 403)
        assert error["code"] == "demo_local_only", (headers, error)
        # /demo/token keeps the same rule.
        token = await gateway.post("/demo/token", headers=headers)
        assert (await error_of(token, 403))["code"] == "demo_local_only"
    assert not emulator.calls

    peer, offer = await offer_of(peers)
    response = await gateway.post("/demo/live", json={"sdp": offer}, headers={"Origin": own_origin})
    body = await response.json()
    assert response.status == 201, body
    await peer.accept_answer(body["transport"]["sdp"])
    await peer.wait_open()
    await peer.next_event("session.started")


async def test_on_the_emulator_any_address_may_try_it(
    make_gateway: GatewayFactory, peers: list[TestPeer]
) -> None:
    """The built-in emulator costs nothing: the loopback rule is for real keys only."""
    gateway = await make_gateway(openai_api_key=None, demo_enabled=True)
    peer, offer = await offer_of(peers)
    response = await gateway.post(
        "/demo/live",
        json={"sdp": offer},
        headers={"X-Forwarded-For": "203.0.113.5", "Origin": "https://elsewhere.example"},
    )
    body = await response.json()
    assert response.status == 201, body
    await peer.accept_answer(body["transport"]["sdp"])
    await peer.wait_open()
    await peer.next_event("session.started")


async def test_demo_sessions_are_rate_limited_per_address(
    make_gateway: GatewayFactory, emulator: Emulator
) -> None:
    """One budget per address for demo secrets and demo sessions, counted before the body is
    read: past it, 429 with ``Retry-After`` and nothing dialled."""
    gateway = await make_gateway(demo_enabled=True, calls_per_minute_per_ip=3)
    assert (await gateway.post("/demo/token")).status == 200
    statuses = [(await gateway.post("/demo/live", json={})).status for _ in range(2)]
    assert statuses == [400, 400]
    refused = await gateway.post("/demo/live", json={})
    error = await error_of(refused, 429)
    assert error["type"] == "rate_limit_error"
    assert refused.headers["Retry-After"].isdigit()
    assert (await gateway.post("/demo/token")).status == 429
    assert not emulator.calls


async def test_a_draining_gateway_opens_no_demo_session(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
) -> None:
    gateway = await make_gateway(demo_enabled=True)
    state_of(gateway).draining = True
    _, offer = await offer_of(peers)
    response = await gateway.post("/demo/live", json={"sdp": offer})
    error = await error_of(response, 503)
    assert error["code"] == "draining"
    assert response.headers["Retry-After"].isdigit()
    assert not emulator.calls
