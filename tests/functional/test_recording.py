"""Recording: a real call through the gateway and the emulator, downloaded and decoded.

The browser speaks tone bursts with pauses; the emulator answers each turn by echoing it (the
committed audio: the turn with the 300 ms of silence its VAD keeps before speech). The
downloaded file must hold the bursts on the left where they were sent and the answers on the
right where they were played, for as long as the call lasted.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.emulator import Emulator
from tests.functional.conftest import GATEWAY_KEY, GatewayFactory, mint, state_of
from tests.functional.test_lossy_network import LossyProxy, without_candidates
from tests.functional.test_networking import free_range
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
# Where a burst may sit in the recording, around where it was sent or played (seconds).
PLACE_TOLERANCE = 0.08
# The emulator's answer starts with the silence its VAD kept before the speech it echoes.
PREFIX_PADDING = 0.3


def decode(data: bytes) -> tuple[npt.NDArray[np.float32], int]:
    """Both channels of an Ogg Opus file, as float samples, and the rate."""
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.channels == 2
        frames = []
        for frame in container.decode(stream):
            array = frame.to_ndarray()
            if not frame.format.is_planar:
                array = array.reshape(-1, 2).T
            if array.dtype == np.int16:
                array = array.astype(np.float32) / 32768.0
            frames.append(array)
        return np.concatenate(frames, axis=1), int(stream.codec_context.sample_rate)


def segments(
    channel: npt.NDArray[np.float32], rate: int, threshold: float = 0.05
) -> list[tuple[float, float]]:
    """(start, end) in seconds of the stretches with sound, gaps under 150 ms bridged."""
    window = rate // 100  # 10 ms
    count = len(channel) // window
    rms = np.sqrt(np.mean(channel[: count * window].reshape(count, window) ** 2, axis=1))
    loud = rms >= threshold
    out: list[tuple[float, float]] = []
    start: int | None = None
    for index, on in enumerate(loud):
        if on and start is None:
            start = index
        elif not on and start is not None:
            out.append((start / 100, index / 100))
            start = None
    if start is not None:
        out.append((start / 100, count / 100))
    merged: list[tuple[float, float]] = []
    for begin, end in out:
        if merged and begin - merged[-1][1] < 0.15:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((begin, end))
    return [(b, e) for b, e in merged if e - b >= 0.1]


async def download(gateway: Client, call_id: str, timeout: float = 15.0) -> bytes:  # noqa: ASYNC109
    """The recording, once it exists (404 until then)."""
    async with asyncio.timeout(timeout):
        while True:
            response = await gateway.get(f"/v1/realtime/calls/{call_id}/content", headers=AUTH)
            if response.status == 200:
                assert response.content_type == "audio/ogg"
                return await response.read()
            assert response.status == 404, await response.text()
            await asyncio.sleep(0.1)


TRANSCRIBED = {
    "type": "realtime",
    "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}},
}


async def open_call(gateway: Client, peer: TestPeer, offer: str | None = None) -> str:
    token = await mint(gateway, session=TRANSCRIBED)
    sdp = offer if offer is not None else await peer.create_offer()
    response = await gateway.post(
        "/v1/realtime/calls",
        data=sdp,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
    )
    assert response.status == 201, await response.text()
    call_id = response.headers["Location"].rsplit("/", 1)[-1]
    await peer.accept_answer(await response.text())
    await peer.wait_open(timeout=15)
    await peer.next_event("session.created", timeout=10)
    return call_id


async def converse(peer: TestPeer, turns: list[tuple[float, float]]) -> list[float]:
    """Speak each (seconds, pitch) turn after a pause and wait for the answer to finish;
    returns when (``time.monotonic()``) each answer started playing at the browser."""
    started = []
    for seconds, pitch in turns:
        peer.mic.pause(0.4)
        peer.mic.say(seconds, pitch)
        event = await peer.next_event("output_audio_buffer.started", timeout=20)
        started.append(peer.event_times[next(i for i, e in enumerate(peer.events) if e is event)])
        await peer.next_event("output_audio_buffer.stopped", timeout=20)
    return started


async def hang_up(gateway: Client, call_id: str) -> None:
    response = await gateway.post(f"/v1/realtime/calls/{call_id}/hangup", headers=AUTH)
    assert response.status == 200, await response.text()


def check_recording(
    data: bytes,
    *,
    created_at: float,
    duration_s: float,
    spoken: list[float],
    spoken_seconds: list[float],
    answered: list[float],
) -> None:
    audio, rate = decode(data)
    length = audio.shape[1] / rate
    assert abs(length - duration_s) <= 0.02 * duration_s, (length, duration_s)
    left, right = segments(audio[0], rate), segments(audio[1], rate)
    sent = [t - created_at for t in spoken]
    assert len(left) == len(sent), (left, sent)
    for (begin, end), at, seconds in zip(left, sent, spoken_seconds, strict=True):
        assert abs(begin - at) <= PLACE_TOLERANCE, (begin, at, left, sent)
        assert abs((end - begin) - seconds) <= 0.1, (begin, end, seconds)
    played = [t - created_at + PREFIX_PADDING for t in answered]
    assert len(right) == len(played), (right, played)
    for (begin, _end), at, (_, turn_end) in zip(right, played, left, strict=True):
        assert begin > turn_end, (begin, turn_end)  # the answer comes after the turn
        assert abs(begin - at) <= PLACE_TOLERANCE, (begin, at, right, played)


@pytest.fixture(name="recordings_dir")
def _recordings_dir(tmp_path: Path) -> Path:
    return tmp_path / "recordings"


async def test_a_call_is_recorded_in_place_and_downloadable(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer], recordings_dir: Path
) -> None:
    """Both sides, on the call's clock, as long as the call; the transcript beside it."""
    gateway = await make_gateway(recordings_dir=str(recordings_dir))
    peer = TestPeer()
    peers.append(peer)
    with structlog.testing.capture_logs() as logs:
        call_id = await open_call(gateway, peer)
        (call,) = state_of(gateway).calls
        created_at = call.created_at
        answered = await converse(peer, [(1.0, 440.0), (0.7, 550.0)])
        await asyncio.sleep(0.5)
        await hang_up(gateway, call_id)
        data = await download(gateway, call_id)
    ended = next(e for e in logs if e["event"] == "call.ended")
    assert ended["recorded"] is True and ended["recording_dropped"] == 0
    check_recording(
        data,
        created_at=created_at,
        duration_s=ended["duration_s"],
        spoken=peer.mic.spoken,
        spoken_seconds=[1.0, 0.7],
        answered=answered,
    )
    finished = next(e for e in logs if e["event"] == "recording.finished")
    assert finished["method"] == "copied"  # Opus both ways: the packets as they were sent
    # Beside it: the transcript, each turn with its offset into the recording.
    recordings = state_of(gateway).services.recordings
    assert recordings is not None
    name = recordings.name_of(call_id)
    assert call_id not in name
    files = sorted(p.name for p in recordings_dir.iterdir() if not p.name.startswith("."))
    assert files == [f"{name}.jsonl", f"{name}.ogg"]
    records = [
        json.loads(line) for line in (recordings_dir / f"{name}.jsonl").read_text().splitlines()
    ]
    users = [r for r in records if r["kind"] == "user"]
    assert len(users) == 2
    for record, at in zip(users, peer.mic.spoken, strict=True):
        # Where the model's VAD heard speech start (it reports it a few frames late).
        assert 0 <= record["offset_s"] - (at - created_at) < 0.3, (record, at - created_at)
        assert record["end_s"] > record["offset_s"]
    assistants = [r for r in records if r["kind"] == "assistant"]
    assert len(assistants) == 2
    for record, at in zip(assistants, answered, strict=True):
        assert abs(record["offset_s"] - (at - created_at)) < 0.1, (record, at - created_at)
    for path in recordings_dir.iterdir():
        assert OPENAI_SECRETS.isdisjoint(path.read_bytes().split(b'"')), path


