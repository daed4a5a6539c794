"""A running call: the browser leg, the upstream session, and everything between them.

:meth:`Call.run` owns every task of the call. Whatever ends it (a hangup, either side failing or
closing, a watchdog, shutdown, a fault of the gateway's own), both legs are closed and the
upstream session is hung up before ``run`` returns. A call that must not run at all (its
single-use secret was taken meanwhile) is :meth:`Call.discard`-ed instead: closed and hung up,
with no hooks and no transcript.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from gateway.call import watch
from gateway.call.continuity import Continuity
from gateway.call.link import UpstreamLink
from gateway.call.outcomes import EndReason, farewell_for, outcome_of
from gateway.call.pipeline import EventPipeline
from gateway.call.setup import CallRequest, CallServices, Dialect, LegOptions
from gateway.call.snapshot import CallSnapshot
from gateway.errors import UpstreamError
from gateway.metrics import Metrics
from gateway.protocol.events import encode_event, error_event
from gateway.protocol.live import live_error_event
from gateway.recording import CallRecorder, RecordingSummary
from gateway.rtc.media import MediaPath
from gateway.types import Message, Reply
from gateway.upstream.base import Upstream, UpstreamFactory, end_session

log = structlog.get_logger(__name__)

# A sideband that falls this many events behind loses the oldest: it must not slow the call.
SUBSCRIBER_QUEUE = 1000


class BrowserLeg(Protocol):
    """What a call needs of its browser leg (:class:`gateway.rtc.peer.Peer` is one)."""

    inbox: asyncio.Queue[Message]
    connected: asyncio.Event
    channel_open: asyncio.Event
    ended: asyncio.Event
    end_reason: str | None
    messages_dropped: int

    @property
    def connection_state(self) -> str: ...

    def send(self, message: Message) -> None: ...

    def packets_received(self) -> int: ...

    async def receive_quality(self) -> tuple[int, float]: ...

    async def drain(self, limit: float = 0.5) -> None: ...

    async def close(self) -> None: ...


@dataclass
class Call:
    call_id: str
    request: CallRequest
    browser: BrowserLeg
    link: UpstreamLink
    media: MediaPath
    options: LegOptions
    answer_sdp: str
    services: CallServices
    pipeline: EventPipeline
    created_at: float = field(default_factory=time.monotonic)
    # Makes the call's upstream sessions: a replacement comes from here (continuity).
    upstreams: UpstreamFactory | None = None
    # Records the call's audio (recording on); kept only if should_record says so.
    recorder: CallRecorder | None = None
    recording_kept: bool = False
    end_reason: EndReason | None = None
    # Latest receive jitter per leg (seconds), from RTCP: what the jitter gauge shows.
    jitter: dict[str, float] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    _subscribers: set[asyncio.Queue[Message]] = field(default_factory=set)
    _tasks: asyncio.TaskGroup | None = None
    _server_pump: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.continuity = (
            Continuity(self)
            if self.options.continuity
            and self.upstreams is not None
            and self.media.swappable
            and self.dialect in ("ga", "beta")
            else None
        )

    @property
    def dialect(self) -> Dialect:
        return self.request.dialect

    @property
    def upstream(self) -> Upstream:
        """The upstream session carrying the call now."""
        return self.link.current

    @property
    def upstream_call_id(self) -> str | None:
        return self.upstream.session_id

    @property
    def metrics(self) -> Metrics:
        return self.services.metrics

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def stop(self, reason: EndReason) -> None:
        """Ask the call to end; :meth:`run` does the teardown. Safe to call more than once."""
        if self.end_reason is None:
            self.end_reason = reason
        self._stop.set()

    async def wait_done(self) -> None:
        await self._done.wait()

    def audio_counts(self) -> dict[tuple[str, str], int]:
        """Packets per (leg, direction) so far; ``in`` is what that leg sent us."""
        return self.media.counts()

    def snapshot(self, recording: RecordingSummary | None = None) -> CallSnapshot:
        stats = self.pipeline.stats
        transcript = self.pipeline.transcript
        ended = self._done.is_set() or self.end_reason is not None
        return CallSnapshot(
            call_id=self.call_id,
            upstream_call_id=self.upstream_call_id,
            dialect=self.dialect,
            media=self.media.mode,
            duration_s=time.monotonic() - self.created_at,
            state={"browser": self.browser.connection_state, "upstream": self.upstream.state},
            client_events=stats.client_events,
            server_events=stats.server_events,
            client_errors=stats.client_errors,
            policy_violations=stats.policy_violations,
            tool_calls=stats.tool_calls,
            tokens=dict(stats.tokens),
            audio_packets={f"{leg}_{d}": n for (leg, d), n in self.media.counts().items()},
            audio_dropped=self.media.dropped(),
            messages_dropped={
                "browser": self.browser.messages_dropped,
                "upstream": self.upstream.messages_dropped,
            },
            transcript_dropped=transcript.dropped if transcript is not None else None,
            recording=recording.fields() if recording is not None else None,
            reason=str(self.end_reason) if ended and self.end_reason else None,
            outcome=outcome_of(self.end_reason) if ended and self.end_reason else None,
            voice_seconds=stats.voice_seconds if self.dialect == "live" else None,
            upstream_sessions=len(self.link.sessions) or 1,
            upstream_call_ids=tuple(self.link.sessions),
            app=self.request.app,
            model=self.pipeline.model,
            cost_usd=self.pipeline.cost_usd,
        )

    # -- running -----------------------------------------------------------------------------------

    async def run(self) -> None:
        self.metrics.call_started(self.dialect)
        self.metrics.setup_stage("upstream_sdp", self.upstream.exchange_seconds)
        self.metrics.setup_stage("answer", time.monotonic() - self.created_at)
        log.info(
            "call.started",
            call_id=self.call_id,
            upstream_call_id=self.upstream_call_id,
            dialect=self.dialect,
            media=self.media.mode,
        )
        try:
            await self.pipeline.open_transcript()
            await self._start_recording()
            await self.services.hooks.session_start(self.pipeline.info)
            async with asyncio.TaskGroup() as tg:
                self._tasks = tg
                tasks = [
                    tg.create_task(self._pump_client_events()),
                    tg.create_task(watch.setup_stages(self)),
                    tg.create_task(watch.quality(self)),
                    tg.create_task(self.media.run()),
                ]
                if self.continuity is not None:
                    tasks.append(tg.create_task(self.continuity.renew()))
                self.start_server_pump()
                reason = await self._watch()
                if self.end_reason is None:
                    self.end_reason = reason
                for task in [*tasks, self._server_pump]:
                    if task is not None:
                        task.cancel()
        except Exception:
            # A fault of the gateway's own: the call cannot go on, and says so.
            log.exception("call.failed", call_id=self.call_id)
            self.end_reason = EndReason.INTERNAL_ERROR
        finally:
            await self._teardown()

    async def _start_recording(self) -> None:
        recorder, recordings = self.recorder, self.services.recordings
        if recorder is None or recordings is None:
            return
        if await self.services.hooks.should_record(self.pipeline.info):
            self.recording_kept = True
            recordings.keep(recorder)
        else:
            self.media.remove_tap(recorder.tap)
            log.info("recording.declined", call_id=self.call_id)

    async def _end_recording(self, duration_s: float) -> RecordingSummary | None:
        recorder, recordings = self.recorder, self.services.recordings
        if recorder is None or recordings is None:
            return None
        self.media.remove_tap(recorder.tap)
        return await recordings.end(recorder, duration_s, kept=self.recording_kept)

    async def _watch(self) -> EndReason:
        """What ends the call; with continuity, an upstream session's end does not."""
        continuity = self.continuity
        while True:
            watched = self.upstream
            reason = await watch.end(self)
            if continuity is None:
                return reason
            async with continuity.lock:
                if self.upstream is not watched and not self._stop.is_set():
                    continue  # replaced ahead of its expiry meanwhile
                if self._stop.is_set() or not continuity.may_replace(reason):
                    return reason
                replaced = await self._unless_ended(continuity.replace(reason))
                if isinstance(replaced, EndReason):
                    return replaced
                if not replaced:
                    return reason

    async def _unless_ended(self, work: Coroutine[Any, Any, bool]) -> bool | EndReason:
        """Run ``work`` (a replacement) unless the call is hung up or the browser goes first:
        then it is cancelled (what it dialled is ended) and that is the call's end."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stop.wait())
        gone = asyncio.ensure_future(self.browser.ended.wait())
        try:
            await asyncio.wait({task, stop, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (stop, gone):
                waiter.cancel()
            if not task.done():
                task.cancel()
            await asyncio.gather(task, stop, gone, return_exceptions=True)
        if task.cancelled():
            if self._stop.is_set():
                return self.end_reason or EndReason.HANGUP
            return EndReason.of_leg("browser", self.browser.end_reason)
        return task.result()  # a fault of the gateway's own is raised

    async def _pump_client_events(self) -> None:
        while True:
            message = await self.browser.inbox.get()
            out = await self.pipeline.client_message(message)
            if out is not None:
                self.link.send(out)

    async def _pump_server_events(self, upstream: Upstream) -> None:
        while True:
            await self._relay_server_message(await upstream.inbox.get())

    async def _relay_server_message(self, message: Message) -> None:
        out = await self.pipeline.server_message(message)
        if not self.pipeline.concealed:
            for queue in self._subscribers:
                _offer(queue, message, self.call_id)
        if out is not None:
            self.browser.send(out)
        for extra in self.pipeline.followups():
            self.browser.send(extra)

    # -- continuity: the upstream session changes under the call --------------------------------

    def start_server_pump(self) -> None:
        """Relay the current upstream session's events (one pump at a time)."""
        assert self._tasks is not None
        self.link.sessions.append(self.upstream.session_id or "")
        self._server_pump = self._tasks.create_task(self._pump_server_events(self.upstream))

    async def stop_server_pump(self) -> None:
        """Stop relaying the current session's events, after relaying what it already sent."""
        pump, self._server_pump = self._server_pump, None
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        inbox = self.upstream.inbox
        while not inbox.empty():
            await self._relay_server_message(inbox.get_nowait())

    def retire(self, upstream: Upstream) -> None:
        """A replaced session: closed and hung up in the background (it stops billing)."""
        self.services.background.spawn(end_session(upstream), name="call-retire-upstream")

    # -- the sideband ------------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[Message]:
        """A queue of every upstream event of this call, as the upstream sent it (sideband)."""
        queue: asyncio.Queue[Message] = SidebandQueue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Message]) -> None:
        self._subscribers.discard(queue)

    async def inject(self, message: Message, reply: Reply, *, trusted: bool = False) -> None:
        """A client event from the sideband: same policy, hooks and tools as the browser's
        (``trusted``: a Live sideband, which the frontend's allow-lists do not bind)."""
        out = await self.pipeline.client_message(message, reply, trusted=trusted)
        if out is not None:
            self.link.send(out)

    # -- ending ------------------------------------------------------------------------------------

    async def _close_legs(self) -> None:
        self.media.finish()
        if self.pipeline.tools is not None:
            await self.pipeline.tools.aclose()
        if self.continuity is not None:
            await self.continuity.aclose()
        await asyncio.gather(self.browser.close(), self.upstream.close())
        await self.upstream.hangup()

    async def discard(self, reason: EndReason) -> None:
        """End a call that never ran: no hooks, no transcript, no recording; counted as
        refused."""
        self.end_reason = reason
        try:
            if self.recorder is not None:
                self.media.remove_tap(self.recorder.tap)
            await self._close_legs()
            self.metrics.call_rejected()
            log.info("call.refused", call_id=self.call_id, reason=str(reason))
        finally:
            self._done.set()

    async def _teardown(self) -> None:
        reason = self.end_reason or EndReason.INTERNAL_ERROR
        self.end_reason = reason
        farewell = farewell_for(reason)
        if farewell is not None and self.browser.channel_open.is_set():
            # Tell the browser why, in the shape it knows, before its peer goes away.
            error = UpstreamError(farewell.message, code=farewell.code)
            shape = live_error_event if self.dialect == "live" else error_event
            self.browser.send(encode_event(shape(error)))
            await self.browser.drain()
        await self._close_legs()
        outcome = outcome_of(reason)
        duration_s = time.monotonic() - self.created_at
        self.pipeline.end_records(reason=str(reason), outcome=outcome, duration_s=duration_s)
        try:
            recording = await self._end_recording(duration_s)
        except Exception:
            log.exception("recording.end_failed", call_id=self.call_id)
            recording = RecordingSummary(recorded=False, failed=True)
        snapshot = self.snapshot(recording)
        self.metrics.call_ended(
            outcome, snapshot.duration_s, self.media.counts(), snapshot.messages_dropped
        )
        if outcome == "upstream_error":
            self.metrics.upstream_error("ended")
        log.info("call.ended", **snapshot.log_fields())
        try:
            await self.services.hooks.session_end(self.pipeline.info, snapshot.summary())
        finally:
            await self.pipeline.close_transcript()
            self._done.set()


class SidebandQueue(asyncio.Queue[Message]):
    """A sideband's share of a call's server events; counts what a slow reader lost."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.dropped = 0


def _offer(queue: asyncio.Queue[Message], message: Message, call_id: str) -> None:
    """Queue ``message`` for a sideband that may be slow: when its queue is full the oldest
    event gives way (the newest say most about the call), and the first loss is logged."""
    try:
        queue.put_nowait(message)
        return
    except asyncio.QueueFull:
        pass
    queue.get_nowait()
    queue.put_nowait(message)
    if isinstance(queue, SidebandQueue):
        queue.dropped += 1
        if queue.dropped > 1:
            return
    log.warning("sideband.overflow", call_id=call_id, queued=queue.maxsize)
