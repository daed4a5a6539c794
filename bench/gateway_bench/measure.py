"""Numbers from the operating system and from samples: CPU, memory, descriptors, percentiles.

The gateway is a child process, so its figures come from ``/proc/<pid>`` (CPU of every thread,
RSS, open descriptors); the load process reads its own with ``getrusage``. Parsers take the
file's text, so they are tested without a process.
"""

from __future__ import annotations

import asyncio
import math
import os
import platform
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass(frozen=True)
class Spread:
    """The usual summary of a latency-like sample."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(
            count=len(values),
            p50=percentile(values, 50),
            p95=percentile(values, 95),
            p99=percentile(values, 99),
            max=max(values) if values else math.nan,
        )


def parse_stat_cpu(stat: str) -> float:
    """CPU seconds (user + system) from the text of ``/proc/<pid>[/task/<tid>]/stat``."""
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def parse_status_rss(status: str) -> int:
    """Resident set size in bytes from the text of ``/proc/<pid>/status``."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            return int(parts[1]) * 1024
    raise ValueError("no VmRSS line: the process has exited or is a zombie")


def parse_schedstat_wait(text: str) -> float:
    """Seconds a thread spent runnable but waiting for a CPU, from ``…/schedstat``.

    The second field (ns on a run queue): the time another process had the CPU this thread
    wanted. A busy machine shows up here, not in the thread's own CPU time.
    """
    return int(text.split()[1]) / 1e9


@dataclass(frozen=True)
class CpuSample:
    at: float
    total: float  # CPU seconds of the whole process, every thread
    main: float  # CPU seconds of its main thread (the event loop)
    main_wait: float  # seconds its main thread waited for a CPU


class ProcessProbe:
    """Reads a live process's CPU, memory and descriptor counts from ``/proc``; with ``tree``,
    summed over it and every process below it (``serve --workers``: the supervisor and its
    workers; the main thread figures are the workers' main threads added up)."""

    def __init__(self, pid: int, *, tree: bool = False) -> None:
        self.pid = pid
        self._root = Path(f"/proc/{pid}")
        self._tree = tree

    def _pids(self) -> list[int]:
        if not self._tree:
            return [self.pid]
        found, queue = [], [self.pid]
        while queue:
            pid = queue.pop()
            found.append(pid)
            children = Path(f"/proc/{pid}/task/{pid}/children")
            try:
                queue += [int(child) for child in children.read_text().split()]
            except OSError:
                continue
        return found

    def cpu(self) -> CpuSample:
        at = time.monotonic()
        total = main = wait = 0.0
        for pid in self._pids():
            root = Path(f"/proc/{pid}")
            try:
                total += parse_stat_cpu((root / "stat").read_text())
                task = root / "task" / str(pid)
                main += parse_stat_cpu((task / "stat").read_text())
                wait += parse_schedstat_wait((task / "schedstat").read_text())
            except OSError:  # a worker that just exited
                continue
        return CpuSample(at, total, main, wait)

    def rss(self) -> int:
        total = 0
        for pid in self._pids():
            try:
                total += parse_status_rss(Path(f"/proc/{pid}/status").read_text())
            except OSError:
                continue
        return total

    def fds(self) -> int:
        total = 0
        for pid in self._pids():
            try:
                total += len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                continue
        return total

    def threads(self) -> int:
        return len(os.listdir(self._root / "task"))


def parse_proc_stat_busy(text: str) -> float:
    """CPU seconds spent busy by all CPUs, from the text of ``/proc/stat`` (its ``cpu`` line)."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            user, nice, system, _idle, _iowait, irq, softirq, steal = (
                int(v) for v in line.split()[1:9]
            )
            return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
    raise ValueError("no aggregate cpu line in /proc/stat")


def machine_busy() -> float:
    """CPU seconds all processes on this machine have spent busy so far."""
    return parse_proc_stat_busy(Path("/proc/stat").read_text())


def self_wait() -> float:
    """Seconds this process's main thread (the load's event loop) has waited for a CPU."""
    return parse_schedstat_wait(Path(f"/proc/self/task/{os.getpid()}/schedstat").read_text())


def self_cpu() -> float:
    """CPU seconds used so far by this (the load) process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class LagProbe:
    """Event-loop lag of the load process: how late a short sleep wakes up.

    If the load process is saturated its own delays show up as "latency"; this says when.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (time, lag in seconds)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="bench-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def window_ms(self, start: float, end: float) -> list[float]:
        return [lag * 1000.0 for at, lag in self.samples if start <= at <= end]

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            after = time.monotonic()
            self.samples.append((after, max(0.0, after - before - self.interval)))
            if len(self.samples) > 200_000:  # a very long soak: keep the recent half
                del self.samples[:100_000]


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ``ys`` over ``xs``; None with fewer than 2 distinct ``xs``."""
    n = len(xs)
    if n != len(ys) or n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def machine_info() -> dict[str, Any]:
    try:
        aiortc = metadata.version("aiortc")
    except metadata.PackageNotFoundError:
        aiortc = "?"
    return {
        "cpus": os.cpu_count(),
        "allowed_cpus": sorted(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "aiortc": aiortc,
        "loadavg_start": None,
        "loadavg_end": None,
    }
