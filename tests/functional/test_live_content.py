"""GPT-Live's recording download, ``GET /v1/live/sessions/{id}/content``: a WAV decoded from the
gateway's own recording while it is sent.

A real Live session goes through the gateway and the emulator (the browser speaks a tone, the
emulator echoes it as its answer) and is downloaded as OpenAI's clients download it; the rest
drive recordings the gateway's own service makes, as long as a test needs them.
"""

from __future__ import annotations

import asyncio
import io
import socket
import wave
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import openai
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from yarl import URL

from gateway.config import Secret
from gateway.emulator import Emulator
from gateway.server import live_content
from gateway.server.app import create_app
from gateway.server.heads import GatewayRunner
from gateway.server.state import STATE
from tests.functional.conftest import (
    GATEWAY_KEY,
    OPENAI_KEY,
    GatewayFactory,
    gateway_settings,
    mint,
    state_of,
)
from tests.functional.test_recording import decode
from tests.functional.test_recording_attacks import (
    DAY,
    age,
    error_of,
    raw,
    record,
    recordings_of,
    shaped,
)
from tests.support.peer import TestPeer
from tests.support.servers import free_port, redis_server

Client = TestClient[web.Request, web.Application]
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
RATE = 24_000
# Where the tone may sit in the WAV around where it was sent (seconds): the model's VAD and the
# recording's own placement are both within a few packets, and the references are taken when
# the test's own event loop got to them, a little late on a loaded machine.
PLACE_TOLERANCE = 0.15
LIVE_ID = "live_" + "0123456789abcdef" * 2
RTC_ID = "rtc_" + "fedcba9876543210" * 2


def content_url(session_id: str) -> str:
    return f"/v1/live/sessions/{session_id}/content"


def parse_wav(data: bytes) -> npt.NDArray[np.float32]:
    """Both channels of a WAV (asserting OpenAI's shape: stereo s16 at 24 kHz), as floats."""
    with wave.open(io.BytesIO(data)) as reader:
        assert reader.getnchannels() == 2
        assert reader.getsampwidth() == 2
        assert reader.getframerate() == RATE
        frames = reader.getnframes()
        pcm = reader.readframes(frames)
    assert len(data) == 44 + frames * 4  # nothing after the samples, nothing missing
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, 2).T


def loud(channel: npt.NDArray[np.float32], threshold: float = 0.05) -> tuple[float, float]:
    """Where the sound in ``channel`` starts and ends (seconds), in 10 ms windows."""
    window = RATE // 100
    count = len(channel) // window
    rms = np.sqrt(np.mean(channel[: count * window].reshape(count, window) ** 2, axis=1))
    (on,) = np.nonzero(rms >= threshold)
    assert len(on), "no sound in the channel"
    return on[0] / 100, (on[-1] + 1) / 100


async def download(gateway: Client, session_id: str, timeout: float = 15.0) -> bytes:  # noqa: ASYNC109
    """The WAV, once the recording exists (404 until then)."""
    async with asyncio.timeout(timeout):
        while True:
            response = await gateway.get(content_url(session_id), headers=AUTH)
            if response.status == 200:
                assert response.content_type == "audio/wav"
                return await response.read()
            assert response.status == 404, await response.text()
            assert (await response.json())["error"]["param"] == "session_id"
            await asyncio.sleep(0.1)


async def open_session(gateway: Client, peers: list[TestPeer]) -> tuple[TestPeer, str]:
    peer = TestPeer()
    peers.append(peer)
    offer = await peer.create_offer()
    response = await gateway.post(
        "/v1/live/sessions",
        json={"session": {"model": "gpt-live-1"}, "transport": {"type": "webrtc", "sdp": offer}},
        headers=AUTH,
    )
    body = await response.json()
    assert response.status == 201, body
    await peer.accept_answer(body["transport"]["sdp"])
    await peer.wait_open()
    await peer.next_event("session.started")
    return peer, str(body["session"]["id"])


def rms(samples: npt.NDArray[np.float32]) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def downloads_of(gateway: Client) -> live_content.Downloads:
    return gateway.app[live_content.DOWNLOADS]


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture(name="recordings_dir")
def _recordings_dir(tmp_path: Path) -> Path:
    return tmp_path / "recordings"


