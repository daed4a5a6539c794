"""Datagrams for the media fuzzer: STUN, DTLS, RTP, RTCP and noise, sized toward the edges.

Every datagram comes from one ``random.Random``, so a seed replays a run exactly. Each kind is
shaped enough to get past the first byte that demultiplexes it (RFC 7983: 0-3 STUN, 20-63
DTLS, 128-191 RTP/RTCP) and then wrong somewhere: lengths that lie, attributes that do not parse,
integrity that does not check, records and packets of every type with random bodies. About a
third are then cut or padded to a size at an edge (0, 1, 12, 20, 1499, 1500, 1501, 2048 bytes).
"""

from __future__ import annotations

import binascii
import random
import struct
from collections.abc import Callable, Iterator

EDGE_SIZES = (0, 1, 12, 20, 1499, 1500, 1501, 2048)
MAX_SIZE = 2100
KINDS = ("stun", "dtls", "rtp", "rtcp", "noise")

STUN_COOKIE = 0x2112A442
_FINGERPRINT_XOR = 0x5354554E
# (type, natural value length) of the attributes ICE uses; None: any length.
_STUN_ATTRIBUTES: tuple[tuple[int, int | None], ...] = (
    (0x0006, None),  # USERNAME
    (0x0008, 20),  # MESSAGE-INTEGRITY
    (0x0009, None),  # ERROR-CODE
    (0x0020, 8),  # XOR-MAPPED-ADDRESS
    (0x0024, 4),  # PRIORITY
    (0x0025, 0),  # USE-CANDIDATE
    (0x8022, None),  # SOFTWARE
    (0x8029, 8),  # ICE-CONTROLLED
    (0x802A, 8),  # ICE-CONTROLLING
    (0x000C, 4),  # CHANNEL-NUMBER
    (0x0001, 8),  # MAPPED-ADDRESS
)
# Binding request, indication, success and error; Allocate; a method nobody defines.
_STUN_TYPES = (0x0001, 0x0011, 0x0101, 0x0111, 0x0003, 0x0FFF)


