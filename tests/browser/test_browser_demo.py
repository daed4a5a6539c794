"""The demo page at ``/`` in real Chromium: talk, hear the answer, read the transcript."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, Route, expect

from gateway.call.outcomes import EndReason
from tests.browser.conftest import (
    Launcher,
    Voices,
    base_url,
    emulator_calls,
    new_page,
    only_emulator_call,
    state_of,
)
from tests.browser.support import screenshot, wait_for_js, wait_inbound_energy, wait_until

# The policy the gateway is meant to send with the page: no inline script or style anywhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Records CSP violations before any page script runs, so none can go unnoticed.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`);
});
"""
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 860}}
PC = "window.realtimeDemo.call?.pc"


async def open_demo(page: Page, gateway: TestServer) -> None:
    """Load ``/`` with the strict CSP added, as the gateway will serve it."""

    async def with_csp(route: Route) -> None:
        response = await route.fetch()
        await route.fulfill(
            response=response, headers={**response.headers, "content-security-policy": CSP}
        )

    await page.route(base_url(gateway) + "/", with_csp)
    await page.add_init_script(RECORD_CSP_VIOLATIONS)
    await page.goto(base_url(gateway) + "/")


async def csp_violations(page: Page) -> Any:
    return await page.evaluate("window.__cspViolations")


async def connect(page: Page) -> None:
    await page.click("#connect")
    body = page.locator("body")
    await expect(body).to_have_attribute("data-state", re.compile("connected|error"))
    if await body.get_attribute("data-state") == "error":
        raise AssertionError(f"the page failed to connect: {await page.inner_text('#alert')}")


@pytest.mark.parametrize("device", ["desktop", "phone"])
async def test_talk_and_hear_the_answer(
    device: str, launch: Launcher, voices: Voices, gateway: TestServer
) -> None:
    """Speech reaches the upstream, the answer plays, the transcript and stats fill in."""
    browser = await launch(voices.speech)
    errors: list[str] = []
    page = await new_page(browser, errors, **(PHONE if device == "phone" else DESKTOP))
    await open_demo(page, gateway)
    if device == "desktop":
        await screenshot(page, "demo-desktop-idle")

    await connect(page)
    # The assistant-speaking indicator lights up while the emulator's answer plays.
    await expect(page.locator("#speaking")).to_have_attribute("data-speaking", "true")
    await expect(page.locator("#speaking-label")).to_have_text("Assistant speaking")
    await expect(page.locator(".line.assistant .text").first).to_contain_text("You spoke for")
    await screenshot(page, f"demo-{device}-speaking")

    call = only_emulator_call(gateway)
    heard = call.input_audio
    assert heard.speech_ms > 500, heard
    assert heard.peak_rms > 0.05, heard
    played = await wait_inbound_energy(page, PC)
    assert played["packets"] > 0 and played["energy"] > 0, played

    # The user's side: a placeholder at speech start, then the transcription.
    user = page.locator(".line.user .text").first
    await expect(user).to_contain_text("seconds of speech")
    assert await page.locator(".line.user").first.evaluate(
        "(el) => el.compareDocumentPosition(document.querySelector('.line.assistant')) & 4"
    ), "the user's line comes before the answer it caused"
    await expect(page.locator("#speaking")).to_have_attribute("data-speaking", "false")
    await wait_for_js(
        page,
        "() => Number(document.querySelector('.meter').getAttribute('aria-valuenow')) > 0",
        what="the microphone level meter to move",
    )

    # Statistics come from getStats(); on loopback nothing is lost.
    await expect(page.locator('[data-stat="state"]')).to_have_text("connected")
    await expect(page.locator('[data-stat="received"]')).to_contain_text("packets")
    await expect(page.locator('[data-stat="rtt"]')).to_contain_text("ms")
    await expect(page.locator('[data-stat="lost"]')).to_have_text("0")
    await expect(page.locator('[data-stat="jitter"]')).to_contain_text("ms")
    await expect(page.locator('[data-stat="call"]')).to_have_text(
        next(iter(state_of(gateway).calls)).call_id
    )
    await screenshot(page, f"demo-{device}-conversation")

    await page.click("#disconnect")
    await expect(page.locator("body")).to_have_attribute("data-state", "ended")
    await wait_until(lambda: len(state_of(gateway).calls) == 0, "the gateway to end the call")
    await wait_until(lambda: call.ended.is_set(), "the upstream call to end")
    assert call.hung_up, "disconnecting hangs up the upstream call"
    assert await csp_violations(page) == []
    assert errors == []