OPENAI_SECRETS = frozenset({b"sk-test-UPSTREAM-8f3a9c1d2e4b", GATEWAY_KEY.encode()})


async def test_recording_keeps_its_place_across_a_lossy_path(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer], recordings_dir: Path
) -> None:
    """5 % loss and 50 ms delay each way on the browser leg: still in place, no drift."""
    port, _ = free_range(1)
    gateway = await make_gateway(
        recordings_dir=str(recordings_dir), ice_port_range=(port, port), public_ip="127.0.0.2"
    )
    proxy = LossyProxy(("127.0.0.2", port), ("127.0.0.1", port), seed=11)
    await proxy.start()
    peer = TestPeer()
    peers.append(peer)
    try:
        with structlog.testing.capture_logs() as logs:
            call_id = await open_call(gateway, peer, without_candidates(await peer.create_offer()))
            (call,) = state_of(gateway).calls
            created_at = call.created_at
            answered = await converse(peer, [(1.0, 440.0), (0.8, 550.0), (0.6, 660.0)])
            await hang_up(gateway, call_id)
            data = await download(gateway, call_id)
        ended = next(e for e in logs if e["event"] == "call.ended")
        # The browser's audio crossed the proxy one way (50 ms later than sent); the answers
        # were played at the browser 50 ms after the gateway recorded them.
        check_recording(
            data,
            created_at=created_at,
            duration_s=ended["duration_s"],
            spoken=[t + 0.05 for t in peer.mic.spoken],
            spoken_seconds=[1.0, 0.8, 0.6],
            answered=[t - 0.05 for t in answered],
        )
        assert proxy.dropped > 10
    finally:
        proxy.close()


