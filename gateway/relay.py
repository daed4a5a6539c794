"""A relayed call: the browser leg, the upstream leg, and everything that moves between them.

:func:`open_call` does the signalling — the upstream is dialled while the browser's answer is
being made, so the gateway adds little to setup beyond the upstream's own SDP exchange.
:meth:`Call.run` then owns every task of the call; whatever ends it (a hangup, either peer
failing or closing, a channel closing, the connect watchdog, shutdown), both peers are closed
and the upstream call is hung up before ``run`` returns.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog
from aiortc import RTCIceServer

from gateway.errors import GatewayError, InvalidOffer, UpstreamError
from gateway.hooks import CallInfo, CallSummary, Hooks
from gateway.metrics import Metrics
from gateway.pipeline import EventPipeline
from gateway.policy import ClientPolicy, PolicyConfig
from gateway.protocol.events import encode_event, error_event
from gateway.protocol.sdp import inspect_offer
from gateway.rtc.ice import PortUsage
from gateway.rtc.media import (
    MediaMode,
    PacketForwarder,
    RelayTrack,
    choose_codec,
    forward_encoded,
    pump_audio,
)
from gateway.rtc.peer import BROWSER_MAX_MESSAGE, Peer
from gateway.tasks import TaskSet
from gateway.tools import ToolRegistry, run_tool
from gateway.tools.coordinator import ToolCoordinator
from gateway.transcripts import TranscriptWriter
from gateway.types import Message, Reply
from gateway.upstream.client import UpstreamClient

log = structlog.get_logger(__name__)

Dialect = Literal["ga", "beta"]


def new_call_id() -> str:
    return "rtc_" + secrets.token_hex(16)


@dataclass(frozen=True)
class CallRequest:
    """What the web layer hands over once it has authenticated and parsed a call request."""

    offer_sdp: str
    session: dict[str, Any]
    dialect: Dialect = "ga"
    # Digest of the client secret the call was opened with; it may hang the call up.
    token_digest: bytes | None = None


@dataclass(frozen=True)
class LegOptions:
    ice_addresses: tuple[str, ...] = ()
    upstream_ice_addresses: tuple[str, ...] = ()
    # The browser leg's ports are the ones published from a container; the upstream leg only
    # dials out, through NAT, like any client, so it keeps the OS's ports.
    ice_port_range: tuple[int, int] | None = None
    public_ip: str | None = None
    ice_servers: tuple[RTCIceServer, ...] = ()
    relay_only: bool = False
    upstream_ice_servers: tuple[RTCIceServer, ...] = ()
    connect_timeout: float = 20.0
    media: MediaMode = "passthrough"
    peer_timeout: float = 6.0
    idle_timeout: float = 600.0
    max_duration: float = 3600.0
    # The browser leg's sockets in ice_port_range, for readiness (shared by every call).
    port_usage: PortUsage | None = None


@dataclass(frozen=True)
class CallServices:
    """What every call of a gateway shares: made once at startup from the settings."""

    metrics: Metrics = field(default_factory=Metrics)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    hooks: Hooks = field(default_factory=Hooks)
    tools: ToolRegistry = field(default_factory=ToolRegistry)
    tool_timeout: float = 10.0
    transcripts_dir: Path | None = None
    # Work a call leaves behind (hanging up an upstream call a refused setup had dialled).
    background: TaskSet = field(default_factory=TaskSet)


# What ended a call → the outcome label ops see.
def outcome_of(reason: str) -> str:
    if reason == "hangup":
        return "completed"
    if reason.startswith("browser_"):
        return "browser_gone"
    if reason.startswith("upstream_"):
        return "upstream_error"
    if reason in ("connect_timeout", "idle_timeout", "max_duration"):
        return "timeout"
    if reason == "browser_vanished":
        return "browser_gone"
    if reason == "shutdown":
        return "shutdown"
    return "rejected" if reason == "token_reused" else "completed"


# Reasons the browser is told about with an ``error`` event before its peer is closed.
_FAREWELLS: dict[str, tuple[str, str]] = {
    "upstream": ("The upstream ended the call.", "upstream_ended"),
    "idle_timeout": ("The call was idle too long and has been ended.", "idle_timeout"),
    "max_duration": ("The call reached its maximum duration.", "max_duration"),
    "connect_timeout": ("The call could not be connected in time.", "connect_timeout"),
    "shutdown": ("The gateway is shutting down; reconnect to continue.", "gateway_shutdown"),
}

STATS_INTERVAL = 5.0
LIVENESS_TICK = 0.5
# A sideband that falls this many events behind loses the oldest: it must not slow the call.
SUBSCRIBER_QUEUE = 1000


@dataclass
class Call:
    call_id: str
    request: CallRequest
    browser: Peer
    upstream: Peer
    client: UpstreamClient
    upstream_call_id: str | None
    to_browser: RelayTrack
    to_upstream: RelayTrack
    options: LegOptions
    answer_sdp: str
    services: CallServices
    pipeline: EventPipeline
    clock_rate: int = 48000
    forwarders: tuple[PacketForwarder, ...] = ()
    created_at: float = field(default_factory=time.monotonic)
    upstream_sdp_seconds: float = 0.0
    end_reason: str | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    _subscribers: set[asyncio.Queue[Message]] = field(default_factory=set)
    _liveness_reason: str = "liveness"

    @property
    def dialect(self) -> Dialect:
        return self.request.dialect

    @property
    def metrics(self) -> Metrics:
        return self.services.metrics

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def stop(self, reason: str) -> None:
        """Ask the call to end; :meth:`run` does the teardown. Safe to call more than once."""
        if self.end_reason is None:
            self.end_reason = reason
        self._stop.set()

    async def wait_done(self) -> None:
        await self._done.wait()

    def audio_counts(self) -> dict[tuple[str, str], int]:
        """Packets per (leg, direction) so far; ``in`` is what that leg sent us."""
        return {
            ("browser", "in"): self.to_upstream.frames_in,
            ("upstream", "out"): self.to_upstream.frames_out,
            ("upstream", "in"): self.to_browser.frames_in,
            ("browser", "out"): self.to_browser.frames_out,
        }

    async def run(self) -> None:
        self.metrics.call_started()
        self.metrics.setup_stage("upstream_sdp", self.upstream_sdp_seconds)
        self.metrics.setup_stage("answer", time.monotonic() - self.created_at)
        log.info(
            "call.started",
            call_id=self.call_id,
            upstream_call_id=self.upstream_call_id,
            dialect=self.dialect,
            media=self.options.media,
        )
        try:
            await self.pipeline.open_transcript()
            await self.services.hooks.session_start(self.pipeline.info)
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._pump_client_events()),
                    tg.create_task(self._pump_server_events()),
                    tg.create_task(self._watch_setup()),
                    tg.create_task(self._poll_stats()),
                ]
                if self.options.media == "transcode":
                    # Passthrough needs no tasks: its forwarders push from aiortc's callbacks.
                    for source, sink in (
                        (self.browser.remote_audio, self.to_upstream),
                        (self.upstream.remote_audio, self.to_browser),
                    ):
                        if source is not None:
                            tasks.append(tg.create_task(pump_audio(source, sink)))
                reason = await self._wait_for_end()
                if self.end_reason is None:
                    self.end_reason = reason
                for task in tasks:
                    task.cancel()
        finally:
            await self._teardown()

    async def _wait_for_end(self) -> str:
        waits = {
            asyncio.ensure_future(self._stop.wait()): "stopped",
            asyncio.ensure_future(self.browser.ended.wait()): "browser",
            asyncio.ensure_future(self.upstream.ended.wait()): "upstream",
            asyncio.ensure_future(self._watch_connect()): "connect_timeout",
            asyncio.ensure_future(self._watch_liveness()): "liveness",
        }
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        which = waits[next(iter(done))]
        if which == "browser":
            return f"browser_{self.browser.end_reason}"
        if which == "upstream":
            return f"upstream_{self.upstream.end_reason}"
        if which == "liveness":
            return self._liveness_reason
        return self.end_reason or which

    async def _watch_connect(self) -> None:
        """Returns (ending the call) if either leg is not up in time; else waits forever."""
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                await asyncio.gather(
                    self.browser.connected.wait(),
                    self.browser.channel_open.wait(),
                    self.upstream.connected.wait(),
                    self.upstream.channel_open.wait(),
                )
        except TimeoutError:
            log.warning(
                "call.connect_timeout",
                call_id=self.call_id,
                timeout=self.options.connect_timeout,
                browser=self.browser.connection_state,
                upstream=self.upstream.connection_state,
            )
            return
        await asyncio.Event().wait()

    async def _watch_liveness(self) -> None:
        """Returns (ending the call) when a limit is reached; sets ``_liveness_reason``.

        aiortc reports no transient "disconnected" state and aioice's consent checks take ~30 s,
        so a browser that vanishes (a killed tab, a dropped network) is noticed here instead:
        a live browser sends something at least every few seconds — audio (every 20 ms, or
        400 ms with DTX), RTCP reports, ICE consent checks (every 2.5–6 s) — even when it only
        listens, so ``peer_timeout`` seconds without any datagram from it means it is gone. The
        upstream sends audio continuously (silence between responses): one that sends no audio
        and no events for that long is frozen, even if its network stack still answers.
        """
        limits = self.options
        await asyncio.gather(self.browser.connected.wait(), self.upstream.connected.wait())
        browser_seen = upstream_seen = user_seen = time.monotonic()
        last_browser = last_upstream = last_user = -1
        while True:
            await asyncio.sleep(LIVENESS_TICK)
            now = time.monotonic()
            browser = self.browser.packets_received() + self.pipeline.stats.client_events
            upstream = self.to_browser.frames_in + self.pipeline.stats.server_events
            user = self.pipeline.stats.client_events + self.pipeline.stats.speech_started
            if browser != last_browser:
                browser_seen, last_browser = now, browser
            if upstream != last_upstream:
                upstream_seen, last_upstream = now, upstream
            if user != last_user or self.pipeline.stats.responding:
                user_seen, last_user = now, user
            if now - browser_seen >= limits.peer_timeout:
                self._liveness_reason = "browser_vanished"
            elif now - upstream_seen >= limits.peer_timeout:
                self._liveness_reason = "upstream_vanished"
            elif now - user_seen >= limits.idle_timeout:
                self._liveness_reason = "idle_timeout"
            elif now - self.created_at >= limits.max_duration:
                self._liveness_reason = "max_duration"
            else:
                continue
            log.info("call.limit_reached", call_id=self.call_id, reason=self._liveness_reason)
            return

    async def _watch_setup(self) -> None:
        await self.browser.connected.wait()
        self.metrics.setup_stage("browser_connected", time.monotonic() - self.created_at)
        first = await self.to_browser.first_frame()
        self.metrics.setup_stage("first_upstream_audio", first - self.created_at)

    async def _poll_stats(self) -> None:
        """Receive-side RTCP statistics of both legs → packets lost and jitter."""
        lost_seen = {"browser": 0, "upstream": 0}
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            for leg, peer in (("browser", self.browser), ("upstream", self.upstream)):
                lost, jitter = await peer.receive_quality()
                self.metrics.audio_quality(
                    leg, max(0, lost - lost_seen[leg]), jitter / self.clock_rate
                )
                lost_seen[leg] = max(lost, lost_seen[leg])

    async def _pump_client_events(self) -> None:
        while True:
            message = await self.browser.inbox.get()
            out = await self.pipeline.client_message(message)
            if out is not None:
                self.upstream.send(out)

    def subscribe(self) -> asyncio.Queue[Message]:
        """A queue of every upstream event of this call, as the upstream sent it (sideband)."""
        queue: asyncio.Queue[Message] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Message]) -> None:
        self._subscribers.discard(queue)

    async def inject(self, message: Message, reply: Reply) -> None:
        """A client event from the sideband: same policy, hooks and tools as the browser's."""
        out = await self.pipeline.client_message(message, reply)
        if out is not None:
            self.upstream.send(out)

    async def _pump_server_events(self) -> None:
        while True:
            message = await self.upstream.inbox.get()
            for queue in self._subscribers:
                try:
                    queue.put_nowait(message)
                except asyncio.QueueFull:
                    log.warning("sideband.overflow", call_id=self.call_id)
            out = await self.pipeline.server_message(message)
            if out is not None:
                self.browser.send(out)

    async def _teardown(self) -> None:
        reason = self.end_reason or "unknown"
        farewell = _FAREWELLS.get("upstream" if reason.startswith("upstream_") else reason)
        if farewell is not None and self.browser.channel_open.is_set():
            # Tell the browser why, in the shape it knows, before its peer goes away.
            message, code = farewell
            self.browser.send(encode_event(error_event(UpstreamError(message, code=code))))
            await _drain(self.browser)
        self.to_browser.finish()
        self.to_upstream.finish()
        if self.pipeline.tools is not None:
            await self.pipeline.tools.aclose()
        await asyncio.gather(self.browser.close(), self.upstream.close())
        await _hangup_quietly(self.client, self.upstream_call_id, self.metrics)
        duration = time.monotonic() - self.created_at
        outcome = outcome_of(reason)
        audio = self.audio_counts()
        self.metrics.call_ended(outcome, duration, audio)
        if outcome == "upstream_error":
            self.metrics.upstream_error("ended")
        stats = self.pipeline.stats
        transcript = self.pipeline.transcript
        log.info(
            "call.ended",
            call_id=self.call_id,
            upstream_call_id=self.upstream_call_id,
            reason=reason,
            outcome=outcome,
            duration_s=round(duration, 3),
            client_events=stats.client_events,
            server_events=stats.server_events,
            client_errors=stats.client_errors,
            policy_violations=stats.policy_violations,
            tool_calls=stats.tool_calls,
            tokens=stats.tokens,
            audio_packets={f"{leg}_{d}": n for (leg, d), n in audio.items()},
            # Stale audio dropped while the far leg was not yet consuming (bounded queues).
            audio_dropped={
                "to_browser": self.to_browser.frames_dropped,
                "to_upstream": self.to_upstream.frames_dropped,
            },
            # Records a stalled disk made the transcript drop (None: no transcript).
            transcript_dropped=transcript.dropped if transcript is not None else None,
        )
        summary = CallSummary(
            reason=reason,
            outcome=outcome,
            duration_s=duration,
            client_events=stats.client_events,
            server_events=stats.server_events,
            tokens=dict(stats.tokens),
            tool_calls=stats.tool_calls,
        )
        try:
            await self.services.hooks.session_end(self.pipeline.info, summary)
        finally:
            await self.pipeline.close_transcript(
                reason=reason, outcome=outcome, duration_s=duration
            )
            self._done.set()


