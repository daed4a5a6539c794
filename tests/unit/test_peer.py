"""OwnedPeerConnection: closing at any moment of connection setup leaves no task behind."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCConfiguration

from gateway.rtc import compat, ice
from gateway.rtc.compat import OwnedPeerConnection


class TestOwnedPeerConnection:
    def test_hooked_aiortc_names_exist(self) -> None:
        """The private names the fix relies on are still in aiortc."""
        compat.check()

    @pytest.mark.parametrize("delay", [0.0, 0.005, 0.01, 0.02, 0.04, 0.2])
    async def test_close_during_setup_leaks_nothing(self, delay: float) -> None:
        """Whenever both peers close, every task they started is gone."""
        before = asyncio.all_tasks()
        a = OwnedPeerConnection(RTCConfiguration(iceServers=[]))
        b = OwnedPeerConnection(RTCConfiguration(iceServers=[]))
        a.createDataChannel("oai-events")
        a.addTransceiver("audio")
        with ice.host_addresses(("127.0.0.1",)):
            await a.setLocalDescription(await a.createOffer())
            await b.setRemoteDescription(a.localDescription)
            await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        await asyncio.sleep(delay)
        await a.close()
        await b.close()
        await asyncio.sleep(0.1)
        left = {t for t in asyncio.all_tasks() - before if not t.done()}
        left.discard(asyncio.current_task())  # type: ignore[arg-type]
        assert not left, [t.get_coro() for t in left]
