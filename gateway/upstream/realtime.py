"""OpenAI's Realtime API over WebRTC as a call's upstream: an aiortc peer that offers, and the
HTTP exchange (:class:`~gateway.upstream.client.UpstreamClient`) that answers it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from gateway.config import IceServer
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.rtc.media import MediaPath
from gateway.rtc.peer import Peer
from gateway.types import Message
from gateway.upstream.client import UpstreamClient

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RealtimeOptions:
    """How the upstream leg gathers: the host addresses and STUN/TURN servers it may use."""

    ice_addresses: tuple[str, ...] = ()
    ice_servers: tuple[IceServer, ...] = ()


class RealtimeUpstream:
    """One OpenAI Realtime call (``POST /realtime/calls``) carrying one gateway call."""

    def __init__(
        self,
        media: MediaPath,
        client: UpstreamClient,
        *,
        options: RealtimeOptions = RealtimeOptions(),
        metrics: Metrics | None = None,
    ) -> None:
        self._media = media
        self._client = client
        self._metrics = metrics
        self._peer = Peer(
            "upstream", ice_addresses=options.ice_addresses, ice_servers=options.ice_servers
        )
        self.inbox: asyncio.Queue[Message] = self._peer.inbox
        self.connected = self._peer.connected
        self.channel_open = self._peer.channel_open
        self.ended = self._peer.ended
        self.exchange_seconds = 0.0
        self._session_id: str | None = None
        self._hung_up = False

    @property
    def peer(self) -> Peer:
        """The WebRTC leg carrying the session."""
        return self._peer

    @property
    def session_id(self) -> str | None:
        return self._session_id

    @property
    def end_reason(self) -> str | None:
        return self._peer.end_reason

    @property
    def state(self) -> str:
        return self._peer.connection_state

    @property
    def messages_dropped(self) -> int:
        return self._peer.messages_dropped

    async def connect(self, session: Mapping[str, Any]) -> None:
        offer = await self._peer.offer(self._media)
        started = time.monotonic()
        answer = await self._client.create_call(offer, dict(session))
        self.exchange_seconds = time.monotonic() - started
        # Known before the answer is applied: if that fails, the session must still be hung up.
        self._session_id = answer.call_id
        await self._peer.accept_answer(answer.sdp)

    def send(self, message: Message) -> None:
        self._peer.send(message)

    async def receive_quality(self) -> tuple[int, float]:
        return await self._peer.receive_quality()

    async def hangup(self) -> None:
        if self._hung_up or self._session_id is None:
            return
        self._hung_up = True
        try:
            await self._client.hangup(self._session_id)
        except GatewayError as exc:
            if self._metrics is not None:
                self._metrics.upstream_error("hangup")
            log.warning(
                "call.upstream_hangup_failed", upstream_call_id=self._session_id, code=exc.code
            )

    async def close(self) -> None:
        await self._peer.close()
