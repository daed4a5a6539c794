"""Code written for OpenAI, pointed at the gateway by its URL alone, in real Chromium.

Each app runs on its own origin (:mod:`tests.browser.app_server`), its backend minting client
secrets server to server, and the gateway allows exactly that origin, as in production.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Page

from tests.browser.conftest import (
    GatewayFactory,
    Launcher,
    Target,
    Voices,
    base_url,
    emulator_calls,
    new_page,
    only_emulator_call,
    state_of,
)
from tests.browser.support import wait_for_js, wait_inbound_energy, wait_until


@pytest.fixture(name="gateway_for_app")
async def _gateway_for_app(
    make_gateway: GatewayFactory, app_server: TestServer, target: Target
) -> TestServer:
    """A gateway whose CORS allowlist holds the app's origin and nothing else."""
    gateway = await make_gateway(cors_origins=(base_url(app_server),))
    target.url = base_url(gateway)
    return gateway


async def open_app(
    browser: Any, app_server: TestServer, gateway: TestServer, page_name: str, errors: list[str]
) -> Page:
    page = await new_page(browser, errors)
    await page.goto(f"{base_url(app_server)}/pages/{page_name}.html?gateway={base_url(gateway)}")
    await page.click("#start")
    return page


async def wait_result(page: Page, condition: str, what: str) -> dict[str, Any]:
    """Wait until ``condition`` (JS over ``r``, the page's ``window.result``) holds or it failed."""
    predicate = f"() => {{ const r = window.result; return r && (r.error || ({condition})) && r; }}"
    try:
        result: dict[str, Any] = await wait_for_js(page, predicate, what=what)
    except AssertionError as exc:
        reported = await page.evaluate("window.result")
        raise AssertionError(f"{exc}; the page reported {reported}") from None
    assert result["error"] is None, result
    return result


async def test_ga_fetch_flow(
    launch: Launcher,
    voices: Voices,
    app_server: TestServer,
    gateway_for_app: TestServer,
) -> None:
    """OpenAI's WebRTC guide, verbatim but for the URL: 201, Location, events, audio back."""
    gateway = gateway_for_app
    browser = await launch(voices.speech)
    errors: list[str] = []
    page = await open_app(browser, app_server, gateway, "ga", errors)
    result = await wait_result(
        page, "r.events.includes('output_audio_buffer.started')", "the answer to start playing"
    )
    assert result["status"] == 201
    assert result["contentType"].startswith("application/sdp")
    call_id = result["location"].rsplit("/", 1)[1]
    assert result["location"] == f"/v1/realtime/calls/{call_id}"
    assert state_of(gateway).calls.get(call_id)
    events = result["events"]
    assert events[0] == "session.created"
    assert "session.updated" in events
    played = await wait_inbound_energy(page, "window.pc")
    assert played["energy"] > 0

    call = only_emulator_call(gateway)
    assert call.input_audio.speech_ms > 500
    assert call.received_events[0]["type"] == "session.update"
    result = await wait_result(
        page,
        "r.events.includes('conversation.item.input_audio_transcription.completed') && "
        "r.events.includes('response.done')",
        "the transcription and the end of the response",
    )

    # The guide's code never hangs up: closing the peer connection must end the call.
    await page.evaluate("window.pc.close()")
    await wait_until(lambda: len(state_of(gateway).calls) == 0, "the gateway to notice")
    await wait_until(lambda: call.ended.is_set(), "the upstream call to end")
    assert errors == []


async def test_beta_flow(
    launch: Launcher,
    voices: Voices,
    app_server: TestServer,
    gateway_for_app: TestServer,
) -> None:
    """``/v1/realtime/sessions`` + ``/v1/realtime?model=``: beta event names, beta session."""
    gateway = gateway_for_app
    browser = await launch(voices.speech)
    errors: list[str] = []
    page = await open_app(browser, app_server, gateway, "beta", errors)
    result = await wait_result(
        page,
        "r.events.includes('response.audio_transcript.done') && "
        "r.events.includes('conversation.item.input_audio_transcription.completed') && "
        "r.events.includes('response.done')",
        "a beta-shaped answer",
    )
    assert result["status"] == 201
    events = result["events"]
    assert {"session.created", "session.updated", "conversation.item.created"} <= set(events)
    ga_only = {
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.output_audio.done",
        "conversation.item.added",
        "conversation.item.done",
    }
    assert not ga_only & set(events), ga_only & set(events)
    await wait_inbound_energy(page, "window.pc")

    call = only_emulator_call(gateway)
    assert call.input_audio.speech_ms > 500
    # The beta request's model and the beta session.update both reached upstream as GA.
    assert call.session["audio"]["input"]["transcription"]["model"] == "whisper-1"
    await page.evaluate("window.pc.close()")
    await wait_until(lambda: len(state_of(gateway).calls) == 0, "the gateway to notice")
    assert errors == []


