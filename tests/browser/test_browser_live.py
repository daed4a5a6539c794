"""The demo page talking through GPT-Live in real Chromium: choose GPT-Live, connect, speak,
read both sides' turns from Live's transcript deltas, mute, and end the session gracefully."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, expect

from gateway.server.demo import DEMO_LIVE_MODEL
from tests.browser.conftest import (
    GATEWAY_KEY,
    Launcher,
    Voices,
    base_url,
    new_page,
    only_emulator_call,
    state_of,
)
from tests.browser.support import screenshot, wait_inbound_energy, wait_until
from tests.browser.test_browser_demo import DESKTOP, PC, PHONE, connect, csp_violations, open_demo

# Every text the speaking indicator shows, in order, recorded before any page script runs.
RECORD_LABELS = """
window.__labels = [];
document.addEventListener("DOMContentLoaded", () => {
  const label = document.getElementById("speaking-label");
  const note = () => {
    if (window.__labels.at(-1) !== label.textContent) window.__labels.push(label.textContent);
  };
  note();
  new MutationObserver(note).observe(label, {childList: true, characterData: true, subtree: true});
});
"""
USER_TURN = "seconds of speech"
ANSWER = "You spoke for"


async def listed_calls(gateway: TestServer) -> list[dict[str, Any]]:
    """The gateway's own call listing, as the app's backend reads it with the gateway key."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            base_url(gateway) + "/v1/realtime/calls",
            headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        data: list[dict[str, Any]] = (await response.json())["data"]
        return data


async def choose_live(page: Page) -> None:
    live = page.get_by_role("radio", name="GPT-Live")
    await live.check()
    await expect(live).to_be_checked()
    # Live has no input buffer to commit: push to talk is off, and the page says why.
    await expect(page.get_by_label("Push to talk")).to_be_disabled()
    await expect(page.locator("#ptt-off")).to_be_visible()
    await expect(page.locator("#ptt-off")).to_contain_text("no input buffer to commit")


async def test_talk_through_gpt_live(launch: Launcher, voices: Voices, gateway: TestServer) -> None:
    """Speech reaches the emulator's Live session; both sides' turns, the speaking indicator,
    usage and the event log fill in; mute and Disconnect use Live's own commands."""
    browser = await launch(voices.speech)
    errors: list[str] = []
    page = await new_page(browser, errors, **DESKTOP)
    await page.add_init_script(RECORD_LABELS)
    await open_demo(page, gateway)
    await expect(page.get_by_role("radio", name="Realtime")).to_be_checked()  # the default
    await choose_live(page)
    await expect(page.get_by_label("Filter events by type")).to_have_attribute(
        "placeholder", "Filter, e.g. session."
    )

    await connect(page)
    await expect(page.locator("#state")).to_have_text("Connected")
    await expect(page.get_by_role("radio", name="Realtime")).to_be_disabled()
    call = only_emulator_call(gateway)
    assert call.request_kind == "live"
    assert call.initial_session is not None and call.initial_session["model"] == DEMO_LIVE_MODEL
    (relayed,) = state_of(gateway).calls
    session_id = relayed.call_id
    assert session_id.startswith("live_") and relayed.dialect == "live"
    # The page sends nothing of its own on connecting: the session was set by the gateway.
    await expect(page.locator("#events > li.server").last).to_have_attribute(
        "data-type", "session.started"
    )
    assert await page.locator("#events > li.client").count() == 0

    # A user turn, then the assistant's, from Live's transcript deltas.
    user = page.locator(".line.user .text").first
    answer = page.locator(".line.assistant .text").first
    await expect(user).to_contain_text(USER_TURN)
    await expect(answer).to_contain_text(ANSWER)
    assert await page.locator(".line.user").first.evaluate(
        "(el) => el.compareDocumentPosition(document.querySelector('.line.assistant')) & 4"
    ), "the user's turn comes before the answer it caused"
    heard = call.input_audio
    assert heard.speech_ms > 500, heard
    played = await wait_inbound_energy(page, PC)
    assert played["packets"] > 0 and played["energy"] > 0, played
    # No speech or playback events in Live: the indicator follows the transcripts' timing.
    await expect(page.locator("#speaking-label")).to_have_text("Ready — say something")
    labels = await page.evaluate("window.__labels")
    assert {"Listening to you", "Assistant speaking"} <= set(labels), labels
    assert labels.index("Listening to you") < labels.index("Assistant speaking"), labels

    # Statistics: the session's id, and Live's cumulative usage in seconds.
    await expect(page.locator('[data-stat="state"]')).to_have_text("connected")
    await expect(page.locator('[data-stat="call"]')).to_have_text(session_id)
    await expect(page.locator('[data-stat="usage"]')).to_have_text(re.compile(r"^\d+\.\d s$"))

    # The event log shows Live's events like Realtime's: deltas hidden until asked for.
    deltas = page.locator('#events > li[data-type="session.output_transcript.delta"]')
    assert await deltas.count() > 0
    await expect(deltas.first).to_be_hidden()
    await page.get_by_label("Hide deltas").uncheck()
    await expect(deltas.first).to_be_visible()
    await page.get_by_label("Filter events by type").fill("input_transcript")
    visible = await page.locator("#events > li").evaluate_all(
        "(items) => items.filter((li) => !li.hidden).map((li) => li.dataset.type)"
    )
    assert visible and set(visible) == {"session.input_transcript.delta"}, visible
    await page.get_by_label("Filter events by type").fill("")
    await screenshot(page, "demo-desktop-live-conversation")

    # Mute: the track goes silent and the session is told, in Live's words.
    await page.click("#mute")
    await expect(page.locator("#mute")).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate("window.realtimeDemo.call.track.enabled") is False
    await call.wait_for_event("session.input_audio.mute", timeout=10)
    await expect(
        page.locator('#events > li.server[data-type="session.input_audio.muted"]')
    ).to_have_count(1)
    await page.click("#mute")
    assert await page.evaluate("window.realtimeDemo.call.track.enabled") is True
    await call.wait_for_event("session.input_audio.unmute", timeout=10)
    await expect(
        page.locator('#events > li.server[data-type="session.input_audio.unmuted"]')
    ).to_have_count(1)

    # Disconnect: session.close, session.closed (logged, with the final usage), and the
    # session is gone on the gateway and upstream.
    await page.click("#disconnect")
    await expect(page.locator("body")).to_have_attribute("data-state", "ended")
    await call.wait_for_event("session.close", timeout=10)
    closed = page.locator('#events > li.server[data-type="session.closed"]')
    await expect(closed).to_have_count(1)
    await closed.locator("summary").click()
    closed_event = json.loads(await closed.locator("pre").inner_text())
    assert closed_event["reason"] == "close_requested", closed_event
    assert closed_event["session"]["id"] == session_id
    seconds = closed_event["usage"]["seconds"]
    await expect(page.locator('[data-stat="usage"]')).to_have_text(f"{seconds:.1f} s")
    await wait_until(lambda: call.ended.is_set(), "the upstream session to end")
    await wait_until(lambda: len(state_of(gateway).calls) == 0, "the gateway to end the session")
    assert await listed_calls(gateway) == []
    await expect(page.locator("#alert")).to_be_hidden()
    await expect(page.get_by_role("radio", name="GPT-Live")).to_be_enabled()

    # The choice is remembered, like the microphone.
    await page.reload()
    await expect(page.get_by_role("radio", name="GPT-Live")).to_be_checked()
    await expect(page.get_by_label("Push to talk")).to_be_disabled()
    assert await csp_violations(page) == []
    assert errors == []


