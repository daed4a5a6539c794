"""One call's recording while the call runs: packets from the media path to the leg files.

The media path's tap calls :meth:`CallRecorder.tap` on the event loop for every packet of either
leg; it only appends to a bounded queue, so recording costs the call a deque append a packet and
can never slow it down. A thread shared by every call of the process (:class:`WriterThread`)
takes the packets from the queues a few times a second, places them on the call's timeline
(:mod:`~gateway.recording.timeline`) and appends them to the leg's file
(:mod:`~gateway.recording.tracks`).

A disk that is slow or full fills the queue instead: packets beyond :data:`MAX_QUEUED` are dropped,
counted (:attr:`CallRecorder.dropped`) and logged once per call (``recording.packets_dropped``).
A write that fails ends the recording of that call (``recording.write_failed``); the call goes on.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import structlog

from gateway.recording.timeline import LegTimeline, TimelineStats
from gateway.recording.tracks import Codec, G711Track, OpusTrack, duration_of, track_for
from gateway.recording.turns import TurnClock

log = structlog.get_logger(__name__)

Leg = Literal["browser", "upstream"]
LEGS: Final[tuple[Leg, Leg]] = ("browser", "upstream")

MAX_QUEUED: Final = 3000
"""Packets a call's recording holds while the disk is not keeping up: 30 s of both legs."""
MAX_RECORDS: Final = 20_000
"""Transcript records a recording keeps for the file beside it."""
WRITE_INTERVAL: Final = 0.1


class TapPacket(Protocol):
    """What the media path's tap shows of each packet (``gateway.rtc.media.TappedPacket``)."""

    @property
    def leg(self) -> str: ...

    @property
    def payload(self) -> bytes: ...

    @property
    def timestamp(self) -> int: ...

    @property
    def arrival(self) -> float: ...


class Sink(Protocol):
    """Where a recording's counts go (:class:`gateway.metrics.Metrics` is one)."""

    def recording_bytes(self, count: int) -> None: ...

    def recording_dropped(self, reason: str, count: int) -> None: ...


@dataclass
class LegFile:
    """One leg of a recording on disk: written from the writer thread only."""

    path: Path
    codec: Codec
    timeline: LegTimeline
    track: OpusTrack | G711Track
    fd: int | None = None
    size: int = 0
    opened: bool = False


@dataclass
class RecordingSummary:
    """What a finished recording says about itself (``call.ended``, ``recording.finished``)."""

    recorded: bool
    dropped: int = 0
    """Packets not recorded: the queue was full (slow disk), or written after a failure."""
    late: int = 0
    """Packets that came after their place in the recording (reordered or repeated)."""
    failed: bool = False
    legs: dict[str, dict[str, int]] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "recording_dropped": self.dropped,
            "recording_late": self.late,
            "recording_failed": self.failed,
        }


