"""Opus packets without decoding them: their length in samples, their frames, and the packets
a recording puts where audio is missing (RFC 6716 §3, Appendix B; RFC 7845 §4.1).

Pure: bytes in, bytes or numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

RATE: Final = 48_000
"""Opus timestamps and Ogg Opus granule positions are in 48 kHz samples, whatever was coded."""

MAX_PACKET_SAMPLES: Final = 5760  # 120 ms, the longest an Opus packet may be
MAX_FRAME_BYTES: Final = 1275  # RFC 6716 §3.4 R2
_PLC_CONFIGS: Final = ((960, 31), (480, 30), (240, 29), (120, 28))  # CELT FB: 20/10/5/2.5 ms
PLC_STEP: Final = 120
"""Gaps are filled in steps of 2.5 ms, the shortest Opus frame; a remainder is left out."""


class OpusPacketError(ValueError):
    """The bytes are not an Opus packet as RFC 6716 §3 defines one."""


def frame_samples(toc: int) -> int:
    """Samples (at 48 kHz) in each frame of a packet with this TOC byte."""
    config = toc >> 3
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        return (480, 960, 1920, 2880)[config & 3]
    if config < 16:  # hybrid: 10, 20 ms
        return (480, 960)[config & 1]
    return (120, 240, 480, 960)[config & 3]  # CELT: 2.5, 5, 10, 20 ms


def _length(data: bytes, at: int) -> tuple[int, int]:
    """A frame length coded at ``at`` (one or two bytes): (length, bytes used)."""
    if at >= len(data):
        raise OpusPacketError("truncated frame length")
    first = data[at]
    if first < 252:
        return first, 1
    if at + 1 >= len(data):
        raise OpusPacketError("truncated frame length")
    return first + 4 * data[at + 1], 2


def _code_length(length: int) -> bytes:
    if length < 252:
        return bytes((length,))
    if length > MAX_FRAME_BYTES:
        raise OpusPacketError(f"frame of {length} bytes (at most {MAX_FRAME_BYTES})")
    first = 252 + (length - 252) % 4
    return bytes((first, (length - first) // 4))


@dataclass(frozen=True)
class OpusPacket:
    """A parsed packet: its TOC byte (configuration and stereo flag) and its frames."""

    toc: int
    frames: tuple[bytes, ...]

    @property
    def samples(self) -> int:
        return frame_samples(self.toc) * len(self.frames)

    @property
    def silent(self) -> bool:
        """Every frame is empty: the decoder conceals (PLC) rather than decodes."""
        return all(not frame for frame in self.frames)


def parse(data: bytes) -> OpusPacket:
    """Split a packet into its frames (RFC 6716 §3.2); raises :class:`OpusPacketError`."""
    if not data:
        raise OpusPacketError("empty packet")
    toc = data[0]
    code = toc & 3
    body = data[1:]
    if code == 0:
        frames: tuple[bytes, ...] = (bytes(body),)
    elif code == 1:
        if len(body) % 2:
            raise OpusPacketError("code 1 packet with an odd payload")
        half = len(body) // 2
        frames = (bytes(body[:half]), bytes(body[half:]))
    elif code == 2:
        first, used = _length(data, 1)
        rest = len(data) - 1 - used
        if first > rest:
            raise OpusPacketError("code 2 frame longer than the packet")
        start = 1 + used
        frames = (bytes(data[start : start + first]), bytes(data[start + first :]))
    else:
        frames = _parse_code3(data)
    packet = OpusPacket(toc, frames)
    if packet.samples > MAX_PACKET_SAMPLES:
        raise OpusPacketError(f"packet of {packet.samples} samples (at most 120 ms)")
    if any(len(frame) > MAX_FRAME_BYTES for frame in frames):
        raise OpusPacketError(f"a frame over {MAX_FRAME_BYTES} bytes")
    return packet


def _parse_code3(data: bytes) -> tuple[bytes, ...]:
    if len(data) < 2:
        raise OpusPacketError("code 3 packet without a frame count")
    count_byte = data[1]
    count = count_byte & 0x3F
    if count == 0:
        raise OpusPacketError("code 3 packet with no frames")
    at = 2
    padding = 0
    if count_byte & 0x40:
        while True:
            if at >= len(data):
                raise OpusPacketError("truncated padding length")
            byte = data[at]
            at += 1
            padding += 254 if byte == 255 else byte
            if byte != 255:
                break
    end = len(data) - padding
    if end < at:
        raise OpusPacketError("padding longer than the packet")
    if count_byte & 0x80:  # VBR: the lengths of all frames but the last
        lengths = []
        for _ in range(count - 1):
            length, used = _length(data, at)
            at += used
            lengths.append(length)
        last = end - at - sum(lengths)
        if last < 0:
            raise OpusPacketError("code 3 frames longer than the packet")
        lengths.append(last)
    else:
        size, remainder = divmod(end - at, count)
        if remainder:
            raise OpusPacketError("code 3 CBR frames of unequal size")
        lengths = [size] * count
    frames = []
    for length in lengths:
        frames.append(bytes(data[at : at + length]))
        at += length
    return tuple(frames)


def self_delimited(packet: OpusPacket) -> bytes:
    """The packet in self-delimiting framing (RFC 6716 Appendix B): how every stream of a
    multistream packet but the last is written. Padding is dropped; it carries nothing."""
    frames = packet.frames
    config = packet.toc & 0xFC
    if len(frames) == 1:
        return bytes((config,)) + _code_length(len(frames[0])) + frames[0]
    if len(frames) == 2 and len(frames[0]) == len(frames[1]):
        return bytes((config | 1,)) + _code_length(len(frames[0])) + frames[0] + frames[1]
    if len(frames) == 2:
        lengths = _code_length(len(frames[0])) + _code_length(len(frames[1]))
        return bytes((config | 2,)) + lengths + frames[0] + frames[1]
    lengths = b"".join(_code_length(len(frame)) for frame in frames)
    return bytes((config | 3, 0x80 | len(frames))) + lengths + b"".join(frames)


SILENT_FRAME: Final = b"\xff\xfe"
"""A CELT frame whose first symbol is the silence flag: it decodes to digital silence."""
CONCEAL_AT_MOST: Final = 3 * 960
"""Concealment is asked for only at the start of a gap: decoders' concealment fades out over a
few frames, some (libopus) into a low hiss rather than silence, so longer gaps are silence."""


def _filler(samples: int, frame: bytes) -> list[bytes]:
    packets: list[bytes] = []
    remaining = samples - samples % PLC_STEP
    while remaining >= MAX_PACKET_SAMPLES:
        # Six 20 ms frames, CBR: 120 ms in a few bytes.
        packets.append(bytes(((31 << 3) | 3, 6)) + frame * 6)
        remaining -= MAX_PACKET_SAMPLES
    for size, config in _PLC_CONFIGS:
        while remaining >= size:
            packets.append(bytes((config << 3,)) + frame)
            remaining -= size
    return packets


def concealment(samples: int) -> list[bytes]:
    """Packets that stand for ``samples`` of lost audio: each asks the decoder to conceal the
    loss (zero-length frames, RFC 7845 §4.1). Whole 2.5 ms steps only."""
    return _filler(samples, b"")


def silence(samples: int) -> list[bytes]:
    """Packets of digital silence lasting ``samples`` (whole 2.5 ms steps)."""
    return _filler(samples, SILENT_FRAME)


def gap(samples: int) -> list[bytes]:
    """What fills a gap of ``samples`` in a recorded leg: concealment for its first frames
    (a lost packet sounds as the receiver heard it), silence after."""
    conceal = min(samples, CONCEAL_AT_MOST)
    return concealment(conceal) + silence(samples - conceal)


def is_filler(packet: OpusPacket) -> bool:
    """Nothing but concealment or silence frames: it may be cut to any length."""
    return packet.toc >> 3 >= 16 and all(f in (b"", SILENT_FRAME) for f in packet.frames)


def filler(samples: int, *, conceal: bool) -> bytes:
    """One packet of ``samples`` (whole 2.5 ms steps, at most 120 ms) of concealment or
    silence."""
    if samples <= 0 or samples % PLC_STEP or samples > MAX_PACKET_SAMPLES:
        raise ValueError(f"cannot fill {samples} samples with one packet")
    frame = b"" if conceal else SILENT_FRAME
    for size, config in _PLC_CONFIGS:
        if samples == size:
            return bytes((config << 3,)) + frame
        if samples % size == 0 and samples // size <= 48:
            count = samples // size
            return bytes(((config << 3) | 3, count)) + frame * count
    raise AssertionError("unreachable: 120 divides every whole number of steps")
