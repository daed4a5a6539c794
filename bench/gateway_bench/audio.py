"""The benchmark's audio: one pre-encoded Opus loop, and how to recognise it on arrival.

Every packet of the loop is distinct (low-level noise encodes differently every 20 ms), so a
receiver can tell *which* packet arrived from its payload alone when the gateway forwards
payloads unchanged (passthrough, and the direct baseline): every packet is then its own timing
marker, and nothing is decoded. Every :data:`CLICK_EVERY` packets the loop also carries a loud
click; when the gateway re-encodes (transcode) the payloads are new, and the receiver finds
the click by decoding a few packets around it. ``click_offset`` calibrates where the click's
onset lands in *our* encoding, so both methods measure the same thing: the time from a
packet leaving its sender to its audio reaching the receiver.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
TIME_BASE = Fraction(1, SAMPLE_RATE)
LOOP_PACKETS = 500  # 10 s: far longer than any latency, so an index names one packet
CLICK_EVERY = 25  # one click per 0.5 s
CLICK_AT = 12  # clicks sit mid-period, away from the loop seam
NOISE_RMS = 0.003  # about -50 dBFS: enough to make every packet distinct, far below a click
CLICK_AMPLITUDE = 0.5
ONSET_THRESHOLD = 0.1  # linear, of full scale: 30 dB above the noise, 14 dB below the click
_WARMUP_FRAMES = 10  # encoded and dropped, so packet 0 is not an encoder's first packet

Mono = npt.NDArray[np.float32]


def is_click(index: int) -> bool:
    """Whether loop packet ``index`` (or stream sequence number) starts with a click."""
    return index % CLICK_EVERY == CLICK_AT


def _signal(frames: int, seed: int) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    wave = rng.normal(0.0, NOISE_RMS, frames * FRAME_SAMPLES)
    # A 10 ms 1 kHz burst with a 0.5 ms ramp: a sharp onset, little pre-echo in the codec.
    n = SAMPLE_RATE // 100
    t = np.arange(n) / SAMPLE_RATE
    burst = CLICK_AMPLITUDE * np.sin(2 * np.pi * 1000.0 * t)
    ramp = SAMPLE_RATE // 2000
    burst[:ramp] *= np.linspace(0.0, 1.0, ramp)
    for frame in range(frames):
        if is_click(frame - _WARMUP_FRAMES):
            start = frame * FRAME_SAMPLES
            wave[start : start + n] += burst
    return (np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16)


def _encode(pcm: npt.NDArray[np.int16], bit_rate: int) -> list[bytes]:
    codec = av.CodecContext.create("libopus", "w")
    assert isinstance(codec, av.AudioCodecContext)
    codec.bit_rate = bit_rate
    codec.format = "s16"
    codec.layout = "mono"
    codec.sample_rate = SAMPLE_RATE
    codec.time_base = TIME_BASE
    codec.options = {"application": "audio"}
    out: list[bytes] = []
    for start in range(0, len(pcm), FRAME_SAMPLES):
        chunk = pcm[start : start + FRAME_SAMPLES].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = start
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    return out


def silence_packet(bit_rate: int = 32_000) -> bytes:
    """One Opus packet of digital silence, from past the encoder's start-up."""
    packets = _encode(np.zeros(FRAME_SAMPLES * _WARMUP_FRAMES, dtype=np.int16), bit_rate)
    return packets[_WARMUP_FRAMES // 2]


class OnsetDecoder:
    """Decodes Opus packets to mono float samples, only while asked to (a fresh state each time)."""

    def __init__(self) -> None:
        self._codec: Any = None

    def reset(self) -> None:
        self._codec = None

    def decode(self, payload: bytes) -> Mono:
        if self._codec is None:
            codec = av.CodecContext.create("libopus", "r")
            codec.sample_rate = SAMPLE_RATE
            self._codec = codec
        samples: list[Mono] = []
        for frame in self._codec.decode(av.Packet(payload)):
            samples.append(first_channel(frame))
        if not samples:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(samples)


def first_channel(frame: av.AudioFrame) -> Mono:
    """Channel 0 of a decoded frame as float32 in -1..1, whatever its sample format."""
    raw: npt.NDArray[Any] = frame.to_ndarray()
    if frame.format.is_planar:
        data = raw[0]
    else:
        data = raw.reshape(-1)[:: len(frame.layout.channels)]
    out: Mono = data.astype(np.float32)
    if data.dtype.kind != "f":
        out /= float(np.iinfo(data.dtype).max)
    return out


def find_onset(samples: Mono, threshold: float = ONSET_THRESHOLD) -> int | None:
    """Index of the first sample whose magnitude reaches ``threshold``, if any."""
    hits = np.flatnonzero(np.abs(samples) >= threshold)
    return int(hits[0]) if hits.size else None


@dataclass(frozen=True)
class MarkerLoop:
    """The pre-encoded loop: payloads, their index, and the click's calibrated onset."""

    packets: tuple[bytes, ...]
    index: dict[bytes, int]
    click_offset: int
    """Samples from the start of a click packet to the click's onset in its decoded audio."""

    @classmethod
    def build(cls, seed: int = 6, bit_rate: int = 32_000) -> MarkerLoop:
        frames = LOOP_PACKETS + _WARMUP_FRAMES
        encoded = _encode(_signal(frames, seed), bit_rate)
        packets = tuple(encoded[_WARMUP_FRAMES : _WARMUP_FRAMES + LOOP_PACKETS])
        if len(packets) != LOOP_PACKETS:
            raise RuntimeError(f"the Opus encoder gave {len(packets)} of {LOOP_PACKETS} packets")
        return cls(packets, identity_index(packets), calibrate(packets))

    def __len__(self) -> int:
        return len(self.packets)


def identity_index(packets: Iterable[bytes]) -> dict[bytes, int]:
    """Payload → loop index; a payload that occurs twice identifies nothing and is left out."""
    index: dict[bytes, int] = {}
    repeated: set[bytes] = set()
    for i, payload in enumerate(packets):
        if payload in index:
            repeated.add(payload)
        index[payload] = i
    for payload in repeated:
        del index[payload]
    return index


def calibrate(packets: tuple[bytes, ...]) -> int:
    """Where the click's onset lands, counted in samples from its packet's start (median)."""
    decoder = OnsetDecoder()
    decoded = np.concatenate([decoder.decode(p) for p in packets])
    per_packet = len(decoded) // len(packets)
    offsets = []
    for i in range(len(packets)):
        if is_click(i):
            start = i * per_packet
            onset = find_onset(decoded[start - per_packet : start + 2 * per_packet])
            if onset is not None:
                offsets.append(onset - per_packet)
    if not offsets:
        raise RuntimeError("no click found in the decoded marker loop")
    return int(np.median(offsets))
