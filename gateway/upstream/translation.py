"""OpenAI's Realtime translations over WebRTC as a call's upstream: the same aiortc peer as a
Realtime call's, signalled in two steps, as a browser would be.

The project key mints a client secret bound to the translation session
(``POST /realtime/translations/client_secrets``), and that secret authorises the SDP exchange
(``POST /realtime/translations/calls``, raw SDP). Both are the paths OpenAI's SDK and public
client samples use; nothing else about translations is assumed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gateway.upstream.realtime import RealtimeUpstream


class TranslationUpstream(RealtimeUpstream):
    """One OpenAI translation session carrying one gateway call."""

    async def connect(self, session: Mapping[str, Any]) -> None:
        offer = await self.peer.offer(self._media)
        started = time.monotonic()
        secret = await self._client.create_translation_secret(dict(session))
        answer = await self._client.create_translation_call(offer, secret)
        self.exchange_seconds = time.monotonic() - started
        # The call's id if the answer names one (a Location header, as Realtime's has), else
        # the session's, from the secret: what operators see as the upstream's id.
        self._session_id = answer.call_id or secret.session_id
        await self.peer.accept_answer(answer.sdp)

    async def hangup(self) -> None:
        # OpenAI documents no hangup for translation calls (Realtime's /calls/{id}/hangup is
        # not said to cover them), so none is sent: closing the peer, which the call always
        # does first, is what ends the session over WebRTC.
        return
