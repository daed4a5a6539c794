"""A slow sideband loses its oldest events, within its bound, and the loss is logged once."""

from __future__ import annotations

import structlog

from gateway.call.call import SidebandQueue, _offer


def test_a_full_sideband_queue_drops_its_oldest_and_says_so_once() -> None:
    queue = SidebandQueue(3)
    with structlog.testing.capture_logs() as logs:
        for index in range(10):
            _offer(queue, f"m{index}", "rtc_x")
    assert [queue.get_nowait() for _ in range(queue.qsize())] == ["m7", "m8", "m9"]
    assert queue.dropped == 7
    assert [line["event"] for line in logs] == ["sideband.overflow"]
