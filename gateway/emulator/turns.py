"""The input side of a call: the audio buffer, turn detection, and what a committed turn holds.

Pure: no I/O, no clocks. The conversation turns these results into events and items.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np

from gateway.emulator import session as sess
from gateway.emulator.errors import InvalidRequest
from gateway.emulator.items import UserAudio
from gateway.emulator.vad import (
    SAMPLE_RATE,
    EnergyVad,
    InputAudioBuffer,
    InputAudioStats,
    Samples,
    SpeechStarted,
    SpeechStopped,
    VadConfig,
    rms,
)

MIN_COMMIT_MS = 100.0
TAIL_MS = 100.0  # kept after the last speech when an utterance is played back


@dataclass(frozen=True)
class TurnStarted:
    item_id: str
    audio_start_ms: int


@dataclass(frozen=True)
class TurnEnded:
    item_id: str
    audio_end_ms: int | None
    """``None`` for a manual commit, which has no ``speech_stopped``."""
    utterance: UserAudio


class InputTurns:
    def __init__(self, base: VadConfig, session: sess.Session, *, max_ms: float) -> None:
        self.stats = InputAudioStats()
        self.buffer = InputAudioBuffer(max_ms=max_ms)
        self._base = base
        self._max_samples = int(max_ms * SAMPLE_RATE / 1000)
        self.config = sess.vad_config(session, base)
        self._vad = EnergyVad(self.config) if self.config else None
        self._item: str | None = None
        self._start = 0.0

    @property
    def detecting(self) -> bool:
        return self._vad is not None

    def configure(self, session: sess.Session) -> None:
        """Follow ``session.audio.input.turn_detection``; a change restarts detection."""
        config = sess.vad_config(session, self._base)
        if config != self.config:
            self.config = config
            self._vad = EnergyVad(config) if config else None
            self._item = None

    def push(
        self, samples: Samples, duration_ms: float, level: float
    ) -> TurnStarted | TurnEnded | None:
        """The next chunk of microphone audio (mono 48 kHz) and its RMS."""
        loud = level >= (self.config or self._base).threshold_rms
        stats = self.stats
        stats.frames += 1
        stats.duration_ms += duration_ms
        stats.peak_rms = max(stats.peak_rms, level)
        if loud:
            stats.speech_ms += duration_ms
        start = self.buffer.append(samples, duration_ms, loud=loud)
        if self._vad is None:
            return None
        turn = self._vad.push(start, duration_ms, level)
        if isinstance(turn, SpeechStarted):
            self._item = sess.new_id("item_")
            self._start = max(float(turn.audio_start_ms), self.buffer.committed_until_ms)
            return TurnStarted(self._item, turn.audio_start_ms)
        if isinstance(turn, SpeechStopped):
            return self._ended(turn)
        return None

    def _ended(self, turn: SpeechStopped) -> TurnEnded:
        item_id = self._item or sess.new_id("item_")
        self._item = None
        clip_end = min(turn.speech_end_ms + TAIL_MS, turn.audio_end_ms)
        clip = self.buffer.slice(self._start, clip_end)
        duration = turn.audio_end_ms - self._start
        self.buffer.commit(self._start, turn.audio_end_ms)
        utterance = UserAudio(clip[: self._max_samples], turn.speech_ms, duration)
        return TurnEnded(item_id, turn.audio_end_ms, utterance)

    def append_base64(self, audio: object) -> TurnStarted | TurnEnded | None:
        """``input_audio_buffer.append``: base64 ``audio/pcm`` (s16 mono 24 kHz)."""
        try:
            raw = base64.b64decode(str(audio or ""), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(
                "Invalid 'audio': not base64.", code="invalid_value", param="audio"
            ) from None
        pcm24 = np.frombuffer(raw[: len(raw) // 2 * 2], dtype=np.int16)
        if pcm24.size == 0:
            return None
        return self.push(np.repeat(pcm24, 2), pcm24.size / 24.0, rms(pcm24))

    def commit(self) -> TurnEnded:
        """``input_audio_buffer.commit``: everything pending becomes one user turn."""
        buffer = self.buffer
        pending = buffer.pending_ms
        if pending < MIN_COMMIT_MS:
            raise InvalidRequest(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"100ms of audio, but buffer only has {pending:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        start, end = buffer.committed_until_ms, buffer.now_ms
        span = buffer.speech_span(start, end)
        if span is None:
            clip, speech_ms = buffer.slice(start, end), 0.0
        else:
            padding = (self.config or self._base).prefix_padding_ms
            clip = buffer.slice(max(start, span[0] - padding), span[1] + TAIL_MS)
            speech_ms = span[1] - span[0]
        buffer.commit()
        item_id = self._item or sess.new_id("item_")
        self._reset()
        return TurnEnded(item_id, None, UserAudio(clip[: self._max_samples], speech_ms, pending))

    def clear(self) -> None:
        self.buffer.clear()
        self._reset()

    def _reset(self) -> None:
        if self._vad is not None:
            self._vad.reset()
        self._item = None