async def test_openai_agents_sdk(
    launch: Launcher,
    voices: Voices,
    sdk_bundle: Path,
    app_server: TestServer,
    gateway_for_app: TestServer,
) -> None:
    """``@openai/agents-realtime``'s WebRTC transport with ``baseUrl`` set to the gateway."""
    gateway = gateway_for_app
    browser = await launch(voices.speech)
    errors: list[str] = []
    page = await open_app(browser, app_server, gateway, "sdk", errors)
    result = await wait_result(page, "r.connected", "session.connect() to resolve")
    assert result["apiKeyPrefix"] == "ek_"
    # connect() waits up to 5 s for session.updated and only warns if it never comes.
    assert result["connectMs"] < 4000, result
    assert not [w for w in result["warnings"] if "session.updated" in w], result["warnings"]
    assert result["callId"] and state_of(gateway).calls.get(result["callId"])

    call = only_emulator_call(gateway)
    first = call.received_events[0]
    assert first["type"] == "session.update"
    # What the SDK asked for took effect upstream (instructions and model may be locked by the
    # gateway's policy to what the app's backend minted; the rest of the update goes through).
    assert call.session["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    assert call.session["audio"]["input"]["transcription"]["model"] == "gpt-4o-mini-transcribe"

    result = await wait_result(
        page,
        "r.history.some((m) => m.role === 'assistant' && m.text) && "
        "r.history.some((m) => m.role === 'user' && m.status === 'completed') && "
        "r.transcribed.length > 0",
        "the SDK's history to hold both sides of a turn",
    )
    assert result["sdkErrors"] == [], result["sdkErrors"]
    assert call.input_audio.speech_ms > 500
    await wait_inbound_energy(page, "window.transport.connectionState.peerConnection")

    await page.click("#stop")
    await wait_until(lambda: len(state_of(gateway).calls) == 0, "the gateway to end the call")
    assert errors == []


async def test_openai_agents_sdk_history_has_the_user_transcript(
    launch: Launcher,
    voices: Voices,
    sdk_bundle: Path,
    app_server: TestServer,
    gateway_for_app: TestServer,
) -> None:
    """The SDK re-reads each transcribed user item (``conversation.item.retrieve``); OpenAI's
    answer carries the transcript, so the app's history shows what the user said."""
    browser = await launch(voices.speech)
    page = await open_app(browser, app_server, gateway_for_app, "sdk", [])
    result = await wait_result(
        page,
        "r.transcribed.length > 0 && r.events.includes('conversation.item.retrieved')",
        "a transcribed turn, re-read by the SDK",
    )
    # The retrieved item updates the history in the same task that recorded the event.
    users = [m for m in result["history"] if m["role"] == "user"]
    assert users and users[0]["text"] == result["transcribed"][0], result["history"]


async def test_openai_agents_sdk_across_upstream_sessions(
    launch: Launcher,
    voices: Voices,
    sdk_bundle: Path,
    app_server: TestServer,
    make_gateway: GatewayFactory,
    target: Target,
) -> None:
    """Continuity under OpenAI's own SDK: its upstream sessions expire every few seconds, and
    the app sees one session, no error, and a history that goes on."""
    gateway = await make_gateway(
        cors_origins=(base_url(app_server),), continuity=True, continuity_lead=0.0
    )
    target.url = base_url(gateway)
    emulator = state_of(gateway).emulator
    assert emulator is not None
    emulator.settings = dataclasses.replace(emulator.settings, max_call_seconds=5.0)
    browser = await launch(voices.speech)
    errors: list[str] = []
    page = await open_app(browser, app_server, gateway, "sdk", errors)
    result = await wait_result(page, "r.connected", "session.connect() to resolve")
    call = state_of(gateway).calls.get(result["callId"])
    assert call is not None and call.continuity is not None
    await wait_until(
        lambda: call.continuity is not None and call.continuity.swaps >= 2,
        "two upstream sessions to be replaced",
        timeout=20,
    )
    answered = await page.evaluate(
        "window.result.history.filter((m) => m.role === 'assistant' && m.text).length"
    )
    result = await wait_result(
        page,
        f"r.history.filter((m) => m.role === 'assistant' && m.text).length > {answered}",
        "an answer from a later upstream session",
    )
    assert result["sdkErrors"] == [], result["sdkErrors"]
    assert result["events"].count("session.created") == 1
    assert "error" not in result["events"]
    assert result["phase"] == "connected"
    assert len(emulator_calls(gateway)) >= 3
    await page.click("#stop")
    await wait_until(lambda: len(state_of(gateway).calls) == 0, "the gateway to end the call")
    assert errors == []
