"""End to end: a real aiortc test peer against a real emulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from gateway.emulator import EmulatorSettings
from tests.emulator.helpers import FAST, Connected, EmulatorFactory, Running, connect, user_text
from tests.support.peer import TestPeer

# The emulator plays tones at RMS ~0.18 and echoes our 0.3-amplitude tone (RMS ~0.21); Opus
# keeps both well above this, and its silence well below.
AUDIBLE = 0.05

VOICE_RESPONSE = [
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.added",
    "conversation.item.done",
    "response.created",
    "rate_limits.updated",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "output_audio_buffer.started",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
    "output_audio_buffer.stopped",
]


def without_deltas(types: list[str]) -> list[str]:
    return [t for t in types if not t.endswith(".delta")]


async def test_audio_out_is_continuous_silence_between_responses(connected: Connected) -> None:
    """Like OpenAI, the emulator sends a frame every 20 ms even when it has nothing to say."""
    peer = connected.peer
    mark = peer.received.mark()
    await asyncio.sleep(0.5)
    quiet = peer.received.since(mark)
    assert 15 <= quiet.frames <= 35
    assert quiet.energy_frames(0.001) == 0


async def test_session_created_on_open(connected: Connected) -> None:
    (created,) = connected.peer.events_of("session.created")
    session = created["session"]
    assert session["type"] == "realtime" and session["model"] == "realtime-emulator"
    assert connected.call.sent_events[0] == created
    assert connected.call.session["id"] == session["id"]


async def test_session_update_and_the_missing_type_error(connected: Connected) -> None:
    peer, call = connected.peer, connected.call
    peer.send(
        {
            "type": "session.update",
            "event_id": "evt_1",
            "session": {"type": "realtime", "instructions": "Speak like a pirate."},
        }
    )
    updated = await peer.next_event("session.updated")
    assert updated["session"]["instructions"] == "Speak like a pirate."
    assert call.session["instructions"] == "Speak like a pirate."
    peer.send({"type": "session.update", "event_id": "evt_2", "session": {"instructions": "x"}})
    error = (await peer.next_event("error"))["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "session.type"
    assert error["event_id"] == "evt_2"
    assert [e["event_id"] for e in call.received_events] == ["evt_1", "evt_2"]
    assert (await call.wait_for_event("session.update"))["event_id"] == "evt_1"


async def test_speech_turn_is_detected_and_played_back(connected: Connected) -> None:
    """A tone is a turn: the VAD events, the response in GA order, then our audio comes back."""
    peer, call = connected.peer, connected.call
    mark = peer.received.mark()
    peer.mic.say(0.6)
    stopped = await peer.next_event("output_audio_buffer.stopped", timeout=5)
    start = peer.types().index("input_audio_buffer.speech_started")
    assert without_deltas(peer.types()[start:]) == VOICE_RESPONSE
    deltas = peer.events_of("response.output_audio_transcript.delta")
    transcript = peer.events_of("response.output_audio_transcript.done")[0]["transcript"]
    assert transcript.startswith("(emulator) You spoke for 0.6 seconds")
    assert "".join(d["delta"] for d in deltas) == transcript
    done = peer.events_of("response.done")[0]["response"]
    assert done["status"] == "completed" and stopped["response_id"] == done["id"]
    usage = done["usage"]
    assert usage["input_token_details"]["audio_tokens"] >= 8  # >= 0.8 s of committed audio
    assert usage["output_token_details"]["audio_tokens"] >= 14  # >= 0.7 s played back
    echo = await peer.received.wait_energy(frames=28, threshold=AUDIBLE, since=mark)
    assert echo.peak_rms > 0.15
    assert call.input_audio.peak_rms > 0.15
    assert 500 <= call.input_audio.speech_ms <= 700


async def test_a_pcmu_client_is_heard_and_answered(
    http: aiohttp.ClientSession, running: Running
) -> None:
    """A G.711 client (as openai-realtime-agents can force) gets the same turn and echo."""
    peer = TestPeer(audio_codec="PCMU")
    try:
        connected = await connect(peer, http, running)
        mark = peer.received.mark()
        peer.mic.say(0.5)
        await peer.next_event("output_audio_buffer.stopped")
        await peer.received.wait_energy(frames=20, threshold=AUDIBLE, since=mark)
        assert 400 <= connected.call.input_audio.speech_ms <= 600
    finally:
        await peer.close()


async def test_push_to_talk_with_manual_commit(connected: Connected) -> None:
    """turn_detection null: no VAD events; commit + response.create plays the audio back."""
    peer, call = connected.peer, connected.call
    peer.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        }
    )
    await peer.next_event("session.updated")
    peer.send({"type": "input_audio_buffer.clear"})
    await peer.next_event("input_audio_buffer.cleared")
    peer.mic.say(0.4)
    for _ in range(150):  # until the emulator has heard the whole tone
        if call.input_audio.speech_ms >= 400 and not peer.mic.speaking:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.15)  # the tail of the tone is still in flight
    peer.send({"type": "input_audio_buffer.commit"})
    committed = await peer.next_event("input_audio_buffer.committed")
    assert "input_audio_buffer.speech_started" not in peer.types()
    mark = peer.received.mark()
    peer.send({"type": "response.create"})
    await peer.next_event("output_audio_buffer.stopped")
    assert peer.events_of("conversation.item.done")[0]["item"]["id"] == committed["item_id"]
    await peer.received.wait_energy(frames=18, threshold=AUDIBLE, since=mark)


async def test_text_message_gets_a_spoken_answer_with_the_text(connected: Connected) -> None:
    peer = connected.peer
    mark = peer.received.mark()
    peer.send(user_text("the quick brown fox"))
    peer.send({"type": "response.create"})
    transcript = (await peer.next_event("response.output_audio_transcript.done"))["transcript"]
    assert "the quick brown fox" in transcript
    await peer.next_event("output_audio_buffer.stopped")
    tones = await peer.received.wait_energy(frames=20, threshold=AUDIBLE, since=mark)
    assert tones.peak_rms > 0.1


async def test_second_response_create_is_refused_while_one_is_active(
    connected: Connected,
) -> None:
    peer = connected.peer
    peer.send({"type": "response.create", "event_id": "evt_a"})
    peer.send({"type": "response.create", "event_id": "evt_b"})
    error = (await peer.next_event("error"))["error"]
    assert error["code"] == "conversation_already_has_active_response"
    assert error["event_id"] == "evt_b"
    done = await peer.next_event("response.done")
    assert done["response"]["status"] == "completed"
    assert len(peer.events_of("response.created")) == 1


async def assert_audio_stops(peer: TestPeer) -> None:
    """Nothing audible arrives once what was already in flight (jitter buffer) has drained."""
    await asyncio.sleep(0.25)
    mark = peer.received.mark()
    await asyncio.sleep(0.4)
    after = peer.received.since(mark)
    assert after.frames >= 10
    assert after.energy_frames(AUDIBLE) == 0


async def test_response_cancel_stops_the_audio(connected: Connected) -> None:
    peer = connected.peer
    peer.send({"type": "response.create"})
    created = await peer.next_event("response.created")
    await peer.next_event("output_audio_buffer.started")
    await peer.received.wait_energy(frames=3, threshold=AUDIBLE)
    peer.send({"type": "response.cancel"})
    done = (await peer.next_event("response.done"))["response"]
    assert done["id"] == created["response"]["id"]
    assert done["status"] == "cancelled"
    assert done["status_details"]["reason"] == "client_cancelled"
    await peer.next_event("output_audio_buffer.stopped")
    await assert_audio_stops(peer)


async def test_output_audio_buffer_clear_stops_playback(connected: Connected) -> None:
    peer = connected.peer
    peer.send({"type": "response.create"})
    await peer.received.wait_energy(frames=3, threshold=AUDIBLE)
    peer.send({"type": "output_audio_buffer.clear"})
    cleared = await peer.next_event("output_audio_buffer.cleared")
    assert cleared["response_id"] == peer.events_of("response.created")[0]["response"]["id"]
    await assert_audio_stops(peer)
    assert (await peer.next_event("response.done"))["response"]["status"] == "completed"
    assert peer.events_of("output_audio_buffer.stopped") == []


async def test_speaking_over_the_answer_interrupts_it(
    peer: TestPeer, http: aiohttp.ClientSession, start_emulator: EmulatorFactory
) -> None:
    """Barge-in: the active response is cancelled (turn_detected) and the buffer cleared."""
    slow = EmulatorSettings(
        vad_silence_ms=200, vad_prefix_padding_ms=100, response_pace=0.5, record_events=True
    )
    connected = await connect(peer, http, await start_emulator(slow))
    peer.mic.say(0.6)
    first = (await connected.peer.next_event("response.created", timeout=5))["response"]
    await peer.received.wait_energy(frames=3, threshold=AUDIBLE)
    peer.mic.say(0.4)
    done = (await peer.next_event("response.done"))["response"]
    assert done["id"] == first["id"] and done["status"] == "cancelled"
    assert done["status_details"]["reason"] == "turn_detected"
    cleared = await peer.next_event("output_audio_buffer.cleared")
    assert cleared["response_id"] == first["id"]
    second = (await peer.next_event("response.created", timeout=5))["response"]
    assert second["id"] != first["id"]


async def test_tool_call_round_trip(connected: Connected) -> None:
    """Naming a declared tool gets a function call; its output is spoken in the next answer."""
    peer = connected.peer
    tool = {
        "type": "function",
        "name": "lookup_order",
        "description": "Find an order",
        "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
    }
    peer.send({"type": "session.update", "session": {"type": "realtime", "tools": [tool]}})
    await peer.next_event("session.updated")
    peer.send(user_text('Please lookup_order {"order": "A-17"}'))
    peer.send({"type": "response.create"})
    added = (await peer.next_event("response.output_item.added"))["item"]
    assert added["type"] == "function_call" and added["name"] == "lookup_order"
    args = await peer.next_event("response.function_call_arguments.done")
    assert json.loads(args["arguments"]) == {"order": "A-17"}
    assert args["call_id"] == added["call_id"] and args["item_id"] == added["id"]
    done = (await peer.next_event("response.done"))["response"]
    assert done["output"][0]["type"] == "function_call"
    assert done["output"][0]["call_id"] == args["call_id"]
    output: dict[str, Any] = {
        "type": "function_call_output",
        "call_id": args["call_id"],
        "output": json.dumps({"status": "shipped"}),
    }
    peer.send({"type": "conversation.item.create", "item": output})
    peer.send({"type": "response.create"})
    transcript = (await peer.next_event("response.output_audio_transcript.done"))["transcript"]
    assert '{"status": "shipped"}' in transcript
    assert (await peer.next_event("response.done"))["response"]["status"] == "completed"


async def test_malformed_and_unknown_events_get_errors_and_the_call_goes_on(
    connected: Connected,
) -> None:
    peer = connected.peer
    peer.send_raw("{this is not json")
    first = (await peer.next_event("error"))["error"]
    assert first["type"] == "invalid_request_error" and first["event_id"] is None
    peer.send({"type": "does.not.exist", "event_id": "evt_x"})
    second = (await peer.next_event("error"))["error"]
    assert second["event_id"] == "evt_x" and second["param"] == "type"
    peer.send({"type": "session.update", "session": {"type": "realtime"}})
    await peer.next_event("session.updated")
    assert not connected.call.ended.is_set()


async def test_peer_closing_ends_the_call(connected: Connected) -> None:
    await connected.peer.close()
    await asyncio.wait_for(connected.call.ended.wait(), 5)
    assert connected.call.end_reason == "peer_closed"


async def test_aclose_ends_calls_mid_response_without_leaking_tasks(
    peer: TestPeer, http: aiohttp.ClientSession, start_emulator: EmulatorFactory
) -> None:
    """Shutdown in the middle of everything: calls end, the peer sees it, no task survives."""
    before = set(asyncio.all_tasks())
    running = await start_emulator(FAST)
    connected = await connect(peer, http, running)
    peer.mic.say(2.0)
    peer.send({"type": "response.create"})
    await peer.next_event("output_audio_buffer.started")
    await peer.next_event("input_audio_buffer.speech_started")
    await running.emulator.aclose()
    await running.emulator.aclose()  # idempotent
    assert connected.call.ended.is_set() and connected.call.end_reason == "shutdown"
    await peer.wait_closed()
    await peer.close()
    leaked: list[asyncio.Task[Any]] = []
    for _ in range(100):  # cancelled tasks may need a few loop turns to finish
        leaked = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
        if not leaked:
            break
        await asyncio.sleep(0.02)
    assert not leaked


async def test_a_call_that_never_connects_is_ended(
    http: aiohttp.ClientSession, start_emulator: EmulatorFactory
) -> None:
    """An answer nobody applies must not keep a peer connection alive forever."""
    settings = EmulatorSettings(connect_timeout=0.3, record_events=True)
    running = await start_emulator(settings)
    peer = TestPeer()
    try:
        offer = await peer.create_offer()
        headers = {"Authorization": "Bearer x", "Content-Type": "application/sdp"}
        async with http.post(running.calls_url, data=offer, headers=headers) as response:
            assert response.status == 201
        (call,) = running.emulator.calls.values()
        await asyncio.wait_for(call.ended.wait(), 3)
        assert call.end_reason == "connect_timeout"
    finally:
        await peer.close()


async def test_ended_calls_are_forgotten_beyond_the_recent_ones(
    start_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    """The emulator keeps its live calls and only the latest ended ones: churning calls does
    not grow it."""
    running = await start_emulator(
        EmulatorSettings(vad_silence_ms=200, recent_calls=2, record_events=False)
    )
    ended = []
    for _ in range(5):
        peer = TestPeer()
        connected = await connect(peer, http, running)
        assert len(connected.call.received_events) == 0  # recording is off
        await peer.close()
        await asyncio.wait_for(connected.call.ended.wait(), 10)
        ended.append(connected.call.call_id)
    assert list(running.emulator.calls) == ended[-2:]
    assert all(call.events_out > 0 for call in running.emulator.calls.values())
