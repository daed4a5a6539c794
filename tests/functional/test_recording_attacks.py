"""Recording, attacked: who may download a call, what a call id can reach, how a recording is
served (ranges, expiry, symlinks), what it is named on disk, what hostile media does to the
recorder, and what the sweep makes of a dead process's leftovers.

Real calls go through the gateway and the emulator; the rest drive the gateway's own
:class:`~gateway.recording.Recordings` (or a :class:`~gateway.recording.CallRecorder`) with
packets as the media path's tap shows them.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import stat
import threading
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
import structlog
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from gateway.emulator import Emulator
from gateway.recording import CallRecorder, Recordings
from gateway.recording.recorder import LEGS
from gateway.recording.service import KEY_FILE, ORPHAN_AGE, prepare_directory
from gateway.recording.tracks import Codec
from gateway.rtc.media import TappedPacket
from tests.functional.conftest import GATEWAY_KEY, OPENAI_KEY, GatewayFactory, mint, state_of
from tests.functional.test_recording import (
    AUTH,
    converse,
    decode,
    download,
    hang_up,
    open_call,
)
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]
DAY = 86_400.0
SECRETS = (GATEWAY_KEY.encode(), OPENAI_KEY.encode())
OUTSIDE = b"OUTSIDE-THE-RECORDINGS-DIR"
SILENT_20MS = bytes((31 << 3,)) + b"\xff\xfe"  # CELT FB 20 ms, the silence flag


# -- helpers -------------------------------------------------------------------------------------


class Sink:
    """Counts what recordings report (thread-safe: the writer thread reports too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0
        self.dropped: Counter[str] = Counter()
        self.finished: list[str] = []

    def recording_bytes(self, count: int) -> None:
        with self._lock:
            self.bytes += count

    def recording_dropped(self, reason: str, count: int) -> None:
        with self._lock:
            self.dropped[reason] += count

    def recording_finished(self, result: str, seconds: float, cpu_s: float) -> None:
        with self._lock:
            self.finished.append(result)


def opus_tone(seconds: float, freq: float) -> list[bytes]:
    """20 ms Opus packets of a sine (what a browser sends)."""
    encoder = av.CodecContext.create("libopus", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate = 48_000
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = 32_000
    return _encode(encoder, seconds, freq, 48_000, 960)


def mulaw_tone(seconds: float, freq: float) -> list[bytes]:
    """20 ms G.711 µ-law payloads of a sine."""
    encoder = av.CodecContext.create("pcm_mulaw", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate = 8000
    encoder.layout = "mono"
    encoder.format = "s16"
    data = b"".join(_encode(encoder, seconds, freq, 8000, 160))
    return [data[i : i + 160] for i in range(0, len(data) - 159, 160)]


def _encode(
    encoder: av.AudioCodecContext, seconds: float, freq: float, rate: int, size: int
) -> list[bytes]:
    out: list[bytes] = []
    for index in range(round(seconds * rate / size)):
        t = (np.arange(size) + index * size) / rate
        samples = (np.sin(2 * np.pi * freq * t) * 0.3 * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = index * size
        frame.time_base = Fraction(1, rate)
        out += [bytes(packet) for packet in encoder.encode(frame)]
    out += [bytes(packet) for packet in encoder.encode(None)]
    return out


def packet(leg: str, payload: bytes, timestamp: int, arrival: float, rate: int) -> TappedPacket:
    return TappedPacket(
        leg=leg,  # type: ignore[arg-type]  # hostile legs are part of the point
        payload=payload,
        timestamp=timestamp & 0xFFFFFFFF,
        sequence=0,
        arrival=arrival,
        clock_rate=rate,
    )


def feed(recorder: CallRecorder, legs: dict[str, list[bytes]], step: int) -> None:
    """Each leg's payloads, one every 20 ms of the call from its start, timestamps in step."""
    rate = recorder.rate
    for leg, payloads in legs.items():
        base = random.getrandbits(32)
        for index, payload in enumerate(payloads):
            arrival = recorder.created_at + index * 0.02
            recorder.tap(packet(leg, payload, base + index * step, arrival, rate))


async def made(recordings: Recordings, call_id: str, timeout: float = 15.0) -> Path:
    async with asyncio.timeout(timeout):
        while (path := recordings.path_of(call_id)) is None:
            await asyncio.sleep(0.05)
    return path


async def record(recordings: Recordings, call_id: str, seconds: float = 1.0) -> Path:
    """A finished recording of ``seconds``, made by the gateway's own service: a tone from the
    browser, silence from the model."""
    created = time.monotonic() - seconds
    recorder = recordings.begin(call_id, "opus", created)
    recordings.keep(recorder)
    count = round(seconds * 50)
    feed(recorder, {"browser": opus_tone(seconds, 440.0), "upstream": [SILENT_20MS] * count}, 960)
    recorder.record({"kind": "user", "source": "text", "text": "hello", "ts": time.time()})
    await recordings.end(recorder, seconds, kept=True)
    return await made(recordings, call_id)


def recordings_of(gateway: Client) -> Recordings:
    recordings = state_of(gateway).services.recordings
    assert recordings is not None
    return recordings


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def channels_of(data: bytes) -> tuple[npt.NDArray[np.float32], int]:
    """Both channels (asserting there are two) and the rate."""
    return decode(data)


def libopus_channels(data: bytes) -> tuple[npt.NDArray[np.float32], int]:
    """Both channels as libopus decodes them. A recording keeps the packets a hostile browser
    sent as they were; FFmpeg's own Opus decoder gives up on some garbage (its state broken by
    earlier garbage), libopus, the reference decoder browsers use, plays them as noise."""
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.channels == 2
        decoder = av.CodecContext.create("libopus", "r")
        assert isinstance(decoder, av.AudioCodecContext)
        decoder.extradata = stream.codec_context.extradata
        decoder.sample_rate = 48_000
        decoder.layout = "stereo"
        frames = []
        for item in container.demux(stream):
            if item.size == 0:
                continue
            for frame in decoder.decode(item):
                assert len(frame.layout.channels) == 2
                array = frame.to_ndarray()
                if not frame.format.is_planar:
                    array = array.reshape(-1, 2).T
                if array.dtype == np.int16:
                    array = array.astype(np.float32) / 32768.0
                frames.append(array)
        return np.concatenate(frames, axis=1), 48_000


def rms(samples: npt.NDArray[np.float32]) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


def shaped(body: bytes, content_type: str) -> dict[str, Any]:
    """The OpenAI error object of a response, asserting its shape."""
    assert content_type.startswith("application/json"), (content_type, body[:200])
    data = json.loads(body)
    assert set(data) == {"error"}, data
    error = data["error"]
    assert isinstance(error, dict)
    assert {"message", "type", "code", "param"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert b"OggS" not in body
    for secret in (*SECRETS, OUTSIDE):
        assert secret not in body
    return error


async def error_of(response: ClientResponse) -> dict[str, Any]:
    return shaped(await response.read(), response.headers.get("Content-Type", ""))


async def raw(
    gateway: Client, target: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """A request with exactly this request target (no client normalising or re-encoding it)."""
    host, port = gateway.server.host, gateway.server.port
    reader, writer = await asyncio.open_connection(host, port)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    async with asyncio.timeout(10):
        data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, body


def content_url(call_id: str) -> str:
    return f"/v1/realtime/calls/{call_id}/content"


@pytest.fixture(name="recordings_dir")
def _recordings_dir(tmp_path: Path) -> Path:
    return tmp_path / "recordings"


@pytest.fixture(name="outside")
def _outside(tmp_path: Path) -> Path:
    """A file beside the recordings directory that no request may reach."""
    path = tmp_path / "outside.ogg"
    path.write_bytes(OUTSIDE)
    return path


# -- who may download ----------------------------------------------------------------------------


async def test_a_download_without_a_key_is_401(
    make_gateway: GatewayFactory, recordings_dir: Path
) -> None:
    gateway = await make_gateway(recordings_dir=str(recordings_dir))
    await record(recordings_of(gateway), "call_guarded")
    url = content_url("call_guarded")
    assert (await gateway.get(url, headers=AUTH)).status == 200  # there is something to guard
    for headers in (
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"Authorization": GATEWAY_KEY},  # no scheme
        {"Authorization": f"Basic {GATEWAY_KEY}"},
        {"X-Api-Key": GATEWAY_KEY},
    ):
        for method in ("GET", "HEAD"):
            response = await gateway.request(method, url, headers=headers)
            assert response.status == 401, (headers, method)
            assert response.content_type != "audio/ogg"
            if method == "GET":
                error = await error_of(response)
                assert error["code"] in ("missing_api_key", "invalid_api_key"), error
    ranged = await gateway.get(url, headers={"Range": "bytes=0-99"})
    assert ranged.status == 401
    await error_of(ranged)


async def test_a_client_secret_cannot_download(
    make_gateway: GatewayFactory, recordings_dir: Path
) -> None:
    """A browser's ``ek_`` secret, minted by this very gateway, is not the backend's key."""
    gateway = await make_gateway(recordings_dir=str(recordings_dir))
    await record(recordings_of(gateway), "call_guarded")
    secret = await mint(gateway)
    assert secret.startswith("ek_")
    for token in (secret, "ek_" + "A" * 40, f"{secret} {GATEWAY_KEY}"):
        response = await gateway.get(
            content_url("call_guarded"), headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status in (401, 403), response.status
        error = await error_of(response)
        assert error["code"] in ("invalid_api_key", "forbidden"), error


async def test_a_wrong_key_cannot_download(
    make_gateway: GatewayFactory, recordings_dir: Path
) -> None:
    gateway = await make_gateway(recordings_dir=str(recordings_dir))
    await record(recordings_of(gateway), "call_guarded")
    for token in (
        "gk_wrong",
        GATEWAY_KEY[:-1],
        GATEWAY_KEY + "x",
        GATEWAY_KEY.upper(),
        f" {GATEWAY_KEY}x",
        OPENAI_KEY,  # the upstream key is not the gateway key
    ):
        response = await gateway.get(
            content_url("call_guarded"), headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 401, token
        assert (await error_of(response))["code"] == "invalid_api_key"
    # Not ASCII (sent raw, as a hostile client would): refused, not a 500.
    status, headers, body = await raw(
        gateway, content_url("call_guarded"), {"Authorization": "Bearer ключ-шлюза"}
    )
    assert status == 401, body
    shaped(body, headers.get("content-type", ""))


async def test_with_recording_off_a_download_is_404_saying_so(gateway: Client) -> None:
    response = await gateway.get(content_url("call_anything"), headers=AUTH)
    assert response.status == 404
    error = await error_of(response)
    assert error["code"] == "not_found" and error["param"] == "call_id"
    assert "GATEWAY_RECORDINGS_DIR" in error["message"]
    assert "not record" in error["message"]
    # The key is still asked for first: a stranger learns nothing of the configuration.
    anonymous = await gateway.get(content_url("call_anything"))
    assert anonymous.status == 401
    assert "GATEWAY_RECORDINGS_DIR" not in (await error_of(anonymous))["message"]


# -- what a call id can reach -------------------------------------------------------------------


async def test_unknown_and_hostile_call_ids_are_404(
    make_gateway: GatewayFactory, recordings_dir: Path, outside: Path
) -> None:
    """Nothing but a recording is ever served, whatever the id: not the key, not a file outside
    the directory, not a recording by its file name; never a 500."""
    gateway = await make_gateway(recordings_dir=str(recordings_dir))
    recordings = recordings_of(gateway)
    await record(recordings, "call_known")
    name = recordings.name_of("call_known")
    (recordings_dir / "call_known.ogg").write_bytes(OUTSIDE)  # a file named after the id
    status, _, body = await raw(gateway, content_url("call_known"), AUTH)
    assert status == 200 and body.startswith(b"OggS")  # the known one is there
    hostile = [
        "call_unknown",
        "rtc_0123456789abcdef",
        "CALL_KNOWN",
        "call_known%20",
        "call_known%0A",
        "call_known%00",
        "call_known.ogg",
        "call_known%2F..%2Fcall_known",
        name,  # the recording's file name
        f"{name}.ogg",
        f"{name}%2Eogg",
        f"{name}.jsonl",
        KEY_FILE,
        "%2Erecordings-key",
        "..%2F..%2Fetc%2Fpasswd",
        "..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "..%2Foutside.ogg",
        "..%5Coutside.ogg",
        "%2e%2e",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "%252e%252e%252fetc%252fpasswd",
        "..",
        ".",
        "%2F",
        "%2Fetc%2Fpasswd",
        "~",
        "a" * 129,
        "a" * 8000,  # as long as a request line may be (aiohttp: 8190 bytes)
        "%D0%B7%D0%B2%D0%BE%D0%BD%D0%BE%D0%BA",  # звонок
        "call%EF%BC%BFknown",  # a fullwidth low line
        "%EF%BD%83all_known",  # a fullwidth c
        "%F0%9F%93%9E",
        "%FF%FE",
    ]
    for call_id in hostile:
        for method in ("GET", "HEAD"):
            status, headers, body = await raw(gateway, content_url(call_id), AUTH, method)
            assert status == 404, (call_id, method, status, body[:300])
            assert headers.get("content-type", "").startswith("application/json"), call_id
            if method == "GET":
                shaped(body, headers["content-type"])
            else:
                assert body == b"", call_id
    # Longer than a request line may be: refused before routing, never served, never a 500.
    for method in ("GET", "HEAD"):
        status, _, body = await raw(gateway, content_url("a" * 10_000), AUTH, method)
        assert status in (400, 414), status
        assert b"OggS" not in body and OUTSIDE not in body
        assert not any(secret in body for secret in SECRETS)
    # Through a normal client too (it encodes the unicode itself).
    for call_id in ("звонок", "ｃａｌｌ_known", "call known", "../../etc/passwd"):
        response = await gateway.get(content_url(call_id), headers=AUTH)
        assert response.status == 404, call_id
        await error_of(response)
    assert outside.read_bytes() == OUTSIDE


# -- a real call, served -------------------------------------------------------------------------


async def test_a_recorded_call_is_served_privately_with_ranges(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer], recordings_dir: Path
) -> None:
    gateway = await make_gateway(recordings_dir=str(recordings_dir))
    recordings = recordings_of(gateway)
    peer = TestPeer()
    peers.append(peer)
    call_id = await open_call(gateway, peer)
    # While the call is live there is no recording to serve (its legs are being written).
    live = await gateway.get(content_url(call_id), headers=AUTH)
    assert live.status == 404
    assert (await error_of(live))["param"] == "call_id"
    await converse(peer, [(0.8, 440.0)])
    live = await gateway.get(content_url(call_id), headers=AUTH)
    assert live.status == 404
    assert recordings.path_of(call_id) is None
    name = recordings.name_of(call_id)
    assert any(p.name.startswith(f"{name}.") for p in recordings_dir.iterdir())  # the legs
    await hang_up(gateway, call_id)
    data = await download(gateway, call_id)
    path = recordings_dir / f"{name}.ogg"
    assert path.read_bytes() == data
    audio, rate = channels_of(data)  # two channels, decodable
    assert audio.shape[1] / rate > 1.0

    response = await gateway.get(content_url(call_id), headers=AUTH)
    assert response.status == 200
    assert response.content_type == "audio/ogg"
    cache = {part.strip() for part in response.headers["Cache-Control"].split(",")}
    assert {"private", "no-store"} <= cache, cache
    assert int(response.headers["Content-Length"]) == len(data)
    assert await response.read() == data

    async def ranged(spec: str) -> ClientResponse:
        return await gateway.get(content_url(call_id), headers={**AUTH, "Range": spec})

    size = len(data)
    first = await ranged("bytes=0-99")
    assert first.status == 206
    assert first.headers["Content-Range"] == f"bytes 0-99/{size}"
    assert await first.read() == data[:100]
    suffix = await ranged("bytes=-50")
    assert suffix.status == 206
    assert suffix.headers["Content-Range"] == f"bytes {size - 50}-{size - 1}/{size}"
    assert await suffix.read() == data[-50:]
    rest = await ranged("bytes=100-")
    assert rest.status == 206 and await rest.read() == data[100:]
    middle = await ranged(f"bytes={size - 10}-{size + 1000}")  # the end is clamped
    assert middle.status == 206 and await middle.read() == data[-10:]
    for spec in ("bytes=999999999-", f"bytes={size}-"):
        unsatisfiable = await ranged(spec)
        assert unsatisfiable.status == 416, spec
        assert unsatisfiable.headers.get("Content-Range") == f"bytes */{size}"
        assert b"OggS" not in await unsatisfiable.read()
    for spec in ("bytes=50-10", "bytes=0-1,5-6", "bytes=abc", "lines=0-5"):
        odd = await ranged(spec)
        assert odd.status in (200, 206, 416), (spec, odd.status)
        body = await odd.read()
        if odd.status == 200:
            assert body == data, spec
        elif odd.status == 206:
            assert data.find(body) >= 0 and body, spec
    head = await gateway.head(content_url(call_id), headers=AUTH)
    assert head.status == 200 and head.content_type == "audio/ogg"
    assert int(head.headers["Content-Length"]) == size
    assert await head.read() == b""

    # On disk: nothing says whose call it is, nothing holds a key, nothing is open to others.
    files = sorted(p.name for p in recordings_dir.iterdir())
    assert files == sorted([KEY_FILE, f"{name}.ogg", f"{name}.jsonl"]), files
    for entry in recordings_dir.iterdir():
        assert call_id not in entry.name  # (the transcript beside it names the call: its data)
        for secret in SECRETS:
            assert secret.decode() not in entry.name and secret not in entry.read_bytes()
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600, entry.name


async def test_an_unsatisfiable_range_is_answered_in_openai_shape(
    make_gateway: GatewayFactory, recordings_dir: Path
) -> None:
    gateway = await make_gateway(recordings_dir=str(recordings_dir))
    await record(recordings_of(gateway), "call_ranged")
    response = await gateway.get(
        content_url("call_ranged"), headers={**AUTH, "Range": "bytes=999999999-"}
    )
    assert response.status == 416
    await error_of(response)


# -- expiry and symlinks -------------------------------------------------------------------------


async def test_an_expired_recording_is_not_served_and_is_swept_but_the_key_stays(
    make_gateway: GatewayFactory,
    emulator: Emulator,
    peers: list[TestPeer],
    recordings_dir: Path,
    outside: Path,
) -> None:
    gateway = await make_gateway(recordings_dir=str(recordings_dir), recordings_retention=1.0)
    recordings = recordings_of(gateway)
    peer = TestPeer()
    peers.append(peer)
    call_id = await open_call(gateway, peer)
    await converse(peer, [(0.6, 440.0)])
    await hang_up(gateway, call_id)
    data = await download(gateway, call_id)
    name = recordings.name_of(call_id)
    recording, transcript = recordings_dir / f"{name}.ogg", recordings_dir / f"{name}.jsonl"
    key = recordings_dir / KEY_FILE
    key_bytes = key.read_bytes()
    assert recording.exists() and transcript.exists()

    # Just inside the retention (a day): still served, and the sweep keeps it.
    for path in (recording, transcript, key):
        age(path, DAY - 120)
    assert (await gateway.get(content_url(call_id), headers=AUTH)).status == 200
    assert recordings.sweep() == {"deleted": 0, "recovered": 0}
    # Just past it: gone at once for downloads (before any sweep), and swept.
    for path in (recording, transcript, key):
        age(path, DAY + 120)
    for method in ("GET", "HEAD"):
        response = await gateway.request(method, content_url(call_id), headers=AUTH)
        assert response.status == 404, method
    ranged = await gateway.get(content_url(call_id), headers={**AUTH, "Range": "bytes=0-9"})
    assert ranged.status == 404
    await error_of(ranged)
    assert recordings.sweep() == {"deleted": 2, "recovered": 0}
    assert sorted(p.name for p in recordings_dir.iterdir()) == [KEY_FILE]
    assert key.read_bytes() == key_bytes  # however old, the key is never swept
    assert recordings.name_of(call_id) == name

    # A symlink where the recording would be, to a recording outside the directory: not
    # served, and the sweep neither follows it nor deletes what it points at.
    outside.write_bytes(data)
    recording.symlink_to(outside)
    response = await gateway.get(content_url(call_id), headers=AUTH)
    assert response.status == 404
    await error_of(response)
    head = await gateway.head(content_url(call_id), headers=AUTH)
    assert head.status == 404
    age(recording, DAY + 120)  # the link itself old
    recordings.sweep()
    assert outside.read_bytes() == data
    # And a symlink to a file inside the directory (the key): not served either.
    recording.unlink()
    recording.symlink_to(key)
    assert (await gateway.get(content_url(call_id), headers=AUTH)).status == 404
    recordings.sweep()
    assert key.read_bytes() == key_bytes


async def test_retention_zero_keeps_recordings_for_ever(
    make_gateway: GatewayFactory, recordings_dir: Path
) -> None:
    gateway = await make_gateway(recordings_dir=str(recordings_dir), recordings_retention=0.0)
    recordings = recordings_of(gateway)
    path = await record(recordings, "call_kept")
    for entry in recordings_dir.iterdir():
        age(entry, 20 * 365 * DAY)
    assert (await gateway.get(content_url("call_kept"), headers=AUTH)).status == 200
    assert recordings.sweep() == {"deleted": 0, "recovered": 0}
    assert path.exists()


# -- hostile media into the recorder -------------------------------------------------------------


def hostile_payload(rng: random.Random) -> bytes:
    """Anything a hostile peer might send, frames within Opus's 1275 bytes."""
    kind = rng.randrange(8)
    if kind == 0:
        return b""
    if kind == 1:
        return rng.randbytes(rng.randrange(1, 1000))
    if kind == 2:
        return bytes((rng.randrange(256),))  # a TOC byte alone
    if kind == 3:  # code 3: a frame count and padding that lie
        return bytes((rng.randrange(256) | 3, rng.randrange(256))) + rng.randbytes(
            rng.randrange(0, 40)
        )
    if kind == 4:
        return bytes((rng.randrange(256) & ~3 | 2, 255, 255)) + rng.randbytes(10)
    if kind == 5:  # SILK 60 ms of noise
        return bytes((3 << 3,)) + rng.randbytes(rng.randrange(0, 200))
    return SILENT_20MS


class HostileClock:
    """RTP timestamps as a hostile peer sends them: random, stuck, wrapping, leaping."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.value = rng.getrandbits(32)

    def next(self) -> int:
        rng = self._rng
        roll = rng.random()
        if roll < 0.05:
            self.value = rng.getrandbits(32)
        elif roll < 0.10:
            self.value += rng.choice((1 << 31, (1 << 31) - 1, (1 << 31) + 1, -(1 << 30), 10**9))
        elif roll < 0.15:
            pass  # stuck
        elif roll < 0.18:
            self.value = rng.choice((0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000))
        else:
            self.value += 960
        self.value &= 0xFFFFFFFF
        return self.value


async def test_a_flood_of_hostile_packets_stays_bounded_and_counted(tmp_path: Path) -> None:
    """100k packets of garbage, far faster than the writer: the tap never raises, the queue
    never holds more than ``max_queued``, every packet is either dropped (and counted) or
    accounted for, the writer thread lives on, and the next call is recorded as ever."""
    sink = Sink()
    recordings = Recordings(tmp_path / "recordings", metrics=sink, max_queued=300)
    await recordings.start()
    try:
        rng = random.Random(20240601)
        clocks = {leg: HostileClock(rng) for leg in LEGS}
        created = time.monotonic()
        recorder = recordings.begin("call_flood", "opus", created)
        recordings.keep(recorder)
        total, longest = 100_000, 0
        with structlog.testing.capture_logs() as logs:
            for index in range(total):
                leg = LEGS[index % 2]
                recorder.tap(
                    packet(leg, hostile_payload(rng), clocks[leg].next(), time.monotonic(), 48_000)
                )
                longest = max(longest, len(recorder._queue))
            assert longest <= 300
            assert recorder.dropped > total // 2  # the writer cannot keep up with this
            assert sink.dropped == {"queue_full": recorder.dropped}
            await recordings.end(recorder, time.monotonic() - created, kept=True)
            path = await made(recordings, "call_flood")
        assert sum(e["event"] == "recording.packets_dropped" for e in logs) == 1
        summary = recorder.summary()
        assert not summary.failed
        accounted = sum(
            stats["placed"] + stats["late"] + stats["overlapping"] + stats["invalid"]
            for stats in summary.legs.values()
        )
        assert accounted + summary.dropped == total, (accounted, summary)
        assert all(stats["invalid"] > 0 for stats in summary.legs.values())
        libopus_channels(path.read_bytes())
        writer = recordings._writer._thread
        assert writer is not None and writer.is_alive()

        # The next call: recorded in full, browser on the left, model on the right.
        after = recordings.begin("call_after", "opus", time.monotonic() - 1.0)
        recordings.keep(after)
        feed(after, {"browser": opus_tone(1.0, 440.0), "upstream": opus_tone(1.0, 660.0)}, 960)
        await recordings.end(after, 1.0, kept=True)
        audio, rate = channels_of((await made(recordings, "call_after")).read_bytes())
        assert abs(audio.shape[1] / rate - 1.0) < 0.03
        assert rms(audio[0]) > 0.1 and rms(audio[1]) > 0.1
        assert after.summary().dropped == 0
        assert sink.finished == ["written", "written"]
    finally:
        await recordings.close()


async def test_garbage_media_does_not_cost_the_call_its_recording(tmp_path: Path) -> None:
    """Paced garbage on both legs (nothing dropped): every packet is accounted for and the
    call's recording is still made, as long as the call, both channels."""
    sink = Sink()
    recordings = Recordings(tmp_path / "recordings", metrics=sink)
    await recordings.start()
    try:
        rng = random.Random(7)
        clocks = {leg: HostileClock(rng) for leg in LEGS}
        seconds = 12.0
        created = time.monotonic() - seconds
        recorder = recordings.begin("call_garbage", "opus", created)
        recordings.keep(recorder)
        total = 2400
        for index in range(total):
            leg = LEGS[index % 2]
            arrival = created + index * seconds / total + rng.uniform(-0.5, 0.5)
            recorder.tap(packet(leg, hostile_payload(rng), clocks[leg].next(), arrival, 48_000))
            if index % 400 == 399:
                await asyncio.sleep(0.12)  # the writer's pace
        for nowhere in ("x", "", "browser\x00"):  # legs that do not exist: ignored
            recorder.tap(packet(nowhere, SILENT_20MS, 0, created, 48_000))
        await recordings.end(recorder, seconds, kept=True)
        path = await made(recordings, "call_garbage")
        summary = recorder.summary()
        assert summary.dropped == 0 and not summary.failed
        accounted = sum(
            stats["placed"] + stats["late"] + stats["overlapping"] + stats["invalid"]
            for stats in summary.legs.values()
        )
        assert accounted == total
        audio, rate = libopus_channels(path.read_bytes())
        assert abs(audio.shape[1] / rate - seconds) < 0.05
    finally:
        await recordings.close()


async def _one_bad_packet(tmp_path: Path, bad: bytes) -> tuple[Recordings, CallRecorder]:
    recordings = Recordings(tmp_path / "recordings", metrics=Sink())
    await recordings.start()
    recorder = recordings.begin("call_bad", "opus", time.monotonic() - 2.0)
    recordings.keep(recorder)
    browser = opus_tone(2.0, 440.0)
    browser[50] = bad
    feed(recorder, {"browser": browser, "upstream": opus_tone(2.0, 660.0)}, 960)
    await recordings.end(recorder, 2.0, kept=True)
    return recordings, recorder


async def test_a_recording_the_writer_gives_up_costs_no_other_call(tmp_path: Path) -> None:
    """A packet the writer cannot write ends that call's recording at
    most: the writer thread lives on, and the next call is recorded in full."""
    recordings, _ = await _one_bad_packet(
        tmp_path, bytes((31 << 3,)) + random.Random(2).randbytes(65_100)
    )
    try:
        await asyncio.sleep(0.3)  # a few passes of the writer
        writer = recordings._writer._thread
        assert writer is not None and writer.is_alive()
        after = recordings.begin("call_after", "opus", time.monotonic() - 1.0)
        recordings.keep(after)
        feed(after, {"browser": opus_tone(1.0, 440.0), "upstream": opus_tone(1.0, 660.0)}, 960)
        await recordings.end(after, 1.0, kept=True)
        audio, rate = channels_of((await made(recordings, "call_after", timeout=5)).read_bytes())
        assert abs(audio.shape[1] / rate - 1.0) < 0.03
        assert rms(audio[0]) > 0.1 and rms(audio[1]) > 0.1
    finally:
        await recordings.close(grace=1.0)


async def test_one_oversized_opus_frame_does_not_cost_the_call_its_recording(
    tmp_path: Path,
) -> None:
    recordings, recorder = await _one_bad_packet(
        tmp_path, bytes((31 << 3,)) + random.Random(1).randbytes(1300)
    )
    try:
        with structlog.testing.capture_logs() as logs:
            async with asyncio.timeout(10):
                while recordings.path_of("call_bad") is None and not any(
                    e["event"] == "recording.failed" for e in logs
                ):
                    await asyncio.sleep(0.05)
        assert recordings.path_of("call_bad") is not None, [e["event"] for e in logs]
    finally:
        await recordings.close()


async def test_one_packet_too_long_for_an_ogg_page_does_not_cost_the_recording(
    tmp_path: Path,
) -> None:
    recordings, recorder = await _one_bad_packet(
        tmp_path, bytes((31 << 3,)) + random.Random(2).randbytes(65_100)
    )
    try:
        assert not recorder.summary().failed
        await made(recordings, "call_bad", timeout=5)
    finally:
        await recordings.close()


async def test_the_recording_itself_is_private(tmp_path: Path) -> None:
    """Both ways a recording is written: Opus packets copied, G.711 transcoded."""
    recordings = Recordings(tmp_path / "recordings", metrics=Sink())
    await recordings.start()
    try:
        await record(recordings, "call_private")
        recorder = recordings.begin("call_g711", "pcmu", time.monotonic() - 1.0)
        recordings.keep(recorder)
        feed(recorder, {leg: mulaw_tone(1.0, 440.0) for leg in LEGS}, 160)
        await recordings.end(recorder, 1.0, kept=True)
        await made(recordings, "call_g711")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in recordings.directory.iterdir()}
        assert set(modes.values()) == {0o600}, modes
    finally:
        await recordings.close()


async def test_a_symlink_at_the_part_file_is_not_written_through(
    tmp_path: Path, outside: Path
) -> None:
    recordings = Recordings(tmp_path / "recordings", metrics=Sink())
    await recordings.start()
    try:
        name = recordings.name_of("call_linked")
        (recordings.directory / f"{name}.ogg.part").symlink_to(outside)
        created = time.monotonic() - 1.0
        recorder = recordings.begin("call_linked", "opus", created)
        recordings.keep(recorder)
        feed(recorder, {leg: [SILENT_20MS] * 50 for leg in LEGS}, 960)
        with structlog.testing.capture_logs() as logs:
            await recordings.end(recorder, 1.0, kept=True)
            async with asyncio.timeout(10):
                while not any(e["event"].startswith("recording.f") for e in logs):
                    await asyncio.sleep(0.05)
        assert outside.read_bytes() == OUTSIDE
    finally:
        await recordings.close()


# -- a dead process's leftovers ------------------------------------------------------------------


def orphan(directory: Path, name: str, codec: Codec, seconds: float) -> CallRecorder:
    """Legs as a process leaves them when it dies mid-call: written as far as the writer got,
    never finished (no end of stream, no final header), their files closed by the kernel."""
    created = time.monotonic() - seconds
    recorder = CallRecorder(
        call_id="call_dead",
        base=directory / name,
        codec=codec,
        created_at=created,
        metrics=Sink(),
        serial=random.getrandbits(30),
    )
    if codec == "opus":
        legs = {"browser": opus_tone(seconds, 440.0), "upstream": opus_tone(seconds, 660.0)}
        step = 960
    else:
        legs = {"browser": mulaw_tone(seconds, 440.0), "upstream": mulaw_tone(seconds, 660.0)}
        step = 160
    feed(recorder, legs, step)
    assert not recorder.write_pending()  # one pass of the writer, the call still going
    recorder.fail()  # the process dies here: its files are closed, nothing else happens
    for leg in recorder.legs.values():
        assert leg.path.stat().st_size > 100
    return recorder


@pytest.mark.parametrize("codec", ["opus", "pcmu"])
async def test_a_dead_processs_legs_are_made_into_its_recording(
    tmp_path: Path, codec: Codec
) -> None:
    directory = tmp_path / "recordings"
    directory.mkdir()
    dead = orphan(directory, "a" * 32, codec, 3.0)
    live = orphan(directory, "b" * 32, codec, 3.0)  # another process's call, still going
    for leg in dead.legs.values():
        age(leg.path, ORPHAN_AGE + 60)
    recordings = Recordings(directory, metrics=Sink())
    assert recordings.sweep() == {"deleted": 0, "recovered": 1}
    made_file = directory / f"{'a' * 32}.ogg"
    names = sorted(p.name for p in directory.iterdir())
    assert names == sorted([made_file.name, *(leg.path.name for leg in live.legs.values())]), (
        names
    )  # the dead call's legs are gone; the live call's are left alone
    audio, rate = channels_of(made_file.read_bytes())
    written = max(leg.track.end for leg in dead.legs.values()) / dead.rate
    assert 1.5 < written < 3.0
    assert abs(audio.shape[1] / rate - written) < 0.05, (audio.shape[1] / rate, written)
    # The audio is there, each side on its channel (not a file of silence).
    assert rms(audio[0]) > 0.1 and rms(audio[1]) > 0.1
    assert recordings.sweep() == {"deleted": 0, "recovered": 0}  # done once


async def test_lone_garbage_and_linked_legs_do_not_break_the_sweep(
    tmp_path: Path, outside: Path
) -> None:
    directory = tmp_path / "recordings"
    directory.mkdir()
    rng = random.Random(3)
    orphan(directory, "1" * 32, "opus", 2.5)
    lone = orphan(directory, "2" * 32, "opus", 2.5)
    lone.legs["upstream"].path.unlink()
    garbage = {
        "3" * 32: (rng.randbytes(5000), rng.randbytes(3000), "ogg"),
        "4" * 32: (b"", b"", "ogg"),
        "5" * 32: (rng.randbytes(5000), rng.randbytes(10), "wav"),
        "6" * 32: (b"RIFF", b"", "wav"),
        "7" * 32: (b"OggS" + rng.randbytes(200), b"OggS", "ogg"),
    }
    for name, (browser, upstream, suffix) in garbage.items():
        (directory / f"{name}.browser.{suffix}").write_bytes(browser)
        (directory / f"{name}.upstream.{suffix}").write_bytes(upstream)
    (directory / f"{'8' * 32}.browser.ogg").mkdir()  # not a file at all
    (directory / f"{'8' * 32}.upstream.ogg").write_bytes(rng.randbytes(100))
    for leg in ("browser", "upstream"):  # legs that are links out of the directory
        (directory / f"{'9' * 32}.{leg}.ogg").symlink_to(outside)
    for entry in directory.iterdir():
        age(entry, ORPHAN_AGE + 60)
    recordings = Recordings(directory, metrics=Sink())
    with structlog.testing.capture_logs():
        first = recordings.sweep()
        second = recordings.sweep()
    assert first["recovered"] >= 1 and first["deleted"] == 0, first
    assert second["deleted"] == 0
    audio, rate = channels_of((directory / f"{'1' * 32}.ogg").read_bytes())
    assert rms(audio[0]) > 0.1
    assert lone.legs["browser"].path.exists()  # kept until it expires: nothing to pair it with
    assert not (directory / f"{'2' * 32}.ogg").exists()
    assert not (directory / f"{'9' * 32}.ogg").exists()
    assert outside.read_bytes() == OUTSIDE
    assert all((directory / f"{'9' * 32}.{leg}.ogg").is_symlink() for leg in LEGS)


def _start_together(directory: Path, count: int) -> tuple[list[bytes], list[BaseException]]:
    """``count`` threads preparing ``directory`` at once: the keys they got, what they raised."""
    start = threading.Barrier(count)
    keys: list[bytes] = []
    failures: list[BaseException] = []

    def starting() -> None:
        start.wait()
        try:
            keys.append(prepare_directory(directory))
        except BaseException as exc:  # noqa: BLE001 - what the test is about
            failures.append(exc)

    threads = [threading.Thread(target=starting) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return keys, failures


def test_processes_starting_together_on_a_shared_directory_agree_on_its_key(
    tmp_path: Path,
) -> None:
    """Gateways sharing a fresh directory may start at the same moment: each sees the one whole
    key (never an empty file half written by another), and no draft is left behind."""
    for round_ in range(20):
        directory = tmp_path / f"shared{round_}"
        keys, failures = _start_together(directory, 12)
        assert not failures, failures
        assert len(keys) == 12 and len(set(keys)) == 1
        assert (directory / KEY_FILE).read_bytes() == keys[0]
        assert [p.name for p in directory.iterdir()] == [KEY_FILE]
        assert stat.S_IMODE((directory / KEY_FILE).stat().st_mode) == 0o600