class CallRecorder:
    """A call's recording: fed on the event loop, written by the :class:`WriterThread`."""

    def __init__(
        self,
        *,
        call_id: str,
        base: Path,
        codec: Codec,
        created_at: float,
        metrics: Sink,
        max_queued: int = MAX_QUEUED,
        serial: int = 0,
    ) -> None:
        """``base`` is the path of the recording without suffix; ``created_at`` is when the call
        began (``time.monotonic()``), the recording's zero."""
        self.call_id = call_id
        self.base = base
        self.codec: Codec = codec
        self.created_at = created_at
        self.started_at = time.time() - (time.monotonic() - created_at)
        self.turns = TurnClock(self.started_at)
        self.records: list[Mapping[str, Any]] = []
        self.dropped = 0
        self._metrics = metrics
        self._max_queued = max_queued
        self._queue: deque[tuple[str, float, int, bytes]] = deque()
        self._closing = False
        self._end_samples: dict[str, int] = {}
        self._failed = False
        self._finished = False
        self._closed: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        timing = duration_of(codec)
        self.legs: dict[str, LegFile] = {}
        for index, leg in enumerate(LEGS):
            track = track_for(codec, serial + index)
            self.legs[leg] = LegFile(
                path=base.with_name(f"{base.name}.{leg}.{track.suffix}"),
                codec=codec,
                timeline=LegTimeline(track.rate, timing),
                track=track,
            )

    @property
    def rate(self) -> int:
        return self.legs["browser"].track.rate

    # -- on the event loop ------------------------------------------------------------------

    def tap(self, packet: TapPacket) -> None:
        """The media path's tap: never blocks, never raises."""
        if self._closing:
            return
        if len(self._queue) >= self._max_queued:
            if self.dropped == 0:
                log.warning(
                    "recording.packets_dropped", call_id=self.call_id, max_queued=self._max_queued
                )
            self.dropped += 1
            self._metrics.recording_dropped("queue_full", 1)
            return
        self._queue.append(
            (packet.leg, packet.arrival - self.created_at, packet.timestamp, packet.payload)
        )

    def observe(self, event: Mapping[str, Any]) -> None:
        """A server event: where turns start and end."""
        self.turns.observe(event, time.time())

    def record(self, record: Mapping[str, Any]) -> None:
        """A transcript record, for the transcript beside the recording."""
        if len(self.records) < MAX_RECORDS:
            self.records.append(record)

    def close(self, duration_s: float) -> asyncio.Future[None]:
        """No more packets: the writer thread finishes both legs ``duration_s`` long. The future
        is done when both files are closed."""
        if self._closed is None:
            self._loop = asyncio.get_running_loop()
            self._closed = self._loop.create_future()
            rate = self.rate
            self._end_samples = {leg: round(duration_s * rate) for leg in LEGS}
            self._closing = True
            if self._finished:  # given up on already: nothing left to write
                self._closed.set_result(None)
        return self._closed

    def summary(self) -> RecordingSummary:
        late = sum(
            leg.timeline.stats.late + leg.timeline.stats.overlapping for leg in self.legs.values()
        )
        return RecordingSummary(
            recorded=not self._failed,
            dropped=self.dropped,
            late=late,
            failed=self._failed,
            legs={name: _stats(leg.timeline.stats) for name, leg in self.legs.items()},
        )

    @property
    def end(self) -> int:
        """The recording's length in samples (once closed)."""
        return max(self._end_samples.values(), default=0)

    # -- on the writer thread ---------------------------------------------------------------

    def write_pending(self) -> bool:
        """Write what is queued; at the end, finish both files. True once finished."""
        closing = self._closing  # read first: packets queued before it are all taken below
        queue = self._queue
        batches: dict[str, list[tuple[float, int, bytes]]] = {leg: [] for leg in LEGS}
        while queue:
            leg, arrival, timestamp, payload = queue.popleft()
            if leg in batches:
                batches[leg].append((arrival, timestamp, payload))
        for leg, items in batches.items():
            if not items:
                continue
            if self._failed:
                self.dropped += len(items)
                continue
            state = self.legs[leg]
            placed = []
            for arrival, timestamp, payload in items:
                placed += state.timeline.add(arrival, timestamp, payload)
            if placed:
                self._write(state, state.track.add(placed))
        if not closing:
            return False
        for leg, state in self.legs.items():
            self._finish(state, self._end_samples[leg])
        self._finished = True
        self._signal_closed()
        return True

    def _finish(self, state: LegFile, end: int) -> None:
        try:
            if not self._failed:
                self._write(state, state.track.add(state.timeline.flush()))
                self._write(state, state.track.finish(end))
                header = state.track.header()
                if header is not None and state.fd is not None:
                    offset, data = header
                    os.pwrite(state.fd, data, offset)
                if state.fd is not None:
                    os.fsync(state.fd)
        except OSError:
            self._fail(state, "finish")
        finally:
            if state.fd is not None:
                try:
                    os.close(state.fd)
                except OSError:
                    pass
                state.fd = None

    def _write(self, state: LegFile, data: bytes) -> None:
        if not data or self._failed:
            return
        try:
            if not state.opened:
                state.opened = True
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
                state.fd = os.open(state.path, flags, 0o600)
                data = state.track.start() + data
            assert state.fd is not None
            view = memoryview(data)
            while view:
                written = os.write(state.fd, view)
                if written <= 0:
                    raise OSError("short write")
                view = view[written:]
            state.size += len(data)
            self._metrics.recording_bytes(len(data))
        except OSError:
            self._fail(state, "write")

    def _fail(self, state: LegFile, stage: str) -> None:
        if not self._failed:
            self._failed = True
            log.error(
                "recording.write_failed",
                call_id=self.call_id,
                leg_file=state.path.name,
                stage=stage,
                exc_info=True,
            )

    def fail(self) -> None:
        """The writer thread met an error of its own with this recording: give up on it."""
        self._failed = True
        self._closing = True
        for state in self.legs.values():
            if state.fd is not None:
                try:
                    os.close(state.fd)
                except OSError:
                    pass
                state.fd = None
        self._finished = True
        self._signal_closed()

    def _signal_closed(self) -> None:
        loop, future = self._loop, self._closed
        if loop is not None and future is not None:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _stats(stats: TimelineStats) -> dict[str, int]:
    return {
        "placed": stats.placed,
        "late": stats.late,
        "overlapping": stats.overlapping,
        "invalid": stats.invalid,
        "reanchored": stats.reanchored,
    }


class WriterThread:
    """Writes every recording of the process, a few times a second, off the event loop.

    One thread for all calls: the work per packet is a few microseconds, and a disk that stalls
    stalls every file on it anyway. A recording that raises here is given up, not the thread.
    """

    def __init__(self, interval: float = WRITE_INTERVAL) -> None:
        self._interval = interval
        self._recorders: list[CallRecorder] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.busy_since: float | None = None
        """``time.monotonic()`` when the current pass began (None between passes)."""

    def add(self, recorder: CallRecorder) -> None:
        with self._lock:
            self._recorders.append(recorder)
            if self._thread is None:
                # A daemon: a thread stuck on a hung disk must not keep the process alive.
                self._thread = threading.Thread(
                    target=self._run, name="recording-writer", daemon=True
                )
                self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    @property
    def recorders(self) -> int:
        with self._lock:
            return len(self._recorders)

    def stop(self, timeout: float) -> bool:
        """Stop once every recording is finished; False if it did not within ``timeout``."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            with self._lock:
                recorders = list(self._recorders)
                if self._stopping and not recorders:
                    self._thread = None
                    return
            self.busy_since = time.monotonic()
            finished = []
            for recorder in recorders:
                try:
                    if recorder.write_pending():
                        finished.append(recorder)
                except Exception:
                    log.exception("recording.writer_failed", call_id=recorder.call_id)
                    recorder.fail()
                    finished.append(recorder)
            self.busy_since = None
            if finished:
                with self._lock:
                    for recorder in finished:
                        self._recorders.remove(recorder)
