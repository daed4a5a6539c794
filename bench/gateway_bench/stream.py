"""One direction of one call's audio: what was sent when, and what arrived when.

Both ends of every benchmark stream live in the load process (the client peer and the bench
upstream's peer), so the receiver reads the sender's log directly and both use the same
``time.monotonic()`` clock: no clock sync, no timestamps inside the audio.

:class:`MarkerTrack` is the sending end (the pre-encoded loop, paced at 20 ms, each send
logged). :class:`ReceiveTap` is the receiving end: it takes the place of an aiortc receiver's
jitter buffer, so packets are never decoded or delayed, and matches each one against the log.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.rtc import compat
from gateway_bench.audio import (
    CLICK_AT,
    CLICK_EVERY,
    FRAME_SAMPLES,
    FRAME_SECONDS,
    SAMPLE_RATE,
    TIME_BASE,
    MarkerLoop,
    OnsetDecoder,
    find_onset,
)

# Decoding for a click starts this many packets before it is sent: the decoder warms up on
# noise, so its first output is not mistaken for an onset.
ARM_AHEAD = 3
# A click not found within this long after it was sent counts as missed.
CLICK_TIMEOUT = 1.5
_NAN = float("nan")
# After a stall longer than this the pacing origin moves instead of bursting to catch up.
_MAX_LAG = 0.2


@dataclass
class StreamWindow:
    """What one stream measured over a window of send times."""

    sent: int
    received: int
    latencies_ms: list[float]
    method: str  # "payload" (every packet identified) or "click" (decoded onsets)
    identical: int  # packets whose payload arrived byte-identical
    foreign: int  # packets whose payload was re-encoded on the way


class AudioStream:
    """The log of one direction of one call, shared by its sender and its receiver."""

    def __init__(self, loop: MarkerLoop) -> None:
        self.loop = loop
        self.sent_at = array("d")
        # Latency (s) per sequence number; NaN until that packet (or its click) is seen.
        self.latency = array("d")
        self.first_arrival: float | None = None
        self.identical = 0
        self.foreign = 0
        self.duplicates = 0
        self.foreign_arrivals = array("d")
        self.clicks_missed = 0
        self.clicks_spurious = 0

    @property
    def next_seq(self) -> int:
        return len(self.sent_at)

    def record_send(self, now: float) -> int:
        self.sent_at.append(now)
        self.latency.append(_NAN)
        return len(self.sent_at) - 1

    def seq_for_index(self, index: int) -> int | None:
        """The latest sent sequence number carrying loop packet ``index``."""
        last = len(self.sent_at) - 1
        if last < 0:
            return None
        seq = last - ((last - index) % len(self.loop))
        return seq if seq >= 0 else None

    def window(self, start: float, end: float) -> StreamWindow:
        """Packets *sent* in ``[start, end]`` and what became of them."""
        lo = _bisect(self.sent_at, start)
        hi = _bisect(self.sent_at, end)
        sent = hi - lo
        values = [v for v in self.latency[lo:hi] if not math.isnan(v)]
        latencies = [v * 1000.0 for v in values]
        if self.foreign == 0:
            received = len(values)
            method = "payload"
        else:
            # Re-encoded packets carry no identity: count arrivals over the same window
            # shifted by the typical latency instead.
            shift = sorted(values)[len(values) // 2] if values else 0.0
            a = _bisect(self.foreign_arrivals, start + shift)
            b = _bisect(self.foreign_arrivals, end + shift)
            received = min(b - a, sent)
            method = "click"
        return StreamWindow(sent, received, latencies, method, self.identical, self.foreign)


def _bisect(values: array[float], x: float) -> int:
    lo, hi = 0, len(values)
    while lo < hi:
        mid = (lo + hi) // 2
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


class PacedPacketTrack(MediaStreamTrack):
    """Sends one encoded ``av.Packet`` per 20 ms, on a steady clock that skips ahead after a
    stall rather than bursting to catch up.

    aiortc's sender only packetises encoded packets (``OpusEncoder.pack``), so the sending side
    costs no encoding at all.
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._origin: float | None = None
        self._count = 0

    def payload(self, index: int) -> bytes:
        """The ``index``-th packet's payload."""
        raise NotImplementedError

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._origin is None:
            self._origin = now
        else:
            delay = self._origin + self._count * FRAME_SECONDS - now
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -_MAX_LAG:
                self._origin -= delay
            if self.readyState != "live":
                raise MediaStreamError
        index = self._count
        self._count += 1
        packet = av.Packet(self.payload(index))
        packet.pts = index * FRAME_SAMPLES
        packet.time_base = TIME_BASE
        return packet


