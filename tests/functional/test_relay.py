"""End to end: an aiortc browser → the gateway → the emulator, all real peers on loopback."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.emulator import Emulator, EmulatorCall
from tests.functional.conftest import GATEWAY_KEY, OPENAI_KEY, GatewayFactory, mint, state_of
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]


async def connect(gateway: Client, peers: list[TestPeer], **mint_body: object) -> TestPeer:
    """Mint a client secret and connect a browser peer with it, as OpenAI's guide does."""
    token = await mint(gateway, **mint_body)
    peer = TestPeer()
    peers.append(peer)
    result = await peer.connect(gateway.session, str(gateway.make_url("/v1/realtime/calls")), token)
    assert result.status == 201, result.body
    await peer.wait_open()
    return peer


def only_call(emulator: Emulator) -> EmulatorCall:
    assert len(emulator.calls) == 1
    return next(iter(emulator.calls.values()))


async def wait_until(predicate: object, timeout: float = 5.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


class TestGaFlow:
    async def test_answer_shape(self, gateway: Client, peers: list[TestPeer]) -> None:
        """201, application/sdp answer, Location with an rtc_ id; the browser's channel opens."""
        token = await mint(gateway)
        peer = TestPeer()
        peers.append(peer)
        result = await peer.connect(
            gateway.session, str(gateway.make_url("/v1/realtime/calls")), token
        )
        assert result.status == 201
        assert result.headers["Content-Type"].startswith("application/sdp")
        assert result.body.startswith("v=0")
        location = result.headers["Location"]
        assert location.startswith("/v1/realtime/calls/rtc_")
        await peer.wait_open()
        assert len(state_of(gateway).calls) == 1
        assert state_of(gateway).calls.get(location.rsplit("/", 1)[1]).call_id

    async def test_upstream_leg_follows_the_ga_contract(
        self, gateway: Client, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """Upstream gets multipart sdp+session with the real key, no OpenAI-Beta header."""
        await connect(gateway, peers, session={"type": "realtime", "instructions": "Be brief."})
        call = only_call(emulator)
        assert call.request_kind == "multipart"
        assert {k.lower() for k in call.request_headers}.isdisjoint({"openai-beta"})
        assert call.initial_session is not None
        assert call.initial_session["type"] == "realtime"
        assert call.initial_session["instructions"] == "Be brief."
        assert call.initial_session["audio"]["output"]["voice"] == "marin"

    async def test_events_relay_both_ways_in_order(
        self, gateway: Client, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """Client events reach upstream verbatim and in order; server events come back."""
        peer = await connect(gateway, peers)
        created = await peer.next_event("session.created")
        assert created["session"]["type"] == "realtime"
        sent = [
            {
                "type": "conversation.item.create",
                "event_id": f"evt_{i:03d}",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": f"note {i}"}],
                },
            }
            for i in range(20)
        ]
        for event in sent:
            peer.send(event)
        call = only_call(emulator)
        await wait_until(lambda: len(call.received_events) >= 20)
        assert list(call.received_events)[:20] == sent
        peer.send(
            {
                "type": "session.update",
                "event_id": "evt_su",
                "session": {"type": "realtime", "output_modalities": ["text"]},
            }
        )
        updated = await peer.next_event("session.updated")
        assert updated["session"]["output_modalities"] == ["text"]

    async def test_unknown_client_event_types_are_refused_by_default(
        self, gateway: Client, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """An undocumented client event never reaches OpenAI, which may drop the call for it."""
        peer = await connect(gateway, peers)
        peer.send({"type": "future.feature", "event_id": "evt_f", "x": 1})
        error = await peer.next_event("error")
        assert error["error"]["code"] == "event_type_not_allowed"
        assert error["error"]["event_id"] == "evt_f"
        peer.send({"type": "response.cancel", "event_id": "evt_ok"})
        call = only_call(emulator)
        await call.wait_for_event("response.cancel")
        assert [e["type"] for e in call.received_events] == ["response.cancel"]

    async def test_allowlist_is_configurable(
        self, make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """Listed in GATEWAY_ALLOWED_CLIENT_EVENTS, a new type passes through verbatim."""
        gateway = await make_gateway(allowed_client_events=("future.feature", "session.update"))
        peer = await connect(gateway, peers)
        peer.send({"type": "future.feature", "event_id": "evt_f", "x": 1})
        call = only_call(emulator)
        assert await call.wait_for_event("future.feature") == {
            "type": "future.feature",
            "event_id": "evt_f",
            "x": 1,
        }

    async def test_malformed_messages_get_an_error_and_are_not_forwarded(
        self, gateway: Client, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """Non-JSON and binary messages are answered with an error event; the call goes on."""
        peer = await connect(gateway, peers)
        peer.send_raw("this is not json")
        error = await peer.next_event("error")
        assert error["error"]["code"] == "invalid_json"
        peer.send_raw(b"\x00\x01binary")
        error = await peer.next_event("error")
        assert error["error"]["code"] == "invalid_event"
        # Nested past the recursion limit, and deep enough to break a copy of it: refused too.
        for depth in (5000, 400):
            deep = '{"type": "session.update", "session": {"tools": ' + "[" * depth
            peer.send_raw(deep + "]" * depth + "}}")
            error = await peer.next_event("error")
            assert error["error"]["code"] == "invalid_json", depth
        peer.send({"type": "response.create", "event_id": "evt_after"})
        call = only_call(emulator)
        await call.wait_for_event("response.create")
        assert all(isinstance(e, dict) and "type" in e for e in call.received_events)
        assert call.received_events[-1]["event_id"] == "evt_after"

    @pytest.mark.parametrize("media", ["passthrough", "transcode"])
    async def test_audio_flows_both_ways(
        self, make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer], media: str
    ) -> None:
        """Speech reaches the upstream with its energy, and the answer's audio comes back."""
        gateway = await make_gateway(media=media)
        peer = await connect(gateway, peers)
        await peer.next_event("session.created")
        peer.mic.say(0.8)
        await peer.next_event("input_audio_buffer.speech_started", timeout=5)
        await peer.next_event("input_audio_buffer.speech_stopped", timeout=5)
        call = only_call(emulator)
        assert call.input_audio.peak_rms > 0.05
        assert call.input_audio.speech_ms >= 400
        await peer.next_event("output_audio_buffer.started", timeout=5)
        await peer.next_event("output_audio_buffer.stopped", timeout=8)
        # The emulator played the utterance back: the browser heard real energy, not silence.
        assert peer.received.energy_frames(threshold=0.02) >= 20
        assert peer.received.peak_rms > 0.05
        (relayed,) = state_of(gateway).calls
        pcs = [relayed.browser.pc, relayed.upstream.peer.pc]  # type: ignore[attr-defined]
        decoders = [pc.getReceivers()[0]._RTCRtpReceiver__decoder_thread for pc in pcs]
        forwarders = relayed.media.forwarders
        if media == "passthrough":
            # Encoded payloads went straight across: nothing was decoded on the way, and
            # aiortc's decoder threads, with nothing to do, are gone.
            assert forwarders["browser"].packets >= 40 and forwarders["upstream"].packets >= 40
            assert not any(thread.is_alive() for thread in decoders)
        else:
            assert forwarders == {}
            assert all(thread.is_alive() for thread in decoders)

    async def test_g711_offer_is_relayed_as_g711(
        self, gateway: Client, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """A PCMU-only browser gets PCMU on both legs, so passthrough still works."""
        token = await mint(gateway)
        peer = TestPeer(audio_codec="PCMU")
        peers.append(peer)
        url = str(gateway.make_url("/v1/realtime/calls"))
        result = await peer.connect(gateway.session, url, token)
        assert result.status == 201
        assert "PCMU/8000" in result.body and "opus" not in result.body.lower()
        await peer.wait_open()
        peer.mic.say(0.8)
        await peer.next_event("output_audio_buffer.stopped", timeout=10)
        assert only_call(emulator).input_audio.peak_rms > 0.05
        assert peer.received.energy_frames(threshold=0.02) >= 10


class TestLifecycle:
    async def test_browser_hangup_with_its_token(
        self, gateway: Client, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """The call's own client secret may hang up; everything is torn down."""
        token = await mint(gateway, expires_after={"anchor": "created_at", "seconds": 60})
        peer = TestPeer()
        peers.append(peer)
        result = await peer.connect(
            gateway.session, str(gateway.make_url("/v1/realtime/calls")), token
        )
        await peer.wait_open()
        call_id = result.headers["Location"].rsplit("/", 1)[1]
        response = await gateway.post(
            f"/v1/realtime/calls/{call_id}/hangup", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 200
        upstream = only_call(emulator)
        assert upstream.hung_up
        await asyncio.wait_for(upstream.ended.wait(), 5)
        await peer.wait_closed()
        assert len(state_of(gateway).calls) == 0

    async def test_hangup_rules(self, gateway: Client, peers: list[TestPeer]) -> None:
        """Another browser's token cannot hang up a call; the gateway key can."""
        token = await mint(gateway)
        peer = TestPeer()
        peers.append(peer)
        result = await peer.connect(
            gateway.session, str(gateway.make_url("/v1/realtime/calls")), token
        )
        call_id = result.headers["Location"].rsplit("/", 1)[1]
        other = await mint(gateway)
        url = f"/v1/realtime/calls/{call_id}/hangup"
        response = await gateway.post(url, headers={"Authorization": f"Bearer {other}"})
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"
        response = await gateway.post(url, headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
        assert response.status == 200
        response = await gateway.post(url, headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
        assert response.status == 404

    async def test_browser_leaving_hangs_up_upstream(
        self, gateway: Client, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """When the browser closes its peer, the upstream call is hung up and closed."""
        peer = await connect(gateway, peers)
        await peer.next_event("session.created")
        await peer.close()
        upstream = only_call(emulator)
        await asyncio.wait_for(upstream.ended.wait(), 10)
        await wait_until(lambda: upstream.hung_up and len(state_of(gateway).calls) == 0)

    async def test_upstream_ending_closes_the_browser(
        self, gateway: Client, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """When the upstream goes away, the browser gets an error event and is closed."""
        peer = await connect(gateway, peers)
        await peer.next_event("session.created")
        await emulator.aclose()
        error = await peer.next_event("error", timeout=10)
        assert error["error"]["code"] == "upstream_ended"
        await peer.wait_closed(timeout=10)
        await wait_until(lambda: len(state_of(gateway).calls) == 0)

    async def test_shutdown_ends_calls_cleanly(
        self, gateway: Client, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """Stopping the gateway hangs up every upstream call and closes every browser."""
        peer = await connect(gateway, peers)
        await peer.next_event("session.created")
        await gateway.server.close()
        upstream = only_call(emulator)
        assert upstream.hung_up
        await asyncio.wait_for(upstream.ended.wait(), 5)
        await peer.wait_closed(timeout=10)


class TestSecrets:
    async def test_openai_key_never_reaches_the_browser(
        self, gateway: Client, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """No response body, header or data-channel message carries the OpenAI key."""
        seen: list[str] = []
        token = await mint(gateway)
        response = await gateway.post(
            "/v1/realtime/client_secrets",
            json={},
            headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
        )
        seen += [await response.text(), json.dumps(dict(response.headers))]
        emulator.reject_next_call(
            401,
            {
                "message": f"Incorrect API key provided: {OPENAI_KEY}",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
                "param": None,
            },
        )
        peer = TestPeer()
        peers.append(peer)
        url = str(gateway.make_url("/v1/realtime/calls"))
        rejected = await peer.connect(gateway.session, url, token)
        assert rejected.status == 502
        seen += [rejected.body, json.dumps(dict(rejected.headers))]
        peer = await connect(gateway, peers)
        peer.mic.say(0.5)
        peer.send({"type": "response.create"})
        await peer.next_event("response.done", timeout=8)
        seen += [json.dumps(e) for e in peer.events]
        for text in seen:
            assert OPENAI_KEY not in text
            assert OPENAI_KEY[:12] not in text
