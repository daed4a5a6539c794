"""The demo page's layout in real Chromium, during a real call: phones first, then a desktop.

On a phone the event log must stay usable: the filter shows its whole placeholder and can be
typed into, the "Hide deltas" switch stays inside its card, every event name can be read to
its end (``…transcription.delta`` and ``…transcription.completed`` must not look alike), and
nothing makes the page scroll sideways. On a desktop the log keeps its one-line rows.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, expect

from tests.browser.conftest import Launcher, Voices, new_page
from tests.browser.support import screenshot
from tests.browser.test_browser_demo import connect, csp_violations, open_demo

# Long names every spoken turn produces, one a delta (hidden unless "Hide deltas" is off).
TRANSCRIPTION_DONE = "conversation.item.input_audio_transcription.completed"
ANSWER_DELTA = "response.output_audio_transcript.delta"

PHONES = [(390, 844), (360, 740), (320, 640)]

# Where things are (CSS pixels), and whether text is cut off.
LAYOUT = """() => {
  const rect = (el) => {
    const r = el.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width};
  };
  const px = (el, name) => parseFloat(getComputedStyle(el)[name]) || 0;
  const card = document.querySelector(".events-card");
  const cardBox = rect(card);
  const filter = document.getElementById("event-filter");
  // The placeholder as text: an input scrolls (scrollWidth > clientWidth) when its text is cut.
  const typed = filter.value;
  filter.value = filter.placeholder;
  const placeholderCut = filter.scrollWidth > filter.clientWidth;
  filter.value = typed;
  const list = document.getElementById("events");
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    content: {
      left: cardBox.left + px(card, "borderLeftWidth") + px(card, "paddingLeft"),
      right: cardBox.right - px(card, "borderRightWidth") - px(card, "paddingRight"),
    },
    filter: {...rect(filter), placeholderCut},
    check: rect(document.querySelector(".event-tools .check")),
    list: rect(list),
    names: [...list.querySelectorAll(":scope > li:not([hidden]) .type")].map((el) => ({
      type: el.closest("li").dataset.type,
      text: el.textContent,
      clipped: el.scrollWidth > el.clientWidth + 0.5,
      height: el.getBoundingClientRect().height,
      lineHeight: parseFloat(getComputedStyle(el).lineHeight),
      ...rect(el),
    })),
  };
}"""


async def call_with_events(
    launch: Launcher, voices: Voices, gateway: TestServer, errors: list[str], **context: Any
) -> Page:
    """The demo page in a call that has had one whole turn, deltas shown in the log."""
    browser = await launch(voices.speech)
    page = await new_page(browser, errors, **context)
    await open_demo(page, gateway)
    await connect(page)
    await expect(page.locator(".line.assistant .text").first).to_contain_text("You spoke for")
    await page.get_by_label("Hide deltas").uncheck()
    await expect(page.locator(f'#events > li[data-type="{TRANSCRIPTION_DONE}"]')).to_have_count(1)
    await expect(page.locator(f'#events > li[data-type="{ANSWER_DELTA}"]').first).to_be_visible()
    return page


def inside(box: dict[str, float], outer: dict[str, float], slack: float = 0.5) -> bool:
    return box["left"] >= outer["left"] - slack and box["right"] <= outer["right"] + slack


def middle(box: dict[str, float]) -> float:
    return (box["top"] + box["bottom"]) / 2


@pytest.mark.parametrize(("width", "height"), PHONES, ids=[f"{w}x{h}" for w, h in PHONES])
async def test_event_log_fits_a_phone(
    width: int, height: int, launch: Launcher, voices: Voices, gateway: TestServer
) -> None:
    """Everything in the event log is inside its card, readable to the end, and works by touch."""
    errors: list[str] = []
    page = await call_with_events(
        launch,
        voices,
        gateway,
        errors,
        viewport={"width": width, "height": height},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    await page.locator(".events-card").scroll_into_view_if_needed()
    await screenshot(page, f"demo-phone-{width}x{height}-events")
    layout = await page.evaluate(LAYOUT)

    assert layout["scrollWidth"] <= layout["innerWidth"], "the page scrolls sideways"
    screen = {"left": 0, "right": layout["innerWidth"]}
    content = layout["content"]
    filter_box, check = layout["filter"], layout["check"]
    assert inside(filter_box, content) and inside(filter_box, screen), layout
    assert not filter_box["placeholderCut"], f"the filter cuts its placeholder off: {filter_box}"
    assert inside(check, content), f"'Hide deltas' sticks out of its card: {check} {content}"

    names = layout["names"]
    assert {TRANSCRIPTION_DONE, ANSWER_DELTA} <= {n["type"] for n in names}
    for name in names:
        assert name["text"] == name["type"], name
        assert not name["clipped"], f"{name['type']} is cut off: {name}"
        assert inside(name, layout["list"]), f"{name['type']} sticks out of the list: {name}"

    # The filter works by touch and keyboard, found by its label.
    search = page.get_by_label("Filter events by type")
    await search.tap()
    await search.fill("transcription.completed")
    shown = await page.locator("#events > li").evaluate_all(
        "(items) => items.filter((li) => !li.hidden).map((li) => li.dataset.type)"
    )
    assert shown == [TRANSCRIPTION_DONE], shown
    await expect(page.locator("#events > li:not([hidden]) .type")).to_have_text(TRANSCRIPTION_DONE)
    await search.fill("")
    await page.get_by_label("Hide deltas").check()
    await expect(page.locator(f'#events > li[data-type="{ANSWER_DELTA}"]').first).to_be_hidden()
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    assert await csp_violations(page) == []
    assert errors == []


async def test_event_log_on_a_desktop(
    launch: Launcher, voices: Voices, gateway: TestServer
) -> None:
    """Wide enough for everything: the filter and "Hide deltas" share a row, names one line."""
    errors: list[str] = []
    page = await call_with_events(
        launch, voices, gateway, errors, viewport={"width": 1280, "height": 800}
    )
    layout = await page.evaluate(LAYOUT)
    assert layout["scrollWidth"] <= layout["innerWidth"], "the page scrolls sideways"
    filter_box, check = layout["filter"], layout["check"]
    assert abs(middle(filter_box) - middle(check)) < 2, (
        f"the filter and 'Hide deltas' are not on one row: {filter_box} {check}"
    )
    content = layout["content"]
    assert filter_box["width"] > (content["right"] - content["left"]) * 0.6, layout
    assert not filter_box["placeholderCut"], filter_box
    for name in layout["names"]:
        assert not name["clipped"], name
        assert name["height"] < 1.5 * name["lineHeight"], f"{name['type']} wraps: {name}"
    assert await csp_violations(page) == []
    assert errors == []