async def _drain(peer: Peer, limit: float = 0.5) -> None:
    """Give queued data-channel bytes a moment to leave before the peer is closed."""
    channel = peer.channel
    if channel is None:
        return
    deadline = time.monotonic() + limit
    await asyncio.sleep(0.05)
    # Polled: aiortc's "bufferedamountlow" fires only when crossing the threshold.
    while channel.bufferedAmount > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def open_call(
    call_id: str,
    request: CallRequest,
    *,
    client: UpstreamClient,
    options: LegOptions,
    services: CallServices,
    started_at: float | None = None,
) -> Call:
    """Answer the browser and dial the upstream concurrently; return a call ready to :meth:`run`.

    Raises a :class:`GatewayError` (bad offer, upstream refused, timeout) with nothing left open.
    """
    started_at = time.monotonic() if started_at is None else started_at
    offer = inspect_offer(request.offer_sdp)
    codec = choose_codec(offer.audio_codecs)
    if codec is None:
        raise InvalidOffer(
            "The SDP offer has no audio codec the gateway can relay: offer Opus, PCMU or PCMA."
        )
    browser = Peer(
        "browser",
        ice_addresses=options.ice_addresses,
        ice_servers=options.ice_servers,
        relay_only=options.relay_only,
        port_range=options.ice_port_range,
        public_ip=options.public_ip,
        max_message=BROWSER_MAX_MESSAGE,
        port_usage=options.port_usage,
    )
    upstream = Peer(
        "upstream",
        ice_addresses=options.upstream_ice_addresses,
        ice_servers=options.upstream_ice_servers,
    )
    to_browser, to_upstream = RelayTrack(), RelayTrack()
    dial: asyncio.Future[Any] | None = None
    try:
        upstream_offer = await upstream.offer(to_upstream, codec)
        dial_started = time.monotonic()
        dial = asyncio.ensure_future(client.create_call(upstream_offer, request.session))
        answer_sdp = await browser.answer(request.offer_sdp, to_browser, codec)
        forwarders: tuple[PacketForwarder, ...] = ()
        if options.media == "passthrough":
            assert browser.audio_receiver is not None and upstream.audio_receiver is not None
            forwarders = (
                forward_encoded(browser.audio_receiver, to_upstream, codec.clockRate),
                forward_encoded(upstream.audio_receiver, to_browser, codec.clockRate),
            )
        # Shielded: a setup cancelled here must not abort a request the upstream may have acted on.
        upstream_answer = await asyncio.shield(dial)
        upstream_sdp_seconds = time.monotonic() - dial_started
        await upstream.accept_answer(upstream_answer.sdp)
    except BaseException:
        if dial is not None and not dial.done():
            # Cancelling the request would not undo a call the upstream may already have made:
            # let the dial finish in the background and hang up what it made.
            services.background.spawn(
                _hang_up_when_dialled(dial, client, services.metrics), name="call-abandon-dial"
            )
        elif dial is not None and not dial.cancelled() and dial.exception() is None:
            # The upstream call exists but we are failing: do not leave it billing.
            await _hangup_quietly(client, dial.result().call_id, services.metrics)
        to_browser.finish()
        to_upstream.finish()
        await asyncio.gather(browser.close(), upstream.close())
        raise
    pipeline = _make_pipeline(
        call_id, request, upstream_answer.call_id, services, browser=browser, upstream=upstream
    )
    call = Call(
        call_id=call_id,
        request=request,
        browser=browser,
        upstream=upstream,
        client=client,
        upstream_call_id=upstream_answer.call_id,
        to_browser=to_browser,
        to_upstream=to_upstream,
        options=options,
        answer_sdp=answer_sdp,
        services=services,
        pipeline=pipeline,
        clock_rate=codec.clockRate,
        forwarders=forwarders,
        created_at=started_at,
        upstream_sdp_seconds=upstream_sdp_seconds,
    )
    return call