async def test_a_pcmu_call_is_recorded(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer], recordings_dir: Path
) -> None:
    gateway = await make_gateway(recordings_dir=str(recordings_dir))
    peer = TestPeer(audio_codec="PCMU")
    peers.append(peer)
    with structlog.testing.capture_logs() as logs:
        call_id = await open_call(gateway, peer)
        (call,) = state_of(gateway).calls
        created_at = call.created_at
        answered = await converse(peer, [(1.0, 440.0)])
        await hang_up(gateway, call_id)
        data = await download(gateway, call_id)
    ended = next(e for e in logs if e["event"] == "call.ended")
    check_recording(
        data,
        created_at=created_at,
        duration_s=ended["duration_s"],
        spoken=peer.mic.spoken,
        spoken_seconds=[1.0],
        answered=answered,
    )
    finished = next(e for e in logs if e["event"] == "recording.finished")
    assert finished["method"] == "transcoded"


async def test_a_stalled_disk_leaves_the_call_untouched(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer], recordings_dir: Path
) -> None:
    """The writer hangs on its first file (a FIFO nobody reads): the call goes on, answers
    play, it ends as quickly as ever, and the recording says what it dropped."""
    gateway = await make_gateway(
        recordings_dir=str(recordings_dir), hooks=f"{__name__}:StallingDisk"
    )
    recordings = state_of(gateway).services.recordings
    assert recordings is not None
    recordings.max_queued = 100  # one second of both legs, so the drops show quickly
    StallingDisk.recordings = recordings
    fifo = StallingDisk.fifos = []
    peer = TestPeer()
    peers.append(peer)
    try:
        with structlog.testing.capture_logs() as logs:
            call_id = await open_call(gateway, peer)
            mark = peer.received.mark()
            await converse(peer, [(1.0, 440.0)])
            assert peer.received.since(mark).energy_frames(0.02) >= 20
            began = time.monotonic()
            await hang_up(gateway, call_id)
            assert time.monotonic() - began < 5.0
        ended = next(e for e in logs if e["event"] == "call.ended")
        assert ended["outcome"] == "completed"
        assert ended["recording_dropped"] > 0
        assert any(e["event"] == "recording.packets_dropped" for e in logs)
        assert sum(e["event"] == "recording.packets_dropped" for e in logs) == 1  # once a call
        response = await gateway.get(f"/v1/realtime/calls/{call_id}/content", headers=AUTH)
        assert response.status == 404
    finally:
        for path in fifo:  # let the writer go: open the FIFO's other end and drain it
            reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            task = asyncio.get_running_loop().run_in_executor(None, _drain, reader)
            await asyncio.sleep(0.5)
            await task