class MarkerTrack(PacedPacketTrack):
    """Sends the marker loop, logging each send."""

    def __init__(self, stream: AudioStream) -> None:
        super().__init__()
        self._stream = stream

    def payload(self, index: int) -> bytes:
        seq = self._stream.record_send(time.monotonic())
        loop = self._stream.loop
        return loop.packets[seq % len(loop)]


class ReceiveTap:
    """Stands in for an aiortc audio receiver's jitter buffer: logs, never decodes the stream.

    aiortc calls :meth:`add` on the event loop for each RTP packet, after its RTCP statistics
    and depayloading. A known payload names its packet: that packet's latency is logged. An
    unknown one means the gateway re-encoded the audio; then the tap decodes only from a few
    packets before each click until it finds the click's onset.
    """

    capacity = 16  # mirrors aiortc's JitterBuffer

    def __init__(self, stream: AudioStream, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._clock = clock
        self._decoder = OnsetDecoder()
        self._click_seq: int | None = None
        self._armed_at = 0.0

    def add(self, packet: Any) -> tuple[bool, None]:
        now = self._clock()
        stream = self._stream
        if stream.first_arrival is None:
            stream.first_arrival = now
        payload = compat.rtp_payload(packet)
        index = stream.loop.index.get(payload)
        if index is not None:
            stream.identical += 1
            seq = stream.seq_for_index(index)
            if seq is not None:
                if math.isnan(stream.latency[seq]):
                    stream.latency[seq] = now - stream.sent_at[seq]
                else:
                    stream.duplicates += 1
        else:
            stream.foreign += 1
            stream.foreign_arrivals.append(now)
            self._look_for_click(payload, now)
        return False, None  # nothing for aiortc's decoder thread

    def _look_for_click(self, payload: bytes, now: float) -> None:
        stream = self._stream
        if self._click_seq is None:
            upcoming = _next_click(stream.next_seq)
            if upcoming - stream.next_seq > ARM_AHEAD:
                return
            self._click_seq = upcoming
            self._armed_at = now
            self._decoder.reset()
        click = self._click_seq
        samples = self._decoder.decode(payload)
        onset = find_onset(samples)
        if onset is None:
            if now - self._armed_at > CLICK_TIMEOUT:
                stream.clicks_missed += 1
                self._click_seq = None
            return
        self._click_seq = None
        if click >= len(stream.sent_at):
            stream.clicks_spurious += 1  # loud before the click left its sender
            return
        heard = now + (onset - stream.loop.click_offset) / SAMPLE_RATE
        latency = heard - stream.sent_at[click]
        if latency < 0:
            stream.clicks_spurious += 1
            return
        stream.latency[click] = latency


def _next_click(seq: int) -> int:
    """The first click sequence number at or after ``seq``."""
    return seq + (CLICK_AT - seq) % CLICK_EVERY


def tap_receiver(receiver: Any, stream: AudioStream) -> ReceiveTap:
    """Route ``receiver``'s packets into ``stream``'s log instead of aiortc's decoder."""
    compat.check()
    tap = ReceiveTap(stream)
    compat.replace_jitter_buffer(receiver, tap)
    return tap
