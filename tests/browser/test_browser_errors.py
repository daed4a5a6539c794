"""Each way a call can fail gets its own clear message on the demo page."""

from __future__ import annotations

import json

from aiohttp.test_utils import TestServer
from playwright.async_api import Page, Route, expect

from gateway.call.outcomes import EndReason
from tests.browser.conftest import Launcher, Voices, base_url, new_page, state_of
from tests.browser.support import screenshot, wait_until


async def expect_alert(page: Page, title: str, text: str) -> None:
    alert = page.locator("#alert")
    await expect(alert).to_be_visible()
    await expect(page.locator("#alert-title")).to_have_text(title)
    await expect(page.locator("#alert-text")).to_contain_text(text)


async def test_microphone_denied(launch: Launcher, gateway: TestServer) -> None:
    """Without the permission (no fake-UI flag) getUserMedia is refused for real."""
    browser = await launch(None, grant_microphone=False)
    page = await new_page(browser)
    await page.goto(base_url(gateway) + "/")
    await page.click("#connect")
    await expect_alert(page, "Microphone blocked", "denied access to the microphone")
    await expect(page.locator("body")).to_have_attribute("data-state", "error")
    await expect(page.locator("#connect")).to_be_enabled()
    assert len(state_of(gateway).calls) == 0
    await screenshot(page, "demo-desktop-error-microphone")


async def test_gateway_unreachable(launch: Launcher, voices: Voices, gateway: TestServer) -> None:
    """The gateway went away after the page loaded: the fetch fails, and the page says so."""
    browser = await launch(voices.speech)
    page = await new_page(browser)
    url = base_url(gateway)
    await page.goto(url + "/")
    await gateway.close()
    await page.click("#connect")
    await expect_alert(page, "Gateway unreachable", f"Could not reach the gateway at {url}")


async def test_token_refused(launch: Launcher, voices: Voices, gateway: TestServer) -> None:
    """A client secret the gateway does not know (expired, used, forged) is a 401 from /calls."""
    browser = await launch(voices.speech)
    page = await new_page(browser)

    async def stale_token(route: Route) -> None:
        await route.fulfill(json={"value": "ek_not-a-token-this-gateway-minted", "expires_at": 0})

    await page.route("**/demo/token", stale_token)
    await page.goto(base_url(gateway) + "/")
    await page.click("#connect")
    await expect_alert(page, "Token refused", "press Connect to get a fresh one")
    assert len(state_of(gateway).calls) == 0

    # The next attempt gets a real token and connects.
    await page.unroute("**/demo/token")
    await page.click("#connect")
    await expect(page.locator("body")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#alert")).to_be_hidden()


async def test_upstream_refuses_the_call(
    launch: Launcher, voices: Voices, gateway: TestServer
) -> None:
    """OpenAI's refusal (here 429 insufficient_quota) reaches the page as a readable message."""
    emulator = state_of(gateway).emulator
    assert emulator is not None
    emulator.reject_next_call(
        429,
        {
            "message": "You exceeded your current quota, please check your plan.",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
            "param": None,
        },
    )
    browser = await launch(voices.speech)
    page = await new_page(browser)
    await page.goto(base_url(gateway) + "/")
    await page.click("#connect")
    await expect_alert(page, "Upstream rate limit", "You exceeded your current quota")
    await screenshot(page, "demo-desktop-error-upstream-refused")


async def test_upstream_error_event(launch: Launcher, voices: Voices, gateway: TestServer) -> None:
    """An ``error`` event on the data channel is shown, logged, and the call goes on."""
    browser = await launch(voices.speech)
    page = await new_page(browser)
    await page.goto(base_url(gateway) + "/")
    await page.click("#connect")
    await expect(page.locator("body")).to_have_attribute("data-state", "connected")
    sent = await page.evaluate(
        "window.realtimeDemo.send({type: 'conversation.item.retrieve', item_id: 'item_missing'})"
    )
    assert sent is True
    await expect_alert(page, "Upstream error", "item_missing")
    logged = page.locator('#events > li.is-error[data-type="error"]')
    await expect(logged).to_have_count(1)
    await logged.locator("summary").click()
    assert json.loads(await logged.locator("pre").inner_text())["error"]["message"]
    await expect(page.locator("body")).to_have_attribute("data-state", "connected")
    await wait_until(lambda: len(state_of(gateway).calls) == 1, "the call to stay up")


async def test_call_ended_by_the_gateway(
    launch: Launcher, voices: Voices, gateway: TestServer
) -> None:
    """The gateway shutting down says why before it closes; the page shows it and resets."""
    browser = await launch(voices.speech)
    page = await new_page(browser)
    await page.goto(base_url(gateway) + "/")
    await page.click("#connect")
    await expect(page.locator("body")).to_have_attribute("data-state", "connected")
    await state_of(gateway).calls.close_all(EndReason.SHUTDOWN)
    await expect_alert(page, "Call ended", "The gateway is shutting down")
    await expect(page.locator("body")).to_have_attribute("data-state", "ended")
    await expect(page.locator("#connect")).to_be_enabled()
