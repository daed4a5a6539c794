"""Continuity: a call outlives its upstream session.

A Realtime session ends at OpenAI's maximum duration (``session_expired``) and can fail or
vanish mid-call. The gateway holds both legs, so it can put a new upstream session under the
browser's call, which never notices:

* **reactive** — the session expired, failed or vanished: client events are held, a response
  cut short is ended for the browser (``response.done``, cancelled), a new session is dialled
  (a few attempts, with back-off) with the session in force, seeded with the conversation,
  and the browser's audio resumes on the same RTP stream;
* **proactive** (:meth:`Continuity.renew`) — a session that says when it expires
  (``expires_at``) is replaced ``lead`` seconds before, at a quiet moment (no response, the user
  not speaking, no audio playing): the new session is dialled while the old one still runs, and
  only the cut-over itself holds anything up.

When no session can be had, the call ends as it would have without continuity.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final

import structlog

from gateway.call.outcomes import EndReason
from gateway.errors import GatewayError
from gateway.protocol.conversation import session_for_replacement
from gateway.protocol.events import encode_event
from gateway.rtc.media import MediaPath
from gateway.upstream.base import Upstream, end_session

if TYPE_CHECKING:
    from gateway.call.call import Call

log = structlog.get_logger(__name__)

# What each end of an upstream session is called when it is replaced (the metric's label).
REPLACEABLE: Final[dict[EndReason, str]] = {
    EndReason.SESSION_EXPIRED: "expired",
    EndReason.UPSTREAM_VANISHED: "vanished",
    EndReason.UPSTREAM_CHANNEL_CLOSED: "failed",
    EndReason.UPSTREAM_CONNECTION_FAILED: "failed",
    EndReason.UPSTREAM_CONNECTION_CLOSED: "failed",
    EndReason.UPSTREAM_CLOSED: "failed",
}
# Pauses before the second and third attempt at a new session.
BACKOFF: Final = (0.5, 2.0)
# A call that has needed this many new sessions has an upstream problem no retry will fix.
MAX_SWAPS: Final = 30
# How long one new session may take to be dialled and connected.
DIAL_TIMEOUT: Final = 15.0
# How often the proactive renewal looks for a quiet moment.
QUIET_POLL: Final = 0.1


class Continuity:
    """The replacement of one call's upstream sessions; every swap holds :attr:`lock`."""

    def __init__(self, call: Call) -> None:
        self._call = call
        self.lock = asyncio.Lock()
        self.swaps = 0
        # A session dialled ahead of an expiry: (the session it replaces, it, its media).
        self._prepared: tuple[Upstream, Upstream, MediaPath] | None = None
        self._replaced = asyncio.Event()

    async def aclose(self) -> None:
        """The call is ending: a session dialled ahead of an expiry is not needed."""
        prepared = self._take_prepared()
        if prepared is not None:
            await end_session(prepared[1])

    def _take_prepared(self) -> tuple[Upstream, Upstream, MediaPath] | None:
        prepared, self._prepared = self._prepared, None
        return prepared

    def may_replace(self, reason: EndReason) -> bool:
        return reason in REPLACEABLE and self.swaps < MAX_SWAPS

    async def replace(self, reason: EndReason) -> bool:
        """The upstream session ended (``reason``): carry the call on a new one. False if none
        could be had (the call then ends for ``reason``). Call with :attr:`lock` held."""
        call = self._call
        label = REPLACEABLE[reason]
        started = time.monotonic()
        old = call.upstream
        await self._begin(old)
        prepared = self._take_prepared()
        if prepared is not None and prepared[0] is old:
            # Dialled ahead of this very expiry: nothing to wait for.
            self._cut_over(prepared[1], prepared[2], label=label, started=started)
            return True
        for attempt in range(len(BACKOFF) + 1):
            if attempt:
                await asyncio.sleep(BACKOFF[attempt - 1])
            dialled = await self._dial()
            if dialled is not None:
                self._cut_over(*dialled, label=label, started=started)
                return True
        held = call.link.discard()
        call.metrics.upstream_swap(label, False, time.monotonic() - started)
        log.warning("continuity.failed", call_id=call.call_id, reason=label, held_dropped=held)
        if call.pipeline.held_expiry is not None:
            # The browser hears why its call ends, as it would have without continuity.
            call.browser.send(call.pipeline.held_expiry)
        return False

    async def renew(self) -> None:
        """Runs for the whole call: replace each session that says when it expires shortly
        before it does, at a quiet moment."""
        call = self._call
        lead = call.options.continuity_lead
        if lead <= 0:
            return
        while True:
            expires_at = await call.pipeline.session_expiry()
            current = call.upstream
            delay = expires_at - lead - time.monotonic()
            if delay <= 0:
                # Less notice than the lead, as soon as it began: the clocks disagree, or the
                # session is shorter than the lead. Renewing now would renew in a loop; its
                # expiry is handled as it comes instead.
                log.info(
                    "continuity.renewal_skipped",
                    call_id=call.call_id,
                    expires_in=round(delay + lead, 1),
                )
                await self._wait_replaced(current)
                continue
            await asyncio.sleep(delay)
            if not await self._quiet_before(expires_at):
                await self._wait_replaced(current)  # the expiry is handled as it comes
                continue
            started = time.monotonic()
            dialled = await self._dial()
            if dialled is None or call.upstream is not current:
                if dialled is not None:
                    await end_session(dialled[0])
                await self._wait_replaced(current)
                continue
            self._prepared = (current, *dialled)
            # Still quiet, or past the expiry (the cut then ends what was under way).
            await self._quiet_before(expires_at)
            async with self.lock:
                prepared = self._take_prepared()
                if prepared is None:
                    continue  # taken by the expiry's own replacement
                if call.upstream is not current or call.done:
                    await end_session(prepared[1])
                    continue
                await self._begin(current)
                self._cut_over(prepared[1], prepared[2], label="renewed", started=started)

    async def _begin(self, old: Upstream) -> None:
        """Stop relaying ``old``: hold client events, let it go, end what it left unfinished."""
        call = self._call
        call.link.hold()
        await call.stop_server_pump()
        call.retire(old)
        for message in await call.pipeline.interrupted():
            call.browser.send(message)

    async def _quiet_before(self, expires_at: float) -> bool:
        """Wait for a quiet moment; False if the session expires first."""
        pipeline = self._call.pipeline
        while not pipeline.quiet:
            if time.monotonic() >= expires_at:
                return False
            await asyncio.sleep(QUIET_POLL)
        return True

    async def _wait_replaced(self, upstream: Upstream) -> None:
        while self._call.upstream is upstream:
            self._replaced.clear()
            await self._replaced.wait()

    async def _dial(self) -> tuple[Upstream, MediaPath] | None:
        """A new upstream session, connected and with its channel open, or None."""
        call = self._call
        assert call.upstreams is not None
        standby = call.media.standby()
        upstream = call.upstreams(standby)
        session = session_for_replacement(call.pipeline.session)
        try:
            async with asyncio.timeout(DIAL_TIMEOUT):
                await upstream.connect(session)
                await upstream.connected.wait()
                await upstream.channel_open.wait()
        except (GatewayError, TimeoutError) as exc:
            log.warning(
                "continuity.dial_failed",
                call_id=call.call_id,
                code=exc.code if isinstance(exc, GatewayError) else "timeout",
            )
            await end_session(upstream)
            return None
        except BaseException:
            await end_session(upstream)
            raise
        return upstream, standby

    def _cut_over(
        self, upstream: Upstream, standby: MediaPath, *, label: str, started: float
    ) -> None:
        call = self._call
        call.media.adopt(standby)
        replay = call.pipeline.replay(call.options.replay_tokens)
        call.link.release(upstream, [encode_event(event) for event in replay.events])
        call.pipeline.session_resumed()
        call.start_server_pump()
        self.swaps += 1
        self._replaced.set()
        seconds = time.monotonic() - started
        call.metrics.upstream_swap(label, True, seconds)
        log.info(
            "continuity.swapped",
            call_id=call.call_id,
            reason=label,
            upstream_call_id=upstream.session_id,
            swaps=self.swaps,
            replayed=replay.kept,
            omitted=replay.omitted,
            replay_tokens=replay.tokens,
            seconds=round(seconds, 3),
        )