# -- a real session ------------------------------------------------------------------------------


async def test_a_live_sessions_recording_downloads_as_stereo_wav(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer], recordings_dir: Path
) -> None:
    """Input left, output right, on the session's clock, as long as the recording; HEAD, the
    SDK and a ranged request get the same file."""
    gateway = await make_gateway(recordings_dir=str(recordings_dir))
    with structlog.testing.capture_logs() as logs:
        peer, session_id = await open_session(gateway, peers)
        call = state_of(gateway).calls.find(session_id)
        assert call is not None and call.dialect == "live"
        created_at = call.created_at
        # While the session runs there is nothing to download yet.
        early = await gateway.get(content_url(session_id), headers=AUTH)
        assert early.status == 404
        assert (await error_of(early))["param"] == "session_id"

        mark = peer.received.mark()
        peer.mic.say(1.0, 440.0)
        peer.mic.pause(1.0)
        await peer.received.wait_energy(since=mark, frames=50, threshold=0.05, timeout=10)
        await asyncio.sleep(0.5)  # the rest of the answer, then a moment of silence
        answered = peer.received.times[
            next(i for i in range(mark, len(peer.received.rms)) if peer.received.rms[i] >= 0.05)
        ]
        hung = await gateway.post(f"/v1/live/sessions/{session_id}/hangup", headers=AUTH)
        assert hung.status == 200
        data = await download(gateway, session_id)
    (finished,) = events(logs, "recording.finished")
    (ended,) = events(logs, "call.ended")
    assert ended["recorded"] is True

    audio = parse_wav(data)
    seconds = audio.shape[1] / RATE
    assert abs(seconds - finished["seconds"]) <= 0.02 * finished["seconds"], (seconds, finished)
    assert abs(seconds - ended["duration_s"]) <= 0.02 * ended["duration_s"], (seconds, ended)
    recordings = recordings_of(gateway)
    path = recordings.path_of(session_id)
    assert path is not None
    ogg, ogg_rate = decode(path.read_bytes())
    assert abs(audio.shape[1] / RATE - ogg.shape[1] / ogg_rate) <= 1 / RATE  # to a sample

    # The browser's tone on the left, where it was sent; the model's echo on the right, after
    # the turn, where the browser heard it; each side silent while only the other speaks.
    said_from, said_to = loud(audio[0])
    assert abs(said_from - (peer.mic.spoken[0] - created_at)) <= PLACE_TOLERANCE
    assert abs((said_to - said_from) - 1.0) <= PLACE_TOLERANCE
    echo_from, echo_to = loud(audio[1])
    assert echo_from > said_to, (said_from, said_to, echo_from)
    assert abs(echo_from - (answered - created_at)) <= PLACE_TOLERANCE
    assert echo_to - echo_from >= 0.9  # the whole second of tone, echoed
    mid_turn = int((said_from + said_to) / 2 * RATE)
    mid_echo = int((echo_from + echo_to) / 2 * RATE)
    window = slice(mid_turn - 2400, mid_turn + 2400), slice(mid_echo - 2400, mid_echo + 2400)
    assert rms(audio[0][window[0]]) > 0.1 and rms(audio[1][window[0]]) < 0.01
    assert rms(audio[1][window[1]]) > 0.1 and rms(audio[0][window[1]]) < 0.01

    # HEAD: the same headers, no body, nothing decoded.
    got = await gateway.get(content_url(session_id), headers=AUTH)
    head = await gateway.head(content_url(session_id), headers=AUTH)
    assert head.status == 200 and await head.read() == b""
    for name in ("Content-Type", "Content-Length", "Cache-Control", "Accept-Ranges"):
        assert head.headers[name] == got.headers[name], name
    assert got.headers["Content-Length"] == str(len(data))
    assert {part.strip() for part in got.headers["Cache-Control"].split(",")} == {
        "private",
        "no-store",
    }
    assert await got.read() == data  # decoding is deterministic: the same bytes every time
    # Range is not honoured: the whole file, said up front.
    assert got.headers["Accept-Ranges"] == "none"
    ranged = await gateway.get(content_url(session_id), headers={**AUTH, "Range": "bytes=100-199"})
    assert ranged.status == 200 and await ranged.read() == data

    # OpenAI's SDK, as the app's backend downloads it (it asks for application/binary).
    client = openai.AsyncOpenAI(api_key=GATEWAY_KEY, base_url=str(gateway.make_url("/v1")))
    try:
        content = await client.live.sessions.download_recording(session_id)
        assert content.response.headers["content-type"] == "audio/wav"
        assert content.read() == data
        with pytest.raises(openai.NotFoundError):
            await client.live.sessions.download_recording("live_" + "f" * 32)
    finally:
        await client.close()
    await until(lambda: downloads_of(gateway).decoding == 0)


