"""The emulator's output track: real-time pacing, playback, and Opus packets. No network."""

from __future__ import annotations

import asyncio

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from gateway.emulator.audio import FRAME_SAMPLES, PlaybackTrack, decode_frame, to_frame, tone
from gateway.emulator.vad import rms


async def test_frames_are_paced_in_real_time() -> None:
    """25 frames take ~0.48 s (the first is immediate); pts advance by 960 each."""
    track = PlaybackTrack(lambda token: None)
    loop = asyncio.get_running_loop()
    start = loop.time()
    frames = [await track.recv() for _ in range(25)]
    elapsed = loop.time() - start
    assert 0.46 <= elapsed <= 0.6
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(25)]
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_a_clip_plays_then_reports_its_end() -> None:
    finished: list[str] = []
    track = PlaybackTrack(finished.append)
    clip = tone(440.0, 0.05)  # 2.5 frames
    track.play(clip, "resp_1")
    levels = []
    for _ in range(4):
        frame = await track.recv()
        assert isinstance(frame, av.AudioFrame)
        levels.append(decode_frame(frame)[2])
        if len(levels) == 2:
            assert track.position_ms == pytest.approx(40.0)
    assert finished == ["resp_1"]
    assert levels[0] > 0.05 and levels[3] == 0.0
    assert track.playing is None
    track.stop()


async def test_stop_playback_reports_how_much_was_played() -> None:
    finished: list[str] = []
    track = PlaybackTrack(finished.append)
    track.play(tone(440.0, 1.0), "resp_1")
    for _ in range(3):
        await track.recv()
    assert track.stop_playback() == pytest.approx(60.0)
    assert finished == []
    after = await track.recv()
    assert isinstance(after, av.AudioFrame)
    assert rms(decode_frame(after)[0]) == 0.0
    track.stop()


async def test_opus_mode_yields_packets_and_reuses_one_for_silence() -> None:
    track = PlaybackTrack(lambda token: None)
    track.opus = True
    silent = []
    for _ in range(2):
        packet = await track.recv()
        assert isinstance(packet, av.Packet)
        silent.append(packet)
    assert bytes(silent[0]) == bytes(silent[1])
    assert [p.pts for p in silent] == [0, FRAME_SAMPLES]
    track.play(tone(440.0, 0.1), "resp_1")
    spoken = await track.recv()
    assert isinstance(spoken, av.Packet) and bytes(spoken) != bytes(silent[0])
    track.stop()


def test_decode_frame_upsamples_g711_rate() -> None:
    """aiortc decodes PCMU to 8 kHz mono; the buffer holds 48 kHz mono."""
    frame = av.AudioFrame.from_ndarray(
        np.full((1, 160), 1000, dtype=np.int16), format="s16", layout="mono"
    )
    frame.sample_rate = 8000
    samples, duration_ms, level = decode_frame(frame)
    assert samples.size == 960 and duration_ms == pytest.approx(20.0)
    assert level == pytest.approx(1000 / 32768, rel=1e-3)
    stereo = to_frame(samples, 0)
    assert stereo.layout.name == "stereo" and stereo.samples == 960
