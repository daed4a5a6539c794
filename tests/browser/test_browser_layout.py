"""Exploratory (temporary)."""

from __future__ import annotations
import json
from aiohttp.test_utils import TestServer
from playwright.async_api import expect
import pytest
from tests.browser.conftest import Launcher, Voices, new_page
from tests.browser.test_browser_demo import open_demo, connect

MEASURE = """() => {
  const out = {sw: document.documentElement.scrollWidth, iw: innerWidth, bodySW: document.body.scrollWidth};
  const over = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width && (r.right > innerWidth + 0.5 || r.left < -0.5)) over.push(el.tagName + '#' + el.id + '.' + el.className + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
  }
  out.over = over.slice(0, 30);
  const f = document.querySelector('#event-filter').getBoundingClientRect();
  out.filter = [f.left, f.right, f.width];
  const c = document.querySelector('.events-card'); const cs = getComputedStyle(c); const cr = c.getBoundingClientRect();
  out.cardContent = [cr.left + parseFloat(cs.paddingLeft) + 1, cr.right - parseFloat(cs.paddingRight) - 1];
  const k = document.querySelector('.check').getBoundingClientRect(); out.check = [k.left, k.right];
  out.types = [...document.querySelectorAll('.event .type')].map(e => [e.textContent, e.clientWidth, e.scrollWidth]).filter(x => x[2] > x[1]);
  return out;
}"""


@pytest.mark.parametrize("w,h", [(390, 844), (360, 740), (320, 640), (1280, 800)])
async def test_explore(w, h, launch: Launcher, voices: Voices, gateway: TestServer) -> None:
    browser = await launch(voices.speech)
    page = await new_page(
        browser,
        viewport={"width": w, "height": h},
        device_scale_factor=2 if w < 500 else 1,
        is_mobile=w < 500,
        has_touch=w < 500,
    )
    await open_demo(page, gateway)
    await connect(page)
    await expect(page.locator(".line.assistant .text").first).to_contain_text("You spoke for")
    await page.uncheck("#hide-deltas")
    await expect(
        page.locator(
            '#events > li[data-type="conversation.item.input_audio_transcription.completed"]'
        )
    ).to_have_count(1)
    await page.locator(
        '#events > li[data-type="conversation.item.input_audio_transcription.completed"] summary'
    ).click()
    print(w, json.dumps(await page.evaluate(MEASURE), indent=1))
    await page.locator("#events").scroll_into_view_if_needed()
    await page.screenshot(path=f"/tmp/shots/before-{w}.png", full_page=True)
    await page.screenshot(path=f"/tmp/shots/before-{w}-view.png")
