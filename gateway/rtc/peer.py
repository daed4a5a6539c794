"""One leg of a relayed call: an aiortc peer connection with its ``oai-events`` channel.

The same class serves both legs. Towards the browser the gateway *answers*
(:meth:`Peer.answer`); towards the upstream it *offers* (:meth:`Peer.offer` then
:meth:`Peer.accept_answer`). Messages sent before the channel is open wait in order and are
flushed the moment it opens; messages received go to :attr:`Peer.inbox` for the relay to pump.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from gateway.errors import InvalidOffer, Unavailable, UpstreamError
from gateway.protocol.sdp import announce_address
from gateway.rtc import ice

log = structlog.get_logger(__name__)

CHANNEL_LABEL = "oai-events"
# Client events sent before the channel opens are few (session.update, maybe a greeting);
# anything beyond this is a runaway sender, not a startup race.
MAX_PENDING = 1000
INBOX_SIZE = 1000

Message = str | bytes


class OwnedPeerConnection(RTCPeerConnection):
    """An RTCPeerConnection whose connect task is owned, so ``close()`` leaves nothing running.

    aiortc starts ``__connect`` (ICE, then DTLS, then SCTP) with a bare ``ensure_future`` and
    ``close()`` never waits for it. Closed early, that task goes on: ICE can complete after the
    close and start aioice's consent checks on a dead connection, which linger for ~30 s. Here
    the task is tracked and cancelled on close. Written against aiortc 1.16.0 / aioice 0.13.0;
    ``tests/unit/test_peer.py`` fails loudly if the hooked names go away.
    """

    def __init__(self, configuration: RTCConfiguration | None = None) -> None:
        super().__init__(configuration)
        self._connect_tasks: set[asyncio.Task[Any]] = set()

    async def _RTCPeerConnection__connect(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connect_tasks.add(task)
        try:
            await super()._RTCPeerConnection__connect()  # type: ignore[misc]
        finally:
            self._connect_tasks.discard(task)

    async def close(self) -> None:
        await super().close()
        pending = [t for t in self._connect_tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for connection in self._ice_connections():
            consent = getattr(connection, "_query_consent_task", None)
            if isinstance(consent, asyncio.Task) and not consent.done():
                consent.cancel()
                await asyncio.gather(consent, return_exceptions=True)

    def _ice_connections(self) -> list[Any]:
        transports = [t.receiver.transport for t in self.getTransceivers()]
        if self.sctp is not None:
            transports.append(self.sctp.transport)
        found: list[Any] = []
        for dtls in transports:
            connection = getattr(getattr(dtls, "transport", None), "_connection", None)
            if connection is not None and connection not in found:
                found.append(connection)
        return found


class Peer:
    """An RTCPeerConnection as a relay leg: audio in and out, one event channel, one end."""

    def __init__(
        self,
        name: str,
        *,
        ice_addresses: Sequence[str] = (),
        ice_servers: Sequence[RTCIceServer] = (),
        relay_only: bool = False,
        port_range: tuple[int, int] | None = None,
        public_ip: str | None = None,
    ) -> None:
        self.name = name
        self._ice_addresses = tuple(ice_addresses)
        self._port_range = port_range
        self._public_ip = public_ip
        self.pc = OwnedPeerConnection(
            RTCConfiguration(
                iceServers=list(ice_servers),
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
                iceTransportPolicy=(
                    RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
                ),
            )
        )
        self.channel: RTCDataChannel | None = None
        self.inbox: asyncio.Queue[Message] = asyncio.Queue(INBOX_SIZE)
        self.remote_audio: MediaStreamTrack | None = None
        self.audio_receiver: RTCRtpReceiver | None = None
        self.channel_open = asyncio.Event()
        self.connected = asyncio.Event()
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.messages_dropped = 0
        self._pending: list[Message] = []
        self._closing: asyncio.Future[None] | None = None
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.pc.on("datachannel", self._adopt_channel)
        self.pc.on("track", self._on_track)

    # -- signalling -------------------------------------------------------------------------

    async def answer(
        self,
        offer_sdp: str,
        outgoing_audio: MediaStreamTrack,
        codec: RTCRtpCodecCapability | None = None,
    ) -> str:
        """Answer a browser's offer, sending ``outgoing_audio`` back on its audio m-line."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
            if not audio:
                raise InvalidOffer("The SDP offer has no usable audio section.")
            # The first audio m-line carries the conversation, both ways, whatever it said.
            audio[0].direction = "sendrecv"
            audio[0].sender.replaceTrack(outgoing_audio)
            if codec is not None:
                audio[0].setCodecPreferences([codec])
            self.audio_receiver = audio[0].receiver
            answer = await self.pc.createAnswer()
            with ice.gathering(self._ice_addresses, self._port_range) as gathered:
                await self.pc.setLocalDescription(answer)
        except InvalidOffer:
            raise
        except Exception as exc:  # aiortc raises ValueError and friends on SDP it cannot use
            log.info("peer.offer_refused", leg=self.name, error=f"{type(exc).__name__}: {exc}")
            raise InvalidOffer(
                "The SDP offer could not be answered: check that it has one audio section with "
                "a direction, one data channel section, and BUNDLE naming exactly those mids."
            ) from None
        if gathered.exhausted:
            low, high = self._port_range or (0, 0)
            raise Unavailable(
                f"No free UDP port for media in GATEWAY_ICE_PORT_RANGE ({low}-{high}); "
                "retry shortly.",
                code="ice_ports_exhausted",
                retry_after=2,
            )
        sdp = str(self.pc.localDescription.sdp)
        return announce_address(sdp, self._public_ip) if self._public_ip else sdp

    async def offer(
        self, outgoing_audio: MediaStreamTrack, codec: RTCRtpCodecCapability | None = None
    ) -> str:
        """Create the upstream offer: one sendrecv audio track and the ``oai-events`` channel."""
        transceiver = self.pc.addTransceiver(outgoing_audio, direction="sendrecv")
        if codec is not None:
            transceiver.setCodecPreferences([codec])
        self.audio_receiver = transceiver.receiver
        self._adopt_channel(self.pc.createDataChannel(CHANNEL_LABEL))
        offer = await self.pc.createOffer()
        with ice.gathering(self._ice_addresses, self._port_range) as gathered:
            await self.pc.setLocalDescription(offer)
        if gathered.exhausted:
            raise Unavailable(
                "No free UDP port for media; retry shortly.",
                code="ice_ports_exhausted",
                retry_after=2,
            )
        return str(self.pc.localDescription.sdp)

    async def accept_answer(self, answer_sdp: str) -> None:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        except Exception as exc:  # aiortc raises ValueError and friends on odd SDP
            raise UpstreamError(
                f"The upstream's SDP answer could not be applied: {exc}",
                code="upstream_bad_answer",
            ) from exc

    # -- events -----------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Send now if the channel is open, else queue in order until it opens."""
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(message)
        elif self.ended.is_set():
            self.messages_dropped += 1
        elif len(self._pending) >= MAX_PENDING:
            self.messages_dropped += 1
            log.warning("peer.pending_overflow", leg=self.name)
        else:
            self._pending.append(message)

    def _adopt_channel(self, channel: RTCDataChannel) -> None:
        # OpenAI honours only the newest channel of a peer; so do we.
        self.channel = channel
        channel.on("message", self._on_message)
        channel.on("open", self._on_channel_open)
        channel.on("close", lambda: self._end("channel_closed"))
        if channel.readyState == "open":
            self._on_channel_open()

    def _on_channel_open(self) -> None:
        pending, self._pending = self._pending, []
        assert self.channel is not None
        for message in pending:
            self.channel.send(message)
        self.channel_open.set()

    def _on_message(self, message: Message) -> None:
        try:
            self.inbox.put_nowait(message)
        except asyncio.QueueFull:
            self.messages_dropped += 1
            log.warning("peer.inbox_overflow", leg=self.name)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self.remote_audio is None:
            self.remote_audio = track

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            self._end(f"connection_{state}")

    def _end(self, reason: str) -> None:
        if not self.ended.is_set():
            self.end_reason = reason
            self.ended.set()

    # -- teardown ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the peer connection; idempotent, and a second caller waits for the first."""
        if self._closing is not None:
            await asyncio.shield(self._closing)
            return
        self._closing = asyncio.get_running_loop().create_future()
        self._end("closed")
        try:
            await self.pc.close()
        except Exception:  # closing must not raise into teardown paths
            log.exception("peer.close_failed", leg=self.name)
        finally:
            self._closing.set_result(None)

    async def receive_quality(self) -> tuple[int, float]:
        """(packets lost, jitter in RTP clock units) of this leg's inbound audio, from RTCP."""
        lost, jitter = 0, 0.0
        try:
            report = await self.pc.getStats()
        except Exception:  # a peer closing under us has no stats; that is not an error
            return lost, jitter
        for stat in report.values():
            if getattr(stat, "type", None) == "inbound-rtp":
                lost += int(getattr(stat, "packetsLost", 0) or 0)
                jitter = max(jitter, float(getattr(stat, "jitter", 0) or 0))
        return lost, jitter
