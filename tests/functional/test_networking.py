"""Container networking: a fixed UDP port range and a 1:1 NAT public address."""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import socket
from pathlib import Path

import pytest

from gateway.config import IceServer, Secret
from tests.functional.conftest import GatewayFactory, mint, state_of
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


TURNSERVER = shutil.which("turnserver")


@pytest.mark.skipif(
    TURNSERVER is None and os.environ.get("CI") != "true",
    reason="coturn is not installed (scripts/install-system installs it)",
)
class TestTurnRelay:
    async def test_relay_only_call_through_coturn(
        self, make_gateway: GatewayFactory, peers: list[TestPeer], tmp_path: Path
    ) -> None:
        """With a relay-only policy every browser-leg packet crosses a real coturn on loopback."""
        assert TURNSERVER is not None, "coturn missing under CI: run scripts/install-system"
        port = free_range(1)[0]
        relay_low, relay_high = free_range(20)
        proc = await asyncio.create_subprocess_exec(
            TURNSERVER,
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={port}",
            f"--min-port={relay_low}",
            f"--max-port={relay_high}",
            "--lt-cred-mech",
            "--user=test:test",
            "--realm=test.local",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--allow-loopback-peers",
            f"--pidfile={tmp_path / 'turn.pid'}",
            f"--log-file={tmp_path / 'turn.log'}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await wait_for_udp_listener(port)
            gateway = await make_gateway(
                ice_servers=(
                    IceServer(
                        urls=(f"turn:127.0.0.1:{port}?transport=udp",),
                        username="test",
                        credential=Secret("test"),
                    ),
                ),
                ice_transport_policy="relay",
            )
            peer = TestPeer()
            peers.append(peer)
            result = await peer.connect(
                gateway.session, str(gateway.make_url("/v1/realtime/calls")), await mint(gateway)
            )
            assert result.status == 201, result.body
            candidates = re.findall(r"a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ (\w+)", result.body)
            assert candidates and {kind for _, kind in candidates} == {"relay"}
            assert all(relay_low <= int(p) <= relay_high for p, _ in candidates)
            await peer.wait_open(timeout=10)
            peer.mic.say(0.6)
            await peer.next_event("output_audio_buffer.stopped", timeout=10)
            assert peer.received.energy_frames(threshold=0.02) >= 10
            # End the call while coturn is up, so the TURN allocation is released properly.
            await peer.close()
            for _ in range(100):
                if len(state_of(gateway).calls) == 0:
                    break
                await asyncio.sleep(0.05)
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)


async def wait_for_udp_listener(port: int) -> None:
    """coturn is up when a STUN binding request on its port gets an answer."""
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"\x00" * 12
    loop = asyncio.get_running_loop()
    for _ in range(100):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.sendto(request, ("127.0.0.1", port))
            await asyncio.wait_for(loop.sock_recv(sock, 512), 0.1)
            return
        except (TimeoutError, OSError):
            await asyncio.sleep(0.05)
        finally:
            sock.close()
    raise AssertionError("coturn did not start")