async def test_event_log_filters_and_expands(
    launch: Launcher, voices: Voices, gateway: TestServer
) -> None:
    """Both directions are logged; the filter narrows by type; an entry opens to its JSON."""
    browser = await launch(voices.speech)
    page = await new_page(browser, **DESKTOP)
    await open_demo(page, gateway)
    await connect(page)
    events = page.locator("#events > li")
    await expect(page.locator('#events > li.client[data-type="session.update"]')).to_have_count(1)
    await expect(
        page.locator('#events > li.server[data-type="response.done"]').first
    ).to_be_attached()

    # Mute disables the track that feeds the call (push-to-talk uses the same switch).
    await page.click("#mute")
    await expect(page.locator("#mute")).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate("window.realtimeDemo.call.track.enabled") is False
    await page.click("#mute")
    assert await page.evaluate("window.realtimeDemo.call.track.enabled") is True

    # Deltas are hidden by default and shown on demand.
    deltas = page.locator('#events > li[data-type$=".delta"]')
    assert await deltas.count() > 0
    await expect(deltas.first).to_be_hidden()
    await page.uncheck("#hide-deltas")
    await expect(deltas.first).to_be_visible()

    await page.fill("#event-filter", "session.")
    visible = await events.evaluate_all(
        "(items) => items.filter((li) => !li.hidden).map((li) => li.dataset.type)"
    )
    assert visible and all("session." in t for t in visible), visible
    assert {"session.created", "session.updated", "session.update"} <= set(visible)

    entry = page.locator('#events > li[data-type="session.updated"]').first
    await entry.locator("summary").click()
    body = json.loads(await entry.locator("pre").inner_text())
    assert body["type"] == "session.updated"
    assert body["session"]["audio"]["input"]["transcription"]["model"]
    await screenshot(page, "demo-desktop-event-log")


async def test_push_to_talk(launch: Launcher, voices: Voices, gateway: TestServer) -> None:
    """Turn detection off; the mic counts only while held; release commits and asks for a reply."""
    browser = await launch(voices.speech)
    page = await new_page(browser, **DESKTOP)
    await open_demo(page, gateway)
    await page.check("#ptt-mode", force=True)
    await expect(page.locator("#ptt")).to_be_visible()
    await connect(page)
    call = only_emulator_call(gateway)
    await wait_until(
        lambda: call.session["audio"]["input"]["turn_detection"] is None,
        "the session to switch turn detection off",
    )
    # While the button is up the track is disabled: the upstream hears silence only.
    await wait_until(lambda: call.input_audio.duration_ms > 1000, "a second of audio")
    assert call.input_audio.speech_ms == 0, call.input_audio

    button = page.locator("#ptt")
    await button.hover()
    await page.mouse.down()
    await expect(button).to_have_text("Release to send")
    await call.wait_for_event("input_audio_buffer.clear", timeout=10)
    await wait_until(lambda: call.input_audio.speech_ms > 800, "speech while the button is held")
    await page.mouse.up()
    await call.wait_for_event("input_audio_buffer.commit", timeout=10)
    await call.wait_for_event("response.create", timeout=10)

    await expect(page.locator(".line.user .text").first).to_contain_text("seconds of speech")
    await expect(page.locator(".line.assistant .text").first).to_contain_text("You spoke for")
    server_types = [e["type"] for e in call.sent_events]
    assert "input_audio_buffer.speech_started" not in server_types
    await screenshot(page, "demo-desktop-push-to-talk")