async def _hang_up_when_dialled(
    dial: asyncio.Future[Any], client: UpstreamClient, metrics: Metrics
) -> None:
    try:
        answer = await dial  # bounded by the upstream client's own timeout
    except Exception:
        return  # no upstream call was made
    await _hangup_quietly(client, answer.call_id, metrics)


async def _hangup_quietly(
    client: UpstreamClient, upstream_call_id: str | None, metrics: Metrics
) -> None:
    """Hang the upstream call up; a failure is logged and counted, never raised."""
    if upstream_call_id is None:
        return
    try:
        await client.hangup(upstream_call_id)
    except GatewayError as exc:
        metrics.upstream_error("hangup")
        log.warning("call.upstream_hangup_failed", upstream_call_id=upstream_call_id, code=exc.code)


def _make_pipeline(
    call_id: str,
    request: CallRequest,
    upstream_call_id: str | None,
    services: CallServices,
    *,
    browser: Peer,
    upstream: Peer,
) -> EventPipeline:
    info = CallInfo(
        call_id=call_id,
        upstream_call_id=upstream_call_id,
        dialect=request.dialect,
        session=request.session,
        started_at=time.time(),
    )
    transcript = (
        TranscriptWriter(services.transcripts_dir, call_id)
        if services.transcripts_dir is not None
        else None
    )
    pipeline_ref: list[EventPipeline] = []
    tools = None
    if len(services.tools) > 0:
        timeout = services.tool_timeout
        tools = ToolCoordinator(
            services.tools,
            lambda event: upstream.send(encode_event(event)),
            runner=lambda tool, args: run_tool(tool, args, default_timeout=timeout),
            on_result=lambda call, result: pipeline_ref[0].tool_finished(call, result),
        )
    pipeline = EventPipeline(
        info=info,
        dialect=request.dialect,
        metrics=services.metrics,
        policy=ClientPolicy(services.policy, server_session=info.session),
        hooks=services.hooks,
        tools=tools,
        transcript=transcript,
        to_browser=browser.send,
    )
    pipeline_ref.append(pipeline)
    return pipeline
