"""The recording's file formats, checked against the specifications and against FFmpeg/libopus.

Ogg pages (RFC 3533), Opus packets (RFC 6716 §3 and Appendix B), the Ogg Opus headers
(RFC 7845), each leg's file (:mod:`gateway.recording.tracks`) and the stereo file made of two
legs without decoding (:mod:`gateway.recording.stereo`). Real Opus packets come from libopus
(PyAV); what is written is read back with FFmpeg's demuxers and decoders, which share no code
with the gateway's writers.
"""

from __future__ import annotations

import functools
import io
import random
import struct
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
import numpy.typing as npt
import pytest

from gateway.recording import ogg, opus, stereo, tracks
from gateway.recording.service import make_stereo
from gateway.recording.timeline import Placed

RATE = 48_000
Audio = npt.NDArray[np.float64]

# -- independent references ---------------------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for index in range(256):
        value = index << 24
        for _ in range(8):
            value = ((value << 1) ^ 0x04C11DB7) if value & 0x80000000 else value << 1
        table.append(value & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def reference_crc(data: bytes) -> int:
    """Ogg's CRC the textbook way (libogg's table): MSB first, initial 0, no final XOR."""
    value = 0
    for byte in data:
        value = ((value << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(value >> 24) ^ byte]
    return value


def raw_page(
    segments: Sequence[int],
    body: bytes,
    *,
    flags: int = 0,
    granule: int = 0,
    serial: int = 1,
    sequence: int = 0,
) -> bytes:
    """A page built by hand from its lacing values (so packets may span pages), checksummed
    with the reference CRC."""
    assert sum(segments) == len(body) and len(segments) <= 255
    header = struct.pack(
        "<4sBBqIIIB", b"OggS", 0, flags, granule, serial, sequence, 0, len(segments)
    )
    data = header + bytes(segments) + body
    return data[:22] + struct.pack("<I", reference_crc(data)) + data[26:]


def resum(data: bytes) -> bytes:
    """``data`` with every page's checksum recomputed (so damage inside pages gets past it);
    pages are found by walking the headers, as far as they go."""
    out = bytearray(data)
    at = 0
    while at + 27 <= len(out) and out[at : at + 4] == b"OggS":
        count = out[at + 26]
        end = at + 27 + count + sum(out[at + 27 : at + 27 + count])
        if end > len(out):
            break
        out[at + 22 : at + 26] = b"\0\0\0\0"
        out[at + 22 : at + 26] = struct.pack("<I", reference_crc(bytes(out[at:end])))
        at = end
    return bytes(out)


def read_self_delimited(data: bytes) -> tuple[int, list[bytes], int]:
    """A packet in self-delimiting framing (RFC 6716 Appendix B), read the spec's way:
    (TOC, frames, bytes it took)."""
    at = 1

    def length() -> int:
        nonlocal at
        first = data[at]
        at += 1
        if first < 252:
            return first
        second = data[at]
        at += 1
        return first + 4 * second

    toc = data[0]
    code = toc & 3
    if code == 0:
        lengths = [length()]
    elif code == 1:
        lengths = [length()] * 2
    elif code == 2:
        lengths = [length(), length()]
    else:
        count_byte = data[at]
        at += 1
        count = count_byte & 0x3F
        padding = 0
        if count_byte & 0x40:
            while True:
                byte = data[at]
                at += 1
                padding += 254 if byte == 255 else byte
                if byte != 255:
                    break
        lengths = [length() for _ in range(count)] if count_byte & 0x80 else [length()] * count
    frames = []
    for size in lengths:
        frames.append(data[at : at + size])
        assert len(frames[-1]) == size, "self-delimited packet shorter than its lengths"
        at += size
    if code == 3:
        at += padding
    return toc, frames, at


def spec_length(length: int) -> bytes:
    """A frame length as RFC 6716 §3.2.1 codes it: one byte under 252, else two."""
    if length < 252:
        return bytes((length,))
    first = 252 + (length & 3)
    return bytes((first, (length - first) // 4))


def ulaw_to_linear(byte: int) -> int:
    """ITU-T G.711 µ-law expansion (the classic Sun reference, as FFmpeg does it)."""
    value = ~byte & 0xFF
    magnitude = (((value & 0x0F) << 3) + 0x84) << ((value >> 4) & 7)
    return 0x84 - magnitude if value & 0x80 else magnitude - 0x84


def alaw_to_linear(byte: int) -> int:
    """ITU-T G.711 A-law expansion (the classic Sun reference)."""
    value = byte ^ 0x55
    magnitude = (value & 0x0F) << 4
    segment = (value & 0x70) >> 4
    if segment == 0:
        magnitude += 8
    elif segment == 1:
        magnitude += 0x108
    else:
        magnitude = (magnitude + 0x108) << (segment - 1)
    return magnitude if value & 0x80 else -magnitude


# -- real Opus packets and FFmpeg's view of files ----------------------------------------------


@functools.cache
def encoded(
    freq: float,
    seconds: float,
    *,
    bit_rate: int = 32_000,
    options: tuple[tuple[str, str], ...] = (("application", "lowdelay"),),
    amplitude: float = 0.3,
) -> tuple[bytes, ...]:
    """A tone encoded by libopus, mono 48 kHz: the packets, as a browser would send them."""
    encoder = av.CodecContext.create("libopus", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate = RATE
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = bit_rate
    encoder.options = dict(options)
    count = round(seconds * RATE)
    t = np.arange(count) / RATE
    samples = (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    frame.pts = 0
    frame.time_base = Fraction(1, RATE)
    packets = [bytes(packet) for packet in encoder.encode(frame)]
    packets += [bytes(packet) for packet in encoder.encode(None)]
    return tuple(packets)


def _as_channels(frame: av.AudioFrame, channels: int) -> Audio:
    data = frame.to_ndarray()
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T
    out = data.astype(np.float64)
    if data.dtype == np.int16:
        out /= 32768.0
    return out


def libopus_decode(packets: Iterable[bytes], channels: int, head: bytes | None = None) -> Audio:
    """Raw packets through libopus (mapping family 0, or ``head``'s multistream mapping)."""
    decoder = av.CodecContext.create("libopus", "r")
    assert isinstance(decoder, av.AudioCodecContext)
    decoder.sample_rate = RATE
    decoder.layout = "stereo" if channels == 2 else "mono"
    if head is not None:
        decoder.extradata = head
    chunks = []
    for packet in packets:
        for frame in decoder.decode(av.Packet(packet)):
            chunks.append(_as_channels(frame, channels))
    return np.concatenate(chunks, axis=1)


def probe(data: bytes) -> tuple[str, int, int, int | None, Audio]:
    """What FFmpeg makes of a file: codec, channels, rate, the stream's duration (in its time
    base) and every decoded sample (channels x samples, floats in [-1, 1])."""
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        context = stream.codec_context
        channels = context.channels
        chunks = [_as_channels(frame, channels) for frame in container.decode(stream)]
        audio = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0))
        return context.name, channels, context.sample_rate, stream.duration, audio


def peak(audio: Audio, start_s: float, end_s: float) -> float:
    window = audio[round(start_s * RATE) : round(end_s * RATE)]
    return float(np.abs(window).max()) if len(window) else 0.0


def dominant_hz(audio: Audio, start_s: float, end_s: float) -> float:
    window = audio[round(start_s * RATE) : round(end_s * RATE)]
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
    return float(np.argmax(spectrum)) * RATE / len(window)


def opus_leg(serial: int, runs: Sequence[tuple[int, Sequence[bytes]]], end: int) -> bytes:
    """A leg's file as the recorder writes it: runs of packets placed back to back from a
    position, gaps between them filled by the track, finished ``end`` samples long."""
    track = tracks.OpusTrack(serial)
    data = track.start()
    for position, packets in runs:
        placed = []
        for packet in packets:
            samples = opus.parse(packet).samples
            placed.append(Placed(position, samples, packet))
            position += samples
        data += track.add(placed)
    return data + track.finish(end)


# -- Ogg ----------------------------------------------------------------------------------------


class TestOggChecksum:
    def test_known_value(self) -> None:
        """CRC-32 with Ogg's parameters (poly 0x04C11DB7, MSB first, init 0, no XOR out) of
        the catalogue's check string: the complement of CRC-32/CKSUM's 0x765E7680."""
        assert ogg.crc(b"123456789") == 0x89A1897F
        assert reference_crc(b"123456789") == 0x89A1897F
        assert ogg.crc(b"") == 0

    @pytest.mark.parametrize("length", [1, 2, 3, 27, 255, 4096, 65_535, 65_536, 65_537, 200_001])
    def test_matches_the_table_driven_crc(self, length: int) -> None:
        """Any length, including past the 64 KiB zero block the fast version uses."""
        data = random.Random(length).randbytes(length)
        assert ogg.crc(data) == reference_crc(data)

    def test_zero_bytes(self) -> None:
        """Initial value 0 and no final XOR: zeros alone checksum to 0 (zlib's CRC-32, with
        its inversions, does not), while zeros after data still change the value."""
        assert ogg.crc(bytes(100)) == 0
        assert ogg.crc(b"\x01" + bytes(4)) != ogg.crc(b"\x01")
        assert ogg.crc(b"\x01" + bytes(4)) == reference_crc(b"\x01" + bytes(4))

    def test_pages_written_by_ffmpeg_are_accepted(self) -> None:
        """FFmpeg's Ogg muxer (libavformat, its own CRC code) and ours agree on every page:
        its file reads back with checksums verified, to the very packets it was given."""
        buffer = io.BytesIO()
        muxed: list[bytes] = []
        with av.open(buffer, "w", format="ogg") as container:
            stream = container.add_stream("libopus", rate=RATE)
            assert isinstance(stream, av.AudioStream)
            stream.codec_context.layout = "mono"
            stream.codec_context.format = "s16"
            t = np.arange(RATE // 2) / RATE
            samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = 0
            frame.time_base = Fraction(1, RATE)
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                muxed.append(bytes(packet))
                container.mux(packet)
        data = buffer.getvalue()
        pages = list(ogg.read_pages(data))
        assert len(pages) >= 3 and pages[0].flags & ogg.BEGINNING and pages[-1].flags & ogg.END
        read = list(ogg.read_packets(data))
        assert read[0][0].startswith(b"OpusHead") and read[1][0].startswith(b"OpusTags")
        assert [packet for packet, _ in read[2:]] == muxed and len(muxed) > 20
        assert read[-1][1] == pages[-1].granule > 0


class TestOggLacing:
    @pytest.mark.parametrize(
        ("length", "table"),
        [
            (0, [0]),
            (1, [1]),
            (254, [254]),
            (255, [255, 0]),
            (256, [255, 1]),
            (509, [255, 254]),
            (510, [255, 255, 0]),
            (600, [255, 255, 90]),
            (65_024, [255] * 254 + [254]),
        ],
    )
    def test_lacing_values(self, length: int, table: list[int]) -> None:
        """A multiple of 255 ends with a 0 (RFC 3533 §5): otherwise the packet would look
        unfinished."""
        assert list(ogg.lacing(length)) == table

    def test_page_layout(self) -> None:
        """Every header field where RFC 3533 §6 puts it, and the checksum over the page with
        its own field zeroed."""
        packets = [b"a" * 255, b"", b"b" * 3]
        data = ogg.page(packets, serial=0xDEADBEEF, sequence=7, granule=123_456_789, flags=0x04)
        assert data[:4] == b"OggS" and data[4] == 0 and data[5] == 0x04
        assert struct.unpack_from("<q", data, 6)[0] == 123_456_789
        assert struct.unpack_from("<I", data, 14)[0] == 0xDEADBEEF
        assert struct.unpack_from("<I", data, 18)[0] == 7
        assert data[26] == 4 and list(data[27:31]) == [255, 0, 0, 3]
        assert data[31:] == b"a" * 255 + b"bbb"
        zeroed = data[:22] + bytes(4) + data[26:]
        assert struct.unpack_from("<I", data, 22)[0] == reference_crc(zeroed)

    def test_page_holds_at_most_255_segments(self) -> None:
        ogg.page([bytes(254 * 255)], serial=1, sequence=0, granule=0)  # 255 segments: fits
        with pytest.raises(ogg.OggError):
            ogg.page([bytes(255 * 255)], serial=1, sequence=0, granule=0)  # 256
        with pytest.raises(ogg.OggError):
            ogg.page([b""] * 256, serial=1, sequence=0, granule=0)

    def test_granule_minus_one_round_trips(self) -> None:
        data = ogg.page([b"x"], serial=1, sequence=0, granule=-1)
        assert next(ogg.read_pages(data)).granule == -1


class TestPageWriter:
    SIZES = (0, 1, 100, 254, 255, 256, 509, 510, 511, 1000, 4000, 65_024)

    def test_round_trip_with_granules(self) -> None:
        """Packets of every awkward size come back unchanged; each page ends on a whole packet
        and carries the granule after its last one; the others read -1."""
        rng = random.Random(1)
        packets = [rng.randbytes(size) for size in self.SIZES * 3]
        items = [(packet, 960 * (i + 1)) for i, packet in enumerate(packets)]
        writer = ogg.PageWriter(serial=99)
        data = writer.header(b"OpusHead-ish") + writer.pages(items, last=True)
        pages = list(ogg.read_pages(data))
        assert [p.sequence for p in pages] == list(range(len(pages)))
        assert {p.serial for p in pages} == {99}
        assert pages[0].flags == ogg.BEGINNING
        assert all(p.flags == 0 for p in pages[1:-1]) and pages[-1].flags == ogg.END
        assert len(pages) > 3  # 65 KiB packets cannot share a page
        for item in pages:
            assert len(item.segments) <= 255
            assert item.segments[-1] < 255  # ends on a whole packet: nothing continues
        read = list(ogg.read_packets(data))
        assert [packet for packet, _ in read] == [b"OpusHead-ish", *packets]
        ends_on_page = {p.granule for p in pages[1:]}
        for index, (_packet, granule) in enumerate(read[1:]):
            expected = 960 * (index + 1)
            assert granule in (-1, expected)
            if granule == -1:
                assert expected not in ends_on_page  # only a page's last packet has it
        assert read[-1][1] == 960 * len(packets)

    def test_small_packets_fill_pages_of_255_segments(self) -> None:
        writer = ogg.PageWriter(serial=1)
        data = writer.pages([(b"xy", i) for i in range(600)])
        pages = list(ogg.read_pages(data))
        assert [len(p.segments) for p in pages] == [255, 255, 90]
        assert [p.granule for p in pages] == [254, 509, 599]
        assert writer.sequence == 3

    def test_packet_too_long_for_a_page(self) -> None:
        writer = ogg.PageWriter(serial=1)
        assert len(list(ogg.read_pages(writer.pages([(bytes(65_024), 1)])))) == 1
        with pytest.raises(ogg.OggError):
            writer.pages([(bytes(65_025), 1)])

    def test_empty_end_of_stream(self) -> None:
        writer = ogg.PageWriter(serial=1)
        assert writer.pages([]) == b""
        (last,) = ogg.read_pages(writer.pages([], last=True))
        assert last.flags == ogg.END and last.segments == b""

    def test_opus_head_mono(self) -> None:
        """RFC 7845 §5.1: 19 bytes, version 1, mapping family 0."""
        head = ogg.opus_head(channels=1, pre_skip=312)
        assert len(head) == 19
        magic, version, channels, pre_skip, rate, gain, family = struct.unpack("<8sBBHIhB", head)
        assert (magic, version, channels, pre_skip, rate, gain, family) == (
            b"OpusHead",
            1,
            1,
            312,
            48_000,
            0,
            0,
        )

    def test_opus_head_two_uncoupled_streams(self) -> None:
        """Family 1 with a mapping table: stream count, coupled count, channel i -> stream i."""
        head = ogg.opus_head(channels=2, streams=2, coupled=0)
        assert len(head) == 21 + 2
        assert head[18] == 1 and head[9] == 2
        assert list(head[19:]) == [2, 0, 0, 1]

    def test_opus_tags(self) -> None:
        tags = ogg.opus_tags("vendor x")
        assert tags == b"OpusTags" + struct.pack("<I", 8) + b"vendor x" + struct.pack("<I", 0)


class TestReadPackets:
    def test_packet_spanning_pages(self) -> None:
        """A packet continued over three pages comes back whole, with the granule of the page
        it ends on; the page it merely crosses ends no packet (granule -1)."""
        rng = random.Random(2)
        big = rng.randbytes(255 * 255 * 2 + 100)
        small = b"tail"
        data = (
            raw_page([255] * 255, big[:65_025], granule=-1, sequence=0)
            + raw_page([255] * 255, big[65_025:130_050], granule=-1, sequence=1, flags=1)
            + raw_page([100, 4], big[130_050:] + small, granule=1920, sequence=2, flags=1)
        )
        assert list(ogg.read_packets(data)) == [(big, -1), (small, 1920)]

    def test_packet_of_a_whole_page_then_a_zero(self) -> None:
        """65,025 bytes fill 255 segments of 255: it only ends with the next page's 0."""
        body = random.Random(3).randbytes(65_025)
        data = raw_page([255] * 255, body, granule=-1) + raw_page(
            [0, 2], b"ok", sequence=1, flags=1, granule=960
        )
        assert list(ogg.read_packets(data)) == [(body, -1), (b"ok", 960)]

    def test_exactly_255_and_510_bytes(self) -> None:
        for size in (255, 510):
            body = bytes(range(256))[:255] * (size // 255)
            data = ogg.page([body, b"z"], serial=1, sequence=0, granule=5)
            assert list(ogg.read_packets(data)) == [(body, -1), (b"z", 5)]

    def test_empty_input(self) -> None:
        assert list(ogg.read_packets(b"")) == []


class TestOggDamage:
    def valid(self) -> bytes:
        writer = ogg.PageWriter(serial=5)
        return (
            writer.header(ogg.opus_head(channels=1))
            + writer.header(ogg.opus_tags())
            + writer.pages([(b"p" * n, 960 * n) for n in (1, 300, 7)], last=True)
        )

    def test_every_single_byte_change_is_detected(self) -> None:
        data = self.valid()
        for at in range(len(data)):
            for mask in (0x01, 0x80, 0xFF):
                damaged = bytearray(data)
                damaged[at] ^= mask
                with pytest.raises(ogg.OggError):
                    list(ogg.read_packets(bytes(damaged)))

    def test_every_truncation_is_detected(self) -> None:
        data = self.valid()
        boundaries = {0}
        at = 0
        for item in ogg.read_pages(data):
            at += 27 + len(item.segments) + len(item.body)
            boundaries.add(at)
        for cut in range(len(data)):
            if cut in boundaries:
                list(ogg.read_packets(data[:cut]))  # whole pages: fine, just fewer
            else:
                with pytest.raises(ogg.OggError):
                    list(ogg.read_packets(data[:cut]))

    def test_bad_version_and_garbage(self) -> None:
        data = bytearray(self.valid())
        data[4] = 1
        with pytest.raises(ogg.OggError, match="no Ogg page"):
            list(ogg.read_pages(resum(bytes(data))))
        with pytest.raises(ogg.OggError):
            list(ogg.read_pages(self.valid() + b"junk at the end, long enough for a header"))
        with pytest.raises(ogg.OggError):
            list(ogg.read_pages(b"OggS"))
        assert issubclass(ogg.OggError, ValueError)

    def test_fuzz_raises_only_ogg_error(self) -> None:
        """Random bytes, random mutations of a valid file, and mutations whose checksums were
        recomputed (so they reach the lacing and packet logic): packets or OggError, nothing
        else, and never more packet bytes than the input holds."""
        rng = random.Random(20_240_601)
        base = self.valid()
        outcomes = {"ok": 0, "error": 0}
        for round_ in range(1500):
            kind = round_ % 5
            if kind == 0:
                data = rng.randbytes(rng.randrange(0, 400))
            elif kind == 1:
                data = b"OggS\0" + rng.randbytes(rng.randrange(0, 400))
            else:
                damaged = bytearray(base)
                for _ in range(rng.randrange(1, 6)):
                    action = rng.randrange(3)
                    at = rng.randrange(len(damaged))
                    if action == 0:
                        damaged[at] = rng.randrange(256)
                    elif action == 1:
                        del damaged[at : at + rng.randrange(1, 40)]
                    else:
                        damaged[at:at] = rng.randbytes(rng.randrange(1, 40))
                data = bytes(damaged)
                if kind >= 3:
                    data = resum(data)
            try:
                packets = list(ogg.read_packets(data))
            except ogg.OggError:
                outcomes["error"] += 1
                continue
            outcomes["ok"] += 1
            assert sum(len(packet) for packet, _ in packets) <= len(data)
        assert outcomes["ok"] > 50 and outcomes["error"] > 500, outcomes


# -- Opus ---------------------------------------------------------------------------------------

# RFC 6716 Table 2, frame sizes in ms by configuration number.
FRAME_MS = [10, 20, 40, 60] * 3 + [10, 20] * 2 + [2.5, 5, 10, 20] * 4


class TestOpusToc:
    @pytest.mark.parametrize("config", range(32))
    def test_frame_samples_of_every_config(self, config: int) -> None:
        expected = round(FRAME_MS[config] * 48)
        for stereo_flag in (0, 4):
            for code in range(4):
                assert opus.frame_samples((config << 3) | stereo_flag | code) == expected

    @pytest.mark.parametrize("config", range(32))
    def test_packet_samples_for_codes_0_to_3(self, config: int) -> None:
        """Code 0: one frame; 1 and 2: two; 3: the count in its second byte, at most 120 ms."""
        frame = round(FRAME_MS[config] * 48)
        toc = config << 3
        assert opus.parse(bytes((toc,)) + b"abc").samples == frame
        two = [opus.parse(bytes((toc | 1,)) + b"abcd"), opus.parse(bytes((toc | 2, 1)) + b"abc")]
        for packet in two:
            if 2 * frame <= 5760:
                assert packet.samples == 2 * frame
        for count in range(1, 50):
            data = bytes((toc | 3, count)) + b"\x07" * count  # CBR, one byte a frame
            if count * frame <= 5760:
                assert opus.parse(data).samples == count * frame
                assert len(opus.parse(data).frames) == count
            else:
                with pytest.raises(opus.OpusPacketError, match="120 ms"):
                    opus.parse(data)

    def test_frames_split_as_coded(self) -> None:
        toc = 31 << 3
        assert opus.parse(bytes((toc,)) + b"abc").frames == (b"abc",)
        assert opus.parse(bytes((toc | 1,)) + b"abcd").frames == (b"ab", b"cd")
        assert opus.parse(bytes((toc | 1,))).frames == (b"", b"")
        assert opus.parse(bytes((toc | 2, 1)) + b"abc").frames == (b"a", b"bc")
        # A two-byte length: 252 + 4 * 1 = 256 bytes for the first frame.
        first, second = bytes(range(256)), b"xyz"
        packet = opus.parse(bytes((toc | 2, 252, 1)) + first + second)
        assert packet.frames == (first, second)
        # Code 3, VBR, 3 frames: lengths of all but the last, then padding (2 bytes).
        packet = opus.parse(bytes((toc | 3, 0x80 | 0x40 | 3, 2, 1, 2)) + b"aabccc" + b"\0\0")
        assert packet.frames == (b"a", b"ab", b"ccc")
        # Code 3, CBR with padding of 254 + 1 bytes (a 255 adds 254 and continues).
        padded = bytes((toc | 3, 0x40 | 2, 255, 1)) + b"xxyy" + bytes(255)
        assert opus.parse(padded).frames == (b"xx", b"yy")
        assert opus.parse(bytes((toc | 4,)) + b"s").toc == toc | 4  # the stereo flag is kept

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            bytes((0xF9,)) + b"abc",  # code 1, odd payload
            bytes((0xFA,)),  # code 2, no length
            bytes((0xFA, 252)),  # code 2, two-byte length cut short
            bytes((0xFA, 5)) + b"abc",  # code 2, first frame longer than the packet
            bytes((0xFB,)),  # code 3, no count
            bytes((0xFB, 0)),  # code 3, no frames
            bytes((0xFB, 0x40 | 1)),  # padding flag, no padding length
            bytes((0xFB, 0x40 | 1, 255)),  # padding length continued, then nothing
            bytes((0xFB, 0x40 | 1, 10)) + b"abc",  # more padding than packet
            bytes((0xFB, 0x80 | 2, 5)) + b"abc",  # VBR lengths beyond the packet
            bytes((0xFB, 0x80 | 3, 1)),  # VBR, second length missing
            bytes((0xFB, 2)) + b"abc",  # CBR, 3 bytes in 2 frames
            bytes(((3 << 3) | 3, 3)) + b"abc",  # 3 x 60 ms SILK: 180 ms
            bytes(((16 << 3) | 3, 49)) + bytes(49),  # 49 x 2.5 ms CELT: 122.5 ms
        ],
    )
    def test_invalid_packets_are_rejected(self, data: bytes) -> None:
        with pytest.raises(opus.OpusPacketError):
            opus.parse(data)
        assert issubclass(opus.OpusPacketError, ValueError)

    def test_the_limits_themselves_are_allowed(self) -> None:
        assert opus.parse(bytes(((3 << 3) | 1,)) + b"ab").samples == 5760  # 2 x 60 ms
        assert opus.parse(bytes(((16 << 3) | 3, 48)) + bytes(48)).samples == 5760  # 48 x 2.5
        assert opus.parse(bytes(((31 << 3) | 2, 0))).frames == (b"", b"")

    def test_real_packets(self) -> None:
        """libopus's own packets, for each frame duration and framing it uses."""
        cases = [
            ((("application", "lowdelay"), ("frame_duration", "2.5")), 120),
            ((("application", "lowdelay"), ("frame_duration", "5")), 240),
            ((("frame_duration", "10"),), 480),
            ((), 960),
            ((("application", "lowdelay"), ("frame_duration", "40")), 1920),
            ((("application", "lowdelay"), ("frame_duration", "60")), 2880),
            ((("frame_duration", "120"),), 5760),
        ]
        for options, samples in cases:
            packets = encoded(300.0, 0.5, options=options)
            assert {opus.parse(p).samples for p in packets} == {samples}, options


class TestSelfDelimited:
    def test_spec_layout(self) -> None:
        """Appendix B: the extra length before the data (two bytes from 252 on)."""
        toc = 31 << 3
        frame = bytes(300)
        assert opus.self_delimited(opus.parse(bytes((toc,)) + frame)) == (
            bytes((toc, 252, 12)) + frame
        )
        assert opus.self_delimited(opus.parse(bytes((toc,)) + b"ab")) == bytes((toc, 2)) + b"ab"
        assert opus.self_delimited(opus.parse(bytes((toc | 1,)) + b"abcd")) == (
            bytes((toc | 1, 2)) + b"abcd"
        )
        assert opus.self_delimited(opus.parse(bytes((toc | 2, 1)) + b"abc")) == (
            bytes((toc | 2, 1, 2)) + b"abc"
        )
        # Padding is dropped; three frames become code 3 VBR with every length.
        padded = bytes((toc | 3, 0x40 | 3, 2)) + b"aabbcc" + b"\0\0"
        assert opus.self_delimited(opus.parse(padded)) == bytes((toc | 3, 0x80 | 3, 2, 2, 2)) + (
            b"aabbcc"
        )
        # The stereo flag survives.
        assert opus.self_delimited(opus.parse(bytes((toc | 4,)) + b"a"))[0] == toc | 4

    def test_fuzz_round_trip(self) -> None:
        """Any packet ``parse`` accepts (frames within the 1275 bytes a length can code) comes
        back from the self-delimited form with the same TOC and frames, and it says how long
        it is: a second packet after it is untouched."""
        rng = random.Random(7)
        accepted = 0
        for _ in range(4000):
            size = rng.choice([1, 2, 3, 5, 20, 300, 1200])
            data = rng.randbytes(rng.randrange(1, size + 1))
            try:
                packet = opus.parse(data)
            except opus.OpusPacketError:
                continue
            assert 1 <= len(packet.frames) <= 48 and packet.samples <= opus.MAX_PACKET_SAMPLES
            assert sum(map(len, packet.frames)) <= len(data) - 1
            if max(map(len, packet.frames)) > 1275:
                continue
            accepted += 1
            delimited = opus.self_delimited(packet)
            toc, frames, used = read_self_delimited(delimited + b"NEXT")
            assert used == len(delimited)
            assert toc & 0xFC == packet.toc & 0xFC
            assert tuple(frames) == packet.frames
        assert accepted > 1000

    @pytest.mark.parametrize(
        ("options", "bit_rate"),
        [
            ((("application", "lowdelay"),), 32_000),  # code 0
            ((("application", "lowdelay"),), 160_000),  # code 0, frames over 252 bytes
            ((("application", "lowdelay"), ("frame_duration", "40")), 32_000),  # code 1
            ((("application", "lowdelay"), ("frame_duration", "40"), ("vbr", "off")), 32_000),
            ((("application", "lowdelay"), ("frame_duration", "60")), 64_000),  # code 3 VBR
            ((("frame_duration", "60"), ("application", "voip")), 12_000),  # SILK 60 ms
        ],
    )
    def test_libopus_decodes_it_as_the_first_of_two_streams(
        self, options: tuple[tuple[str, str], ...], bit_rate: int
    ) -> None:
        """Bit-exact: libopus's multistream decoder, given [self-delimited A + B] packets,
        gives A's decoding on the left and B's on the right; without the conversion it
        cannot decode them at all."""
        left = encoded(440.0, 0.3, options=options, bit_rate=bit_rate)
        right = encoded(1000.0, 0.3, options=options, bit_rate=bit_rate)
        head = ogg.opus_head(channels=2, streams=2, coupled=0)
        joined = [opus.self_delimited(opus.parse(a)) + b for a, b in zip(left, right, strict=True)]
        both = libopus_decode(joined, 2, head)
        assert np.array_equal(both[0], libopus_decode(left, 1)[0])
        assert np.array_equal(both[1], libopus_decode(right, 1)[0])
        assert np.abs(both[0]).max() > 0.1
        with pytest.raises(av.error.InvalidDataError):
            libopus_decode([a + b for a, b in zip(left, right, strict=True)], 2, head)

    def test_code_2_and_padding_decode_the_same(self) -> None:
        """Code 2 (two frames of unequal length) and padded code 3, made from libopus's 20 ms
        CELT packets, decode as the originals do, also as the first of two streams."""
        original = encoded(523.0, 0.4, bit_rate=96_000)
        repacked = []
        for first, second in zip(original[0::2], original[1::2], strict=False):
            assert first[0] & 3 == 0 and second[0] & 3 == 0
            if first[0] == second[0] and len(first) != len(second):
                a, b = first[1:], second[1:]
                repacked.append(bytes((first[0] | 2,)) + spec_length(len(a)) + a + b)
            else:
                for single in (first, second):
                    padding = bytes((single[0] | 3, 0x40 | 1, 3))
                    repacked.append(padding + single[1:] + b"\0\0\0")
        codes = {packet[0] & 3 for packet in repacked}
        assert codes == {2, 3}, codes
        reference = libopus_decode(original[: 2 * (len(original) // 2)], 1)[0]
        assert np.array_equal(libopus_decode(repacked, 1)[0], reference)
        head = ogg.opus_head(channels=2, streams=2, coupled=0)
        joined = [opus.self_delimited(opus.parse(p)) + p for p in repacked]
        both = libopus_decode(joined, 2, head)
        assert np.array_equal(both[0], reference) and np.array_equal(both[1], reference)


class TestFillers:
    @pytest.mark.parametrize("conceal", [True, False])
    def test_filler_of_every_length(self, conceal: bool) -> None:
        for samples in range(opus.PLC_STEP, opus.MAX_PACKET_SAMPLES + 1, opus.PLC_STEP):
            packet = opus.parse(opus.filler(samples, conceal=conceal))
            assert packet.samples == samples
            assert opus.is_filler(packet) and packet.silent == conceal
            assert packet.toc >> 3 >= 28  # CELT fullband
        for bad in (0, -120, 60, 121, opus.MAX_PACKET_SAMPLES + opus.PLC_STEP):
            with pytest.raises(ValueError):
                opus.filler(bad, conceal=conceal)

    @pytest.mark.parametrize("samples", [0, 119, 120, 960, 1000, 2880, 2881, 5760, 48_000, 100_021])
    def test_gap_concealment_then_silence(self, samples: int) -> None:
        """The gap is covered to the last whole 2.5 ms: concealment for its first 60 ms,
        digital-silence frames after, in packets of at most 120 ms."""
        packets = [opus.parse(p) for p in opus.gap(samples)]
        assert sum(p.samples for p in packets) == samples - samples % opus.PLC_STEP
        assert all(p.samples <= opus.MAX_PACKET_SAMPLES and opus.is_filler(p) for p in packets)
        concealed = sum(p.samples for p in packets if p.silent)
        assert concealed == min(samples, opus.CONCEAL_AT_MOST) // opus.PLC_STEP * opus.PLC_STEP
        kinds = [p.silent for p in packets]
        assert kinds == sorted(kinds, reverse=True)  # all concealment first
        assert all(
            frame == opus.SILENT_FRAME for p in packets if not p.silent for frame in p.frames
        )
        assert len(packets) <= samples // opus.MAX_PACKET_SAMPLES + 8  # a few bytes a second

    def test_real_audio_is_not_filler(self) -> None:
        assert not any(opus.is_filler(opus.parse(p)) for p in encoded(440.0, 0.2))
        silk_plc = opus.parse(bytes((1 << 3,)))  # an empty SILK frame: not ours to cut
        assert silk_plc.silent and not opus.is_filler(silk_plc)

    def test_silence_decodes_to_digital_silence(self) -> None:
        """With libopus: exactly zero, exactly as long as asked, even right after a tone."""
        tone = list(encoded(440.0, 0.2))
        decoded = libopus_decode([*tone, *opus.silence(RATE)], 1)[0]
        tone_samples = sum(opus.parse(p).samples for p in tone)
        assert len(decoded) == tone_samples + RATE
        assert np.abs(decoded[:tone_samples]).max() > 0.1
        assert np.all(decoded[tone_samples + 960 :] == 0)

    def test_concealment_decodes_to_its_length(self) -> None:
        tone = list(encoded(440.0, 0.2))
        lost = opus.concealment(2880 + 360)
        decoded = libopus_decode([*tone, *lost], 1)[0]
        assert len(decoded) == sum(opus.parse(p).samples for p in tone) + 2880 + 360


# -- leg files ----------------------------------------------------------------------------------


class TestOpusTrack:
    def test_headers_and_ffmpeg_reads_it(self) -> None:
        packets = encoded(440.0, 0.4)[:20]
        data = opus_leg(11, [(9600, packets)], RATE)
        pages = list(ogg.read_pages(data))
        assert pages[0].flags == ogg.BEGINNING and pages[0].body == ogg.opus_head(channels=1)
        assert pages[1].body == ogg.opus_tags() and pages[-1].flags & ogg.END
        assert {p.serial for p in pages} == {11}
        codec, channels, rate, duration, audio = probe(data)
        assert (codec, channels, rate) == ("opus", 1, RATE)
        assert duration == RATE and audio.shape == (1, RATE)
        assert peak(audio[0], 0.0, 0.2) == 0.0  # before the first packet: silence
        assert peak(audio[0], 0.25, 0.55) > 0.2
        assert abs(dominant_hz(audio[0], 0.25, 0.55) - 440.0) < 10
        assert peak(audio[0], 0.7, 1.0) == 0.0

    def test_packets_land_at_their_positions(self) -> None:
        """Every packet's granule position is where it was placed plus its length; gaps
        between are fillers; the file lasts what ``finish`` was told."""
        packets = list(encoded(440.0, 0.4)[:12])
        runs = [(960, packets[:3]), (960 * 10, packets[3:4]), (960 * 11, packets[4:9])]
        runs.append((960 * 40 + 480, packets[9:]))  # a 10 ms offset: fillers come in 2.5 ms
        data = opus_leg(1, runs, 960 * 100)
        audio_packets = list(ogg.read_packets(data))[2:]
        position = 0
        found = {}
        for packet, granule in audio_packets:
            parsed = opus.parse(packet)
            position += parsed.samples
            if not opus.is_filler(parsed):
                found[position - parsed.samples] = packet
            else:
                assert packet not in packets
            assert granule in (-1, position)
        assert audio_packets[-1][1] == position == 960 * 100
        expected = {}
        for start, run in runs:
            for index, packet in enumerate(run):
                expected[start + 960 * index] = packet
        assert found == expected

    def test_gap_is_concealed_then_silent(self) -> None:
        packets = encoded(440.0, 0.2)[:5]
        data = opus_leg(1, [(0, packets[:1]), (960 * 20, packets[1:])], 960 * 30)
        fill = [opus.parse(p) for p, _ in list(ogg.read_packets(data))[3:]]
        gap = []
        for packet in fill:
            if not opus.is_filler(packet):
                break
            gap.append(packet)
        assert sum(p.samples for p in gap) == 960 * 19
        assert sum(p.samples for p in gap if p.silent) == opus.CONCEAL_AT_MOST
        assert gap[0].silent and not gap[-1].silent
        # finish() pads with silence, not concealment: 120 ms after the last packet.
        tail = opus.parse(list(ogg.read_packets(data))[-1][0])
        assert opus.is_filler(tail) and not tail.silent and tail.samples == 5760

    def test_a_leg_with_no_packets(self) -> None:
        track = tracks.OpusTrack(3)
        data = track.start() + track.finish(RATE // 2)
        codec, channels, _rate, duration, audio = probe(data)
        assert (codec, channels, duration) == ("opus", 1, RATE // 2)
        assert audio.shape == (1, RATE // 2) and not audio.any()
        assert track.end == RATE // 2

    def test_finish_before_the_end_of_what_was_placed_adds_nothing(self) -> None:
        track = tracks.OpusTrack(3)
        packets = encoded(440.0, 0.2)[:10]
        data = track.start() + track.add([Placed(960 * i, 960, p) for i, p in enumerate(packets)])
        assert track.end == 9600
        data += track.finish(5000)
        assert track.end == 9600
        assert [p for p, _ in ogg.read_packets(data)][2:] == list(packets)
        _codec, _channels, _rate, duration, audio = probe(data)
        assert audio.shape[1] == 9600

    def test_duration_of(self) -> None:
        assert tracks.duration_of("opus")(bytes((31 << 3 | 3, 3)) + bytes(6)) == 2880
        assert tracks.duration_of("pcmu")(bytes(160)) == 160
        assert tracks.duration_of("pcma")(b"") == 0
        with pytest.raises(ValueError):
            tracks.duration_of("opus")(b"")
        assert isinstance(tracks.track_for("opus", 1), tracks.OpusTrack)
        assert tracks.track_for("pcma", 1).codec == "pcma"


class TestG711Track:
    @pytest.mark.parametrize(
        ("codec", "tag", "silence", "expand", "name"),
        [
            ("pcmu", 7, 0xFF, ulaw_to_linear, "pcm_mulaw"),
            ("pcma", 6, 0xD5, alaw_to_linear, "pcm_alaw"),
        ],
    )
    def test_wav_written_and_closed(
        self,
        codec: Literal["pcmu", "pcma"],
        tag: int,
        silence: int,
        expand: Callable[[int], int],
        name: str,
    ) -> None:
        """As the recorder writes it: the header at the start, the samples with silence in the
        gaps, then the header rewritten in place at close with the sizes."""
        rng = random.Random(tag)
        track = tracks.G711Track(codec)
        first, second = rng.randbytes(160), rng.randbytes(240)
        file = bytearray(track.start())
        assert len(file) == 58 and file[54:58] == bytes(4)  # data size 0 until closed
        file += track.add([Placed(800, 160, first)])
        file += track.add([Placed(2000, 240, second), Placed(2240, 160, first)])
        file += track.finish(8000)
        offset, header = track.header() or (0, b"")
        assert offset == 0 and len(header) == 58
        file[offset : offset + len(header)] = header
        assert track.end == 8000 and len(file) == 58 + 8000
        riff, size, wave = struct.unpack_from("<4sI4s", file, 0)
        assert (riff, size, wave) == (b"RIFF", len(file) - 8, b"WAVE")
        assert file[12:16] == b"fmt " and struct.unpack_from("<I", file, 16)[0] == 18
        fmt = struct.unpack_from("<HHIIHHH", file, 20)
        assert fmt == (tag, 1, 8000, 8000, 1, 8, 0)
        assert file[38:42] == b"fact" and struct.unpack_from("<II", file, 42) == (4, 8000)
        assert file[50:54] == b"data" and struct.unpack_from("<I", file, 54)[0] == 8000
        samples = bytes(file[58:])
        expected = (
            bytes((silence,)) * 800
            + first
            + bytes((silence,)) * (2000 - 960)
            + second
            + first
            + bytes((silence,)) * (8000 - 2400)
        )
        assert samples == expected
        decoded_name, channels, rate, _duration, audio = probe(bytes(file))
        assert (decoded_name, channels, rate) == (name, 1, 8000)
        assert audio.shape == (1, 8000)
        reference = np.array([expand(b) for b in expected], dtype=np.float64) / 32768.0
        assert np.array_equal(audio[0], reference)
        assert np.abs(audio[0, :800]).max() <= 8 / 32768  # silence is (nearly) zero

    def test_overlapping_placement_appends(self) -> None:
        """A packet placed before the end (the timeline never does this) is appended, not
        written over what is there: the track only ever grows."""
        track = tracks.G711Track("pcmu")
        track.add([Placed(0, 4, b"abcd")])
        assert track.add([Placed(2, 4, b"efgh")]) == b"efgh"
        assert track.end == 8
        assert track.finish(4) == b""

    def test_header_of_an_unclosed_file(self) -> None:
        """What a crash leaves: a header saying no data, which the sweep sizes from the file."""
        header = tracks.wav_header("pcmu", 0)
        assert struct.unpack_from("<I", header, 4)[0] == 50
        assert tracks.wav_header("pcma", 8000)[20:22] == b"\x06\x00"


# -- stereo -------------------------------------------------------------------------------------


def audio_bytes(data: bytes) -> list[int]:
    """Offsets of the bytes of a leg file's audio packets (pages after the two headers)."""
    offsets: list[int] = []
    at = 0
    for index, item in enumerate(ogg.read_pages(data)):
        body_at = at + 27 + len(item.segments)
        if index >= 2:
            offsets += range(body_at, body_at + len(item.body))
        at = body_at + len(item.body)
    return offsets


class TestStereo:
    END = 2 * RATE

    def legs(self) -> tuple[bytes, bytes, list[bytes], list[bytes]]:
        """The browser speaks 440 Hz at 0.2-0.6 s and 1.0-1.2 s, the model 1200 Hz at
        0.8-1.4 s: alone, and at once."""
        browser = list(encoded(440.0, 0.62))[:30]
        model = list(encoded(1200.0, 0.62))[:30]
        left = opus_leg(1, [(9600, browser[:20]), (RATE, browser[20:30])], self.END)
        right = opus_leg(2, [(38400, model)], self.END)
        return left, right, browser, model

    def test_pairs_two_legs_into_family_1_stereo(self) -> None:
        left, right, browser, model = self.legs()
        written: list[bytes] = []
        samples = stereo.stereo_file(
            stereo.audio_packets(left), stereo.audio_packets(right), self.END, written.append
        )
        data = b"".join(written)
        assert samples == self.END
        pages = list(ogg.read_pages(data))
        assert pages[0].body == ogg.opus_head(channels=2, streams=2, coupled=0)
        # The last page ends the stream (an empty last page carries granule 0, not -1).
        assert pages[-1].flags & ogg.END and pages[-1].granule in (0, self.END)
        assert max(p.granule for p in pages) == self.END
        codec, channels, rate, duration, audio = probe(data)
        assert (codec, channels, rate) == ("opus", 2, RATE)
        assert duration == self.END and audio.shape == (2, self.END)
        # Browser on the left, model on the right, each where it was placed.
        assert peak(audio[0], 0.25, 0.6) > 0.2 and peak(audio[1], 0.0, 0.78) == 0.0
        assert abs(dominant_hz(audio[0], 0.25, 0.6) - 440) < 10
        assert peak(audio[1], 0.85, 1.4) > 0.2 and peak(audio[0], 0.65, 0.98) == 0.0
        assert abs(dominant_hz(audio[1], 0.85, 1.4) - 1200) < 10
        assert abs(dominant_hz(audio[0], 1.02, 1.2) - 440) < 10  # both at once
        assert abs(dominant_hz(audio[1], 1.02, 1.2) - 1200) < 10
        assert peak(audio[0], 1.3, 2.0) == 0.0 and peak(audio[1], 1.5, 2.0) == 0.0

    def test_packets_are_kept_as_sent(self) -> None:
        """Every real packet of each leg is in the stereo file unchanged (the left one
        re-framed), at the granule position it had in its leg."""
        left, right, browser, model = self.legs()
        written: list[bytes] = []
        stereo.stereo_file(
            stereo.audio_packets(left), stereo.audio_packets(right), self.END, written.append
        )
        packets = list(ogg.read_packets(b"".join(written)))[2:]
        position = 0
        lefts: dict[int, tuple[int, tuple[bytes, ...]]] = {}
        rights: dict[int, bytes] = {}
        for packet, granule in packets:
            toc, frames, used = read_self_delimited(packet)
            right_packet = opus.parse(packet[used:])
            assert right_packet.samples == opus.frame_samples(toc) * len(frames)
            if not opus.is_filler(opus.OpusPacket(toc, tuple(frames))):
                lefts[position] = (toc & 0xFC, tuple(frames))
            if not opus.is_filler(right_packet):
                rights[position] = packet[used:]
            position += right_packet.samples
            assert granule in (-1, position)
        assert position == self.END
        expected_left = {9600 + 960 * i: p for i, p in enumerate(browser[:20])}
        expected_left |= {RATE + 960 * i: p for i, p in enumerate(browser[20:30])}
        assert lefts == {at: (p[0] & 0xFC, opus.parse(p).frames) for at, p in expected_left.items()}
        assert rights == {38400 + 960 * i: p for i, p in enumerate(model)}

    def test_packets_of_other_lengths_at_other_times(self) -> None:
        """60 ms packets on one side, 20 ms on the other, never at once: the silence and
        concealment on the other side is cut to match each."""
        long_packets = list(encoded(700.0, 0.5, options=(("frame_duration", "60"),)))[:5]
        short_packets = list(encoded(300.0, 0.3))[:10]
        end = RATE
        left = opus_leg(1, [(0, long_packets)], end)
        right = opus_leg(2, [(2880 * 6, short_packets)], end)
        written: list[bytes] = []
        assert (
            stereo.stereo_file(
                stereo.audio_packets(left), stereo.audio_packets(right), end, written.append
            )
            == end
        )
        _codec, channels, _rate, duration, audio = probe(b"".join(written))
        assert channels == 2 and duration == end
        assert abs(dominant_hz(audio[0], 0.05, 0.3) - 700) < 15
        assert peak(audio[1], 0.0, 0.34) == 0.0
        assert abs(dominant_hz(audio[1], 0.4, 0.55) - 300) < 15

    def test_end_is_reached_with_silence_when_legs_are_short(self) -> None:
        left = opus_leg(1, [(0, encoded(440.0, 0.2)[:5])], 960 * 5)
        right = opus_leg(2, [], 0)
        written: list[bytes] = []
        end = 3 * RATE + 50  # not a whole 2.5 ms: the remainder is left out
        samples = stereo.stereo_file(
            stereo.audio_packets(left), stereo.audio_packets(right), end, written.append
        )
        assert samples == end - 50
        _codec, channels, _rate, duration, audio = probe(b"".join(written))
        assert (channels, duration) == (2, end - 50)
        assert peak(audio[0], 1.0, 3.0) == 0.0 and not audio[1].any()

    def test_simultaneous_packets_of_different_lengths_are_not_aligned(self) -> None:
        twenty = encoded(440.0, 0.2)[:5]
        ten = encoded(440.0, 0.2, options=(("frame_duration", "10"),))[:10]
        with pytest.raises(stereo.NotAligned, match="960 and 480"):
            list(stereo.pair(twenty, ten, 960 * 5))

    def test_misaligned_packets_are_not_aligned(self) -> None:
        """20 ms packets on both sides, half a packet apart: no filler can pad them to pairs."""
        packets = encoded(440.0, 0.2)[:5]
        left = opus_leg(1, [(0, packets)], 960 * 6)
        right = opus_leg(2, [(480, packets)], 960 * 6)
        with pytest.raises(stereo.NotAligned):
            stereo.stereo_file(
                stereo.audio_packets(left), stereo.audio_packets(right), 960 * 6, lambda _: None
            )

    def test_make_stereo_copies_or_transcodes(self, tmp_path: Path) -> None:
        """The service's choice: paired as sent when they line up, decoded when they do not,
        and both ways a two-channel file of the call's length."""
        packets = encoded(440.0, 0.2)[:5]
        (tmp_path / "a.browser.ogg").write_bytes(opus_leg(1, [(0, packets)], RATE))
        (tmp_path / "a.upstream.ogg").write_bytes(opus_leg(2, [(960, packets)], RATE))
        (tmp_path / "b.browser.ogg").write_bytes(opus_leg(1, [(0, packets)], RATE))
        (tmp_path / "b.upstream.ogg").write_bytes(opus_leg(2, [(480, packets)], RATE))
        for name, method in (("a", "copied"), ("b", "transcoded")):
            seconds, how = make_stereo(
                tmp_path / f"{name}.browser.ogg",
                tmp_path / f"{name}.upstream.ogg",
                "opus",
                RATE,
                tmp_path / name,
            )
            assert (seconds, how) == (1.0, method)
            _codec, channels, _rate, _duration, audio = probe(
                (tmp_path / f"{name}.ogg").read_bytes()
            )
            assert channels == 2 and abs(audio.shape[1] - RATE) <= 960
            assert peak(audio[0], 0.02, 0.09) > 0.1 and peak(audio[1], 0.04, 0.11) > 0.1
            assert peak(audio[0], 0.3, 0.9) < 0.01
        assert not list(tmp_path.glob("*.part"))

    def test_truncated_and_damaged_legs(self) -> None:
        """A leg cut short (the process died) gives its audio up to the damage; the file is
        still the call's length."""
        left, right, _browser, _model = self.legs()
        cut = left[: len(left) * 2 // 3]
        assert 2 < len(list(stereo.audio_packets(cut))) < len(list(stereo.audio_packets(left)))
        written: list[bytes] = []
        assert (
            stereo.stereo_file(
                stereo.audio_packets(cut), stereo.audio_packets(right), self.END, written.append
            )
            == self.END
        )
        _codec, channels, _rate, duration, _audio = probe(b"".join(written))
        assert (channels, duration) == (2, self.END)

    def test_fuzz_hostile_legs_raise_only_not_aligned(self) -> None:
        """Random bytes, mutated leg files (checksums recomputed, so the damage reaches the
        packets) and valid files of random packets: the stereo file is written, or NotAligned
        is raised, and nothing else; a file that is written decodes to the right length."""
        rng = random.Random(99)
        left, right, _browser, _model = self.legs()
        # Where the audio packets' bytes are (not the headers, not the lacing: packets keep
        # their lengths, see test_oversized_frame_from_the_browser for longer ones).
        bodies = [audio_bytes(left), audio_bytes(right)]
        outcomes = {"written": 0, "not_aligned": 0}
        for round_ in range(240):
            legs: list[bytes] = []
            for base in (left, right):
                kind = (round_ + len(legs)) % 3
                if kind == 0:
                    data = rng.randbytes(rng.randrange(0, 300))
                elif kind == 1:
                    damaged = bytearray(base)
                    for _ in range(rng.randrange(1, 20)):
                        damaged[rng.choice(bodies[len(legs)])] = rng.randrange(256)
                    data = resum(bytes(damaged))
                else:
                    writer = ogg.PageWriter(7)
                    packets = [
                        (rng.randbytes(rng.randrange(1, 1200)), 0)
                        for _ in range(rng.randrange(0, 30))
                    ]
                    data = (
                        writer.header(ogg.opus_head(channels=1))
                        + writer.header(ogg.opus_tags())
                        + writer.pages(packets, last=True)
                    )
                legs.append(data)
            end = rng.choice([0, 960, 12_345, self.END])
            written: list[bytes] = []
            try:
                samples = stereo.stereo_file(
                    stereo.audio_packets(legs[0]),
                    stereo.audio_packets(legs[1]),
                    end,
                    written.append,
                )
            except stereo.NotAligned:
                outcomes["not_aligned"] += 1
                continue
            outcomes["written"] += 1
            assert end - opus.PLC_STEP < samples <= end + opus.MAX_PACKET_SAMPLES
            if round_ % 8 == 0 and samples:
                _codec, channels, _rate, _duration, audio = probe(b"".join(written))
                # FFmpeg skips what it cannot decode of random packets: never more than this.
                assert channels == 2 and 0 < audio.shape[1] <= samples
        assert outcomes["written"] > 40 and outcomes["not_aligned"] > 20, outcomes

    def test_oversized_frame_from_the_browser(self) -> None:
        """A code 0 packet of 1300 bytes (fits an RTP packet) is not Opus (RFC 6716 R2): the
        recorder's timeline refuses it, and a leg file that holds one anyway (damaged) is
        paired with that packet left out, never an error."""
        hostile = bytes((31 << 3,)) + bytes(1299)
        with pytest.raises(opus.OpusPacketError):
            opus.parse(hostile)
        with pytest.raises(ValueError):
            tracks.duration_of("opus")(hostile)
        track = tracks.OpusTrack(1)
        left = track.start() + track.add([Placed(0, 960, hostile)]) + track.finish(960 * 2)
        right = opus_leg(2, [(0, list(encoded(440.0, 0.04)[:2]))], 960 * 2)
        written: list[bytes] = []
        samples = stereo.stereo_file(
            stereo.audio_packets(left), stereo.audio_packets(right), 960 * 2, written.append
        )
        assert samples == 960 * 2
        _codec, channels, _rate, _duration, _audio = probe(b"".join(written))
        assert channels == 2

    def test_a_packet_longer_than_a_page_is_refused(self) -> None:
        """Padding can make an Opus packet longer than one Ogg page holds; the timeline counts
        it invalid rather than the writer failing on it."""
        padded = bytes(((31 << 3) | 3, 0x41, 255, *([255] * 254), 100)) + bytes(64_900)
        assert len(padded) > ogg.MAX_PACKET
        with pytest.raises(ValueError):
            tracks.duration_of("opus")(padded)
        with pytest.raises(ogg.OggError):
            ogg.PageWriter(1).pages([(padded, 960)])
