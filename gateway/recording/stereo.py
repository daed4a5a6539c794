"""Two recorded Opus legs made into one stereo Ogg Opus file without decoding either.

Pure: the two legs' packets in, the stereo file's bytes out, page by page.

An Ogg Opus file may carry one Opus stream per channel (channel mapping family 1, RFC 7845
§5.1.1.2): the browser's stream on the left, the model's on the right, each packet of the file
holding one packet of each stream, the first in self-delimiting framing (RFC 6716 Appendix B).
So the stereo file holds exactly the bits each side sent, at a cost of a few microseconds a
packet. The two packets in a file packet must last equally long; both legs are laid on the
call's timeline on a grid of their packets' own length, so two legs that send packets of one
length line up, and concealment or silence on one side is cut to match the other. Legs that do
not line up (packets of different lengths at once) raise :class:`NotAligned`, and the
recording is made by decoding instead (:mod:`gateway.recording.transcode`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final

from gateway.recording import ogg, opus
from gateway.recording.opus import OpusPacket

PACKETS_PER_FLUSH: Final = 250  # about five seconds of audio per write


class NotAligned(Exception):
    """The legs' packets cannot be paired without decoding."""


class _Leg:
    """One leg's packets, with fillers cut to length on demand."""

    def __init__(self, packets: Iterable[bytes]) -> None:
        self._packets = iter(packets)
        self._head: OpusPacket | None = None
        self._head_bytes = b""

    def peek(self) -> OpusPacket | None:
        if self._head is None:
            for raw in self._packets:
                try:
                    packet = opus.parse(raw)
                except opus.OpusPacketError:
                    continue  # written by us, so never; a damaged file loses just that packet
                self._head, self._head_bytes = packet, raw
                break
        return self._head

    def take(self) -> tuple[OpusPacket, bytes]:
        head = self.peek()
        assert head is not None
        raw = self._head_bytes
        self._head, self._head_bytes = None, b""
        return head, raw

    def take_filler(self, samples: int) -> tuple[OpusPacket, bytes] | None:
        """Fillers lasting exactly ``samples`` from the front (cutting the last), as one
        packet; ``None`` if real audio comes first, or the leg ends (then it is silence)."""
        conceal = True
        needed = samples
        while needed > 0:
            head = self.peek()
            if head is None:
                conceal = False
                break
            if not opus.is_filler(head):
                return None
            conceal = conceal and head.silent
            if head.samples <= needed:
                needed -= head.samples
                self.take()
            else:
                rest = opus.filler(head.samples - needed, conceal=head.silent)
                self._head, self._head_bytes = opus.parse(rest), rest
                needed = 0
        raw = opus.filler(samples, conceal=conceal)
        return opus.parse(raw), raw


def pair(left: Iterable[bytes], right: Iterable[bytes], end: int) -> Iterator[tuple[bytes, int]]:
    """Stereo packets (left in self-delimiting framing, then right) with the granule position
    after each, up to ``end`` samples (the call's length); raises :class:`NotAligned`."""
    legs = (_Leg(left), _Leg(right))
    position = 0
    while position < end:
        heads = [leg.peek() for leg in legs]
        chosen: list[tuple[OpusPacket, bytes] | None] = [None, None]
        real = [h is not None and not opus.is_filler(h) for h in heads]
        if real[0] and real[1]:
            assert heads[0] is not None and heads[1] is not None
            if heads[0].samples != heads[1].samples:
                raise NotAligned(f"packets of {heads[0].samples} and {heads[1].samples} samples")
            chosen = [legs[0].take(), legs[1].take()]
        elif real[0] or real[1]:
            side = 0 if real[0] else 1
            taken = legs[side].take()
            chosen[side] = taken
            other = legs[1 - side].take_filler(taken[0].samples)
            if other is None:
                raise NotAligned(f"real audio on both sides at sample {position}, misaligned")
            chosen[1 - side] = other
        else:
            lengths = [h.samples for h in heads if h is not None]
            length = min([*lengths, opus.MAX_PACKET_SAMPLES, end - position])
            length -= length % opus.PLC_STEP
            if length <= 0:
                break
            chosen = [legs[0].take_filler(length), legs[1].take_filler(length)]
        first, second = chosen
        assert first is not None and second is not None
        position += first[0].samples
        yield opus.self_delimited(first[0]) + second[1], position


def stereo_file(
    left: Iterable[bytes], right: Iterable[bytes], end: int, write: Callable[[bytes], object]
) -> int:
    """Write the stereo file of two legs' audio packets through ``write``; returns the samples
    it lasts. Raises :class:`NotAligned` (having written part of the file)."""
    pages = ogg.PageWriter(serial=0x52474157)
    write(pages.header(ogg.opus_head(channels=2, streams=2, coupled=0)))
    write(pages.header(ogg.opus_tags()))
    batch: list[tuple[bytes, int]] = []
    position = 0
    for packet, position in pair(left, right, end):
        batch.append((packet, position))
        if len(batch) >= PACKETS_PER_FLUSH:
            write(pages.pages(batch))
            batch = []
    write(pages.pages(batch, last=True))
    return position


def audio_packets(data: bytes) -> Iterator[bytes]:
    """The audio packets of a mono Ogg Opus file (its two header packets skipped)."""
    try:
        for index, (packet, _granule) in enumerate(ogg.read_packets(data)):
            if index >= 2:
                yield packet
    except ogg.OggError:
        return  # a file cut short (its process died): the audio up to the damage
