"""A gateway's recordings: where they are kept, what they are called, how each is finished,
found and, after the retention period, deleted.

Files in ``GATEWAY_RECORDINGS_DIR``, for a call whose recording is named ``N``:

``N.ogg``
    The call, stereo Ogg Opus: the browser on the left, the model on the right, from the start
    of the call to its end. Written once the call has ended (as ``N.ogg.part``, then renamed).
``N.jsonl``
    The call's transcript, each record with ``offset_s`` (and ``end_s``): seconds into the
    recording where the turn starts (and ends).
``N.browser.ogg``, ``N.upstream.ogg`` (``.wav`` for G.711 calls)
    Each leg as it was received, written during the call; deleted once ``N.ogg`` is made.

``N`` is an HMAC of the call id under a key kept in the directory (``.recordings-key``, made
on first use), so a file name says nothing of the call and cannot be guessed from its id.
Processes sharing the directory share the key, and any of them finds any recording.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol

import structlog

from gateway.recording import stereo
from gateway.recording.recorder import (
    MAX_QUEUED,
    CallRecorder,
    RecordingSummary,
    Sink,
    WriterThread,
)
from gateway.recording.tracks import Codec
from gateway.tasks import TaskSet

log = structlog.get_logger(__name__)

KEY_FILE: Final = ".recordings-key"
SUFFIX: Final = ".ogg"
CLOSE_WAIT: Final = 2.0
"""Seconds the end of a call waits for its legs' files to close (a hung disk: no longer)."""
SWEEP_INTERVAL: Final = 3600.0
ORPHAN_AGE: Final = 600.0
"""Leg files untouched this long with no finished recording are from a process that died
mid-call: the sweep makes their recording."""
_NAME: Final = re.compile(r"[0-9a-f]{32}")
_CALL_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
_LEG_FILE: Final = re.compile(r"([0-9a-f]{32})\.(browser|upstream)\.(ogg|wav)")


class Metrics(Sink, Protocol):
    """What the recordings report (:class:`gateway.metrics.Metrics` is one)."""

    def recording_finished(self, result: str, seconds: float, cpu_s: float) -> None: ...


@dataclass(frozen=True)
class Finished:
    """A recording made: for ``recording.finished`` and the cluster's index."""

    call_id: str
    path: Path
    seconds: float
    method: str
    size: int
    cpu_s: float
    """CPU time the worker thread spent making the file."""


def prepare_directory(directory: Path) -> bytes:
    """Create the directory if need be and return its naming key (blocking: call at startup).
    Raises ``OSError`` when the directory cannot be used.

    Processes sharing the directory must agree on the key, and may start at the same moment:
    the key is written in full under a private name, then linked into place, so a process sees
    either no key or a whole one, and the first link wins."""
    directory.mkdir(parents=True, exist_ok=True)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"{directory} is not writable")
    path = directory / KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    draft = directory / f"{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            _sync(handle)
        os.link(draft, path)
    except FileExistsError:
        return _read_key(path)  # another process was first: its key is whole
    finally:
        draft.unlink(missing_ok=True)
    return key


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        key = handle.read(64)
    if len(key) < 32:
        raise OSError(f"{path} is damaged: remove it (recordings made with it are lost)")
    return key