class Datagrams:
    """An endless, reproducible stream of hostile datagrams: ``next()`` gives (kind, bytes)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._makers: dict[str, Callable[[], bytes]] = {
            "stun": self.stun,
            "dtls": self.dtls,
            "rtp": self.rtp,
            "rtcp": self.rtcp,
            "noise": self.noise,
        }

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        return self

    def __next__(self) -> tuple[str, bytes]:
        kind = self.rng.choice(KINDS)
        data = self._makers[kind]()
        if self.rng.random() < 1 / 3:
            data = self.fit(data, self.rng.choice(EDGE_SIZES))
        return kind, data

    # -- sizes ------------------------------------------------------------------------------

    def size(self, low: int = 0, high: int = MAX_SIZE) -> int:
        """A length in [low, high], often at an edge or small."""
        roll = self.rng.random()
        if roll < 0.3:
            edges = [s for s in EDGE_SIZES if low <= s <= high]
            if edges:
                return self.rng.choice(edges)
        if roll < 0.7:
            return self.rng.randint(low, min(high, low + 64))
        return self.rng.randint(low, high)

    def fit(self, data: bytes, size: int) -> bytes:
        """``data`` cut or padded (with random bytes) to ``size``."""
        return data[:size] + self.rng.randbytes(max(0, size - len(data)))

    # -- kinds ------------------------------------------------------------------------------

    def stun(self) -> bytes:
        """A STUN header (right cookie mostly) with random or garbled ICE attributes, a length
        that may lie, a MESSAGE-INTEGRITY that never checks and a FINGERPRINT that may."""
        rng = self.rng
        message_type = rng.choice(_STUN_TYPES) if rng.random() < 0.9 else rng.getrandbits(14)
        cookie = STUN_COOKIE if rng.random() < 0.9 else rng.getrandbits(32)
        body = b"".join(self._stun_attribute() for _ in range(rng.randint(0, 6)))
        length = len(body) + (8 if rng.random() < 0.5 else 0)  # room for a FINGERPRINT
        if rng.random() < 0.15:
            length = rng.choice((0, length + 4, max(0, length - 4), rng.getrandbits(16)))
        header = struct.pack("!HHI", message_type, length, cookie) + rng.randbytes(12)
        message = header + body
        if len(body) + 8 == length:
            crc = binascii.crc32(message) ^ _FINGERPRINT_XOR
            if rng.random() < 0.3:
                crc = rng.getrandbits(32)
            message += struct.pack("!HHI", 0x8028, 4, crc & 0xFFFFFFFF)
        return message

    def _stun_attribute(self) -> bytes:
        rng = self.rng
        if rng.random() < 0.85:
            kind, natural = rng.choice(_STUN_ATTRIBUTES)
        else:
            kind, natural = rng.getrandbits(16), None
        if natural is None or rng.random() < 0.3:
            size = rng.choice((0, 1, 2, 3, 5, 7, 9, 21, rng.randint(0, 300)))
        else:
            size = natural
        value = rng.randbytes(size)
        if kind == 0x0006 and rng.random() < 0.5:  # a USERNAME of the right shape
            value = rng.choice((b"gw:att", b"\xff\xfe:\xc3", b":" * 3, b"a" * 513))
            size = len(value)
        declared = size if rng.random() < 0.9 else rng.getrandbits(16)
        padding = bytes(-size % 4)
        return struct.pack("!HH", kind, declared) + value + padding

    def dtls(self) -> bytes:
        """One to three DTLS records: every content type, alerts and handshake fragments,
        plaintext and "encrypted" epochs, lengths that may lie."""
        return b"".join(self._dtls_record() for _ in range(self.rng.choice((1, 1, 1, 2, 3))))

    def _dtls_record(self) -> bytes:
        rng = self.rng
        content_type = rng.choice((20, 21, 22, 23, 24, 25, rng.randint(20, 63)))
        version = rng.choice((0xFEFD, 0xFEFF, 0xFEFC, 0x0303, rng.getrandbits(16)))
        epoch = rng.choice((0, 0, 1, rng.getrandbits(16)))
        if content_type == 21:
            payload = bytes([rng.choice((1, 2, rng.randint(0, 255))), rng.randint(0, 255)])
        elif content_type == 22:
            body = rng.randbytes(self.size(0, 400))
            total = len(body) if rng.random() < 0.7 else rng.getrandbits(24)
            offset = 0 if rng.random() < 0.7 else rng.getrandbits(24)
            payload = (
                bytes(
                    [rng.choice((0, 1, 2, 3, 4, 11, 12, 13, 14, 15, 16, 20, rng.randint(0, 255)))]
                )
                + total.to_bytes(3, "big")
                + struct.pack("!H", rng.getrandbits(16))
                + offset.to_bytes(3, "big")
                + len(body).to_bytes(3, "big")
                + body
            )
        elif content_type == 20:
            payload = b"\x01"
        else:
            payload = rng.randbytes(self.size(0, 1200))
        length = len(payload) if rng.random() < 0.85 else rng.getrandbits(16)
        header = struct.pack("!BHH", content_type, version, epoch)
        header += rng.getrandbits(48).to_bytes(6, "big") + struct.pack("!H", length)
        return header + payload

    def rtp(self) -> bytes:
        """An RTP header (first byte 128-191: any padding, extension and CSRC bits) with the
        negotiated or any payload type, then random bytes."""
        rng = self.rng
        first = rng.randint(128, 191)
        second = rng.choice((96, 0x80 | 96, 111, 0, 8, 9, 97, rng.randint(0, 127)))
        if 192 <= second <= 208:  # that would make it RTCP for aiortc
            second &= 0x7F
        header = bytes([first, second]) + struct.pack(
            "!HII", rng.getrandbits(16), rng.getrandbits(32), rng.getrandbits(32)
        )
        return header + rng.randbytes(self.size(0, MAX_SIZE - 12))

    def rtcp(self) -> bytes:
        """One or more RTCP headers (types 192-223) with lengths that may lie, random bodies."""
        rng = self.rng
        out = b""
        for _ in range(rng.choice((1, 1, 2, 3))):
            body = rng.randbytes(4 * rng.randint(0, 16) if rng.random() < 0.8 else self.size())
            words = (len(body) + 4) // 4 if rng.random() < 0.7 else rng.getrandbits(16)
            first = rng.randint(128, 191)
            out += bytes([first, rng.randint(192, 223)]) + struct.pack("!H", words)
            out += rng.getrandbits(32).to_bytes(4, "big") + body
        return out

    def noise(self) -> bytes:
        """Random bytes of a random size (any first byte)."""
        return self.rng.randbytes(self.size())
