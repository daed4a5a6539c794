"""Fixtures for the emulator tests: a real emulator on 127.0.0.1 and real aiortc test peers.

Leaked tasks fail any test through the suite-wide ``fail_on_leaked_tasks`` in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.emulator import Emulator, EmulatorSettings
from tests.emulator.helpers import FAST, Connected, EmulatorFactory, Running, connect
from tests.support.peer import TestPeer


@pytest.fixture(name="http")
async def _http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(name="start_emulator")
async def _start_emulator() -> AsyncIterator[EmulatorFactory]:
    started: list[Emulator] = []

    async def start(settings: EmulatorSettings = FAST) -> Running:
        emulator = Emulator(settings)
        started.append(emulator)
        return Running(emulator, await emulator.start())

    yield start
    for emulator in started:
        await emulator.aclose()


@pytest.fixture(name="running")
async def _running(start_emulator: EmulatorFactory) -> Running:
    return await start_emulator()


@pytest.fixture(name="peer")
async def _peer() -> AsyncIterator[TestPeer]:
    peer = TestPeer()
    yield peer
    await peer.close()


@pytest.fixture(name="connected")
async def _connected(peer: TestPeer, http: aiohttp.ClientSession, running: Running) -> Connected:
    return await connect(peer, http, running)
