"""Energy-based turn detection and the input audio buffer of one emulated call.

Pure: no I/O, no clocks. Time is the position in the incoming audio stream, counted from the
samples received (the way OpenAI's ``audio_start_ms``/``audio_end_ms`` count it), so the same
audio always gives the same events.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]
"""Mono 48 kHz signed 16-bit PCM."""

SAMPLE_RATE = 48_000


def rms(samples: npt.NDArray[np.int16]) -> float:
    """Root mean square of s16 samples, linear, 0..1 of full scale."""
    if samples.size == 0:
        return 0.0
    scaled = samples.astype(np.float32) / 32768.0
    return float(np.sqrt(np.mean(scaled * scaled)))


@dataclass(frozen=True)
class VadConfig:
    threshold_rms: float = 0.02
    silence_duration_ms: float = 500.0
    prefix_padding_ms: float = 300.0
    # A click or a single loud frame is not a turn: speech must last this long to start one.
    min_speech_ms: float = 40.0


@dataclass(frozen=True)
class SpeechStarted:
    audio_start_ms: int
    """Where the committed audio will begin: the onset minus the prefix padding."""
    onset_ms: float


@dataclass(frozen=True)
class SpeechStopped:
    audio_end_ms: int
    """Where the committed audio ends: the last speech plus the silence that ended the turn."""
    speech_end_ms: float
    speech_ms: float


VadEvent = SpeechStarted | SpeechStopped


class EnergyVad:
    """Speech starts after ``min_speech_ms`` above the threshold, stops after enough silence."""

    def __init__(self, config: VadConfig) -> None:
        self.config = config
        self.speaking = False
        self._candidate_onset: float | None = None
        self._onset = 0.0
        self._last_loud_end = 0.0

    def reset(self) -> None:
        self.speaking = False
        self._candidate_onset = None

    def push(self, start_ms: float, duration_ms: float, level: float) -> VadEvent | None:
        end_ms = start_ms + duration_ms
        loud = level >= self.config.threshold_rms
        if not self.speaking:
            if not loud:
                self._candidate_onset = None
                return None
            if self._candidate_onset is None:
                self._candidate_onset = start_ms
            if end_ms - self._candidate_onset < self.config.min_speech_ms:
                return None
            self.speaking = True
            self._onset = self._candidate_onset
            self._candidate_onset = None
            self._last_loud_end = end_ms
            start = max(0.0, self._onset - self.config.prefix_padding_ms)
            return SpeechStarted(audio_start_ms=int(start), onset_ms=self._onset)
        if loud:
            self._last_loud_end = end_ms
            return None
        if end_ms - self._last_loud_end < self.config.silence_duration_ms:
            return None
        self.speaking = False
        return SpeechStopped(
            audio_end_ms=int(end_ms),
            speech_end_ms=self._last_loud_end,
            speech_ms=self._last_loud_end - self._onset,
        )


@dataclass
class InputAudioStats:
    """What the emulator heard, for tests and logs."""

    frames: int = 0
    peak_rms: float = 0.0
    speech_ms: float = 0.0
    """Audio at or above the VAD threshold, whether or not turn detection is on."""
    duration_ms: float = 0.0


@dataclass(frozen=True)
class _Chunk:
    start_ms: float
    end_ms: float
    samples: Samples


class InputAudioBuffer:
    """Recent input audio, so a committed turn can be played back.

    Bounded to ``max_ms`` of the newest audio; what came before the last commit or clear is
    dropped, as it can no longer be part of a turn.
    """

    def __init__(self, max_ms: float = 30_000.0) -> None:
        self.max_ms = max_ms
        self.now_ms = 0.0
        self.committed_until_ms = 0.0
        self._chunks: deque[_Chunk] = deque()
        self._loud: deque[tuple[float, float]] = deque()

    def append(self, samples: Samples, duration_ms: float, *, loud: bool) -> float:
        """Add the next chunk of the stream; returns its start position in ms."""
        start = self.now_ms
        self.now_ms += duration_ms
        self._chunks.append(_Chunk(start, self.now_ms, samples))
        if loud:
            self._loud.append((start, self.now_ms))
        floor = max(self.committed_until_ms, self.now_ms - self.max_ms)
        while self._chunks and self._chunks[0].end_ms <= floor:
            self._chunks.popleft()
        while self._loud and self._loud[0][1] <= floor:
            self._loud.popleft()
        return start

    @property
    def pending_ms(self) -> float:
        """Audio not yet committed or cleared (what ``input_audio_buffer.commit`` would take)."""
        return self.now_ms - self.committed_until_ms

    def clear(self) -> None:
        self.committed_until_ms = self.now_ms

    def commit(self, start_ms: float | None = None, end_ms: float | None = None) -> Samples:
        """Take ``[start_ms, end_ms)`` (default: everything pending) and mark it committed."""
        start = self.committed_until_ms if start_ms is None else start_ms
        start = max(start, self.committed_until_ms)
        end = self.now_ms if end_ms is None else min(end_ms, self.now_ms)
        out = self.slice(start, end)
        self.committed_until_ms = max(self.committed_until_ms, end)
        return out

    def slice(self, start_ms: float, end_ms: float) -> Samples:
        parts = [c.samples for c in self._chunks if c.end_ms > start_ms and c.start_ms < end_ms]
        if not parts:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(parts)

    def speech_span(self, start_ms: float, end_ms: float) -> tuple[float, float] | None:
        """The first and last loud moments within ``[start_ms, end_ms)``, if any."""
        spans = [(s, e) for s, e in self._loud if e > start_ms and s < end_ms]
        if not spans:
            return None
        return spans[0][0], spans[-1][1]
