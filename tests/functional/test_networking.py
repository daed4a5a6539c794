"""Container networking: a fixed UDP port range and a 1:1 NAT public address."""

from __future__ import annotations

import random
import re
import socket

from tests.functional.conftest import GatewayFactory, mint
from tests.support.peer import TestPeer

CANDIDATE = re.compile(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host")


def free_range(size: int) -> tuple[int, int]:
    """A run of UDP ports on 127.0.0.1 that nothing holds right now."""
    for _ in range(50):
        low = random.randrange(42000, 60000)
        socks = []
        try:
            for port in range(low, low + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return low, low + size - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


class TestPortRange:
    async def test_calls_use_only_the_range_and_the_fifth_is_refused(
        self, make_gateway: GatewayFactory, peers: list[TestPeer]
    ) -> None:
        """Four ports hold four calls; the fifth gets a clean 503; a freed port is reused."""
        low, high = free_range(4)
        gateway = await make_gateway(ice_port_range=(low, high))
        url = str(gateway.make_url("/v1/realtime/calls"))
        results = []
        for _ in range(4):
            peer = TestPeer()
            peers.append(peer)
            results.append(await peer.connect(gateway.session, url, await mint(gateway)))
        for peer, result in zip(peers, results, strict=True):
            assert result.status == 201, result.body
            await peer.wait_open()
            found = CANDIDATE.findall(result.body)
            assert found and all(
                ip == "127.0.0.1" and low <= int(port) <= high for ip, port in found
            ), found
        extra = TestPeer()
        peers.append(extra)
        refused = await extra.connect(gateway.session, url, await mint(gateway))
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "2"
        assert '"ice_ports_exhausted"' in refused.body
        # Ending one call frees its port for the next.
        await peers[0].close()
        again = TestPeer()
        peers.append(again)
        for _ in range(50):
            result = await again.connect(gateway.session, url, await mint(gateway))
            if result.status == 201:
                break
            again = TestPeer()
            peers.append(again)
        assert result.status == 201


class TestPublicIp:
    async def test_answer_announces_the_public_address(
        self, make_gateway: GatewayFactory, peers: list[TestPeer]
    ) -> None:
        """Bound on 0.0.0.0, the answer carries only GATEWAY_PUBLIC_IP, and media flows."""
        gateway = await make_gateway(ice_addresses=("0.0.0.0",), public_ip="127.0.0.1")
        peer = TestPeer()
        peers.append(peer)
        result = await peer.connect(
            gateway.session, str(gateway.make_url("/v1/realtime/calls")), await mint(gateway)
        )
        assert result.status == 201
        found = CANDIDATE.findall(result.body)
        assert found and {ip for ip, _ in found} == {"127.0.0.1"}
        connection_lines = [ln for ln in result.body.splitlines() if ln.startswith("c=")]
        assert connection_lines and all(ln == "c=IN IP4 127.0.0.1" for ln in connection_lines)
        await peer.wait_open()
        peer.mic.say(0.6)
        await peer.next_event("output_audio_buffer.stopped", timeout=10)
        assert peer.received.energy_frames(threshold=0.02) >= 10
