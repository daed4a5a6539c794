"""The watchdogs of a running call: what ends it, and the figures it reports on the way.

Each function runs as one task of :meth:`gateway.call.call.Call.run`; none touches a transport
directly, only what the legs and the media path report.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog

from gateway.call.outcomes import EndReason

if TYPE_CHECKING:
    from gateway.call.call import Call

log = structlog.get_logger(__name__)

STATS_INTERVAL = 5.0
LIVENESS_TICK = 0.5


async def end(call: Call) -> EndReason:
    """Wait for whatever ends ``call`` first, and say what it was."""
    waits: dict[asyncio.Future[object], str] = {
        asyncio.ensure_future(call._stop.wait()): "stopped",
        asyncio.ensure_future(call.browser.ended.wait()): "browser",
        asyncio.ensure_future(call.upstream.ended.wait()): "upstream",
        asyncio.ensure_future(_connect_deadline(call)): "connect_timeout",
        asyncio.ensure_future(_liveness(call)): "liveness",
    }
    if call.request.budget.end_calls:
        waits[asyncio.ensure_future(call.pipeline.over_budget.wait())] = "budget"
    if call.continuity is not None:
        # The session says it expired: replaced at once, not when it closes.
        waits[asyncio.ensure_future(call.pipeline.expiring.wait())] = "expiring"
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waits:
            waiter.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    first = next(iter(done))
    which = waits[first]
    if which in ("browser", "upstream"):
        # A Live session that said it closed ends either way: the upstream hangs up, or the
        # browser, having heard session.closed, closes its peer first.
        closed = call.pipeline.stats.session_closed
        if closed == "close_requested":
            return EndReason.SESSION_CLOSED
        if closed == "expired":
            return EndReason.SESSION_EXPIRED
    if which == "browser":
        return EndReason.of_leg("browser", call.browser.end_reason)
    if which == "upstream":
        return EndReason.of_leg("upstream", call.upstream.end_reason)
    if which == "liveness":
        result = first.result()
        assert isinstance(result, EndReason)
        return result
    if which == "budget":
        return EndReason.BUDGET_SPENT
    if which == "expiring":
        return EndReason.SESSION_EXPIRED
    if which == "connect_timeout":
        return EndReason.CONNECT_TIMEOUT
    return call.end_reason or EndReason.HANGUP


async def _connect_deadline(call: Call) -> None:
    """Returns (ending the call) if either leg is not up in time; else waits forever."""
    timeout = call.options.connect_timeout
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(
                call.browser.connected.wait(),
                call.browser.channel_open.wait(),
                call.upstream.connected.wait(),
                call.upstream.channel_open.wait(),
            )
    except TimeoutError:
        log.warning(
            "call.connect_timeout",
            call_id=call.call_id,
            timeout=timeout,
            browser=call.browser.connection_state,
            upstream=call.upstream.state,
        )
        return
    await asyncio.Event().wait()


async def _liveness(call: Call) -> EndReason:
    """Returns the limit ``call`` reached.

    aiortc reports no transient "disconnected" state and aioice's consent checks take ~30 s,
    so a browser that vanishes (a killed tab, a dropped network) is noticed here instead:
    a live browser sends something at least every few seconds — audio (every 20 ms, or
    400 ms with DTX), RTCP reports, ICE consent checks (every 2.5–6 s) — even when it only
    listens, so ``peer_timeout`` seconds without any datagram from it means it is gone. The
    upstream sends audio continuously (silence between responses): one that sends no audio
    and no events for that long is frozen, even if its network stack still answers.
    """
    limits = call.options
    stats = call.pipeline.stats
    await asyncio.gather(call.browser.connected.wait(), call.upstream.connected.wait())
    browser_seen = upstream_seen = user_seen = time.monotonic()
    last_browser = last_upstream = last_user = -1
    while True:
        await asyncio.sleep(LIVENESS_TICK)
        now = time.monotonic()
        browser = call.browser.packets_received() + stats.client_events
        upstream = call.media.to_browser.frames_in + stats.server_events
        user = stats.client_events + stats.speech_started
        if browser != last_browser:
            browser_seen, last_browser = now, browser
        if upstream != last_upstream:
            upstream_seen, last_upstream = now, upstream
        if user != last_user or stats.responding:
            user_seen, last_user = now, user
        if now - browser_seen >= limits.peer_timeout:
            reason = EndReason.BROWSER_VANISHED
        elif now - upstream_seen >= limits.peer_timeout:
            reason = EndReason.UPSTREAM_VANISHED
        elif now - user_seen >= limits.idle_timeout:
            reason = EndReason.IDLE_TIMEOUT
        elif now - call.created_at >= limits.max_duration:
            reason = EndReason.MAX_DURATION
        else:
            continue
        log.info("call.limit_reached", call_id=call.call_id, reason=str(reason))
        return reason


async def setup_stages(call: Call) -> None:
    """Setup-time figures: the browser's transport up, the first upstream audio relayed."""
    await call.browser.connected.wait()
    call.metrics.setup_stage("browser_connected", time.monotonic() - call.created_at)
    first = await call.media.to_browser.first_frame()
    call.metrics.setup_stage("first_upstream_audio", first - call.created_at)


async def quality(call: Call) -> None:
    """Receive-side RTCP statistics of both legs: packets lost (counted), jitter (kept on the
    call, where the jitter gauge reads the highest of the live calls)."""
    lost_seen = {"browser": 0, "upstream": 0}
    upstream = call.upstream
    while True:
        await asyncio.sleep(STATS_INTERVAL)
        if call.upstream is not upstream:
            # A new upstream session (continuity) counts its losses from zero.
            upstream, lost_seen["upstream"] = call.upstream, 0
        legs = (("browser", call.browser.receive_quality), ("upstream", upstream.receive_quality))
        for leg, measure in legs:
            lost, jitter = await measure()
            call.metrics.audio_lost(leg, max(0, lost - lost_seen[leg]))
            lost_seen[leg] = max(lost, lost_seen[leg])
            call.jitter[leg] = jitter / call.media.clock_rate
