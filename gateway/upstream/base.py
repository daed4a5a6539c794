"""What a call needs of its upstream session, whatever carries it.

A call is typed against :class:`Upstream` only: it never learns whether the session is an
OpenAI Realtime call over WebRTC (:mod:`gateway.upstream.realtime`), another dialect, or a test
double. The media path is handed to the factory, so an implementation wires its own audio in
and out of the call's :class:`~gateway.rtc.media.MediaPath`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from gateway.rtc.media import MediaPath
from gateway.types import Message


class Upstream(Protocol):
    """One upstream session of a call. Constructors do no I/O; :meth:`connect` does."""

    inbox: asyncio.Queue[Message]
    """The upstream's events, in order."""
    connected: asyncio.Event
    """The media transport is up."""
    channel_open: asyncio.Event
    """Events can flow both ways."""
    ended: asyncio.Event
    """The session ended by itself (its transport failed or closed, its channel closed)."""
    exchange_seconds: float
    """How long the upstream's own signalling took (its share of call setup)."""

    @property
    def session_id(self) -> str | None:
        """The upstream's id for the session (OpenAI's ``rtc_…``), once connected."""

    @property
    def messages_dropped(self) -> int:
        """Events lost on the way (sent after the end, or beyond a full queue)."""

    @property
    def end_reason(self) -> str | None:
        """Why :attr:`ended` was set: ``channel_closed``, ``connection_failed``, ..."""

    @property
    def state(self) -> str:
        """The transport's state, for operators (``connecting``, ``connected``, ...)."""

    async def connect(self, session: Mapping[str, Any]) -> None:
        """Open the session with ``session`` (OpenAI's session object); raises
        :class:`~gateway.errors.UpstreamError` if the upstream refuses or fails."""

    def send(self, message: Message) -> None:
        """Send one client event (queued in order until the channel opens)."""

    async def receive_quality(self) -> tuple[int, float]:
        """(packets lost, jitter in RTP clock units) of the audio received from it."""

    async def hangup(self) -> None:
        """End the session at the upstream (it stops billing). Idempotent; never raises."""

    async def close(self) -> None:
        """Close the transport. Idempotent; never raises."""


UpstreamFactory = Callable[[MediaPath], Upstream]
"""Makes the upstream session of one call, bound to that call's media path."""


async def end_session(upstream: Upstream) -> None:
    """Close ``upstream``'s transport, then hang the session up (it stops billing)."""
    await upstream.close()
    await upstream.hangup()
