"""Real Chromium, a fake microphone speaking espeak-ng audio, and a real gateway on loopback.

The gateway runs in this process (pytest-aiohttp) in emulator mode, so the tests can read what
the emulator heard and how many calls are live. Apps "on another origin" are a second aiohttp
server (:mod:`tests.browser.app_server`) serving the pages under ``pages/``.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, async_playwright, expect
from pytest_aiohttp import AiohttpServer

from gateway.config import Secret, Settings
from gateway.emulator import EmulatorCall
from gateway.server.app import create_app
from gateway.server.state import STATE, GatewayState
from tests.browser import sdk_bundle
from tests.browser.app_server import make_app
from tests.browser.support import CHROMIUM, TIMEOUT_MS, chromium_args, require, require_tools

GATEWAY_KEY = "gk_test-BROWSER-3c5e7a9b1d"
LOOPBACK = ("127.0.0.1",)
PHRASE = "Hello, what time is it?"

# expect() has its own 5 s default, too short for a loaded machine: use the bounded 30 s.
expect.set_options(timeout=TIMEOUT_MS)


# --- audio for the fake microphone ---------------------------------------------------------


def _render_speech(directory: Path, name: str, *, lead: float, tail: float) -> Path:
    """espeak-ng speech as Chromium wants it (48 kHz mono s16), with silence around it."""
    raw = directory / f"{name}-raw.wav"
    out = directory / f"{name}.wav"
    subprocess.run(["espeak-ng", "-s", "170", "-w", str(raw), PHRASE], check=True, timeout=60)
    subprocess.run(
        [
            "sox",
            str(raw),
            "-r",
            "48000",
            "-c",
            "1",
            "-b",
            "16",
            str(out),
            "pad",
            str(lead),
            str(tail),
        ],
        check=True,
        timeout=60,
    )
    return out


@dataclass(frozen=True)
class Voices:
    speech: Path
    """Speech, then long enough a silence that the emulator's answer plays out in full."""
    chatter: Path
    """Speech with short gaps: the user talks again while the answer plays (barge-in)."""


@pytest.fixture(scope="session", name="voices")
def _voices(tmp_path_factory: pytest.TempPathFactory) -> Voices:
    require_tools("espeak-ng", "sox")
    directory = tmp_path_factory.mktemp("voices")
    return Voices(
        speech=_render_speech(directory, "speech", lead=0.5, tail=3.2),
        chatter=_render_speech(directory, "chatter", lead=0.2, tail=1.0),
    )


# --- the browser ---------------------------------------------------------------------------

Launcher = Callable[..., Awaitable[Browser]]


@pytest.fixture(name="launch")
async def _launch() -> AsyncIterator[Launcher]:
    """``await launch(audio)`` starts Chromium with a fake microphone playing ``audio``."""
    require(CHROMIUM.exists(), f"Chromium not found at {CHROMIUM} (scripts/install-system)")
    playwright = await async_playwright().start()
    browsers: list[Browser] = []

    async def launch(audio: Path | None, *, grant_microphone: bool = True) -> Browser:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=chromium_args(audio, grant_microphone=grant_microphone),
            timeout=TIMEOUT_MS,
        )
        browsers.append(browser)
        return browser

    try:
        yield launch
    finally:
        for browser in browsers:
            await browser.close()
        await playwright.stop()


@dataclass
class PageErrors:
    """Uncaught exceptions and console errors of a page: a page test fails on any."""

    messages: list[str]

    def attach(self, page: Page) -> None:
        page.on("pageerror", lambda exc: self.messages.append(f"pageerror: {exc}"))
        page.on(
            "console",
            lambda msg: (
                self.messages.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error"
                else None
            ),
        )


async def new_page(browser: Browser, errors: list[str] | None = None, **context: Any) -> Page:
    ctx = await browser.new_context(**context)
    ctx.set_default_timeout(TIMEOUT_MS)
    page = await ctx.new_page()
    if errors is not None:
        PageErrors(errors).attach(page)
    return page


# --- the gateway ---------------------------------------------------------------------------

GatewayFactory = Callable[..., Awaitable[TestServer]]


def gateway_settings(**overrides: Any) -> Settings:
    """Emulator mode (no OpenAI key) as `scripts/serve` runs it, with ICE kept on loopback."""
    values: dict[str, Any] = {
        "openai_api_key": None,
        "gateway_api_key": Secret(GATEWAY_KEY),
        "ice_addresses": LOOPBACK,
        "upstream_ice_addresses": LOOPBACK,
        "demo_enabled": True,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(name="make_gateway")
def _make_gateway(aiohttp_server: AiohttpServer) -> GatewayFactory:
    async def make(**overrides: Any) -> TestServer:
        server = await aiohttp_server(create_app(gateway_settings(**overrides)))
        emulator = server.app[STATE].emulator
        if emulator is not None:
            emulator.record_events = True  # the tests read what the page sent
        return server

    return make


@pytest.fixture(name="gateway")
async def _gateway(make_gateway: GatewayFactory) -> TestServer:
    return await make_gateway()


def state_of(server: TestServer) -> GatewayState:
    return server.app[STATE]


def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def emulator_calls(server: TestServer) -> list[EmulatorCall]:
    emulator = state_of(server).emulator
    assert emulator is not None, "the gateway is not in emulator mode"
    return list(emulator.calls.values())


def only_emulator_call(server: TestServer) -> EmulatorCall:
    calls = emulator_calls(server)
    assert len(calls) == 1, f"expected one upstream call, got {len(calls)}"
    return calls[0]


# --- an app on another origin --------------------------------------------------------------

AppFactory = Callable[[], Awaitable[TestServer]]


@dataclass
class Target:
    """Where the app's backend finds the gateway; set once the gateway exists."""

    url: str = ""


@pytest.fixture(name="target")
def _target() -> Target:
    return Target()


@pytest.fixture(name="app_server")
async def _app_server(aiohttp_server: AiohttpServer, target: Target) -> TestServer:
    """The app (pages + its backend minting client secrets) on its own loopback origin."""
    return await aiohttp_server(make_app(lambda: target.url, GATEWAY_KEY))


@pytest.fixture(scope="session", name="sdk_bundle")
def _sdk_bundle() -> Path:
    """OpenAI's @openai/agents-realtime, bundled by esbuild (built here if missing or stale)."""
    return sdk_bundle.ensure()
