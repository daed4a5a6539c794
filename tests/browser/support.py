"""Helpers for the real-browser tests: Chromium's flags, bounded waits, audio stats, artifacts."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))

# Playwright's own timeouts (ms): generous for a loaded 2-core machine, but bounded.
TIMEOUT_MS = 30_000

# ../../shared/environment.md: what works for headless Debian Chromium on these machines.
BASE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The answer is played by an <audio autoplay>; no user gesture may be needed for that.
    "--autoplay-policy=no-user-gesture-required",
]
# Without this flag getUserMedia is refused (that is how the "microphone denied" test works).
GRANT_MICROPHONE = "--use-fake-ui-for-media-stream"
FAKE_MICROPHONE = "--use-fake-device-for-media-stream"


def chromium_args(audio: Path | None, *, grant_microphone: bool = True) -> list[str]:
    args = [*BASE_ARGS, FAKE_MICROPHONE]
    if grant_microphone:
        args.append(GRANT_MICROPHONE)
    if audio is not None:
        # No %noloop: the speech repeats, so it reaches the upstream whenever the call is up.
        args.append(f"--use-file-for-fake-audio-capture={audio}")
    return args


def require(available: bool, reason: str) -> None:
    """Skip when a tool is missing on a developer machine; under CI that is a failure."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run; see scripts/install-system)")
    pytest.skip(reason)


def require_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    require(not missing, f"missing tools: {', '.join(missing)} (scripts/install-system)")


async def wait_until(
    predicate: Callable[[], bool],
    what: str,
    timeout: float = 30.0,
    interval: float = 0.05,
) -> None:
    """Poll an in-process condition (the gateway's or the emulator's state), bounded."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


# Inbound audio as Chromium measured it: energy above zero means the answer was decoded for
# playout, not merely that packets arrived.
INBOUND_AUDIO_JS = """
async (pc) => {
  if (!pc) return null;
  const report = await pc.getStats();
  let out = null;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      out = {packets: s.packetsReceived, energy: s.totalAudioEnergy ?? 0,
             samples: s.totalSamplesReceived ?? 0};
    }
  });
  return out;
}
"""


async def wait_for_js(
    page: Page, function: str, arg: Any = None, what: str = "", timeout: float = 30.0
) -> Any:
    """Poll ``function(arg)`` in the page until it returns something truthy; return that.

    ``page.wait_for_function`` evaluates its predicate with ``eval`` inside the page, which the
    demo page's CSP (no 'unsafe-eval') forbids; ``page.evaluate`` is not subject to it.
    """
    try:
        async with asyncio.timeout(timeout):
            while not (value := await page.evaluate(function, arg)):
                await asyncio.sleep(0.25)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what or function}") from None
    return value


async def wait_inbound_energy(page: Page, pc_expression: str, minimum: float = 1e-4) -> Any:
    """Wait until the page's peer connection has played back audio with energy."""
    return await wait_for_js(
        page,
        f"""async (minimum) => {{
          const stats = await ({INBOUND_AUDIO_JS})({pc_expression});
          return stats && stats.energy > minimum ? stats : null;
        }}""",
        minimum,
        what="inbound audio energy above zero",
    )


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
