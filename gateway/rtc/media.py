"""The media path: audio from one leg's receiver to the other leg's sender.

:class:`MediaPath` owns both directions of one call's audio, in either mode; nothing else
branches on the mode. Taps see every packet that arrives on either leg, encoded, with its RTP
timing (what recording and level meters need), without delaying or changing it.

Two modes, chosen by ``GATEWAY_MEDIA``:

``passthrough`` (default)
    Encoded payloads are forwarded as they arrive: a :class:`PacketForwarder` stands in for the
    receiving RTCRtpReceiver's jitter buffer and pushes each payload, as an ``av.Packet``, to
    the far leg's :class:`RelayTrack`, whose RTCRtpSender only packetises it (``pack()``).
    Nothing is decoded or encoded and no jitter buffer delays the audio; the far end's own
    jitter buffer does that job once. Both legs are pinned to the same codec.

``transcode``
    aiortc's default path: decode (with its fixed 80 ms jitter buffer), then re-encode. Kept
    as the compatibility fallback and the benchmark's baseline.

aiortc has no public hook for encoded frames on the receive side; the forwarder stands in for a
receiver's jitter buffer and ends the decoder thread aiortc would otherwise keep idle, through
:mod:`gateway.rtc.compat` (which checks those private names at startup).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import av
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from gateway.rtc import compat

MediaMode = Literal["passthrough", "transcode"]
Leg = Literal["browser", "upstream"]

# 25 frames of 20 ms: half a second of slack before the oldest audio is dropped.
QUEUE_FRAMES = 25
# In order of preference; all three are what OpenAI answers with (protocol.md §3).
CODEC_PREFERENCE = ("opus", "pcmu", "pcma")


def choose_codec(offered: Iterable[str]) -> RTCRtpCodecCapability | None:
    """The codec both legs will use: the most preferred one the browser offered."""
    names = {name.lower() for name in offered}
    capabilities = RTCRtpSender.getCapabilities("audio").codecs
    for name in CODEC_PREFERENCE:
        if name in names:
            for capability in capabilities:
                if capability.mimeType.lower() == f"audio/{name}":
                    return capability
    return None


class RelayTrack(MediaStreamTrack):
    """An outgoing audio track fed by :meth:`push`; what the sending leg's RTCRtpSender reads.

    Carries ``av.AudioFrame``s (transcode) or encoded ``av.Packet``s (passthrough).
    """

    kind = "audio"

    def __init__(self, maxlen: int = QUEUE_FRAMES) -> None:
        super().__init__()
        self._frames: deque[Any] = deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self._ended = False
        self.frames_in = 0
        self.frames_out = 0
        self.frames_dropped = 0
        self.first_frame_at: float | None = None
        self._first = asyncio.Event()

    async def first_frame(self) -> float:
        """When the first frame was pushed (``time.monotonic()``), waiting for it if need be."""
        await self._first.wait()
        assert self.first_frame_at is not None
        return self.first_frame_at

    def push(self, frame: Any) -> None:
        if self._ended:
            return
        if len(self._frames) == self._frames.maxlen:
            # The sending leg is not consuming yet (still connecting): stale audio goes first.
            self.frames_dropped += 1
        self._frames.append(frame)
        self.frames_in += 1
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()
            self._first.set()
        self._ready.set()

    def finish(self) -> None:
        """No more audio will come: the sender's next ``recv()`` ends the track."""
        self._ended = True
        self._ready.set()

    async def recv(self) -> Any:
        while not self._frames:
            if self._ended or self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        self.frames_out += 1
        return self._frames.popleft()

    def stop(self) -> None:
        self.finish()
        super().stop()


@dataclass(frozen=True)
class TappedPacket:
    """One RTP packet as it arrived on a leg, before the far leg sees it."""

    leg: Leg
    payload: bytes
    timestamp: int
    sequence: int
    arrival: float
    """``time.monotonic()`` when it reached the media path."""
    clock_rate: int


