"""Continuity: a call outlives its upstream sessions.

The emulator here ends every session after a few seconds, as OpenAI does after 60 minutes
(``session_expired``, then it closes). With continuity on, the gateway puts a new session under
the browser's call each time: the browser keeps its peer and its data channel, hears one
``session.created`` and no expiry, and every new session is seeded with what was said before.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from pytest_aiohttp import AiohttpClient

from gateway.call.link import MAX_HELD
from gateway.config import Secret, Settings
from gateway.emulator import Emulator, EmulatorCall, EmulatorSettings
from gateway.errors import UpstreamError
from gateway.server.app import create_app
from gateway.server.state import STATE
from tests.functional.conftest import GATEWAY_KEY, LOOPBACK, OPENAI_KEY, gateway_settings, mint
from tests.support.fake_upstream import FakeUpstreams, Script
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]
LIMIT_S = 4.0
WORD = "PERIWINKLE"
TOOLS = ("tests.functional.fixtures.sample_tools",)


_URLS: dict[int, str] = {}


@pytest.fixture(name="expiring")
async def _expiring() -> AsyncIterator[Emulator]:
    emulator = Emulator(
        EmulatorSettings(
            ice_addresses=LOOPBACK,
            api_key=OPENAI_KEY,
            max_call_seconds=LIMIT_S,
            record_events=True,
        )
    )
    _URLS[id(emulator)] = await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.aclose()
        _URLS.pop(id(emulator), None)


async def gateway_for(
    aiohttp_client: AiohttpClient, emulator: Emulator, **overrides: Any
) -> tuple[Client, CollectorRegistry]:
    registry = CollectorRegistry()
    values: dict[str, Any] = {"continuity": True, "continuity_lead": 0.0}
    values.update(overrides)
    settings = gateway_settings(_URLS[id(emulator)], **values)
    return await aiohttp_client(create_app(settings, registry=registry)), registry


async def fake_gateway(
    aiohttp_client: AiohttpClient, **overrides: Any
) -> tuple[Client, FakeUpstreams]:
    """A gateway with continuity whose upstream sessions are scripted stand-ins."""
    fakes = FakeUpstreams(Script(audio=True))
    values: dict[str, Any] = {
        "openai_api_key": Secret("sk-test-not-used"),
        "gateway_api_key": Secret(GATEWAY_KEY),
        "ice_addresses": LOOPBACK,
        "continuity": True,
        "continuity_lead": 0.0,
    }
    values.update(overrides)
    return await aiohttp_client(create_app(Settings(**values), upstreams=fakes)), fakes


async def dial(gateway: Client, peer: TestPeer) -> None:
    result = await peer.connect(
        gateway.session, str(gateway.make_url("/v1/realtime/calls")), await mint(gateway)
    )
    assert result.status == 201, result.body
    await peer.wait_open()
    await peer.next_event("session.created")


def tell(peer: TestPeer, text: str, *, respond: bool = True) -> None:
    peer.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            },
        }
    )
    if respond:
        peer.send({"type": "response.create"})


def sessions(emulator: Emulator) -> list[EmulatorCall]:
    return list(emulator.calls.values())


def replayed_texts(call: EmulatorCall) -> list[str]:
    return [
        json.dumps(event["item"])
        for event in call.received_events
        if event.get("type") == "conversation.item.create"
        and str(event.get("event_id", "")).startswith("gw_replay_")
    ]


async def until(condition: Callable[[], bool], limit: float) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110  # polled with a bound
            await asyncio.sleep(0.05)


def max_gap(times: list[float], start: float, end: float) -> float:
    inside = [t for t in times if start <= t <= end]
    return max((b - a for a, b in zip(inside, inside[1:], strict=False)), default=end - start)


def lines(logs: list[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line["event"] == event]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_a_call_outlives_sessions_that_expire_and_each_new_one_knows_the_conversation(
    aiohttp_client: AiohttpClient, expiring: Emulator
) -> None:
    gateway, registry = await gateway_for(aiohttp_client, expiring)
    peer = TestPeer()
    try:
        with structlog.testing.capture_logs() as logs:
            await dial(gateway, peer)
            tell(peer, f"Remember the word {WORD}.")
            await peer.next_event("response.done", timeout=10)
            began = asyncio.get_running_loop().time()
            # Three expiries; the user speaks now and then.
            for _ in range(6):
                peer.mic.say(0.6)
                await asyncio.sleep(2.2)
            await until(lambda: len(sessions(expiring)) >= 4, 10)
            await until(lambda: len(lines(logs, "continuity.swapped")) >= 3, 10)
            ended_at = asyncio.get_running_loop().time()
            assert peer.pc is not None and peer.pc.connectionState == "connected"
            response = await gateway.post(
                f"/v1/realtime/calls/{peer.call_id}/hangup",
                headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
            )
            assert response.status == 200
            await until(lambda: bool(lines(logs, "call.ended")), 10)
        (ended,) = lines(logs, "call.ended")
        assert ended["reason"] == "hangup"
        swaps = lines(logs, "continuity.swapped")
        assert ended["upstream_sessions"] == len(swaps) + 1 >= 4
        assert ended["upstream_call_ids"][1:] == [s["upstream_call_id"] for s in swaps]
        assert ended["upstream_call_ids"][0] == ended_first_id(logs)
        assert {s["reason"] for s in swaps} == {"expired"}
        # The browser never saw a seam.
        assert len(peer.events_of("session.created")) == 1
        assert peer.events_of("error") == []
        # Every later session was seeded with the word said at the start, first of all.
        later = sessions(expiring)[1:]
        assert len(later) >= 3
        for call in later:
            texts = replayed_texts(call)
            assert texts and WORD in texts[0], texts
        # The replaced sessions were hung up (they stop billing).
        for call in sessions(expiring)[:-1]:
            assert call.ended.is_set()
        # Audio paused for no more than a new session's setup.
        gap = max_gap(peer.received.times, began, ended_at)
        print(f"reactive: largest audio gap {gap * 1000:.0f} ms over {len(swaps)} swaps")
        assert gap < 2.0
        assert sample(
            registry, "realtime_gateway_upstream_swaps_total", reason="expired", result="ok"
        ) == len(swaps)
    finally:
        await peer.close()


async def test_a_session_known_to_expire_is_replaced_before_it_does(
    aiohttp_client: AiohttpClient, expiring: Emulator
) -> None:
    gateway, registry = await gateway_for(aiohttp_client, expiring, continuity_lead=2.0)
    peer = TestPeer()
    try:
        with structlog.testing.capture_logs() as logs:
            await dial(gateway, peer)
            tell(peer, f"Remember the word {WORD}.")
            began = asyncio.get_running_loop().time()
            await until(lambda: len(lines(logs, "continuity.swapped")) >= 2, 15)
            ended_at = asyncio.get_running_loop().time()
        swaps = lines(logs, "continuity.swapped")
        assert {s["reason"] for s in swaps} == {"renewed"}
        # Replaced while still running: hung up by the gateway, not expired.
        replaced = sessions(expiring)[: len(swaps)]
        for call in replaced:
            assert call.end_reason in ("hangup", "peer_closed"), call.end_reason
        assert "session_expired" not in json.dumps([list(c.sent_events) for c in replaced])
        assert len(peer.events_of("session.created")) == 1
        assert peer.events_of("error") == []
        for call in sessions(expiring)[1:]:
            assert any(WORD in text for text in replayed_texts(call))
        gap = max_gap(peer.received.times, began, ended_at)
        print(f"proactive: largest audio gap {gap * 1000:.0f} ms over {len(swaps)} swaps")
        assert gap < 1.0
        assert sample(
            registry, "realtime_gateway_upstream_swaps_total", reason="renewed", result="ok"
        ) == len(swaps)
    finally:
        await peer.close()


async def test_an_upstream_leg_killed_mid_call_is_replaced(
    aiohttp_client: AiohttpClient, expiring: Emulator
) -> None:
    gateway, _ = await gateway_for(aiohttp_client, expiring)
    peer = TestPeer()
    try:
        with structlog.testing.capture_logs() as logs:
            await dial(gateway, peer)
            tell(peer, f"Remember the word {WORD}.")
            await peer.next_event("response.done", timeout=10)
            first = sessions(expiring)[0]
            began = asyncio.get_running_loop().time()
            # The OpenAI edge dies: its peer goes away without a word.
            await first.end("connection_lost")
            await until(lambda: bool(lines(logs, "continuity.swapped")), 10)
            await asyncio.sleep(0.5)
            gap = max_gap(peer.received.times, began, asyncio.get_running_loop().time())
            tell(peer, "Are you still there?")
            done = await peer.next_event("response.done", timeout=10)
        (swap,) = lines(logs, "continuity.swapped")[:1]
        assert swap["reason"] in ("failed", "vanished")
        print(f"killed upstream: audio gap {gap * 1000:.0f} ms", swap)
        assert gap < 2.0
        assert done["response"]["status"] == "completed"
        assert peer.pc is not None and peer.pc.connectionState == "connected"
        assert WORD in replayed_texts(sessions(expiring)[1])[0]
        assert peer.events_of("error") == []
    finally:
        await peer.close()


async def test_a_response_cut_short_by_a_swap_ends_as_cancelled(
    aiohttp_client: AiohttpClient, expiring: Emulator
) -> None:
    gateway, _ = await gateway_for(aiohttp_client, expiring)
    peer = TestPeer()
    try:
        with structlog.testing.capture_logs() as logs:
            await dial(gateway, peer)
            tell(peer, "Tell me a long story.")
            created = await peer.next_event("response.created", timeout=10)
            await sessions(expiring)[0].end("connection_lost")
            await until(lambda: bool(lines(logs, "continuity.swapped")), 10)
            done = await peer.next_event("response.done", timeout=10)
        assert done["response"]["id"] == created["response"]["id"]
        assert done["response"]["status"] == "cancelled"
        assert peer.events_of("error") == []
    finally:
        await peer.close()


async def test_server_tools_and_the_transcript_go_on_across_a_swap(
    aiohttp_client: AiohttpClient, expiring: Emulator, tmp_path: Any
) -> None:
    gateway, _ = await gateway_for(
        aiohttp_client, expiring, tools=TOOLS, transcripts_dir=str(tmp_path)
    )
    peer = TestPeer()
    try:
        with structlog.testing.capture_logs() as logs:
            await dial(gateway, peer)
            tell(peer, 'Where is my order? lookup_order {"order_id": "A17"}')
            first = await peer.next_event("response.output_audio_transcript.done", timeout=10)
            assert "shipped-7731" in first["transcript"]
            await sessions(expiring)[0].end("connection_lost")
            await until(lambda: bool(lines(logs, "continuity.swapped")), 10)
            peer.events.clear()
            tell(peer, 'And the other one? lookup_order {"order_id": "B22"}')
            second = await peer.next_event("response.output_audio_transcript.done", timeout=10)
            assert "shipped" in second["transcript"]
            await gateway.post(
                f"/v1/realtime/calls/{peer.call_id}/hangup",
                headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
            )
            await until(lambda: bool(lines(logs, "call.ended")), 10)
        # The new session knew of the first call and its output.
        replayed = replayed_texts(sessions(expiring)[1])
        assert any('"function_call"' in t and "lookup_order" in t for t in replayed)
        assert any('"function_call_output"' in t and "shipped-7731" in t for t in replayed)
        assert '"function_call' not in json.dumps(peer.events)
        # One transcript for the browser's call, across both sessions.
        (path,) = tmp_path.iterdir()
        records = [json.loads(line) for line in path.read_text().splitlines()]
        kinds = [r.get("kind") for r in records]
        assert kinds.count("call_started") == 1 and kinds.count("call_ended") == 1
        tool_records = [r for r in records if r.get("kind") == "tool_call"]
        assert len(tool_records) == 2
    finally:
        await peer.close()


async def test_when_no_new_session_can_be_had_the_call_ends_cleanly(
    aiohttp_client: AiohttpClient,
) -> None:
    gateway, fakes = await fake_gateway(aiohttp_client)
    peer = TestPeer()
    try:
        with structlog.testing.capture_logs() as logs:
            await dial(gateway, peer)
            fakes.script.refuse = UpstreamError("The upstream is down.", code="upstream_error")
            fakes.last.vanish()
            await until(lambda: bool(lines(logs, "call.ended")), 15)
        (ended,) = lines(logs, "call.ended")
        assert ended["outcome"] == "upstream_error"
        assert len(fakes.made) == 4  # the first, then three attempts
        assert all(f.closed and f.hung_up for f in fakes.made)
        (failed,) = lines(logs, "continuity.failed")
        assert failed["reason"] == "failed"
        farewell = await peer.next_event("error", timeout=5)
        assert farewell["error"]["code"] == "upstream_ended"
        await peer.wait_closed(5)
    finally:
        await peer.close()


async def test_an_expiry_that_cannot_be_bridged_is_told_to_the_browser(
    aiohttp_client: AiohttpClient, expiring: Emulator
) -> None:
    gateway, _ = await gateway_for(aiohttp_client, expiring)
    peer = TestPeer()
    try:
        with structlog.testing.capture_logs() as logs:
            await dial(gateway, peer)
            for _ in range(3):
                expiring.reject_next_call(
                    500, {"message": "overloaded", "type": "server_error", "code": None}
                )
            # reject_next_call holds one refusal: keep re-arming it while the gateway retries.
            rearm = asyncio.create_task(_keep_refusing(expiring))
            try:
                await until(lambda: bool(lines(logs, "call.ended")), 20)
            finally:
                rearm.cancel()
        (ended,) = lines(logs, "call.ended")
        assert (ended["reason"], ended["outcome"]) == ("session_expired", "timeout")
        assert [e["error"]["code"] for e in peer.events_of("error")] == ["session_expired"]
    finally:
        await peer.close()


async def _keep_refusing(emulator: Emulator) -> None:
    while True:
        emulator.reject_next_call(
            500, {"message": "overloaded", "type": "server_error", "code": None}
        )
        await asyncio.sleep(0.02)


async def test_a_sideband_follows_the_call_across_a_swap(
    aiohttp_client: AiohttpClient, expiring: Emulator
) -> None:
    gateway, _ = await gateway_for(aiohttp_client, expiring)
    peer = TestPeer()
    seen: list[dict[str, Any]] = []
    try:
        with structlog.testing.capture_logs() as logs:
            await dial(gateway, peer)
            async with gateway.session.ws_connect(
                gateway.make_url(f"/v1/realtime?call_id={peer.call_id}"),
                headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
            ) as ws:
                tell(peer, f"Remember the word {WORD}.")
                await sideband_until(ws, "response.done", seen)
                await sessions(expiring)[0].end("connection_lost")
                await until(lambda: bool(lines(logs, "continuity.swapped")), 10)
                # Server code carries on with the call, through the same socket.
                await ws.send_str(
                    json.dumps(
                        {
                            "type": "conversation.item.create",
                            "item": {
                                "type": "message",
                                "role": "user",
                                "content": [{"type": "input_text", "text": "Still there?"}],
                            },
                        }
                    )
                )
                await ws.send_str(json.dumps({"type": "response.create"}))
                await sideband_until(ws, "response.done", seen)
        kinds = [event["type"] for event in seen]
        assert kinds.count("session.created") == 0  # attached after it; none from the swap
        assert "error" not in kinds
        # The replayed items keep their ids; their echoes from the new session are not shown.
        added = [e["item"]["id"] for e in seen if e["type"] == "conversation.item.added"]
        assert len(added) == len(set(added)), added
        assert _replayed_ids(sessions(expiring)[1]) <= set(added)
        await peer.next_event("response.done", timeout=10)
    finally:
        await peer.close()


def _replayed_ids(call: EmulatorCall) -> set[str]:
    return {
        str(event["item"].get("id"))
        for event in call.received_events
        if event.get("type") == "conversation.item.create"
        and str(event.get("event_id", "")).startswith("gw_replay_")
    }


async def sideband_until(ws: Any, kind: str, seen: list[dict[str, Any]]) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            event = json.loads(msg.data)
            seen.append(event)
            if event["type"] == kind:
                return dict(event)


async def test_a_beta_app_sees_no_seam(aiohttp_client: AiohttpClient, expiring: Emulator) -> None:
    gateway, _ = await gateway_for(aiohttp_client, expiring)
    response = await gateway.post(
        "/v1/realtime/sessions",
        json={"model": "gpt-4o-realtime-preview-2024-12-17", "voice": "verse"},
        headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
    )
    token = (await response.json())["client_secret"]["value"]
    peer = TestPeer()
    try:
        with structlog.testing.capture_logs() as logs:
            url = str(gateway.make_url("/v1/realtime?model=gpt-4o-realtime-preview-2024-12-17"))
            assert (await peer.connect(gateway.session, url, token)).status == 201
            await peer.wait_open()
            await peer.next_event("session.created")
            tell(peer, "Tell me a long story.")
            created = await peer.next_event("response.created", timeout=10)
            await sessions(expiring)[0].end("connection_lost")
            await until(lambda: bool(lines(logs, "continuity.swapped")), 10)
            done = await peer.next_event("response.done", timeout=10)
        # The cut-short response ends in the beta shape the app knows.
        assert done["response"]["id"] == created["response"]["id"]
        assert done["response"]["status"] == "cancelled"
        assert len(peer.events_of("session.created")) == 1
        assert peer.events_of("error") == []
        # Beta names only: nothing GA-shaped leaked through the seam.
        assert "conversation.item.added" not in peer.types()
    finally:
        await peer.close()


async def test_the_recording_keeps_its_timeline_across_a_swap(
    make_gateway: Any, emulator: Emulator, tmp_path: Any
) -> None:
    """One recording per call: the model's side from both sessions, each answer in place."""
    from tests.functional.test_recording import check_recording, converse, download, hang_up
    from tests.functional.test_recording import open_call as open_recorded_call

    gateway = await make_gateway(
        recordings_dir=str(tmp_path / "recordings"), continuity=True, continuity_lead=0.0
    )
    peer = TestPeer()
    try:
        with structlog.testing.capture_logs() as logs:
            call_id = await open_recorded_call(gateway, peer)
            (call,) = gateway.app[STATE].calls
            created_at = call.created_at
            answered = await converse(peer, [(1.0, 440.0)])
            await asyncio.sleep(0.3)
            await sessions(emulator)[0].end("connection_lost")
            await until(lambda: bool(lines(logs, "continuity.swapped")), 10)
            await asyncio.sleep(0.5)
            answered += await converse(peer, [(0.7, 550.0)])
            await asyncio.sleep(0.5)
            await hang_up(gateway, call_id)
            data = await download(gateway, call_id)
        (ended,) = lines(logs, "call.ended")
        assert ended["upstream_sessions"] == 2
        assert ended["recorded"] is True and ended["recording_dropped"] == 0
        check_recording(
            data,
            created_at=created_at,
            duration_s=ended["duration_s"],
            spoken=peer.mic.spoken,
            spoken_seconds=[1.0, 0.7],
            answered=answered,
        )
    finally:
        await peer.close()


