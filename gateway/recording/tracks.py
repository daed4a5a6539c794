"""One leg's audio as a file, from its placed packets: Ogg Opus, or WAV for G.711.

Pure: placed packets in, file bytes out, written by the caller as they come. Gaps between
packets (loss, DTX, a side that sends nothing) are filled, so a track's length is the call's
time: concealment and then silence packets in Opus (RFC 7845 §4.1), silence samples in WAV.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Final, Literal, Protocol

from gateway.recording import ogg, opus
from gateway.recording.timeline import Placed

Codec = Literal["opus", "pcmu", "pcma"]

G711_RATE: Final = 8000
# The byte a G.711 encoder sends for silence (zero amplitude).
_G711_SILENCE: Final = {"pcmu": 0xFF, "pcma": 0xD5}
# WAVE_FORMAT_ALAW (6) and WAVE_FORMAT_MULAW (7).
_WAVE_FORMAT: Final = {"pcmu": 7, "pcma": 6}


class Track(Protocol):
    """What a recorded leg's file is made of, in the order it is written."""

    codec: Codec
    rate: int
    suffix: str

    @property
    def end(self) -> int:
        """Samples written so far (gaps included)."""

    def start(self) -> bytes:
        """The file's beginning."""

    def add(self, placed: Sequence[Placed]) -> bytes:
        """Bytes that put ``placed`` (in order) on the track, filling gaps before each."""

    def finish(self, end: int) -> bytes:
        """The last bytes: silence up to ``end`` samples, then whatever closes the stream."""

    def header(self) -> tuple[int, bytes] | None:
        """Bytes to write over the file at an offset once it is finished, if any."""


def duration_of(codec: Codec) -> Callable[[bytes], int]:
    """How long a payload of ``codec`` is, in samples of its RTP clock (``ValueError`` if it
    is not one)."""
    if codec == "opus":
        return _opus_samples
    return len


def _opus_samples(payload: bytes) -> int:
    if len(payload) > ogg.MAX_PACKET:  # only padding makes one so long: no file can hold it
        raise opus.OpusPacketError(f"packet of {len(payload)} bytes")
    return opus.parse(payload).samples


class OpusTrack:
    """A leg as mono Ogg Opus (the packets as they were sent), granule positions on the call's
    timeline."""

    codec: Codec = "opus"
    rate = opus.RATE
    suffix = "ogg"

    def __init__(self, serial: int) -> None:
        self._pages = ogg.PageWriter(serial)
        self._end = 0

    @property
    def end(self) -> int:
        return self._end

    def start(self) -> bytes:
        return self._pages.header(ogg.opus_head(channels=1)) + self._pages.header(ogg.opus_tags())

    def _fill(self, upto: int, out: list[tuple[bytes, int]], *, conceal: bool) -> None:
        if upto <= self._end:
            return
        fill = opus.gap(upto - self._end) if conceal else opus.silence(upto - self._end)
        for packet in fill:
            self._end += opus.parse(packet).samples
            out.append((packet, self._end))

    def add(self, placed: Sequence[Placed]) -> bytes:
        out: list[tuple[bytes, int]] = []
        for item in placed:
            self._fill(item.position, out, conceal=True)
            self._end += item.samples
            out.append((item.payload, self._end))
        return self._pages.pages(out) if out else b""

    def finish(self, end: int) -> bytes:
        out: list[tuple[bytes, int]] = []
        self._fill(end, out, conceal=False)
        return self._pages.pages(out, last=True)

    def header(self) -> tuple[int, bytes] | None:
        return None


class G711Track:
    """A leg as WAV, µ-law or A-law as sent (one byte a sample), silence in the gaps."""

    rate = G711_RATE
    suffix = "wav"

    def __init__(self, codec: Literal["pcmu", "pcma"]) -> None:
        self.codec: Codec = codec
        self._silence = bytes((_G711_SILENCE[codec],))
        self._end = 0

    @property
    def end(self) -> int:
        return self._end

    def start(self) -> bytes:
        return wav_header(self.codec, 0)

    def add(self, placed: Sequence[Placed]) -> bytes:
        chunks: list[bytes] = []
        for item in placed:
            if item.position > self._end:
                chunks.append(self._silence * (item.position - self._end))
                self._end = item.position
            chunks.append(item.payload)
            self._end += item.samples
        return b"".join(chunks)

    def finish(self, end: int) -> bytes:
        if end <= self._end:
            return b""
        pad = self._silence * (end - self._end)
        self._end = end
        return pad

    def header(self) -> tuple[int, bytes] | None:
        return 0, wav_header(self.codec, self._end)


def wav_header(codec: Literal["pcmu", "pcma"] | Codec, samples: int) -> bytes:
    """A WAV header for ``samples`` of mono 8 kHz G.711 (``fmt`` with ``cbSize``, ``fact``)."""
    tag = _WAVE_FORMAT[codec]
    fmt = struct.pack("<HHIIHHH", tag, 1, G711_RATE, G711_RATE, 1, 8, 0)
    fact = struct.pack("<I", samples)
    size = 4 + (8 + len(fmt)) + (8 + len(fact)) + 8 + samples
    return (
        b"RIFF"
        + struct.pack("<I", size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"fact"
        + struct.pack("<I", len(fact))
        + fact
        + b"data"
        + struct.pack("<I", samples)
    )


def track_for(codec: Codec, serial: int) -> OpusTrack | G711Track:
    if codec == "opus":
        return OpusTrack(serial)
    return G711Track(codec)
