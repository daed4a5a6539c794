"""Issue 7: limits, vanished peers, upstream faults and hostile browsers."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

from aiohttp import web
from pytest_aiohttp import AiohttpServer

from gateway.emulator import Emulator
from gateway.rtc import ice
from gateway.rtc.compat import OwnedPeerConnection
from tests.functional.conftest import GATEWAY_KEY, GatewayFactory, mint, state_of
from tests.support.peer import TestPeer

SILENT = web.AppKey("silent", list[OwnedPeerConnection])
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def connect(gateway: Any, peers: list[TestPeer], token: str | None = None) -> Any:
    peer = TestPeer()
    peers.append(peer)
    result = await peer.connect(
        gateway.session, str(gateway.make_url("/v1/realtime/calls")), token or await mint(gateway)
    )
    return peer, result


async def until(predicate: Any, limit: float = 10.0) -> float:
    """Wait for ``predicate``; return how long it took."""
    start = time.monotonic()
    async with asyncio.timeout(limit):
        while not predicate():
            await asyncio.sleep(0.05)
    return time.monotonic() - start


class TestLimits:
    async def test_calls_per_ip(self, make_gateway: GatewayFactory, peers: list[TestPeer]) -> None:
        """Beyond GATEWAY_CALLS_PER_MINUTE_PER_IP a browser gets 429 + Retry-After."""
        gateway = await make_gateway(calls_per_minute_per_ip=2)
        for _ in range(2):
            _, result = await connect(gateway, peers)
            assert result.status == 201
        _, result = await connect(gateway, peers)
        assert result.status == 429
        assert int(result.headers["Retry-After"]) >= 1
        assert '"rate_limit_exceeded"' in result.body
        # The app's backend, with the gateway key, is not throttled per address.
        _, result = await connect(gateway, peers, token=GATEWAY_KEY)
        assert result.status == 201

    async def test_calls_per_reusable_secret(
        self, make_gateway: GatewayFactory, peers: list[TestPeer]
    ) -> None:
        """A reusable client secret is limited per minute on its own."""
        gateway = await make_gateway(client_secret_single_use=False, calls_per_minute_per_token=1)
        token = await mint(gateway)
        _, first = await connect(gateway, peers, token)
        _, second = await connect(gateway, peers, token)
        assert (first.status, second.status) == (201, 429)

    async def test_max_duration(
        self, make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """A call is ended at its maximum duration: error event, upstream hung up."""
        gateway = await make_gateway(max_call_duration=1.5)
        peer, result = await connect(gateway, peers)
        await peer.wait_open()
        error = await peer.next_event("error", timeout=5)
        assert error["error"]["code"] == "max_duration"
        (upstream,) = emulator.calls.values()
        await until(lambda: upstream.hung_up)
        text = await (await gateway.get("/metrics")).text()
        assert 'realtime_gateway_sessions_total{outcome="timeout"} 1.0' in text

    async def test_idle_timeout(self, make_gateway: GatewayFactory, peers: list[TestPeer]) -> None:
        """No events and no speech for GATEWAY_IDLE_TIMEOUT ends the call; speech keeps it up."""
        gateway = await make_gateway(idle_timeout=2.0)
        peer, _ = await connect(gateway, peers)
        await peer.wait_open()
        peer.mic.say(1.0)  # speech the upstream detects: the call is not idle
        await peer.next_event("input_audio_buffer.speech_started", timeout=5)
        await peer.next_event("output_audio_buffer.stopped", timeout=10)
        assert len(state_of(gateway).calls) == 1
        error = await peer.next_event("error", timeout=6)
        assert error["error"]["code"] == "idle_timeout"


class TestVanishedPeers:
    async def test_sigkilled_browser_is_noticed_within_10_s(
        self, gateway: Any, emulator: Emulator
    ) -> None:
        """A browser killed with SIGKILL mid-call: the upstream is hung up within 10 s."""
        token = await mint(gateway)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.functional.fixtures.browser_process",
            str(gateway.make_url("/v1/realtime/calls")),
            token,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line.startswith(b"connected"), line
            (upstream,) = emulator.calls.values()
            await asyncio.sleep(1.0)  # mid-call: media flowing both ways
            proc.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await until(lambda: upstream.hung_up, limit=15)
            noticed = time.monotonic() - killed_at
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        print(f"SIGKILLed browser: upstream hung up after {noticed:.2f} s")
        assert noticed <= 10.0
        await until(lambda: len(state_of(gateway).calls) == 0)


def fake_upstream(behaviour: str) -> web.Application:
    """An upstream that misbehaves in one specific way."""
    pcs: list[OwnedPeerConnection] = []

    async def calls(request: web.Request) -> web.StreamResponse:
        if behaviour == "garbage":
            return web.Response(
                status=201, text="hello, not SDP", headers={"Location": "/v1/realtime/calls/rtc_x"}
            )
        if behaviour == "slow":
            await asyncio.sleep(5)
        if behaviour == "mismatch":
            return web.Response(
                status=201,
                content_type="application/sdp",
                text="v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
                "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n"
                "a=mid:9\r\na=rtpmap:96 VP8/90000\r\n",
                headers={"Location": "/v1/realtime/calls/rtc_mismatch"},
            )
        if behaviour == "html_error":
            return web.Response(
                status=503, text="<html>Service Unavailable</html>", content_type="text/html"
            )
        form = await request.post()
        raw = form["sdp"]
        offer = raw.decode() if isinstance(raw, bytes | bytearray) else str(raw)
        from aiortc import RTCConfiguration, RTCSessionDescription

        pc = OwnedPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        with ice.host_addresses(("127.0.0.1",)):
            await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
        if behaviour == "silent":
            # Connects, then never sends a packet or an event: a frozen upstream.
            request.app[SILENT].append(pc)
        else:
            await pc.close()  # an answer whose ICE will never complete
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": "/v1/realtime/calls/rtc_dead"},
        )

    async def hangup(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def close_silent(app: web.Application) -> None:
        for pc in app[SILENT]:
            await pc.close()

    app = web.Application()
    app[SILENT] = []
    app.on_cleanup.append(close_silent)
    app.router.add_post("/v1/realtime/calls", calls)
    app.router.add_post("/v1/realtime/calls/{id}/hangup", hangup)
    return app


class TestUpstreamFaults:
    async def _gateway(
        self,
        make_gateway: GatewayFactory,
        aiohttp_server: AiohttpServer,
        behaviour: str,
        **settings: Any,
    ) -> Any:
        server = await aiohttp_server(fake_upstream(behaviour))
        return await make_gateway(openai_base_url=str(server.make_url("/v1")), **settings)

    async def test_garbage_sdp(
        self, make_gateway: GatewayFactory, aiohttp_server: AiohttpServer, peers: list[TestPeer]
    ) -> None:
        """A 201 whose body is not SDP is a 502, not a crash."""
        gateway = await self._gateway(make_gateway, aiohttp_server, "garbage")
        _, result = await connect(gateway, peers)
        assert result.status == 502 and '"upstream_bad_answer"' in result.body

    async def test_timeout(
        self, make_gateway: GatewayFactory, aiohttp_server: AiohttpServer, peers: list[TestPeer]
    ) -> None:
        """An upstream slower than GATEWAY_UPSTREAM_TIMEOUT is a 504."""
        gateway = await self._gateway(make_gateway, aiohttp_server, "slow", upstream_timeout=0.5)
        started = time.monotonic()
        _, result = await connect(gateway, peers)
        assert result.status == 504 and '"upstream_timeout"' in result.body
        assert time.monotonic() - started < 3

    async def test_non_json_error(
        self, make_gateway: GatewayFactory, aiohttp_server: AiohttpServer, peers: list[TestPeer]
    ) -> None:
        """An HTML error page from a proxy in front of the upstream is still a clean 502."""
        gateway = await self._gateway(make_gateway, aiohttp_server, "html_error")
        _, result = await connect(gateway, peers)
        assert result.status == 502 and '"error"' in result.body
        assert "<html>" not in result.body

    async def test_ice_never_completes(
        self, make_gateway: GatewayFactory, aiohttp_server: AiohttpServer, peers: list[TestPeer]
    ) -> None:
        """An upstream that answers but never connects: the call ends at the connect watchdog."""
        gateway = await self._gateway(make_gateway, aiohttp_server, "dead", connect_timeout=2.0)
        peer, result = await connect(gateway, peers)
        assert result.status == 201
        await peer.wait_open()
        error = await peer.next_event("error", timeout=8)
        assert error["error"]["code"] == "connect_timeout"
        await until(lambda: len(state_of(gateway).calls) == 0)

    async def test_silent_upstream(
        self, make_gateway: GatewayFactory, aiohttp_server: AiohttpServer, peers: list[TestPeer]
    ) -> None:
        """An upstream that connects and then falls silent is noticed; the browser is told."""
        gateway = await self._gateway(make_gateway, aiohttp_server, "silent", peer_timeout=2.0)
        peer, result = await connect(gateway, peers)
        assert result.status == 201
        await peer.wait_open()
        error = await peer.next_event("error", timeout=8)
        assert error["error"]["code"] == "upstream_ended"
        await until(lambda: len(state_of(gateway).calls) == 0)
        text = await (await gateway.get("/metrics")).text()
        assert 'realtime_gateway_sessions_total{outcome="upstream_error"} 1.0' in text


class TestHostileBrowser:
    async def test_huge_messages(
        self, make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """1 MiB cannot even be sent (the answer caps SCTP messages at 256 KiB); over the
        event limit is refused with an error event; the call goes on."""
        gateway = await make_gateway(max_event_bytes=64 * 1024)
        peer, result = await connect(gateway, peers)
        assert "a=max-message-size:262144" in result.body
        await peer.wait_open()
        text = {"type": "input_text", "text": "x" * (1 << 20)}
        big = {
            "type": "conversation.item.create",
            "event_id": "huge",
            "item": {"type": "message", "role": "user", "content": [text]},
        }
        try:
            peer.send(big)
            raise AssertionError("a 1 MiB message should not be sendable")
        except ValueError as exc:
            assert "262144" in str(exc)
        text["text"] = "x" * (200 * 1024)
        peer.send(big)
        error = await peer.next_event("error", timeout=10)
        assert error["error"]["code"] == "event_too_large"
        peer.send({"type": "response.cancel", "event_id": "after"})
        (upstream,) = emulator.calls.values()
        await upstream.wait_for_event("response.cancel")
        assert "huge" not in [e.get("event_id") for e in upstream.received_events]

    async def test_event_flood(
        self, gateway: Any, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """1000 events in a second: the excess is refused, the call and others go on."""
        peer, _ = await connect(gateway, peers)
        other, _ = await connect(gateway, peers)
        await peer.wait_open()
        await other.wait_open()
        for i in range(1000):
            peer.send({"type": "input_audio_buffer.clear", "event_id": f"f{i}"})
        await peer.next_event("error", timeout=10)
        await asyncio.sleep(1.0)
        errors = [e for e in peer.events if e["type"] == "error"]
        assert errors and all(e["error"]["code"] == "event_rate" for e in errors)
        flooded = max(emulator.calls.values(), key=lambda c: len(c.received_events))
        assert 100 <= len(flooded.received_events) <= 400  # burst + refill, not 1000
        other.send({"type": "response.create"})
        await other.next_event("response.done", timeout=10)


class TestPageHeaders:
    async def test_security_headers(self, gateway: Any) -> None:
        """The page ships a CSP without inline script, and the usual hardening headers."""
        page = await gateway.get("/")
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert "microphone=(self)" in page.headers["Permissions-Policy"]