class Recordings:
    def __init__(
        self,
        directory: Path,
        *,
        metrics: Metrics,
        retention_days: float = 30.0,
        workers: int = 2,
        max_queued: int = MAX_QUEUED,
        on_finished: Callable[[Finished], Awaitable[None]] | None = None,
    ) -> None:
        self.directory = directory
        self.retention_s = retention_days * 86400.0
        self._metrics = metrics
        self.max_queued = max_queued
        """Packets a call's recording may hold while the disk falls behind."""
        self._key: bytes | None = None
        self._writer = WriterThread()
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="recording")
        self._finishing = TaskSet()
        self._sweeper = TaskSet()
        self.on_finished = on_finished
        """Told of each recording made (the cluster's index)."""
        self._serial = secrets.randbits(30)

    def __repr__(self) -> str:
        return f"Recordings({str(self.directory)!r})"

    async def start(self) -> None:
        self._key = await asyncio.to_thread(prepare_directory, self.directory)
        self._sweeper.spawn(self._sweep_forever(), name="recordings-sweep")

    async def close(self, grace: float = 30.0) -> None:
        """Finish the recordings under way (within ``grace`` seconds), then stop."""
        if len(self._finishing):
            log.info("recording.finishing", pending=len(self._finishing))
        await self._finishing.aclose(grace=grace)
        await self._sweeper.aclose(grace=0.0)
        stopped = await asyncio.to_thread(self._writer.stop, 2.0)
        if not stopped:
            log.warning("recording.writer_stuck")
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- naming -----------------------------------------------------------------------------

    def name_of(self, call_id: str) -> str:
        if self._key is None:
            raise RuntimeError("Recordings.start() first")
        return hmac.new(self._key, call_id.encode(), hashlib.sha256).hexdigest()[:32]

    def path_of(self, call_id: str) -> Path | None:
        """The finished recording of ``call_id``, if there is one and it has not expired."""
        if self._key is None or not _CALL_ID.fullmatch(call_id):
            return None
        path = self.directory / (self.name_of(call_id) + SUFFIX)
        try:
            stat = path.lstat()
        except OSError:
            return None
        if not path.is_file() or path.is_symlink() or self._expired(stat.st_mtime):
            return None
        return path

    def _expired(self, mtime: float) -> bool:
        return self.retention_s > 0 and time.time() - mtime > self.retention_s

    # -- a call's recording -----------------------------------------------------------------

    def begin(self, call_id: str, codec: Codec, created_at: float) -> CallRecorder:
        """A recorder for a call; nothing is written until :meth:`keep` hands it to the writer."""
        base = self.directory / self.name_of(call_id)
        self._serial = (self._serial + 2) & 0x3FFFFFFF
        return CallRecorder(
            call_id=call_id,
            base=base,
            codec=codec,
            created_at=created_at,
            metrics=self._metrics,
            max_queued=self.max_queued,
            serial=self._serial,
        )

    def keep(self, recorder: CallRecorder) -> None:
        """Start writing ``recorder``'s packets."""
        self._writer.add(recorder)

    async def end(
        self, recorder: CallRecorder, duration_s: float, *, kept: bool
    ) -> RecordingSummary:
        """The call has ended: close its legs (waiting at most :data:`CLOSE_WAIT`) and make the
        stereo file in the background. A recorder never kept is just dropped."""
        if not kept:
            return RecordingSummary(recorded=False)
        closed = recorder.close(duration_s)
        self._writer.wake()
        try:
            async with asyncio.timeout(CLOSE_WAIT):
                await asyncio.shield(closed)
        except TimeoutError:
            log.warning("recording.close_slow", call_id=recorder.call_id)
        self._finishing.spawn(self._finish(recorder, closed), name=f"recording:{recorder.call_id}")
        return recorder.summary()

    async def _finish(self, recorder: CallRecorder, closed: asyncio.Future[None]) -> None:
        await closed
        summary = recorder.summary()
        if summary.failed:
            self._metrics.recording_finished("failed", 0.0, 0.0)
            return
        loop = asyncio.get_running_loop()
        try:
            finished = await loop.run_in_executor(self._pool, self._make, recorder)
        except Exception:
            log.exception("recording.failed", call_id=recorder.call_id)
            self._metrics.recording_finished("failed", 0.0, 0.0)
            return
        log.info(
            "recording.finished",
            call_id=recorder.call_id,
            seconds=round(finished.seconds, 3),
            method=finished.method,
            bytes=finished.size,
            cpu_s=round(finished.cpu_s, 4),
            **summary.fields(),
        )
        self._metrics.recording_finished("written", finished.seconds, finished.cpu_s)
        if self.on_finished is not None:
            try:
                await self.on_finished(finished)
            except Exception:
                log.warning("recording.index_failed", call_id=recorder.call_id, exc_info=True)

    def _make(self, recorder: CallRecorder) -> Finished:
        """In a worker thread: the stereo file, the transcript beside it, the legs removed."""
        started = time.thread_time()
        base = recorder.base
        legs = [recorder.legs["browser"].path, recorder.legs["upstream"].path]
        seconds, method = make_stereo(legs[0], legs[1], recorder.codec, recorder.end, base)
        records = [recorder.turns.annotate(record) for record in recorder.records]
        if records:
            _write_transcript(base.with_name(base.name + ".jsonl"), records)
        for leg in legs:
            leg.unlink(missing_ok=True)
        final = base.with_name(base.name + SUFFIX)
        size = final.stat().st_size
        cpu_s = time.thread_time() - started
        return Finished(recorder.call_id, final, seconds, method, size, cpu_s)

    # -- retention and recovery -------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.sweep)
            except Exception:
                log.exception("recording.sweep_failed")
            await asyncio.sleep(SWEEP_INTERVAL)

    def sweep(self, now: float | None = None) -> dict[str, int]:
        """Delete expired files; finish recordings a dead process left as legs (blocking)."""
        now = time.time() if now is None else now
        deleted = recovered = 0
        legs: dict[str, list[Path]] = {}
        for entry in os.scandir(self.directory):
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            mtime = entry.stat(follow_symlinks=False).st_mtime
            if self.retention_s > 0 and now - mtime > self.retention_s:
                try:
                    os.unlink(entry.path)
                    deleted += 1
                except OSError:
                    log.warning("recording.delete_failed", file=entry.name, exc_info=True)
                continue
            match = _LEG_FILE.fullmatch(entry.name)
            if match and now - mtime > ORPHAN_AGE:
                legs.setdefault(match.group(1), []).append(Path(entry.path))
        for name, paths in legs.items():
            final = self.directory / (name + SUFFIX)
            if len(paths) != 2 or final.exists():
                continue
            try:
                recover(sorted(paths), self.directory / name)
                recovered += 1
                log.info("recording.recovered", file=final.name)
            except Exception:
                log.warning("recording.recovery_failed", file=final.name, exc_info=True)
        if deleted or recovered:
            log.info("recording.swept", deleted=deleted, recovered=recovered)
        return {"deleted": deleted, "recovered": recovered}