Tap = Callable[[TappedPacket], None]


def _tap_all(
    taps: list[Tap],
    leg: Leg,
    packet: Any,
    payload: bytes,
    clock_rate: int,
    timestamp: int | None = None,
) -> None:
    tapped = TappedPacket(
        leg=leg,
        payload=payload,
        timestamp=int(packet.timestamp) if timestamp is None else timestamp,
        sequence=int(packet.sequence_number),
        arrival=time.monotonic(),
        clock_rate=clock_rate,
    )
    for tap in taps:
        tap(tapped)


class PacketForwarder:
    """Stands in for an audio receiver's jitter buffer, forwarding payloads undecoded.

    aiortc calls :meth:`add` on the event loop for every RTP packet, after its own RTCP
    statistics, RTX unwrapping and depayloading. Timestamps are unwrapped here (not with aiortc's
    TimestampMapper, which mistakes reordering for a wrap): a late or duplicate packet is dropped,
    and a gap (loss, DTX) becomes a jump in ``pts``, which the far sender turns into the same
    jump in RTP time, so the far end's jitter buffer sees the true timeline.
    """

    capacity = 16  # read by nothing we know of; kept for parity with JitterBuffer

    def __init__(
        self,
        sink: RelayTrack,
        clock_rate: int,
        *,
        leg: Leg = "browser",
        taps: list[Tap] | None = None,
    ) -> None:
        self._sink = sink
        self._leg: Leg = leg
        self._clock_rate = clock_rate
        # Shared with the media path, so a tap added later sees the packets from then on.
        self._taps = taps if taps is not None else []
        self._time_base = Fraction(1, clock_rate)
        self._last_timestamp: int | None = None
        self._pts = 0
        # Added to the sender's RTP timestamps before the taps see them: zero, until this
        # forwarder takes over from another (a replacement upstream session).
        self._offset = 0
        self._last_at = 0.0
        # (pts, tapped timestamp, time) of the forwarder this one takes over from, applied at
        # its next packet: the far end's timeline goes on from there, gap included.
        self._resume: tuple[int, int, float] | None = None
        self.packets = 0
        self.dropped_late = 0
        self.dropped_empty = 0

    def add(self, packet: Any) -> tuple[bool, None]:
        payload = compat.rtp_payload(packet)
        if not payload:
            # No codec frame is zero bytes long (RFC 6716 §3); forwarded, a decoder may take it
            # for the end of the stream and stop decoding for the rest of the call.
            self.dropped_empty += 1
            return False, None
        timestamp = int(packet.timestamp)
        if self._resume is not None:
            self._take_over(timestamp)
        if self._taps:
            tapped = (timestamp + self._offset) & 0xFFFFFFFF
            _tap_all(self._taps, self._leg, packet, payload, self._clock_rate, tapped)
        if self._last_timestamp is not None:
            delta = (timestamp - self._last_timestamp) & 0xFFFFFFFF
            if delta == 0 or delta >= 1 << 31:
                self.dropped_late += 1
                return False, None
            self._pts += delta
        self._last_timestamp = timestamp
        self._last_at = time.monotonic()
        encoded = av.Packet(payload)
        encoded.pts = self._pts
        encoded.time_base = self._time_base
        self.packets += 1
        self._sink.push(encoded)
        return False, None  # nothing for aiortc's decoder

    def take_over(
        self, previous: PacketForwarder | None, sink: RelayTrack, taps: list[Tap]
    ) -> None:
        """Feed ``sink`` (and ``taps``) in place of ``previous``, from the next packet on.

        The far end hears one stream: the next packet is placed after ``previous``'s last one by
        the time that passed between them (at least one frame), in ``pts`` and in the timestamps
        the taps see, so its jitter buffer and a recording see a pause, never a jump back.
        """
        if previous is not None:
            previous.detach()
            last_tapped = ((previous._last_timestamp or 0) + previous._offset) & 0xFFFFFFFF
            self._resume = (previous._pts, last_tapped, previous._last_at or time.monotonic())
        self._sink = sink
        self._taps = taps

    def _take_over(self, timestamp: int) -> None:
        assert self._resume is not None
        pts, tapped, at = self._resume
        self._resume = None
        frame = self._clock_rate // 50  # 20 ms
        gap = max(frame, round((time.monotonic() - at) * self._clock_rate))
        self._pts = pts + gap
        self._offset = (tapped + gap - timestamp) & 0xFFFFFFFF
        self._last_timestamp = None  # the next packet lands at _pts exactly

    def retarget(self, sink: RelayTrack) -> None:
        """Feed ``sink`` from the next packet on (the far leg's session was replaced; the new
        sender numbers its own RTP packets)."""
        self._sink = sink

    def detach(self) -> None:
        """Forward nothing more: this leg's session has been replaced."""
        self._sink = RelayTrack(maxlen=1)
        self._sink.finish()
        self._taps = []