# -- who may download, and what an id can reach -------------------------------------------------


async def test_only_the_gateway_key_downloads_and_only_live_recordings(
    make_gateway: GatewayFactory, recordings_dir: Path
) -> None:
    gateway = await make_gateway(recordings_dir=str(recordings_dir))
    recordings = recordings_of(gateway)
    await record(recordings, LIVE_ID)
    ok = await gateway.get(content_url(LIVE_ID), headers=AUTH)
    assert ok.status == 200
    assert parse_wav(await ok.read()).shape[1] == RATE  # the one second recorded

    secret = await mint(gateway)
    refusals: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {secret}"},  # the browser's client secret
        {"Authorization": "Bearer gk_wrong"},
        {"Authorization": f"Bearer {OPENAI_KEY}"},
        {"Authorization": f"Basic {GATEWAY_KEY}"},
    ]
    for headers in refusals:
        for method in ("GET", "HEAD"):
            response = await gateway.request(method, content_url(LIVE_ID), headers=headers)
            assert response.status == 401, (headers, method)
            assert response.content_type != "audio/wav"
            if method == "GET":
                assert (await error_of(response))["code"] in ("missing_api_key", "invalid_api_key")

    # A Realtime call's recording is served where Realtime serves it (as Ogg), not here.
    await record(recordings, RTC_ID)
    realtime = await gateway.get(f"/v1/realtime/calls/{RTC_ID}/content", headers=AUTH)
    assert realtime.status == 200 and realtime.content_type == "audio/ogg"
    name = recordings.name_of(LIVE_ID)
    hostile = [
        RTC_ID,
        "live_" + "f" * 32,  # a session never recorded
        LIVE_ID.upper(),
        f"{LIVE_ID}%00",
        f"{LIVE_ID}.ogg",
        f"{LIVE_ID}%2F..%2F{LIVE_ID}",
        "..%2Fx",
        "live_..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "live_%2e%2e",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..",
        name,  # the recording's file name
        f"{name}.ogg",
        ".recordings-key",
        "live_" + "a" * 124,  # one over the longest id
        "live_" + "a" * 8000,
        "%F0%9F%93%9E",
    ]
    for session_id in hostile:
        for method in ("GET", "HEAD"):
            status, headers, body = await raw(gateway, content_url(session_id), AUTH, method)
            assert status == 404, (session_id, method, status, body[:300])
            assert headers.get("content-type", "").startswith("application/json"), session_id
            if method == "GET":
                error = shaped(body, headers["content-type"])
                assert error["code"] == "not_found"
                assert str(recordings_dir) not in error["message"]
                assert b"RIFF" not in body
            else:
                assert body == b""
    for session_id in ("../x", "live_../../etc/passwd", "звонок"):  # as a client encodes them
        response = await gateway.get(content_url(session_id), headers=AUTH)
        assert response.status == 404, session_id
        await error_of(response)

    # Past the retention: gone, before any sweep.
    path = recordings.path_of(LIVE_ID)
    assert path is not None
    age(path, 31 * DAY)
    for method in ("GET", "HEAD"):
        response = await gateway.request(method, content_url(LIVE_ID), headers=AUTH)
        assert response.status == 404, method


