"""A WebRTC client of OpenAI's call API, dialling as OpenAI's browser code does.

The ``oai-events`` channel is created before the microphone track, one offer is made with every
candidate in it, and it is POSTed once: as raw SDP with a Bearer client secret (a browser), or
as multipart ``sdp`` + ``session`` with a key (an app's backend). What the server answers is
returned as it came, so callers can check errors as well as success. The test browser and the
benchmark's clients are both built on it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCDataChannel, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from multidict import CIMultiDictProxy

from gateway.protocol.sdp import call_id_from_location
from gateway.rtc import ice
from gateway.rtc.compat import OwnedPeerConnection

CHANNEL_LABEL = "oai-events"


@dataclass(frozen=True)
class OfferResult:
    """The server's answer to an offer: status, headers and body as they came."""

    status: int
    headers: CIMultiDictProxy[str]
    body: str

    @property
    def call_id(self) -> str | None:
        location = self.headers.get("Location")
        return call_id_from_location(location) if location else None


class BrowserClient:
    """One call's client side: a peer connection with a microphone and the event channel."""

    def __init__(
        self,
        microphone: MediaStreamTrack,
        *,
        ice_addresses: Sequence[str] = ("127.0.0.1",),
        codec: str | None = None,
    ) -> None:
        """``codec`` (e.g. ``"PCMU"``) restricts the offer to that codec, as
        openai-realtime-agents does with ``setCodecPreferences``; default: aiortc's (Opus)."""
        self.microphone = microphone
        self.ice_addresses = tuple(ice_addresses)
        self.codec = codec
        self.pc: OwnedPeerConnection | None = None
        self.channel: RTCDataChannel | None = None
        self.transceiver: RTCRtpTransceiver | None = None

    async def create_offer(self) -> str:
        """Make the peer, its channel and audio, and an offer with all candidates."""
        if self.pc is not None:
            raise RuntimeError("A client makes one offer; use a new one for another call.")
        # Owned: a client may close at any moment of ICE setup and must leave no task behind.
        pc = OwnedPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc = pc
        self.channel = pc.createDataChannel(CHANNEL_LABEL)
        self.transceiver = pc.addTransceiver(self.microphone, direction="sendrecv")
        if self.codec is not None:
            wanted = "audio/" + self.codec.lower()
            codecs = RTCRtpSender.getCapabilities("audio").codecs
            self.transceiver.setCodecPreferences(
                [c for c in codecs if c.mimeType.lower() == wanted]
            )
        offer = await pc.createOffer()
        with ice.host_addresses(self.ice_addresses):
            await pc.setLocalDescription(offer)
        return str(pc.localDescription.sdp)

    async def post_offer(
        self,
        http: aiohttp.ClientSession,
        url: str,
        sdp: str,
        *,
        token: str | None = None,
        session: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 15.0,  # noqa: ASYNC109  # one bounded request
    ) -> OfferResult:
        """POST ``sdp``: raw, or multipart with ``session``; ``token=None`` sends no auth."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data: Any
        if session is None:
            sent["Content-Type"] = "application/sdp"
            data = sdp
        else:
            data = aiohttp.FormData()
            data.add_field("sdp", sdp, content_type="application/sdp")
            data.add_field("session", json.dumps(session), content_type="application/json")
        async with asyncio.timeout(timeout):
            async with http.post(url, data=data, headers=sent) as response:
                return OfferResult(response.status, response.headers, await response.text())

    async def accept_answer(self, sdp: str) -> None:
        assert self.pc is not None, "create_offer() first"
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