def make_stereo(
    browser: Path, upstream: Path, codec: Codec, end: int, base: Path
) -> tuple[float, str]:
    """Write ``base.ogg`` from the two legs (browser left); returns (seconds, how it was made:
    ``copied`` when the packets were kept as sent, ``transcoded`` when decoded)."""
    part = base.with_name(base.name + SUFFIX + ".part")
    final = base.with_name(base.name + SUFFIX)
    method = "copied" if codec == "opus" else "transcoded"
    samples = 0
    rate = 48_000 if codec == "opus" else 8000
    if method == "copied":
        left = browser.read_bytes()
        right = upstream.read_bytes()
        try:
            with _private(part) as out:
                samples = stereo.stereo_file(
                    stereo.audio_packets(left), stereo.audio_packets(right), end, out.write
                )
                _sync(out)
        except (stereo.NotAligned, ValueError) as exc:
            # ValueError: a packet the copy cannot frame; decoding copes with whatever it is.
            log.info("recording.not_aligned", reason=str(exc))
            method = "transcoded"
    if method == "transcoded":
        from gateway.recording.transcode import transcode_stereo

        try:
            with _private(part) as out:
                samples = transcode_stereo(browser, upstream, codec, end, out)
                _sync(out)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    os.replace(part, final)
    return samples / rate, method


def _private(path: Path) -> BinaryIO:
    """A new file only this user may read; whatever was at ``path`` (a link planted in the
    directory, a file a crash left) is removed, never written through."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "wb")


def _sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def recover(paths: list[Path], base: Path) -> None:
    """Make the stereo file of legs whose call's process died: as long as the longer leg."""
    by_leg = {path.name.split(".")[1]: path for path in paths}
    browser, upstream = by_leg["browser"], by_leg["upstream"]
    codec: Codec = "opus" if browser.suffix == ".ogg" else _g711_codec(browser)
    end = max(_length(browser, codec), _length(upstream, codec))
    make_stereo(browser, upstream, codec, end, base)
    browser.unlink(missing_ok=True)
    upstream.unlink(missing_ok=True)


def _g711_codec(path: Path) -> Codec:
    with open(path, "rb") as handle:
        header = handle.read(22)
    return "pcma" if header[20:22] == b"\x06\x00" else "pcmu"


def _length(path: Path, codec: Codec) -> int:
    from gateway.recording import ogg

    if codec != "opus":
        return max(0, path.stat().st_size - 58)  # our WAV header is 58 bytes
    granule = 0
    try:
        for _packet, position in ogg.read_packets(path.read_bytes()):
            granule = max(granule, position)
    except ogg.OggError:
        pass  # cut short by the crash: as far as it goes
    return granule


def _write_transcript(path: Path, records: list[dict[str, Any]]) -> None:
    from gateway.transcripts.records import encode_record

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        for record in records:
            handle.write(encode_record(record))