async def test_a_damaged_recording_is_a_clean_500(
    make_gateway: GatewayFactory, recordings_dir: Path
) -> None:
    gateway = await make_gateway(recordings_dir=str(recordings_dir))
    recordings = recordings_of(gateway)
    path = await record(recordings, LIVE_ID, seconds=4.0)
    whole = path.read_bytes()
    for damage in (b"not an ogg file", b"OggS" + bytes(100), whole[::-1]):
        path.write_bytes(damage)
        for method in ("GET", "HEAD"):
            status, headers, body = await raw(gateway, content_url(LIVE_ID), AUTH, method)
            assert status == 500, (method, status, body)
            if method == "GET":
                error = shaped(body, headers["content-type"])
                assert error["code"] == "recording_unreadable"
                assert str(recordings_dir) not in body.decode()
                assert recordings.name_of(LIVE_ID) not in body.decode()
    # Cut short (a disk that filled): as long as its last whole page says, and valid.
    for cut, at_most in ((len(whole) // 2, 2.5), (200, 0.0)):
        path.write_bytes(whole[:cut])
        response = await gateway.get(content_url(LIVE_ID), headers=AUTH)
        assert response.status == 200
        head = await gateway.head(content_url(LIVE_ID), headers=AUTH)
        assert head.headers["Content-Length"] == response.headers["Content-Length"]
        audio = parse_wav(await response.read())
        assert audio.shape[1] <= at_most * RATE
    await until(lambda: downloads_of(gateway).decoding == 0)


async def test_with_recording_off_a_download_is_404_saying_so(gateway: Client) -> None:
    anonymous = await gateway.get(content_url(LIVE_ID))
    assert anonymous.status == 401  # the key first: a stranger learns nothing of the setup
    response = await gateway.get(content_url(LIVE_ID), headers=AUTH)
    assert response.status == 404
    error = await error_of(response)
    assert error["param"] == "session_id" and "GATEWAY_RECORDINGS_DIR" in error["message"]


# -- bounded -------------------------------------------------------------------------------------


class Reader:
    """A raw HTTP client of the download that reads only what it is told to, with a small
    receive buffer, so the gateway's writes wait on it as on a slow network."""

    def __init__(self, base: URL, session_id: str) -> None:
        self.base = base
        self.session_id = session_id
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.base.host, self.base.port
        assert host is not None and port is not None
        await loop.sock_connect(self.sock, (host, port))
        request = (
            f"GET {content_url(self.session_id)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {GATEWAY_KEY}\r\n\r\n"
        )
        await loop.sock_sendall(self.sock, request.encode())

    async def read(self, count: int) -> bytes:
        loop = asyncio.get_running_loop()
        data = b""
        async with asyncio.timeout(10):
            while len(data) < count:
                more = await loop.sock_recv(self.sock, count - len(data))
                if not more:
                    break
                data += more
        return data

    def close(self) -> None:
        self.sock.close()


@asynccontextmanager
async def serving(
    make_gateway: GatewayFactory, recordings_dir: Path, *, cancelling: bool
) -> AsyncIterator[tuple[URL, web.Application]]:
    """The gateway behind aiohttp's test server (which cancels the handler of a client that
    goes away), or behind the runner ``serve`` uses (which does not: its writes fail)."""
    if cancelling:
        gateway = await make_gateway(recordings_dir=str(recordings_dir))
        yield gateway.make_url(""), gateway.app
        return
    # No upstream key: the gateway plays OpenAI itself (no call is made here anyway).
    settings = gateway_settings("unused", openai_api_key=None, recordings_dir=str(recordings_dir))
    app = create_app(settings)
    runner = GatewayRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield URL.build(scheme="http", host=host, port=port), app
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("cancelling", [True, False], ids=["test-server", "serve-runner"])
async def test_a_client_gone_or_stalled_stops_its_decoder_and_the_next_is_served(
    make_gateway: GatewayFactory,
    recordings_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    cancelling: bool,
) -> None:
    """Two minutes of recording (11.5 MB of WAV, more than the sockets buffer): a client that
    leaves after the first bytes, one that stops reading, one too many; each frees its place,
    none leaves a decoder running, and the next download is whole."""
    monkeypatch.setattr(live_content, "QUEUE_WAIT", 0.3)
    monkeypatch.setattr(live_content, "WRITE_STALL", 1.0)
    size = 44 + 120 * RATE * 4
    async with (
        serving(make_gateway, recordings_dir, cancelling=cancelling) as (base, app),
        aiohttp.ClientSession() as http,
    ):
        recordings = app[STATE].services.recordings
        assert recordings is not None
        recordings.max_queued = 20_000  # two minutes fed at once, not as a call sends them
        await record(recordings, LIVE_ID, seconds=120.0)
        downloads = app[live_content.DOWNLOADS]
        url = base.join(URL(content_url(LIVE_ID)))
        with structlog.testing.capture_logs() as logs:
            # Gone after the first bytes.
            leaving = Reader(base, LIVE_ID)
            await leaving.start()
            first = await leaving.read(1000)
            assert first.startswith(b"HTTP/1.1 200") and b"RIFF" in first
            assert downloads.decoding == 1
            leaving.close()
            await until(lambda: downloads.decoding == 0)

            # Stalled: holds the only place (limit 1) until it is cut off.
            downloads.limit = 1
            stalled = Reader(base, LIVE_ID)
            await stalled.start()
            await stalled.read(1000)
            async with http.get(url, headers=AUTH) as busy:
                assert busy.status == 503
                assert int(busy.headers["Retry-After"]) > 0
                assert (await error_of(busy))["code"] == "unavailable"
            await until(lambda: downloads.decoding == 0, timeout=5)
            stalled.close()

            # And the next one is served, whole.
            async with http.get(url, headers=AUTH) as whole:
                assert whole.status == 200
                assert int(whole.headers["Content-Length"]) == size
                audio = parse_wav(await whole.read())
            assert audio.shape[1] == 120 * RATE
            assert rms(audio[0][-RATE:]) > 0.1  # the tone to its very end, on the left
            # (the client has every byte a moment before the handler is done)
            await until(lambda: len(events(logs, "live_content.sent")) == 3)
    gone, cut_off, served = events(logs, "live_content.sent")
    assert gone["outcome"] == ("cancelled" if cancelling else "client_gone"), gone
    assert cut_off["outcome"] == "stalled", cut_off
    for stopped in (gone, cut_off):
        assert stopped["bytes"] < size // 2, stopped  # the decoder stopped, not run to the end
    assert served["outcome"] == "complete" and served["bytes"] == size - 44
    assert served["seconds"] >= 0.9 * 120 / live_content.MAX_SPEED  # paced, not flat out
    assert len(events(logs, "live_content.busy")) == 1
    assert downloads.decoding == 0


# -- in a cluster --------------------------------------------------------------------------------


async def test_a_download_reaching_another_process_is_streamed_from_the_holder(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Two gateway processes (in this one) sharing a real redis-server, each recording into
    its own directory: the process without the file streams it from the one that has it."""
    async with redis_server() as redis:
        gateways: list[Client] = []
        try:
            for name in ("gw0", "gw1"):
                port = free_port()
                settings = gateway_settings(
                    "unused",
                    openai_api_key=None,
                    redis_url=Secret(redis.url),
                    node_name=name,
                    node_address=f"http://127.0.0.1:{port}",
                    recordings_dir=str(tmp_path / name),
                )
                gateways.append(
                    await aiohttp_client(create_app(settings), server_kwargs={"port": port})
                )
            holder, other = gateways
            await record(recordings_of(holder), LIVE_ID, seconds=2.0)
            async with asyncio.timeout(5):  # noted in the shared index once it is made
                while await state_of(other).stores.recordings.locate(LIVE_ID) != "gw0":
                    await asyncio.sleep(0.02)
            held = await holder.get(content_url(LIVE_ID), headers=AUTH)
            data = await held.read()
            forwarded = await other.get(content_url(LIVE_ID), headers=AUTH)
            assert forwarded.status == 200
            assert await forwarded.read() == data
            assert parse_wav(data).shape[1] == 2 * RATE
            head = await other.head(content_url(LIVE_ID), headers=AUTH)
            assert head.status == 200 and await head.read() == b""
            for name in ("Content-Type", "Content-Length", "Accept-Ranges"):
                assert head.headers[name] == held.headers[name] == forwarded.headers[name]
            assert not list((tmp_path / "gw1").glob("*.ogg"))  # nothing copied over
            for session_id in ("live_" + "f" * 32, RTC_ID):
                missing = await other.get(content_url(session_id), headers=AUTH)
                assert missing.status == 404
                assert (await error_of(missing))["param"] == "session_id"
            assert (await other.get(content_url(LIVE_ID))).status == 401  # never forwarded
            await until(lambda: downloads_of(holder).decoding == 0)
        finally:
            for gateway in gateways:
                await gateway.close()  # while the redis-server they share is still up
