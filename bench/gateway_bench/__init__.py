"""``realtime-gateway bench``: added latency, CPU and memory of the gateway, measured.

See ``docs/benchmark.md``. Importing this package starts nothing and loads no aiortc: the
command's modules are imported when it runs.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    from gateway_bench.cli import main as run

    return run(argv)
