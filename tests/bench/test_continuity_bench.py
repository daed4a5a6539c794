"""``realtime-gateway bench --continuity``: its arithmetic, and one tiny run end to end."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from array import array

import pytest

from gateway_bench import cli
from gateway_bench.continuity import ArrivalTap, gap_around, largest_interval, swap_metrics


def tap_of(times: list[float]) -> ArrivalTap:
    tap = ArrivalTap()
    tap.at = array("d", times)
    tap.seq = array("l", range(len(times)))
    tap.timestamp = array("q", (round(t * 48_000) for t in times))
    return tap


class TestGap:
    def test_the_largest_interval_around_the_swap(self) -> None:
        """A 20 ms beat with a 300 ms hole at 10.0: that hole, nothing lost, RTP time in step."""
        times = [10.0 - 0.02 * i for i in range(100, 0, -1)] + [10.3 + 0.02 * i for i in range(100)]
        gap = gap_around(tap_of(times), 9.5, 11.0, cut=10.2, horizon=13.0)
        assert gap.seconds == pytest.approx(0.32)
        assert gap.resumed and gap.seq_step == 1
        assert gap.rtp_seconds == pytest.approx(0.32, abs=1e-4)

    def test_an_interval_straddling_the_window_counts_whole(self) -> None:
        gap = gap_around(tap_of([0.0, 0.02, 5.0, 5.02]), 1.0, 4.0, cut=3.0, horizon=9.0)
        assert gap.seconds == pytest.approx(4.98) and gap.resumed

    def test_audio_that_never_came_back_is_an_open_gap(self) -> None:
        gap = gap_around(tap_of([0.0, 0.02, 0.04]), 0.0, 2.0, cut=1.0, horizon=3.0)
        assert not gap.resumed and gap.seconds == pytest.approx(2.96)

    def test_largest_interval_away_from_or_within_spans(self) -> None:
        tap = tap_of([0.0, 0.02, 0.04, 0.5, 0.52, 0.55])
        assert largest_interval(tap, (0.0, 1.0), [(0.03, 0.6)]) == pytest.approx(0.02)
        assert largest_interval(tap, (0.0, 1.0), []) == pytest.approx(0.46)
        assert largest_interval(tap, (0.0, 1.0), [], [(0.53, 0.54)]) == pytest.approx(0.03)


def test_swap_metrics_are_read_from_the_exposition() -> None:
    text = "\n".join(
        [
            'realtime_gateway_upstream_swaps_total{reason="expired",result="ok"} 3.0',
            'realtime_gateway_upstream_swaps_total{reason="failed",result="failed"} 1.0',
            "realtime_gateway_upstream_swap_seconds_count 3.0",
            "realtime_gateway_upstream_swap_seconds_sum 0.3",
        ]
    )
    figures = swap_metrics(text)
    assert (figures["ok"], figures["failed"], figures["seconds_count"]) == (3, 1, 3)
    assert figures["seconds_mean_ms"] == pytest.approx(100.0)


def test_continuity_defaults_to_five_calls() -> None:
    """--calls is 5 unless given with --continuity, and stays 10 for the other modes."""
    assert cli.parse(["--continuity"]).calls == 5
    assert cli.parse(["--continuity", "--calls", "2"]).calls == 2
    assert cli.parse([]).calls == 10 and cli.parse(["--calls", "3"]).calls == 3


@pytest.mark.timeout(120)
async def test_one_call_through_every_kind_of_swap() -> None:
    """One call, three phases: each swaps at least once for its own reason, the browser stays
    connected and hears audio again after every swap, and the gateways stop cleanly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GATEWAY_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "bench",
        "--continuity",
        "--calls",
        "1",
        "--seconds",
        "6",
        "--json",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 110)
    assert proc.returncode == 0, err.decode()[-2000:]
    report = json.loads(out)
    assert report["mode"] == "continuity"
    expected = {
        "reactive, expiry": {"expired"},
        "proactive": {"renewed"},
        "reactive, killed leg": {"failed", "vanished"},
    }
    assert set(report["phases"]) == set(expected)
    for name, phase in report["phases"].items():
        swaps = phase["swaps"]
        assert swaps["done"] >= 1 and swaps["failed"] == 0, (name, swaps)
        assert set(swaps["by_reason"]) <= expected[name], (name, swaps)
        assert phase["audio_resumed"]["swaps"] == swaps["done"], (name, phase)
        assert 0 < phase["gap_ms"]["max"] < 2000, (name, phase["gap_ms"])
        assert phase["gateway_swap_ms"]["count"] == swaps["done"]
        assert phase["browsers"] == phase["browsers"] | {"connected_throughout": 1, "of": 1}
        assert phase["gateway"]["exit_code"] == 0
    assert "Traceback" not in err.decode()