class StallingDisk:
    """Hooks: the browser leg's file of every recorded call is a FIFO nobody reads yet, so the
    writer's first open of it hangs, as on a dead disk."""

    recordings: Any = None
    fifos: list[Path] = []

    @classmethod
    def should_record(cls, info: Any) -> bool:
        path = (
            Path(cls.recordings.directory) / f"{cls.recordings.name_of(info.call_id)}.browser.ogg"
        )
        os.mkfifo(path)
        cls.fifos.append(path)
        return True


def _drain(fd: int) -> None:
    deadline = time.monotonic() + 3.0
    try:
        while time.monotonic() < deadline:
            try:
                if not os.read(fd, 65536):
                    time.sleep(0.05)
            except BlockingIOError:
                time.sleep(0.05)
    finally:
        os.close(fd)


async def test_the_server_decides_per_call_from_the_client_secrets_session(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer], recordings_dir: Path
) -> None:
    """The app's backend marks a call when it mints its secret (OpenAI's own ``tracing``
    metadata); a ``should_record`` hook reads it. A declined call leaves nothing on disk."""
    gateway = await make_gateway(
        recordings_dir=str(recordings_dir), hooks=f"{__name__}:RecordUnlessOptedOut"
    )
    opted_out = {**TRANSCRIBED, "tracing": {"metadata": {"recording": "declined"}}}
    outcomes = {}
    for session in (opted_out, TRANSCRIBED):
        peer = TestPeer()
        peers.append(peer)
        token = await mint(gateway, session=session)
        response = await gateway.post(
            "/v1/realtime/calls",
            data=await peer.create_offer(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
        )
        assert response.status == 201, await response.text()
        call_id = response.headers["Location"].rsplit("/", 1)[-1]
        await peer.accept_answer(await response.text())
        await peer.wait_open(timeout=15)
        await peer.next_event("session.created", timeout=10)
        with structlog.testing.capture_logs() as logs:
            await converse(peer, [(0.6, 440.0)])
            await hang_up(gateway, call_id)
            if session is TRANSCRIBED:
                await download(gateway, call_id)
        ended = next(e for e in logs if e["event"] == "call.ended")
        outcomes[call_id] = ended["recorded"]
        if session is opted_out:
            response = await gateway.get(f"/v1/realtime/calls/{call_id}/content", headers=AUTH)
            assert response.status == 404
            assert (await response.json())["error"]["param"] == "call_id"
    assert list(outcomes.values()) == [False, True]
    recordings = state_of(gateway).services.recordings
    assert recordings is not None
    declined, kept = (recordings.name_of(call_id) for call_id in outcomes)
    names = {p.name for p in recordings_dir.iterdir()}
    assert not any(name.startswith(declined) for name in names), names
    assert f"{kept}.ogg" in names


class RecordUnlessOptedOut:
    """Hooks: record every call but those whose client secret's session says not to."""

    @staticmethod
    def should_record(info: Any) -> bool:
        tracing = info.session.get("tracing")
        metadata = tracing.get("metadata", {}) if isinstance(tracing, dict) else {}
        return bool(metadata.get("recording") != "declined")