class _TappingBuffer:
    """Transcode mode: aiortc's own jitter buffer, with the taps shown each packet first."""

    def __init__(self, inner: Any, leg: Leg, taps: list[Tap], clock_rate: int) -> None:
        self._inner = inner
        self._leg: Leg = leg
        self._taps = taps
        self._clock_rate = clock_rate
        self.capacity = inner.capacity

    def add(self, packet: Any) -> Any:
        if self._taps:
            payload = compat.rtp_payload(packet)
            if payload:
                _tap_all(self._taps, self._leg, packet, payload, self._clock_rate)
        return self._inner.add(packet)


class MediaPath:
    """Both directions of one call's audio: what each leg sends, where what it receives goes.

    A leg's sender reads :meth:`outgoing`; a leg's receiver is handed to :meth:`incoming` before
    media flows. :meth:`run` does the work the mode needs (decoding pumps in transcode mode;
    nothing in passthrough, where aiortc's callbacks push each packet through).
    """

    def __init__(self, mode: MediaMode, codec: RTCRtpCodecCapability) -> None:
        self.mode: MediaMode = mode
        self.codec = codec
        # "opus", "pcmu" or "pcma": what both legs send (the codec is pinned for the call).
        self.codec_name: Literal["opus", "pcmu", "pcma"] = _codec_name(codec)
        self.clock_rate: int = codec.clockRate
        self.to_browser = RelayTrack()
        self.to_upstream = RelayTrack()
        self.forwarders: dict[Leg, PacketForwarder] = {}
        self._pumps: list[tuple[RTCRtpReceiver, RelayTrack]] = []
        self._taps: list[Tap] = []
        # What earlier upstream sessions' tracks carried, so counts() spans the whole call.
        self._retired: dict[tuple[str, str], int] = {}
        self._retired_dropped = 0

    @property
    def swappable(self) -> bool:
        """Whether the upstream session can be replaced under a running call (passthrough:
        nothing between the legs holds decoder state)."""
        return self.mode == "passthrough"

    def standby(self) -> MediaPath:
        """A media path for a replacement upstream session to wire itself into. Until
        :meth:`adopt`, what it receives goes nowhere and it is sent nothing."""
        if not self.swappable:
            raise RuntimeError("only a passthrough media path can change its upstream")
        return MediaPath(self.mode, self.codec)

    def adopt(self, standby: MediaPath) -> None:
        """Relay between the browser and ``standby``'s upstream from now on; the upstream this
        path had is cut off (it is closed by its owner). The browser hears one stream."""
        old = self.forwarders.pop("upstream", None)
        new = standby.forwarders.get("upstream")
        if new is not None:
            new.take_over(old, self.to_browser, self._taps)
            self.forwarders["upstream"] = new
        elif old is not None:
            old.detach()
        retired = self.to_upstream
        self._retired[("browser", "in")] = self._retired.get(("browser", "in"), 0) + (
            retired.frames_in
        )
        self._retired[("upstream", "out")] = self._retired.get(("upstream", "out"), 0) + (
            retired.frames_out
        )
        self._retired_dropped += retired.frames_dropped
        self.to_upstream = standby.to_upstream
        browser = self.forwarders.get("browser")
        if browser is not None:
            browser.retarget(self.to_upstream)
        retired.finish()  # the old sender's next read ends its track

    def outgoing(self, leg: Leg) -> RelayTrack:
        """The track ``leg``'s sender reads: what the other leg sent."""
        return self.to_browser if leg == "browser" else self.to_upstream

    def incoming(self, leg: Leg, receiver: RTCRtpReceiver) -> None:
        """Route what ``receiver`` (of ``leg``) gets to the other leg, in this path's mode."""
        sink = self.to_upstream if leg == "browser" else self.to_browser
        if self.mode == "passthrough":
            forwarder = PacketForwarder(sink, self.clock_rate, leg=leg, taps=self._taps)
            compat.replace_jitter_buffer(receiver, forwarder)
            # aiortc starts a decoder thread per receiver; with nothing to decode, its
            # end-of-stream marker, queued now, lets it exit as soon as it starts instead of
            # idling for the call. (receiver.stop() queues another and joins the thread.)
            compat.stop_decoder_thread(receiver)
            self.forwarders[leg] = forwarder
        else:
            inner = compat.jitter_buffer(receiver)
            tapping = _TappingBuffer(inner, leg, self._taps, self.clock_rate)
            compat.replace_jitter_buffer(receiver, tapping)
            # Its track exists only once the remote description is applied: read it in run().
            self._pumps.append((receiver, sink))

    def add_tap(self, tap: Tap) -> None:
        """Show ``tap`` every packet from now on, from both legs (called on the event loop;
        it must be quick and must not raise)."""
        self._taps.append(tap)

    def remove_tap(self, tap: Tap) -> None:
        if tap in self._taps:
            self._taps.remove(tap)

    async def run(self) -> None:
        """Move decoded audio in transcode mode; returns when the pumps end (at once in
        passthrough, which needs no task)."""
        if self._pumps:
            async with asyncio.TaskGroup() as tg:
                for receiver, sink in self._pumps:
                    tg.create_task(pump_audio(receiver.track, sink))

    def counts(self) -> dict[tuple[str, str], int]:
        """Packets per (leg, direction) so far; ``in`` is what that leg sent us."""
        retired = self._retired
        return {
            ("browser", "in"): self.to_upstream.frames_in + retired.get(("browser", "in"), 0),
            ("upstream", "out"): self.to_upstream.frames_out + retired.get(("upstream", "out"), 0),
            ("upstream", "in"): self.to_browser.frames_in,
            ("browser", "out"): self.to_browser.frames_out,
        }

    def dropped(self) -> dict[str, int]:
        """Stale audio dropped while the far leg was not yet consuming (bounded queues)."""
        return {
            "to_browser": self.to_browser.frames_dropped,
            "to_upstream": self.to_upstream.frames_dropped + self._retired_dropped,
        }

    def finish(self) -> None:
        self.to_browser.finish()
        self.to_upstream.finish()


def _codec_name(codec: RTCRtpCodecCapability) -> Literal["opus", "pcmu", "pcma"]:
    name = codec.mimeType.split("/", 1)[-1].lower()
    if name == "pcmu":
        return "pcmu"
    if name == "pcma":
        return "pcma"
    return "opus"


async def pump_audio(source: MediaStreamTrack, sink: RelayTrack) -> None:
    """Transcode mode: copy decoded frames from ``source`` into ``sink`` until it ends."""
    try:
        while True:
            sink.push(await source.recv())
    except MediaStreamError:
        pass
    finally:
        sink.finish()
