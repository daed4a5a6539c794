"""The ICE host-address override: fails loudly if aioice stops gathering through our hook."""

from __future__ import annotations

import re

from aiortc import RTCConfiguration, RTCPeerConnection

from gateway.rtc import ice


async def _candidate_addresses(addresses: tuple[str, ...]) -> set[str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.createDataChannel("oai-events")
        with ice.host_addresses(addresses):
            await pc.setLocalDescription(await pc.createOffer())
        return set(
            re.findall(r"a=candidate:\S+ \d+ udp \d+ (\S+) \d+ typ host", pc.localDescription.sdp)
        )
    finally:
        await pc.close()


class TestHostAddresses:
    async def test_loopback_only(self) -> None:
        """Configured addresses are exactly what ICE offers, loopback included."""
        assert await _candidate_addresses(("127.0.0.1",)) == {"127.0.0.1"}

    async def test_default_is_aioice_behaviour(self) -> None:
        """Without an override aioice's own choice stands: no loopback candidates."""
        found = await _candidate_addresses(())
        assert "127.0.0.1" not in found

    async def test_ipv6_filtered_by_family(self) -> None:
        """Both families can be configured together."""
        assert await _candidate_addresses(("127.0.0.1", "::1")) == {"127.0.0.1", "::1"}

    async def test_override_is_scoped(self) -> None:
        """Outside the block the override is gone."""
        with ice.host_addresses(("127.0.0.1",)):
            pass
        assert "127.0.0.1" not in await _candidate_addresses(())
