"""An app on an origin outside ``GATEWAY_CORS_ORIGINS`` cannot open calls from the browser.

The allowed case is every test in ``test_browser_dropin.py``: those apps run on their own origin
with exactly that origin allowed, and read ``Location`` across origins.
"""

from __future__ import annotations

from aiohttp.test_utils import TestServer
from playwright.async_api import Request

from tests.browser.conftest import (
    GatewayFactory,
    Launcher,
    Target,
    Voices,
    base_url,
    emulator_calls,
    new_page,
    state_of,
)
from tests.browser.support import wait_for_js


async def test_origin_outside_the_allowlist_is_refused(
    launch: Launcher,
    voices: Voices,
    make_gateway: GatewayFactory,
    app_server: TestServer,
    target: Target,
) -> None:
    """The preflight is refused, so the browser never sends the offer; no call starts."""
    gateway = await make_gateway(cors_origins=("https://app.example.com",))
    target.url = base_url(gateway)
    browser = await launch(voices.speech)
    page = await new_page(browser)
    failed: list[str] = []

    def on_failed(request: Request) -> None:
        failed.append(request.url)

    page.on("requestfailed", on_failed)
    await page.goto(f"{base_url(app_server)}/pages/ga.html?gateway={base_url(gateway)}")
    await page.click("#start")
    result = await wait_for_js(
        page, "() => window.result.error ? window.result : null", what="the call to fail"
    )
    assert result["error"] == "TypeError: Failed to fetch", result
    assert result["status"] is None
    assert failed == [f"{base_url(gateway)}/v1/realtime/calls"]
    # The app's backend still minted its token (server to server: no Origin, no CORS).
    assert await state_of(gateway).stores.secrets.count() == 1
    assert len(state_of(gateway).calls) == 0
    assert emulator_calls(gateway) == []
