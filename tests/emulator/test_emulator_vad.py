"""Energy turn detection and the input audio buffer, without any network."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from gateway.emulator.audio import spoken_tones, tone
from gateway.emulator.errors import InvalidRequest
from gateway.emulator.turns import InputTurns, TurnEnded, TurnStarted
from gateway.emulator.vad import (
    EnergyVad,
    InputAudioBuffer,
    SpeechStarted,
    SpeechStopped,
    VadConfig,
    VadEvent,
    rms,
)

CONFIG = VadConfig(threshold_rms=0.02, silence_duration_ms=100, prefix_padding_ms=40)


def run(vad: EnergyVad, levels: list[float]) -> list[tuple[float, VadEvent]]:
    """Push 20 ms frames with the given RMS levels; returns (frame start, event) pairs."""
    out = []
    for index, level in enumerate(levels):
        result = vad.push(index * 20.0, 20.0, level)
        if result is not None:
            out.append((index * 20.0, result))
    return out


class TestRms:
    def test_full_scale_sine_is_about_0_707(self) -> None:
        """A full-scale sine has RMS 1/sqrt(2); silence has 0."""
        assert rms(tone(440.0, 0.1, amplitude=1.0)[480:-480]) == pytest.approx(0.707, abs=0.01)
        assert rms(np.zeros(960, dtype=np.int16)) == 0.0
        assert rms(np.zeros(0, dtype=np.int16)) == 0.0


class TestEnergyVad:
    def test_speech_then_silence_gives_started_then_stopped(self) -> None:
        """Onset after min_speech_ms; the end after silence_duration_ms, with padding applied."""
        vad = EnergyVad(CONFIG)
        events = run(vad, [0.0] * 5 + [0.2] * 10 + [0.0] * 10)
        assert [type(e) for _, e in events] == [SpeechStarted, SpeechStopped]
        started = events[0][1]
        assert isinstance(started, SpeechStarted)
        assert started.onset_ms == 100.0
        assert started.audio_start_ms == 60  # onset minus 40 ms of prefix padding
        stopped = events[1][1]
        assert isinstance(stopped, SpeechStopped)
        assert stopped.speech_end_ms == 300.0
        assert stopped.audio_end_ms == 400  # last speech plus 100 ms of silence
        assert stopped.speech_ms == 200.0

    def test_a_single_loud_frame_is_not_speech(self) -> None:
        """A click shorter than min_speech_ms (40 ms) starts no turn."""
        assert run(EnergyVad(CONFIG), [0.0, 0.5, 0.0, 0.0, 0.5, 0.0]) == []

    def test_short_pauses_do_not_end_the_turn(self) -> None:
        """Silence shorter than silence_duration_ms inside speech keeps one turn."""
        events = run(EnergyVad(CONFIG), [0.2] * 5 + [0.0] * 3 + [0.2] * 5 + [0.0] * 6)
        assert [type(e) for _, e in events] == [SpeechStarted, SpeechStopped]

    def test_prefix_padding_is_clamped_at_zero(self) -> None:
        """Speech at the very start cannot begin before 0 ms."""
        (_, started), *_ = run(EnergyVad(CONFIG), [0.2] * 3)
        assert isinstance(started, SpeechStarted)
        assert started.audio_start_ms == 0

    def test_reset_forgets_a_turn_in_progress(self) -> None:
        """After reset, continuing speech is a new turn (a new speech_started)."""
        vad = EnergyVad(CONFIG)
        run(vad, [0.2] * 3)
        vad.reset()
        assert not vad.speaking
        assert isinstance(vad.push(100.0, 20.0, 0.2), type(None))
        assert isinstance(vad.push(120.0, 20.0, 0.2), SpeechStarted)


class TestInputAudioBuffer:
    def test_commit_takes_the_pending_audio_once(self) -> None:
        """commit() returns what came since the last commit, and nothing twice."""
        buffer = InputAudioBuffer()
        for value in (1, 2, 3):
            buffer.append(np.full(960, value, dtype=np.int16), 20.0, loud=False)
        assert buffer.pending_ms == 60.0
        taken = buffer.commit()
        assert taken.size == 3 * 960
        assert set(taken[:960].tolist()) == {1}
        assert buffer.pending_ms == 0.0
        assert buffer.commit().size == 0

    def test_is_bounded(self) -> None:
        """Only the newest max_ms of audio is kept."""
        buffer = InputAudioBuffer(max_ms=100.0)
        for _ in range(50):
            buffer.append(np.ones(960, dtype=np.int16), 20.0, loud=True)
        assert buffer.slice(0.0, buffer.now_ms).size == 5 * 960
        assert buffer.speech_span(0.0, buffer.now_ms) == (900.0, 1000.0)

    def test_clear_drops_pending_audio(self) -> None:
        buffer = InputAudioBuffer()
        buffer.append(np.ones(960, dtype=np.int16), 20.0, loud=True)
        buffer.clear()
        assert buffer.pending_ms == 0.0
        assert buffer.commit().size == 0


def push_levels(turns: InputTurns, loud: list[bool]) -> list[TurnStarted | TurnEnded]:
    frame = tone(440.0, 0.1, amplitude=0.3)[960:1920]  # a steady stretch, past the fade-in
    quiet = np.zeros(960, dtype=np.int16)
    out = []
    for is_loud in loud:
        samples = frame if is_loud else quiet
        result = turns.push(samples, 20.0, rms(samples))
        if result is not None:
            out.append(result)
    return out


SESSION_VAD = {
    "audio": {
        "input": {
            "turn_detection": {
                "type": "server_vad",
                "silence_duration_ms": 100,
                "prefix_padding_ms": 40,
            }
        }
    }
}


class TestInputTurns:
    def test_a_turn_commits_the_utterance_with_padding(self) -> None:
        """The committed clip runs from onset - padding to the last speech + 100 ms."""
        turns = InputTurns(VadConfig(), SESSION_VAD, max_ms=10_000)
        started, ended = push_levels(turns, [False] * 10 + [True] * 25 + [False] * 10)
        assert isinstance(started, TurnStarted)
        assert isinstance(ended, TurnEnded)
        assert started.item_id == ended.item_id
        assert started.audio_start_ms == 160
        assert ended.audio_end_ms == 800
        assert ended.utterance.speech_ms == 500.0
        # 40 ms padding + 500 ms speech + 100 ms tail, at 48 samples per ms
        assert ended.utterance.samples.size == (40 + 500 + 100) * 48
        assert turns.stats.frames == 45
        assert turns.stats.speech_ms == 500.0
        assert turns.stats.peak_rms == pytest.approx(0.21, abs=0.01)

    def test_without_turn_detection_only_manual_commit_ends_a_turn(self) -> None:
        """turn_detection null: no events from audio; commit() takes it all."""
        turns = InputTurns(VadConfig(), {"audio": {"input": {"turn_detection": None}}}, max_ms=5000)
        assert push_levels(turns, [False] * 5 + [True] * 10 + [False] * 5) == []
        ended = turns.commit()
        assert ended.audio_end_ms is None
        assert ended.utterance.speech_ms == 200.0
        assert ended.utterance.duration_ms == 400.0

    def test_commit_of_too_little_audio_is_an_error(self) -> None:
        """Under 100 ms pending: input_audio_buffer_commit_empty."""
        turns = InputTurns(VadConfig(), SESSION_VAD, max_ms=5000)
        push_levels(turns, [False] * 2)
        with pytest.raises(InvalidRequest) as caught:
            turns.commit()
        assert caught.value.code == "input_audio_buffer_commit_empty"

    def test_base64_append_is_24khz_pcm(self) -> None:
        """input_audio_buffer.append audio counts at 24 kHz and lands upsampled in the buffer."""
        turns = InputTurns(VadConfig(), {"audio": {"input": {"turn_detection": None}}}, max_ms=5000)
        pcm = (np.ones(2400, dtype=np.int16) * 8000).tobytes()  # 100 ms at 24 kHz
        assert turns.append_base64(base64.b64encode(pcm).decode()) is None
        assert turns.buffer.pending_ms == pytest.approx(100.0)
        with pytest.raises(InvalidRequest):
            turns.append_base64("not base64!")


def test_spoken_tones_are_short_and_audible() -> None:
    """The stand-in for speech lasts about 0.5-1.5 s and is clearly above the VAD threshold."""
    for text in ("", "hi", "a much longer sentence " * 10):
        clip = spoken_tones(text)
        assert 0.5 <= clip.size / 48000 <= 1.5
        assert rms(clip) > 0.1
