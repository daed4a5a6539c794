"""One leg of a relayed call: an aiortc peer connection with its ``oai-events`` channel.

The same class serves both legs. Towards the browser the gateway *answers*
(:meth:`Peer.answer`); towards the upstream it *offers* (:meth:`Peer.offer` then
:meth:`Peer.accept_answer`). Messages sent before the channel is open wait in order and are
flushed the moment it opens; messages received go to :attr:`Peer.inbox` for the relay to pump.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import structlog
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy

from gateway.config import IceServer
from gateway.errors import InvalidOffer, Unavailable, UpstreamError
from gateway.protocol.sdp import announce_address
from gateway.rtc import compat, ice
from gateway.rtc.compat import OwnedPeerConnection
from gateway.rtc.media import Leg, MediaPath
from gateway.types import Message

log = structlog.get_logger(__name__)

CHANNEL_LABEL = "oai-events"
# What a browser may send in one data-channel message: the size aiortc advertises in its answer
# (a=max-message-size). Larger messages are discarded while they arrive, with an error event.
BROWSER_MAX_MESSAGE = 262144
# Client events sent before the channel opens are few (session.update, maybe a greeting);
# anything beyond this is a runaway sender, not a startup race.
MAX_PENDING = 1000
INBOX_SIZE = 1000


class Peer:
    """An RTCPeerConnection as a relay leg: audio in and out, one event channel, one end."""

    def __init__(
        self,
        name: Leg,
        *,
        ice_addresses: Sequence[str] = (),
        ice_servers: Sequence[IceServer] = (),
        relay_only: bool = False,
        port_range: tuple[int, int] | None = None,
        public_ip: str | None = None,
        max_message: int = compat.DEFAULT_MAX_MESSAGE,
        port_usage: ice.PortUsage | None = None,
    ) -> None:
        self.name: Leg = name
        self._port_usage = port_usage
        self._max_message = max_message
        self._ice_addresses = tuple(ice_addresses)
        self._port_range = port_range
        self._public_ip = public_ip
        self.pc = OwnedPeerConnection(
            RTCConfiguration(
                iceServers=ice.rtc_servers(ice_servers),
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
                iceTransportPolicy=(
                    RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
                ),
            )
        )
        self.channel: RTCDataChannel | None = None
        self.inbox: asyncio.Queue[Message] = asyncio.Queue(INBOX_SIZE)
        self.channel_open = asyncio.Event()
        self.connected = asyncio.Event()
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.messages_dropped = 0
        self.messages_too_large = 0
        self.channels_refused = 0
        self._pending: list[Message] = []
        self._closing: asyncio.Future[None] | None = None
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.pc.on("datachannel", self._on_datachannel)

    # -- signalling -------------------------------------------------------------------------

    async def answer(self, offer_sdp: str, media: MediaPath) -> str:
        """Answer a browser's offer; its audio m-line carries ``media`` both ways."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
            if not audio:
                raise InvalidOffer("The SDP offer has no usable audio section.")
            # The first audio m-line carries the conversation, both ways, whatever it said.
            audio[0].direction = "sendrecv"
            audio[0].sender.replaceTrack(media.outgoing(self.name))
            audio[0].setCodecPreferences([media.codec])
            media.incoming(self.name, audio[0].receiver)
            answer = await self.pc.createAnswer()
            with ice.gathering(self._ice_addresses, self._port_range, self._port_usage) as gathered:
                await self.pc.setLocalDescription(answer)
            compat.tag(self.pc, self.name, max_message=self._max_message)
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

    async def offer(self, media: MediaPath) -> str:
        """Create an offer (the upstream leg): ``media`` on one sendrecv audio m-line, and the
        ``oai-events`` channel."""
        transceiver = self.pc.addTransceiver(media.outgoing(self.name), direction="sendrecv")
        transceiver.setCodecPreferences([media.codec])
        media.incoming(self.name, transceiver.receiver)
        self._adopt_channel(self.pc.createDataChannel(CHANNEL_LABEL))
        offer = await self.pc.createOffer()
        with ice.gathering(self._ice_addresses, self._port_range, self._port_usage) as gathered:
            await self.pc.setLocalDescription(offer)
        compat.tag(self.pc, self.name, max_message=self._max_message)
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
            self._send_now(channel, message)
        elif self.ended.is_set():
            self.messages_dropped += 1
        elif len(self._pending) >= MAX_PENDING:
            self.messages_dropped += 1
            log.warning("peer.pending_overflow", leg=self.name)
        else:
            self._pending.append(message)

    def _send_now(self, channel: RTCDataChannel, message: Message) -> None:
        try:
            channel.send(message)
        except ValueError:
            # Larger than the far end's a=max-message-size: it could not take it whole, and one
            # event it cannot have must not end the call. Dropped, counted, logged once.
            self.messages_dropped += 1
            self.messages_too_large += 1
            if self.messages_too_large == 1:
                log.warning("peer.message_too_large", leg=self.name, size=len(message))

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        # The first channel is the call's. Another one would take the server's events away from
        # it, and its closing would end the call: it is closed at once, the call goes on.
        if self.channel is not None:
            self.channels_refused += 1
            log.info("peer.extra_channel_refused", leg=self.name, refused=self.channels_refused)
            channel.close()
            return
        self._adopt_channel(channel)

    def _adopt_channel(self, channel: RTCDataChannel) -> None:
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
            self._send_now(self.channel, message)
        self.channel_open.set()

    def _on_message(self, message: Message) -> None:
        try:
            self.inbox.put_nowait(message)
        except asyncio.QueueFull:
            self.messages_dropped += 1
            log.warning("peer.inbox_overflow", leg=self.name)

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

    async def drain(self, limit: float = 0.5) -> None:
        """Give queued data-channel bytes a moment (at most ``limit`` s) to leave before the
        peer is closed."""
        channel = self.channel
        if channel is None:
            return
        deadline = time.monotonic() + limit
        await asyncio.sleep(0.05)
        # Polled: aiortc's "bufferedamountlow" fires only when crossing the threshold.
        while channel.bufferedAmount > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    def packets_received(self) -> int:
        """Datagrams received from the remote peer (authenticated or validated), of any kind:
        audio, RTCP, ICE consent checks, DTLS, SCTP. A peer that still sends any is alive."""
        return compat.packets_received(self.pc)

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

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
