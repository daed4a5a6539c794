"""The stereo file made by decoding: for G.711 calls, and Opus legs that cannot be paired as
they are (:class:`gateway.recording.stereo.NotAligned`).

Both legs are decoded in step, a chunk at a time (memory stays flat however long the call), put
side by side (browser left, model right) and encoded as stereo Opus into Ogg with PyAV. Blocking
and CPU-bound: run it in a worker thread, after the call.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Final

import av
import numpy as np
import numpy.typing as npt

from gateway.recording.tracks import Codec

BIT_RATE: Final = 64_000
CHUNK: Final = 960

Samples = npt.NDArray[np.int16]


def _decoded(path: Path, codec: Codec) -> Iterator[Samples]:
    """Mono s16 samples of one leg's file, in chunks, at its own rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        if codec == "opus":
            # libopus, as players use: its concealment is what a listener hears for a loss.
            decoder = av.CodecContext.create("libopus", "r")
            assert isinstance(decoder, av.AudioCodecContext)
            decoder.sample_rate = 48_000
            decoder.layout = "mono"
        else:
            decoder = stream.codec_context
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            for frame in decoder.decode(packet):
                yield _mono_s16(frame)


def _mono_s16(frame: av.AudioFrame) -> Samples:
    data = frame.to_ndarray()
    if data.dtype.kind == "f":
        data = np.clip(data * 32767.0, -32768, 32767)
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        mono = data[0]
    else:
        mono = data.reshape(-1)[::channels]
    return np.ascontiguousarray(mono, dtype=np.int16)


class _Reader:
    """Exactly ``n`` samples at a time from a leg, silence once it has ended."""

    def __init__(self, chunks: Iterator[Samples]) -> None:
        self._chunks = chunks
        self._buffer: Samples = np.zeros(0, dtype=np.int16)
        self._ended = False

    def read(self, n: int) -> Samples:
        while len(self._buffer) < n and not self._ended:
            try:
                self._buffer = np.concatenate([self._buffer, next(self._chunks)])
            except StopIteration:
                self._ended = True
        out = self._buffer[:n]
        self._buffer = self._buffer[n:]
        if len(out) < n:
            out = np.concatenate([out, np.zeros(n - len(out), dtype=np.int16)])
        return out


def transcode_stereo(left: Path, right: Path, codec: Codec, end: int, output: BinaryIO) -> int:
    """Write stereo Ogg Opus to ``output`` (left open) from the two legs' files, ``end`` samples
    long at the legs' rate; returns the samples written."""
    rate = 48_000 if codec == "opus" else 8000
    chunk = CHUNK * rate // 48_000
    readers = (_Reader(_decoded(left, codec)), _Reader(_decoded(right, codec)))
    with av.open(output, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate)
        assert isinstance(stream, av.AudioStream)
        stream.codec_context.layout = "stereo"
        stream.codec_context.format = "s16"
        stream.codec_context.bit_rate = BIT_RATE
        written = 0
        while written < end:
            n = min(chunk, end - written)
            both = np.empty((1, 2 * n), dtype=np.int16)
            both[0, 0::2] = readers[0].read(n)
            both[0, 1::2] = readers[1].read(n)
            frame = av.AudioFrame.from_ndarray(both, format="s16", layout="stereo")
            frame.sample_rate = rate
            frame.pts = written
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
            written += n
        for packet in stream.encode(None):
            container.mux(packet)
    return written