async def test_a_hangup_during_a_replacement_ends_the_call_at_once(
    aiohttp_client: AiohttpClient,
) -> None:
    gateway, fakes = await fake_gateway(aiohttp_client)
    peer = TestPeer()
    try:
        with structlog.testing.capture_logs() as logs:
            await dial(gateway, peer)
            fakes.script.connect_delay = 30.0  # the new session never comes
            fakes.last.vanish()
            await until(lambda: len(fakes.made) == 2, 5)
            response = await gateway.post(
                f"/v1/realtime/calls/{peer.call_id}/hangup",
                headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
            )
            assert response.status == 200
            await until(lambda: bool(lines(logs, "call.ended")), 3)
        (ended,) = lines(logs, "call.ended")
        assert (ended["reason"], ended["outcome"]) == ("hangup", "completed")
        await until(lambda: all(f.closed for f in fakes.made), 3)
    finally:
        await peer.close()


async def test_a_browser_flooding_during_a_replacement_is_held_to_a_bound(
    aiohttp_client: AiohttpClient,
) -> None:
    """What a browser sends while the new session is dialled waits for it, in order, up to a
    bound; beyond it events are dropped and counted, and the call goes on."""
    gateway, fakes = await fake_gateway(aiohttp_client, events_per_second=100000.0)
    peer = TestPeer()
    try:
        with structlog.testing.capture_logs() as logs:
            await dial(gateway, peer)
            fakes.script.connect_delay = 1.5
            fakes.last.vanish()
            await until(lambda: len(fakes.made) == 2, 5)
            for n in range(MAX_HELD + 300):
                peer.send({"type": "input_audio_buffer.clear", "event_id": f"evt_{n}"})
            await until(lambda: bool(lines(logs, "continuity.swapped")), 10)
            await until(lambda: len(fakes.last.sent) >= MAX_HELD, 5)
            await asyncio.sleep(0.3)
            tell(peer, "still here", respond=False)
            await fakes.last.next_sent("conversation.item.create", timeout=5)
        held = [e["event_id"] for e in fakes.last.sent if e["type"] == "input_audio_buffer.clear"]
        assert held == [f"evt_{n}" for n in range(MAX_HELD)]  # in order, the first ones kept
        assert len(lines(logs, "continuity.held_overflow")) == 1
        assert peer.pc is not None and peer.pc.connectionState == "connected"
    finally:
        await peer.close()


def ended_first_id(logs: list[MutableMapping[str, Any]]) -> str:
    (started,) = lines(logs, "call.started")
    return str(started["upstream_call_id"])


async def test_a_session_shorter_than_the_lead_is_not_renewed_in_a_loop(
    aiohttp_client: AiohttpClient, expiring: Emulator
) -> None:
    """Less notice than the lead (a short session, or a host clock ahead of OpenAI's): no
    proactive renewal, which would renew at once, again and again; its expiry is bridged."""
    gateway, _ = await gateway_for(aiohttp_client, expiring, continuity_lead=LIMIT_S + 5)
    peer = TestPeer()
    try:
        with structlog.testing.capture_logs() as logs:
            await dial(gateway, peer)
            await until(lambda: bool(lines(logs, "continuity.swapped")), LIMIT_S + 8)
            await asyncio.sleep(0.5)
        swaps = lines(logs, "continuity.swapped")
        assert [s["reason"] for s in swaps] == ["expired"]
        assert len(lines(logs, "continuity.renewal_skipped")) >= 1
    finally:
        await peer.close()
