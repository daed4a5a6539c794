"""A cheap OpenAI-contract upstream for the benchmark.

It speaks what the gateway's upstream client speaks (protocol.md §1): ``POST
{base}/realtime/calls`` with Bearer auth and a multipart ``sdp`` + ``session`` body → 201, the
SDP answer and ``Location: /v1/realtime/calls/rtc_…``; ``POST …/{id}/hangup`` → 200. Unlike the
built-in emulator it does no turn detection and no decoding: each call sends the pre-encoded
marker loop, logs what arrives through a receive tap, and pings on ``oai-events``. It also
counts every call it answered and every hangup it got, so the soak can check that the gateway
hung up each upstream call it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiortc import RTCConfiguration, RTCDataChannel, RTCRtpSender, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from gateway.emulator.signaling import parse_call_request
from gateway.errors import GatewayError
from gateway.rtc import ice
from gateway.rtc.compat import OwnedPeerConnection
from gateway_bench.probe import CallProbe, Pinger, ProbeRegistry
from gateway_bench.stream import MarkerTrack, tap_receiver

CALLS_PATH = "/v1/realtime/calls"
CLOSE_TIMEOUT = 10.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOOPBACK = ("127.0.0.1",)


def opus_capability() -> list[RTCRtpCodecCapability]:
    """aiortc's Opus capability, for ``setCodecPreferences`` (both ends pin Opus)."""
    codecs = RTCRtpSender.getCapabilities("audio").codecs
    return [c for c in codecs if c.mimeType.lower() == "audio/opus"]


@web.middleware
async def _close_connections(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer, then close the connection: no idle pooled connection holds a gateway descriptor."""
    response = await handler(request)
    response.force_close()
    return response


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}


@dataclass
class UpstreamCounts:
    answered: int = 0
    hung_up: int = 0
    rejected: int = 0
    ended_without_hangup: int = 0


class _UpstreamCall:
    def __init__(self, call_id: str, probe: CallProbe, events_per_second: float) -> None:
        self.call_id = call_id
        self.probe = probe
        self.pc = OwnedPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = MarkerTrack(probe.down)
        self.pinger = Pinger(probe.down_events, events_per_second)
        self.hung_up = False
        self.pc.on("datachannel", self._on_channel)

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise web.HTTPBadRequest(text="bench upstream: the offer has no audio")
        audio[0].direction = "sendrecv"
        audio[0].sender.replaceTrack(self.track)
        audio[0].setCodecPreferences(opus_capability())
        tap_receiver(audio[0].receiver, self.probe.up)
        answer = await self.pc.createAnswer()
        with ice.host_addresses(LOOPBACK):
            await self.pc.setLocalDescription(answer)
        return str(self.pc.localDescription.sdp)

    def _on_channel(self, channel: RTCDataChannel) -> None:
        events = self.probe.up_events
        channel.on("message", lambda message: events.receive(message, time.monotonic()))
        if channel.readyState == "open":
            self.pinger.start(channel)
        else:
            channel.on("open", lambda: self.pinger.start(channel))

    async def close(self) -> None:
        self.track.stop()
        await self.pinger.stop()
        await self.pc.close()


class BenchUpstream:
    """The upstream the gateway dials during a benchmark (and the direct baseline's server)."""

    def __init__(
        self, probes: ProbeRegistry, *, api_key: str, events_per_second: float = 2.0
    ) -> None:
        self.api_key = api_key
        self.counts = UpstreamCounts()
        self._probes = probes
        self._events_per_second = events_per_second
        self._calls: dict[str, _UpstreamCall] = {}
        self._runner: web.AppRunner | None = None
        self._app = web.Application(middlewares=[_close_connections])
        self._app.router.add_post(CALLS_PATH, self._create_call)
        self._app.router.add_post(CALLS_PATH + "/{call_id}/hangup", self._hangup)

    @property
    def open_calls(self) -> int:
        return len(self._calls)

    async def start(self, host: str = "127.0.0.1") -> str:
        """Serve on a free port; returns the base URL to use as ``OPENAI_BASE_URL``."""
        # A handler still running at shutdown is waited for this long, not aiohttp's 60 s.
        self._runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=CLOSE_TIMEOUT)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        return f"http://{host}:{port}/v1"

    async def aclose(self) -> None:
        calls, self._calls = list(self._calls.values()), {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.gather(*(c.close() for c in calls), return_exceptions=True)
        self.counts.ended_without_hangup += len(calls)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _authorize(self, request: web.Request) -> None:
        expected = f"Bearer {self.api_key}"
        got = request.headers.get("Authorization", "")
        if not secrets.compare_digest(got.encode(), expected.encode()):
            raise web.HTTPUnauthorized(
                text=json.dumps(_error("bench upstream: incorrect API key")),
                content_type="application/json",
            )

    async def _create_call(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        self._authorize(request)
        try:
            content_type = request.headers.get("Content-Type", "")
            offer = parse_call_request(content_type, await request.read())
        except GatewayError as exc:
            self.counts.rejected += 1
            return web.json_response(exc.to_body(), status=exc.status)
        probe = self._probes.find(offer.session)
        if probe is None:
            self.counts.rejected += 1
            message = "bench upstream: no bench call key in session.instructions"
            return web.json_response(_error(message), status=400)
        call = _UpstreamCall("rtc_" + secrets.token_hex(12), probe, self._events_per_second)
        try:
            answer = await call.answer(offer.sdp)
        except BaseException:
            await call.close()
            raise
        self._calls[call.call_id] = call
        self.counts.answered += 1
        probe.upstream_answer_s = time.monotonic() - started
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"{CALLS_PATH}/{call.call_id}"},
        )

    async def _hangup(self, request: web.Request) -> web.Response:
        self._authorize(request)
        call = self._calls.pop(request.match_info["call_id"], None)
        if call is None:
            return web.json_response(_error("call not found"), status=404)
        self.counts.hung_up += 1
        await call.close()
        return web.Response(status=200)
