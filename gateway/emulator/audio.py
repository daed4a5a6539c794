"""Audio for the emulator: decoding what arrives, synthesising tones, and a paced output track.

The output track is continuous, as OpenAI's is: one 20 ms frame every 20 ms, silence between
responses, paced against the loop's monotonic clock from a fixed origin so it does not drift.
"""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Callable
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.emulator.vad import SAMPLE_RATE, Samples, rms

FRAME_SAMPLES = 960  # 20 ms at 48 kHz
FRAME_MS = 1000.0 * FRAME_SAMPLES / SAMPLE_RATE
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
# After a stall longer than this the clock origin moves forward instead of bursting frames out
# to catch up: a receiver would only drop the burst.
_MAX_LAG_S = 0.2

_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)


def decode_frame(frame: av.AudioFrame) -> tuple[Samples, float, float]:
    """Mono 48 kHz samples, duration in ms and RMS of one received frame.

    aiortc decodes Opus to s16 stereo 48 kHz and G.711/G.722 to s16 mono at 8/16 kHz.
    """
    raw = frame.to_ndarray()
    if raw.dtype.kind == "f":
        raw = raw * 32767
    data: npt.NDArray[np.int16] = raw.astype(np.int16, copy=False)
    channels = len(frame.layout.channels)
    level = rms(data)
    mono = np.ascontiguousarray(data.reshape(-1)[::channels], dtype=np.int16)
    rate = int(frame.sample_rate or SAMPLE_RATE)
    if rate != SAMPLE_RATE and SAMPLE_RATE % rate == 0:
        mono = np.repeat(mono, SAMPLE_RATE // rate)
    duration_ms = 1000.0 * frame.samples / rate
    return mono, duration_ms, level


def to_frame(mono: Samples, pts: int) -> av.AudioFrame:
    """One s16 stereo 48 kHz frame, the format aiortc's Opus encoder takes without resampling."""
    stereo = np.repeat(mono, 2).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    frame.sample_rate = SAMPLE_RATE
    frame.pts = pts
    frame.time_base = TIME_BASE
    return frame


def tone(freq_hz: float, seconds: float, amplitude: float = 0.25) -> Samples:
    """A sine tone with 10 ms fades, so it starts and ends without a click."""
    n = int(SAMPLE_RATE * seconds)
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    wave = np.sin(2 * np.pi * freq_hz * t) * amplitude
    fade = min(n // 2, SAMPLE_RATE // 100)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        wave[:fade] *= ramp
        wave[-fade:] *= ramp[::-1]
    return (wave * 32767).astype(np.int16)


# A major pentatonic scale: any sequence of these notes sounds pleasant.
_NOTES_HZ = (523.25, 587.33, 659.25, 783.99, 880.0)


def spoken_tones(text: str, *, max_seconds: float = 1.5) -> Samples:
    """A short melody standing in for speech: ~0.5-1.5 s, longer for longer text."""
    count = max(3, min(int(max_seconds / 0.2), 2 + len(text) // 12))
    seed = sum(text.encode("utf-8")) if text else 0
    notes = [tone(_NOTES_HZ[(seed + 3 * i) % len(_NOTES_HZ)], 0.16) for i in range(count)]
    gap = np.zeros(int(SAMPLE_RATE * 0.04), dtype=np.int16)
    pieces: list[Samples] = []
    for note in notes:
        pieces += [note, gap]
    return np.concatenate(pieces)


class OpusEncoder:
    """Mono Opus for what the emulator says; silence is one cached packet, never re-encoded.

    Yielding encoded packets makes aiortc's sender only packetise them: no resampling, no
    encoder thread hop and no per-frame audio-level pass, the bulk of an idle call's CPU.
    """

    def __init__(self) -> None:
        self._codec: av.AudioCodecContext | None = None

    @staticmethod
    def _open() -> av.AudioCodecContext:
        codec = av.CodecContext.create("libopus", "w")
        assert isinstance(codec, av.AudioCodecContext)
        codec.bit_rate = 48_000
        codec.format = "s16"
        codec.layout = "mono"
        codec.sample_rate = SAMPLE_RATE
        codec.time_base = TIME_BASE
        codec.options = {"application": "voip"}
        return codec

    def encode(self, mono: Samples) -> bytes:
        if self._codec is None:
            self._codec = self._open()
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        packets = self._codec.encode(frame)
        return b"".join(bytes(p) for p in packets)

    def reset(self) -> None:
        """Forget the signal so far: the next clip starts from a fresh encoder."""
        self._codec = None


def _silence_packet() -> bytes:
    encoder = OpusEncoder()
    # The first packets of a fresh encoder carry its start-up; a later one is plain silence.
    return [encoder.encode(_SILENCE) for _ in range(3)][-1]


class PacedAudioTrack(MediaStreamTrack):
    """An audio track yielding a 20 ms frame every 20 ms; subclasses say what is in it."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._origin: float | None = None
        self._pts = 0

    def next_samples(self) -> Samples:
        """The next 960 mono samples."""
        return _SILENCE

    async def _tick(self) -> int:
        """Wait for the next frame's time; returns its pts."""
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._origin is None:
            self._origin = loop.time()
        else:
            self._pts += FRAME_SAMPLES
            delay = self._origin + self._pts / SAMPLE_RATE - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -_MAX_LAG_S:
                self._origin -= delay
        return self._pts

    async def recv(self) -> av.AudioFrame | av.Packet[Any]:
        pts = await self._tick()
        return to_frame(self.next_samples(), pts)


class PlaybackTrack(PacedAudioTrack):
    """The emulator's outgoing audio: silence, or the clip being played.

    ``on_finished(token)`` is called (on the loop, from ``recv``) once a clip has been fully sent.
    With ``opus`` set (the call negotiated Opus) it yields encoded packets instead of frames.
    """

    _silence_opus: bytes | None = None

    def __init__(self, on_finished: Callable[[str], None]) -> None:
        super().__init__()
        self.opus = False
        self._on_finished = on_finished
        self._encoder = OpusEncoder()
        self._clip: Samples = _SILENCE[:0]
        self._position = 0
        self._token: str | None = None

    @property
    def position_ms(self) -> float:
        """How much of the current clip has been sent."""
        return 1000.0 * self._position / SAMPLE_RATE

    @property
    def playing(self) -> str | None:
        """The token of the clip being played, if any."""
        return self._token

    def play(self, clip: Samples, token: str) -> None:
        self._clip = clip
        self._position = 0
        self._token = token

    def stop_playback(self) -> float:
        """Stop the clip now; returns how many ms of it were played."""
        played = self.position_ms
        self._clip = _SILENCE[:0]
        self._position = 0
        self._token = None
        return played

    def _next_chunk(self) -> Samples | None:
        """The next 960 samples of the clip, or ``None`` when there is nothing to play."""
        if self._token is None:
            return None
        chunk = self._clip[self._position : self._position + FRAME_SAMPLES]
        self._position += FRAME_SAMPLES
        if self._position >= len(self._clip):
            token, self._token = self._token, None
            self._on_finished(token)
        if len(chunk) < FRAME_SAMPLES:
            chunk = np.concatenate([chunk, _SILENCE[: FRAME_SAMPLES - len(chunk)]])
        return chunk

    def next_samples(self) -> Samples:
        chunk = self._next_chunk()
        return _SILENCE if chunk is None else chunk

    async def recv(self) -> av.AudioFrame | av.Packet[Any]:
        if not self.opus:
            return await super().recv()
        pts = await self._tick()
        chunk = self._next_chunk()
        if chunk is None:
            self._encoder.reset()
            if PlaybackTrack._silence_opus is None:
                PlaybackTrack._silence_opus = _silence_packet()
            data = PlaybackTrack._silence_opus
        else:
            data = self._encoder.encode(chunk)
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = TIME_BASE
        return packet
