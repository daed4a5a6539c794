"""A recording as a WAV file: stereo 16-bit PCM, browser (input) left, model (output) right.

GPT-Live's ``GET /v1/live/sessions/{id}/content`` serves a session's recording as WAV. The
gateway keeps stereo Ogg Opus (:mod:`gateway.recording.service`), so the WAV is decoded as it
is sent: :func:`frames_of` says how long it will be from the Ogg file's last page alone (so the
answer's ``Content-Length`` is known before any decoding), :func:`header` is its 44 bytes, and
:func:`pcm` yields its samples a chunk at a time, exactly that long, so memory stays flat
however long the call.

24 kHz: Live's PCM everywhere else is 24 kHz (the sideband's reflected audio, a session's PCM
format, ``../shared/live-protocol.md`` §3b, §9), and it halves what 48 kHz would send (an hour
is 346 MB, not 691 MB); speech loses nothing that matters above 12 kHz.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Generator
from pathlib import Path
from typing import Final

import av
import av.error
import structlog

from gateway.recording import ogg

log = structlog.get_logger(__name__)

RATE: Final = 24_000
CHANNELS: Final = 2
FRAME_BYTES: Final = 2 * CHANNELS
HEADER_BYTES: Final = 44
CHUNK_FRAMES: Final = RATE // 2
"""Half a second a chunk (48 KB): a few milliseconds of decoding between two writes."""
OPUS_RATE: Final = 48_000
"""Ogg Opus granule positions count 48 kHz samples, whatever rate the audio was made at."""
MAX_FRAMES: Final = (0xFFFF_FFFF - (HEADER_BYTES - 8)) // FRAME_BYTES
"""The most a RIFF file's 32-bit sizes can say: about 12 hours at 24 kHz."""
_MAX_PAGE: Final = 27 + 255 + 255 * 255
_MAX_CHECKED: Final = 64
_HEAD_READ: Final = 4096


class Unreadable(ValueError):
    """The file is not a stereo Ogg Opus recording (or not one this module can read)."""


def header(frames: int, rate: int = RATE) -> bytes:
    """The canonical 44-byte header of ``frames`` stereo s16le frames at ``rate``."""
    data = frames * FRAME_BYTES
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        HEADER_BYTES - 8 + data,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        CHANNELS,
        rate,
        rate * FRAME_BYTES,
        FRAME_BYTES,
        16,
        b"data",
        data,
    )


