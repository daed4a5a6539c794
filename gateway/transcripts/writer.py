"""The transcript file: records appended to ``<directory>/<call_id>.jsonl`` from a task."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import structlog

from gateway.transcripts.records import encode_record

log = structlog.get_logger(__name__)

_CALL_ID_RE: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")

MAX_QUEUED_RECORDS: Final = 4096
"""Records a writer holds while the disk is not keeping up; later ones are dropped.

A call makes a handful of records per exchange (user, assistant, usage, perhaps a truncation or
a tool call), so this is over an hour of brisk conversation queued behind a stalled disk; at the
usual few hundred bytes to a kilobyte per line that is a few MB per call, instead of memory
growing for as long as a hung mount keeps the call's records from leaving. The limit counts
records, not bytes: a tool call with a large output weighs more.
"""


def prepare_directory(directory: Path) -> None:
    """Create the transcripts directory and check it is writable (blocking: call at startup)."""
    directory.mkdir(parents=True, exist_ok=True)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"{directory} is not writable")


class TranscriptWriter:
    """Appends records to ``<directory>/<call_id>.jsonl`` without blocking the event loop.

    :meth:`write` only queues; a task of the writer's own writes each batch in a worker thread,
    every record with one ``write()`` on an ``O_APPEND`` descriptor (no user-space buffer), so a
    crash at any point leaves whole lines only. A failed or short write is cut back off the file.
    Disk trouble is logged (``transcript.open_failed``, ``transcript.write_failed``) and never
    raised: the call matters more than its transcript.

    At most ``max_queued`` records wait for the disk (:attr:`pending`). When it falls that far
    behind, newer records are dropped rather than held or waited for, counted in :attr:`dropped`,
    and ``transcript.records_dropped`` is logged once per call, at the first drop (a stalled disk
    may never let the call close, so the warning cannot wait for the end).
    """

    def __init__(
        self, directory: Path, call_id: str, *, max_queued: int = MAX_QUEUED_RECORDS
    ) -> None:
        if not _CALL_ID_RE.fullmatch(call_id):
            raise ValueError(f"call_id {call_id!r} cannot name a transcript file")
        if max_queued < 1:
            raise ValueError(f"max_queued must be at least 1 (got {max_queued})")
        self.path = Path(directory) / f"{call_id}.jsonl"
        self.dropped = 0
        """Records refused because ``max_queued`` were already waiting for the disk."""
        self._call_id = call_id
        self._max_queued = max_queued
        # The limit counts the batch in the worker thread too, since a stalled write holds it:
        # write() enforces it on _pending, and the queue itself stays unbounded so that
        # aclose()'s end-of-stream marker always finds room.
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._pending = 0
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._write_failed = False
        self._disabled = False
        self._closing = False
        self._closed = asyncio.Event()

    def __repr__(self) -> str:
        return f"TranscriptWriter({str(self.path)!r})"

    @property
    def pending(self) -> int:
        """Records accepted but not on disk yet, queued or in the batch being written."""
        return self._pending

    async def start(self) -> None:
        """Open the file (creating the directory) and start writing what was queued so far."""
        if self._task is not None or self._closing:
            return
        try:
            await asyncio.to_thread(self._open)
        except OSError:
            log.error(
                "transcript.open_failed", call_id=self._call_id, path=str(self.path), exc_info=True
            )
            self._disabled = True
            while not self._queue.empty():
                self._queue.get_nowait()
            self._pending = 0
            return
        self._task = asyncio.create_task(self._run(), name=f"transcript-writer:{self._call_id}")

    def write(self, record: Mapping[str, Any]) -> None:
        """Queue one record; records are written in the order they were queued."""
        if self._closing or self._disabled:
            log.debug("transcript.write_dropped", call_id=self._call_id, kind=record.get("kind"))
            return
        if self._pending >= self._max_queued:
            self._overflow()
            return
        try:
            line = encode_record(record)
        except (TypeError, ValueError):
            log.warning(
                "transcript.bad_record",
                call_id=self._call_id,
                kind=record.get("kind"),
                exc_info=True,
            )
            return
        self._queue.put_nowait(line)
        self._pending += 1

    async def aclose(self) -> None:
        """Write what is queued, then close the file; idempotent (a second call waits)."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            if self._task is not None:
                self._queue.put_nowait(None)
                await asyncio.wait([self._task])
            await asyncio.to_thread(self._close)
        finally:
            self._closed.set()

    def _overflow(self) -> None:
        # Once per call: a stalled disk would otherwise log for every record of the call.
        if self.dropped == 0:
            log.warning(
                "transcript.records_dropped",
                call_id=self._call_id,
                path=str(self.path),
                max_queued=self._max_queued,
            )
        self.dropped += 1

    # -- the writer task and its thread -------------------------------------------------------

    async def _run(self) -> None:
        while True:
            line = await self._queue.get()
            batch: list[bytes] = []
            while line is not None:
                batch.append(line)
                if self._queue.empty():
                    break
                line = self._queue.get_nowait()
            if batch:
                try:
                    await asyncio.to_thread(self._write_batch, batch)
                except Exception:
                    self._failed(exc_info=True)
                finally:
                    self._pending -= len(batch)
            if line is None:
                return

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        with self._lock:
            self._fd = fd
            self._size = os.fstat(fd).st_size

    def _write_batch(self, lines: list[bytes]) -> None:
        with self._lock:
            if self._fd is None:
                return
            for line in lines:
                try:
                    written = os.write(self._fd, line)
                except OSError:
                    self._failed(exc_info=True)
                    self._cut_back()
                    return
                if written != len(line):
                    self._failed(written=written, expected=len(line))
                    self._cut_back()
                    return
                self._size += written

    def _cut_back(self) -> None:
        """Drop a partly written line, so the file still ends with a whole record."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            log.error("transcript.truncate_failed", call_id=self._call_id, exc_info=True)

    def _failed(self, **fields: Any) -> None:
        if not self._write_failed:
            self._write_failed = True
            log.error(
                "transcript.write_failed", call_id=self._call_id, path=str(self.path), **fields
            )

    def _close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.fsync(fd)
            except OSError:
                pass
            os.close(fd)
