"""Helpers for the emulator tests (the fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from gateway.emulator import Emulator, EmulatorCall, EmulatorSettings
from tests.support.peer import TestPeer

TOKEN = "sk-emulator-test"
# Shorter turns than the defaults keep the end-to-end tests quick; everything else is default.
FAST = EmulatorSettings(vad_silence_ms=200.0, vad_prefix_padding_ms=100.0, record_events=True)


@dataclass
class Running:
    emulator: Emulator
    base_url: str

    @property
    def calls_url(self) -> str:
        return self.base_url + "/realtime/calls"


EmulatorFactory = Callable[..., Awaitable[Running]]


@dataclass
class Connected:
    peer: TestPeer
    call: EmulatorCall
    running: Running


async def connect(peer: TestPeer, http: aiohttp.ClientSession, running: Running) -> Connected:
    result = await peer.connect(http, running.calls_url, TOKEN)
    assert result.status == 201, result.body
    await peer.wait_open()
    await peer.next_event("session.created")
    assert result.call_id is not None
    return Connected(peer, running.emulator.calls[result.call_id], running)


def user_text(text: str, **extra: object) -> dict[str, object]:
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        },
        **extra,
    }