def frames_of(path: Path, rate: int = RATE) -> int:
    """How many frames at ``rate`` the recording at ``path`` lasts: the granule position of its
    last page less the pre-skip of its head (RFC 7845 §4). Blocking; reads only the first and
    the last pages. Raises :class:`Unreadable`."""
    try:
        with open(path, "rb", opener=_no_follow) as handle:
            first = handle.read(_HEAD_READ)
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - _MAX_PAGE))
            tail = handle.read(_MAX_PAGE)
    except OSError as exc:
        raise Unreadable(f"cannot read the recording ({type(exc).__name__})") from None
    pre_skip = _pre_skip(first)
    granule = _last_granule(tail)
    samples = max(0, granule - pre_skip)
    return min(samples * rate // OPUS_RATE, MAX_FRAMES)


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def _pre_skip(first: bytes) -> int:
    try:
        page = next(ogg.read_pages(first), None)
    except ogg.OggError:
        page = None  # the head page is whole in the bytes read; damage is damage
    if page is None:
        raise Unreadable("no Ogg page at the start")
    head = page.body
    if len(head) < 19 or not head.startswith(b"OpusHead") or head[9] != CHANNELS:
        raise Unreadable("not a stereo Ogg Opus file")
    pre_skip: int = struct.unpack_from("<H", head, 10)[0]
    return pre_skip


def _last_granule(tail: bytes) -> int:
    """The granule position of the last whole page whose checksum holds. A capture pattern in
    a packet's bytes (a browser's packets are kept as sent) fails the checksum and is passed
    over; at most :data:`_MAX_CHECKED` are checked, so such bytes cost a bounded effort."""
    at = len(tail)
    checked = 0
    while checked < _MAX_CHECKED and (at := tail.rfind(ogg.CAPTURE, 0, at)) >= 0:
        end = _page_end(tail, at)
        if end is None:
            continue
        checked += 1
        try:
            page = next(ogg.read_pages(tail[at:end]))
        except ogg.OggError:
            continue
        if page.granule >= 0:  # -1: no packet ends on this page
            return page.granule
    raise Unreadable("no whole Ogg page at the end")


def _page_end(data: bytes, at: int) -> int | None:
    """Where the page whose header is at ``at`` ends, if its header says it fits in ``data``."""
    if at + 27 > len(data):
        return None
    table = data[at + 27 : at + 27 + data[at + 26]]
    if len(table) < data[at + 26]:
        return None
    end = at + 27 + len(table) + sum(table)
    return end if end <= len(data) else None


def pcm(path: Path, frames: int, rate: int = RATE) -> Generator[bytes, None, None]:
    """The recording's audio as interleaved s16le stereo at ``rate``, exactly ``frames`` long
    (what the decoder gives beyond is cut, what it falls short by is silence), in chunks of
    :data:`CHUNK_FRAMES`.

    Blocking and CPU-bound: run each ``next()`` in a worker thread, one at a time. Closing the
    generator closes the file. A file that cannot be opened or decoded raises on the first
    ``next()``; one that fails later (its tail damaged) ends in silence, so the WAV already
    announced is still whole."""
    total = frames * FRAME_BYTES
    if total <= 0:
        return  # nothing to say, and a file with no audio packets is no file to PyAV
    chunk = CHUNK_FRAMES * FRAME_BYTES
    sent = 0
    decoded = _decoded(path, rate)
    try:
        for piece in decoded:
            piece = piece[: total - sent]
            sent += len(piece)
            yield piece
            if sent >= total:
                return
    except Unreadable:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        if sent == 0:
            raise Unreadable(f"cannot decode the recording ({type(exc).__name__})") from None
        log.warning("recording.wav_decode_failed", error=type(exc).__name__, at_bytes=sent)
    finally:
        decoded.close()  # now, not when collected: it holds the file open
    silence = bytes(chunk)
    while sent < total:
        piece = silence[: total - sent]
        sent += len(piece)
        yield piece


def _decoded(path: Path, rate: int) -> Generator[bytes, None, None]:
    """Chunks of :data:`CHUNK_FRAMES` (the last shorter) of the whole file, decoded."""
    chunk = CHUNK_FRAMES * FRAME_BYTES
    buffer = bytearray()
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise Unreadable("no audio stream")
        stream = container.streams.audio[0]
        if stream.codec_context.name != "opus" or stream.codec_context.channels != CHANNELS:
            raise Unreadable("not a stereo Opus stream")
        # libopus, as players use: it decodes the browser's own packets (kept as sent, in
        # two streams: RFC 7845 mapping family 1) where FFmpeg's decoder gives up on some.
        decoder = av.CodecContext.create("libopus", "r")
        assert isinstance(decoder, av.AudioCodecContext)
        decoder.extradata = stream.codec_context.extradata
        decoder.sample_rate = OPUS_RATE
        decoder.layout = "stereo"
        resampler = av.AudioResampler(format="s16", layout="stereo", rate=rate)
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            for frame in decoder.decode(packet):
                for out in resampler.resample(frame):
                    buffer += _interleaved(out)
            while len(buffer) >= chunk:
                yield bytes(buffer[:chunk])
                del buffer[:chunk]
        for out in resampler.resample(None):
            buffer += _interleaved(out)
    for start in range(0, len(buffer), chunk):
        yield bytes(buffer[start : start + chunk])


def _interleaved(frame: av.AudioFrame) -> bytes:
    # Packed s16 stereo: one plane, left and right samples alternating; to_ndarray drops the
    # plane's alignment padding. WAV is little-endian whatever the host.
    return bytes(frame.to_ndarray().astype("<i2", copy=False).tobytes())