async def test_interrupted_answer_is_marked(
    launch: Launcher, voices: Voices, gateway: TestServer
) -> None:
    """Talking over the assistant truncates its answer, and the transcript says so."""
    browser = await launch(voices.chatter)
    page = await new_page(browser, **DESKTOP)
    await open_demo(page, gateway)
    await connect(page)
    interrupted = page.locator(".line.assistant.interrupted").first
    await expect(interrupted).to_be_visible()
    await expect(interrupted.locator(".badge")).to_have_text("interrupted")
    call = emulator_calls(gateway)[0]
    cut = {e["type"] for e in call.sent_events}
    assert cut & {"conversation.item.truncated", "output_audio_buffer.cleared"}, cut
    await screenshot(page, "demo-desktop-interrupted")


# Turn detection as the page asks for it, but needing a minute of silence to end a turn: the
# fake microphone's speech starts a turn that is still open (no transcript yet) when the call ends.
ENDLESS_TURN = {
    "type": "session.update",
    "session": {
        "type": "realtime",
        "audio": {
            "input": {
                "transcription": {"model": "gpt-4o-mini-transcribe"},
                "turn_detection": {
                    "type": "server_vad",
                    "create_response": True,
                    "interrupt_response": True,
                    "silence_duration_ms": 60_000,
                },
            }
        },
    },
}
# What rtc.js emits when the media connection fails (ICE), which no loopback test can cause.
CONNECTION_FAILED = """() => window.realtimeDemo.call.dispatchEvent(new CustomEvent("ended", {
  detail: {reason: "failed", error: new Error("The media connection to the gateway failed.")},
}))"""


@pytest.mark.parametrize("ending", ["disconnect", "gateway", "error"])
async def test_call_end_drops_the_pending_user_turn(
    ending: str, launch: Launcher, voices: Voices, gateway: TestServer
) -> None:
    """A `YOU …` line still waiting for its transcript goes when the call ends, however it ends.

    Finished turns stay; the "listening to you" indicator is reset with it.
    """
    browser = await launch(voices.speech)
    errors: list[str] = []
    page = await new_page(browser, errors, **DESKTOP)
    await open_demo(page, gateway)
    await connect(page)
    user_lines = page.locator(".line.user")
    await expect(page.locator(".line.assistant .text").first).to_contain_text("You spoke for")
    await expect(user_lines.first.locator(".text")).to_contain_text("seconds of speech")

    # The next turn starts and cannot end: the user is still speaking when the call ends.
    assert await page.evaluate("(e) => window.realtimeDemo.send(e)", ENDLESS_TURN) is True
    await expect(page.locator('#events > li.server[data-type="session.updated"]')).to_have_count(2)
    pending = page.locator(".line.user.pending")
    await expect(pending.first).to_be_visible()
    await expect(pending.first.locator(".text")).to_have_text("…")
    await expect(page.locator("#speaking")).to_have_attribute("data-listening", "true")

    body = page.locator("body")
    if ending == "disconnect":
        await page.click("#disconnect")
        await expect(body).to_have_attribute("data-state", "ended")
    elif ending == "gateway":
        await state_of(gateway).calls.close_all(EndReason.SHUTDOWN)
        await expect(body).to_have_attribute("data-state", "ended")
        await expect(page.locator("#alert-title")).to_have_text("Call ended")
    else:
        await page.evaluate(CONNECTION_FAILED)
        await expect(body).to_have_attribute("data-state", "error")

    await expect(pending).to_have_count(0)
    texts = await user_lines.locator(".text").all_inner_texts()
    assert texts and all("seconds of speech" in t for t in texts), texts
    await expect(page.locator(".line.streaming")).to_have_count(0)
    await expect(page.locator("#speaking")).to_have_attribute("data-listening", "false")
    await expect(page.locator("#speaking-label")).to_have_text("Not connected")
    await wait_until(lambda: len(state_of(gateway).calls) == 0, "the gateway to end the call")
    assert await csp_violations(page) == []
    # fail() logs the error it shows; nothing else may go wrong.
    assert all(ending == "error" and "media connection" in m for m in errors), errors
