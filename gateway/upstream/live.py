"""OpenAI's GPT-Live API over WebRTC as a call's upstream: the same aiortc peer as a Realtime
call's, signalled through ``POST /live/sessions`` (JSON) and ended through its hangup."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import structlog

from gateway.errors import GatewayError
from gateway.upstream.realtime import RealtimeUpstream

log = structlog.get_logger(__name__)


class LiveUpstream(RealtimeUpstream):
    """One OpenAI Live session carrying one gateway call."""

    async def connect(self, session: Mapping[str, Any]) -> None:
        offer = await self.peer.offer(self._media)
        started = time.monotonic()
        answer = await self._client.create_live_session(offer, dict(session))
        self.exchange_seconds = time.monotonic() - started
        # Known before the answer is applied: if that fails, the session must still be ended.
        self._session_id = answer.call_id
        await self.peer.accept_answer(answer.sdp)

    async def hangup(self) -> None:
        if self._hung_up or self._session_id is None:
            return
        self._hung_up = True
        try:
            await self._client.hangup_live(self._session_id)
        except GatewayError as exc:
            if self._metrics is not None:
                self._metrics.upstream_error("hangup")
            log.warning(
                "call.upstream_hangup_failed", upstream_call_id=self._session_id, code=exc.code
            )