@pytest.mark.parametrize(("width", "height"), [(390, 844), (320, 640)])
async def test_the_api_picker_on_a_phone(
    width: int, height: int, launch: Launcher, voices: Voices, gateway: TestServer
) -> None:
    """On a phone the picker is in view, big enough to tap, works by touch and keyboard, and
    the page still does not scroll sideways; a GPT-Live call then works as on a desktop."""
    browser = await launch(voices.speech)
    errors: list[str] = []
    page = await new_page(
        browser, errors, **{**PHONE, "viewport": {"width": width, "height": height}}
    )
    await open_demo(page, gateway)
    live = page.get_by_role("radio", name="GPT-Live")
    realtime = page.get_by_role("radio", name="Realtime")
    await expect(page.get_by_role("group", name="API")).to_be_in_viewport()
    for option in (live, realtime):
        box = await option.bounding_box()
        assert box is not None and box["height"] >= 36 and box["width"] >= 100, box
        assert 0 <= box["x"] and box["x"] + box["width"] <= width, box
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")

    await live.tap()
    await expect(live).to_be_checked()
    await expect(page.locator("#ptt-off")).to_be_visible()
    await live.press("ArrowLeft")  # a radio group: the arrows move the choice
    await expect(realtime).to_be_checked()
    await expect(page.get_by_label("Push to talk")).to_be_enabled()
    await live.tap()
    await screenshot(page, f"demo-phone-{width}x{height}-live-idle")

    await connect(page)
    await expect(page.locator(".line.assistant .text").first).to_contain_text(ANSWER)
    await expect(page.locator(".line.user .text").first).to_contain_text(USER_TURN)
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    await screenshot(page, f"demo-phone-{width}x{height}-live-conversation")
    await page.click("#disconnect")
    await expect(page.locator("body")).to_have_attribute("data-state", "ended")
    await wait_until(lambda: len(state_of(gateway).calls) == 0, "the gateway to end the session")
    assert await csp_violations(page) == []
    assert errors == []
