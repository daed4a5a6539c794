"""An aiortc "browser" for tests: a microphone track plus the ``oai-events`` data channel.

It dials exactly as OpenAI's browser code does (``createDataChannel`` before the mic track, one
offer, one POST) and records everything it gets back: every server event in order, and the RMS
of every received audio frame, so tests can assert on energy rather than on frame counts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel

from gateway.emulator.audio import FRAME_SAMPLES, PacedAudioTrack, tone
from gateway.emulator.vad import SAMPLE_RATE, Samples
from gateway.rtc.client import BrowserClient, OfferResult
from gateway.rtc.compat import OwnedPeerConnection

Event = dict[str, Any]
_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)


class MicrophoneTrack(PacedAudioTrack):
    """Silence, except for what :meth:`say` queued."""

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[tuple[Samples, bool]] = deque()
        self._current: Samples = _SILENCE[:0]
        self.spoken: list[float] = []
        """``time.monotonic()`` when each :meth:`say` began to be sent, in order."""

    def say(self, seconds: float, freq_hz: float = 440.0, amplitude: float = 0.3) -> None:
        """Queue a tone: a stand-in for speech that an energy VAD detects."""
        self._queue.append((tone(freq_hz, seconds, amplitude), True))

    def pause(self, seconds: float) -> None:
        """Queue silence, to space out two :meth:`say` calls."""
        self._queue.append((np.zeros(int(SAMPLE_RATE * seconds), dtype=np.int16), False))

    @property
    def speaking(self) -> bool:
        return bool(self._queue) or len(self._current) > 0

    def next_samples(self) -> Samples:
        out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        filled = 0
        while filled < FRAME_SAMPLES:
            if len(self._current) == 0:
                if not self._queue:
                    break
                self._current, spoken = self._queue.popleft()
                if spoken:
                    # This frame goes out now: its offset into the frame is the tone's start.
                    self.spoken.append(time.monotonic() + filled / SAMPLE_RATE)
            take = self._current[: FRAME_SAMPLES - filled]
            out[filled : filled + len(take)] = take
            filled += len(take)
            self._current = self._current[len(take) :]
        return out


@dataclass(frozen=True)
class AudioSlice:
    """Per-frame RMS values (linear, 0..1 of full scale) of some received audio."""

    rms: tuple[float, ...]

    @property
    def frames(self) -> int:
        return len(self.rms)

    @property
    def peak_rms(self) -> float:
        return max(self.rms, default=0.0)

    def energy_frames(self, threshold: float = 0.01) -> int:
        return sum(1 for value in self.rms if value >= threshold)


class ReceivedAudio:
    """Statistics of the remote audio track, one RMS value per received frame."""

    def __init__(self) -> None:
        self.rms: list[float] = []
        self.times: list[float] = []
        """``time.monotonic()`` when each frame arrived."""
        self._arrived = asyncio.Event()

    @property
    def frames(self) -> int:
        return len(self.rms)

    @property
    def peak_rms(self) -> float:
        return max(self.rms, default=0.0)

    def energy_frames(self, threshold: float = 0.01) -> int:
        return sum(1 for value in self.rms if value >= threshold)

    def mark(self) -> int:
        """A position to pass to :meth:`since` later."""
        return len(self.rms)

    def since(self, mark: int) -> AudioSlice:
        return AudioSlice(tuple(self.rms[mark:]))

    def reset(self) -> None:
        self.rms.clear()
        self.times.clear()

    def add(self, frame: av.AudioFrame) -> None:
        samples = frame.to_ndarray().astype(np.float32) / 32768.0
        self.rms.append(float(np.sqrt(np.mean(samples * samples))) if samples.size else 0.0)
        self.times.append(time.monotonic())
        self._arrived.set()
        self._arrived = asyncio.Event()

    async def wait_energy(
        self,
        *,
        frames: int = 1,
        threshold: float = 0.01,
        since: int = 0,
        timeout: float = 5.0,  # noqa: ASYNC109  # bounded waits are the point of this helper
    ) -> AudioSlice:
        """Wait until ``frames`` frames at or above ``threshold`` arrived after ``since``."""
        try:
            async with asyncio.timeout(timeout):
                while self.since(since).energy_frames(threshold) < frames:
                    await self._arrived.wait()
        except TimeoutError:
            got = self.since(since)
            raise TimeoutError(
                f"{got.energy_frames(threshold)} of {frames} frames >= {threshold} within "
                f"{timeout}s (received {got.frames}, peak {got.peak_rms:.3f})"
            ) from None
        return self.since(since)


ConnectResult = OfferResult


class TestPeer:
    """An aiortc "browser": audio track + ``oai-events`` data channel."""

    __test__ = False  # a helper, not a test class, despite its name

    def __init__(
        self, *, ice_addresses: tuple[str, ...] = ("127.0.0.1",), audio_codec: str | None = None
    ) -> None:
        """``audio_codec`` (e.g. ``"PCMU"``) restricts the offer to that codec, as
        openai-realtime-agents does with ``setCodecPreferences``; default: aiortc's (Opus)."""
        self.ice_addresses = ice_addresses
        self.audio_codec = audio_codec
        self.mic = MicrophoneTrack()
        self.client = BrowserClient(self.mic, ice_addresses=ice_addresses, codec=audio_codec)
        self.received = ReceivedAudio()
        self.events: list[Event] = []
        self.event_times: list[float] = []
        """``time.monotonic()`` when each of :attr:`events` arrived."""
        self.call_id: str | None = None
        self._cursors: dict[str, int] = {}
        self._event_arrived = asyncio.Event()
        self._opened = asyncio.Event()
        self._closed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def pc(self) -> OwnedPeerConnection | None:
        return self.client.pc

    @property
    def channel(self) -> RTCDataChannel | None:
        return self.client.channel

    async def create_offer(self) -> str:
        sdp = await self.client.create_offer()
        assert self.client.pc is not None and self.client.channel is not None
        channel = self.client.channel
        channel.on("open", self._opened.set)
        channel.on("message", self._on_message)
        channel.on("close", self._closed.set)
        self.client.pc.on("track", self._on_track)
        self.client.pc.on("connectionstatechange", self._on_connection_state)
        return sdp

    async def accept_answer(self, sdp: str) -> None:
        await self.client.accept_answer(sdp)

    async def connect(
        self,
        http: aiohttp.ClientSession,
        url: str,
        token: str | None,
        *,
        multipart_session: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> ConnectResult:
        """POST the offer to ``url``; on 201 apply the answer. ``token=None`` sends no auth."""
        sdp = await self.create_offer()
        result = await self.client.post_offer(
            http, url, sdp, token=token, session=multipart_session, headers=headers, timeout=10
        )
        if result.status == 201:
            self.call_id = result.call_id
            await self.accept_answer(result.body)
        return result

    async def wait_open(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109  # bounded wait
        async with asyncio.timeout(timeout):
            await self._opened.wait()

    def send(self, event: Event) -> None:
        self.send_raw(json.dumps(event))

    def send_raw(self, data: str | bytes) -> None:
        assert self.channel is not None, "connect() first"
        self.channel.send(data)

    def events_of(self, type: str) -> list[Event]:
        return [e for e in self.events if e["type"] == type]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    async def next_event(self, type: str, timeout: float = 5.0) -> Event:  # noqa: ASYNC109
        """The first event of ``type`` not yet returned by this method (waits if needed)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    start = self._cursors.get(type, 0)
                    for index in range(start, len(self.events)):
                        if self.events[index]["type"] == type:
                            self._cursors[type] = index + 1
                            return self.events[index]
                    self._cursors[type] = len(self.events)
                    await self._event_arrived.wait()
        except TimeoutError:
            recent = self.types()[-15:]
            raise TimeoutError(f"no {type!r} event within {timeout}s; last: {recent}") from None

    async def wait_closed(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109  # bounded
        async with asyncio.timeout(timeout):
            await self._closed.wait()

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.mic.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()

    def _on_message(self, message: str | bytes) -> None:
        self.events.append(json.loads(message))
        self.event_times.append(time.monotonic())
        self._event_arrived.set()
        self._event_arrived = asyncio.Event()

    def _on_connection_state(self) -> None:
        if self.pc is not None and self.pc.connectionState in ("closed", "failed"):
            self._closed.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            task = asyncio.create_task(self._consume(track), name="test-peer:audio-in")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, av.AudioFrame):
                self.received.add(frame)
