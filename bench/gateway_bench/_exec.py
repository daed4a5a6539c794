"""``python _exec.py CPUS -- ARGV…``: become ARGV, tied to the benchmark's life.

Run between fork and the gateway's own start: it asks the kernel to send SIGTERM if the
benchmark process dies (``PR_SET_PDEATHSIG``, kept across ``exec``), so even a ``kill -9`` of
the benchmark leaves no gateway behind, and pins the process to CPUS ("-" for no pinning)
before any thread exists, so every thread the gateway starts inherits the pin.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def parse_cpus(text: str) -> set[int] | None:
    """``"-"`` → None; ``"1"`` or ``"0,2"`` → a CPU set."""
    if text == "-":
        return None
    return {int(part) for part in text.split(",") if part.strip()}


def main(argv: list[str]) -> int:  # returns only on failure: execv replaces the process
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python _exec.py CPUS -- PROGRAM [ARGS…]", file=sys.stderr)
        return 2
    cpus, program = parse_cpus(argv[0]), argv[2:]
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        print(
            "warning: PR_SET_PDEATHSIG failed; the gateway may outlive a killed benchmark",
            file=sys.stderr,
        )
    if os.getppid() != parent:  # the benchmark died before the request took effect
        return 1
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    os.execv(program[0], program)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
