"""Call recording: both legs as their codecs sent them, on the call's clock, one stereo file
per call.

While a call runs, :class:`~gateway.recording.recorder.CallRecorder` takes every packet the
media path's tap shows it, and a writer thread (:class:`~gateway.recording.recorder.WriterThread`)
lays each leg on the call's timeline (:mod:`~gateway.recording.timeline`) and appends it to the
leg's file (:mod:`~gateway.recording.tracks`). When the call ends,
:class:`~gateway.recording.service.Recordings` makes the stereo Ogg Opus file, browser left and
model right: by pairing the legs' Opus packets unchanged (:mod:`~gateway.recording.stereo`), or
by decoding and encoding when they cannot be paired and for G.711 calls
(:mod:`~gateway.recording.transcode`). Pure parts: :mod:`~gateway.recording.ogg`,
:mod:`~gateway.recording.opus`, :mod:`~gateway.recording.timeline`,
:mod:`~gateway.recording.tracks`, :mod:`~gateway.recording.stereo`,
:mod:`~gateway.recording.turns`.
"""

from gateway.recording.recorder import CallRecorder, RecordingSummary
from gateway.recording.service import Recordings

__all__ = ["CallRecorder", "RecordingSummary", "Recordings"]
