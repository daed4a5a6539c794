"""Where a call's client events go: its upstream session, which may be replaced mid-call.

While a replacement is being dialled, events are held (in order, bounded) instead of being sent
to a session that is gone; the new session gets the conversation replayed first, then what was
held, so the model reads the history before anything said meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from gateway.types import Message
from gateway.upstream.base import Upstream

log = structlog.get_logger(__name__)

# A replacement takes a second or two; a browser sends a few events a second at most, beyond
# audio (which is not an event). More than this is a runaway sender: the rest are dropped.
MAX_HELD = 500


class UpstreamLink:
    def __init__(self, upstream: Upstream) -> None:
        self.current = upstream
        self.sessions: list[str] = []
        """The upstream session ids this call has used, oldest first."""
        self._held: list[Message] | None = None
        self.dropped = 0

    @property
    def holding(self) -> bool:
        return self._held is not None

    def send(self, message: Message) -> None:
        held = self._held
        if held is None:
            self.current.send(message)
        elif len(held) < MAX_HELD:
            held.append(message)
        else:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("continuity.held_overflow", held=MAX_HELD)

    def hold(self) -> None:
        """Keep what is sent from now on, until :meth:`release` or :meth:`discard`."""
        if self._held is None:
            self._held = []

    def release(self, upstream: Upstream, first: Iterable[Message]) -> None:
        """Carry on with ``upstream``: send it ``first``, then what was held, in order."""
        held, self._held = self._held or [], None
        self.current = upstream
        for message in first:
            upstream.send(message)
        for message in held:
            upstream.send(message)

    def discard(self) -> int:
        """No new session: what was held goes nowhere (the call is ending). How many."""
        held, self._held = self._held or [], None
        return len(held)
