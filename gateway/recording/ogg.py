"""Ogg pages and the Ogg Opus headers (RFC 3533, RFC 7845), written and read without a codec.

Pure: packets in, page bytes out (and back). The page checksum is Ogg's CRC-32 (polynomial
0x04C11DB7, unreflected, no inversion), computed with :func:`zlib.crc32` rather than byte by
byte in Python: the reflected CRC of the bit-reversed bytes, bit-reversed, is the unreflected
one, and XOR-ing the CRC of as many zero bytes removes zlib's initial and final inversion.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

CAPTURE: Final = b"OggS"
BEGINNING: Final = 0x02
END: Final = 0x04
CONTINUED: Final = 0x01
MAX_SEGMENTS: Final = 255
MAX_PACKET: Final = 255 * MAX_SEGMENTS - 1
"""The longest packet one page holds: its lacing ends with an entry under 255."""
_HEADER = struct.Struct("<4sBBqIIIB")

_REVERSED_BYTES: Final = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
_ZEROS: Final = bytes(65_536)
_ZERO_VIEW: Final = memoryview(_ZEROS)


class OggError(ValueError):
    """The bytes are not the Ogg stream expected."""


def _reverse32(value: int) -> int:
    value = ((value >> 1) & 0x55555555) | ((value & 0x55555555) << 1)
    value = ((value >> 2) & 0x33333333) | ((value & 0x33333333) << 2)
    value = ((value >> 4) & 0x0F0F0F0F) | ((value & 0x0F0F0F0F) << 4)
    value = ((value >> 8) & 0x00FF00FF) | ((value & 0x00FF00FF) << 8)
    return ((value >> 16) | (value << 16)) & 0xFFFFFFFF


def crc(data: bytes) -> int:
    """Ogg's page checksum of ``data`` (with the checksum field zeroed)."""
    reflected = zlib.crc32(data.translate(_REVERSED_BYTES))
    correction = 0
    remaining = len(data)
    while remaining:  # pages are at most ~64 KiB: one pass, but any length is right
        chunk = min(remaining, len(_ZEROS))
        correction = zlib.crc32(_ZERO_VIEW[:chunk], correction)
        remaining -= chunk
    return _reverse32(reflected ^ correction)


def lacing(length: int) -> bytes:
    """A packet's entries in a page's segment table (the last one is under 255)."""
    return b"\xff" * (length // 255) + bytes((length % 255,))


def page(
    packets: Sequence[bytes],
    *,
    serial: int,
    sequence: int,
    granule: int,
    flags: int = 0,
) -> bytes:
    """One page holding whole ``packets`` (their lacing must fit in 255 segments)."""
    table = b"".join(lacing(len(packet)) for packet in packets)
    if len(table) > MAX_SEGMENTS:
        raise OggError(f"{len(table)} segments do not fit one page")
    header = _HEADER.pack(CAPTURE, 0, flags, granule, serial, sequence, 0, len(table))
    body = header + table + b"".join(packets)
    checksum = crc(body)
    return body[:22] + struct.pack("<I", checksum) + body[26:]


def opus_head(*, channels: int, streams: int = 1, coupled: int = 0, pre_skip: int = 0) -> bytes:
    """The identification header (RFC 7845 §5.1): mapping family 0 for one mono or stereo
    stream, family 1 when each channel is a stream of its own."""
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, 48_000, 0, 0)
    if streams == 1 and channels <= 2:
        return head
    return (
        head[:-1] + bytes((1, streams, coupled)) + bytes(range(channels))  # family 1, in order
    )


def opus_tags(vendor: str = "realtime-gateway") -> bytes:
    """The comment header (RFC 7845 §5.2): the vendor, and no comments."""
    name = vendor.encode()
    return b"OpusTags" + struct.pack("<I", len(name)) + name + struct.pack("<I", 0)


class PageWriter:
    """Packs packets into pages for one logical stream: each page ends on a whole packet and
    carries the granule position at its end."""

    def __init__(self, serial: int) -> None:
        self.serial = serial
        self.sequence = 0
        self._granule = 0

    def pages(self, packets: Sequence[tuple[bytes, int]], *, last: bool = False) -> bytes:
        """Pages for ``packets`` (bytes, granule position after it); ``last`` marks the end of
        the stream on the final page."""
        out: list[bytes] = []
        batch: list[bytes] = []
        segments = 0
        granule = -1
        for index, (packet, after) in enumerate(packets):
            if len(packet) > MAX_PACKET:
                raise OggError("packet too long for one page")
            needed = len(packet) // 255 + 1
            if batch and segments + needed > MAX_SEGMENTS:
                out.append(self._page(batch, granule, 0))
                batch, segments = [], 0
            batch.append(packet)
            segments += needed
            granule = after
            if index == len(packets) - 1:
                out.append(self._page(batch, granule, END if last else 0))
        if not packets and last:
            # No packet ends here, but players read a stream's length from its last page.
            out.append(self._page([], self._granule, END))
        return b"".join(out)

    def header(self, data: bytes) -> bytes:
        """A header packet alone on its page (the first one opens the stream)."""
        flags = BEGINNING if self.sequence == 0 else 0
        return self._page([data], 0, flags)

    def _page(self, packets: list[bytes], granule: int, flags: int) -> bytes:
        data = page(
            packets, serial=self.serial, sequence=self.sequence, granule=granule, flags=flags
        )
        self.sequence += 1
        self._granule = max(self._granule, granule)
        return data


@dataclass(frozen=True)
class Page:
    flags: int
    granule: int
    serial: int
    sequence: int
    segments: bytes
    body: bytes


def read_pages(data: bytes) -> Iterator[Page]:
    """Every page of ``data``, checksums verified; raises :class:`OggError` on damage."""
    at = 0
    while at < len(data):
        if len(data) - at < _HEADER.size:
            raise OggError(f"truncated page header at byte {at}")
        capture, version, flags, granule, serial, sequence, checksum, count = _HEADER.unpack_from(
            data, at
        )
        if capture != CAPTURE or version != 0:
            raise OggError(f"no Ogg page at byte {at}")
        table_end = at + _HEADER.size + count
        segments = data[at + _HEADER.size : table_end]
        end = table_end + sum(segments)
        if len(segments) != count or end > len(data):
            raise OggError(f"truncated page at byte {at}")
        raw = data[at:end]
        if crc(raw[:22] + b"\0\0\0\0" + raw[26:]) != checksum:
            raise OggError(f"bad checksum in page {sequence}")
        yield Page(flags, granule, serial, sequence, bytes(segments), bytes(data[table_end:end]))
        at = end


def read_packets(data: bytes) -> Iterator[tuple[bytes, int]]:
    """Every packet of a single-stream Ogg file, with the granule of the page it ends on
    (``-1`` for a packet that is not the last to end on its page)."""
    partial = b""
    for item in read_pages(data):
        at = 0
        ended: list[bytes] = []
        for size in item.segments:
            partial += item.body[at : at + size]
            at += size
            if size < 255:
                ended.append(partial)
                partial = b""
        for index, packet in enumerate(ended):
            yield packet, item.granule if index == len(ended) - 1 else -1
