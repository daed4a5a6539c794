"""``realtime-gateway bench``: added latency, CPU and memory of the gateway, measured."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    raise SystemExit("realtime-gateway bench: not built yet")
