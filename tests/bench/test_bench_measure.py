"""The numbers: percentiles, slopes, and what /proc says, parsed from literal text."""

from __future__ import annotations

import math

import pytest

from gateway_bench.measure import (
    CLOCK_TICKS,
    Spread,
    parse_proc_stat_busy,
    parse_stat_cpu,
    parse_status_rss,
    percentile,
    slope,
)


class TestPercentile:
    def test_interpolates_between_ranks(self) -> None:
        """Linear interpolation, as numpy's default: p50 of 1..4 is 2.5."""
        assert percentile([4, 1, 3, 2], 50) == 2.5
        assert percentile([1, 2, 3, 4], 0) == 1
        assert percentile([1, 2, 3, 4], 100) == 4

    def test_p99_of_a_hundred_values(self) -> None:
        """p99 of 1..100 lies between the two largest values."""
        assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)

    def test_single_and_empty(self) -> None:
        """One value is every percentile; no value gives NaN, never an exception."""
        assert percentile([7.5], 99) == 7.5
        assert math.isnan(percentile([], 50))

    def test_spread_of_nothing(self) -> None:
        """An empty sample still summarises (count 0, NaN figures)."""
        s = Spread.of([])
        assert s.count == 0 and math.isnan(s.p99) and math.isnan(s.max)


class TestSlope:
    def test_exact_line(self) -> None:
        """A straight line's slope is recovered exactly."""
        assert slope([0, 1, 2, 3], [5, 7, 9, 11]) == pytest.approx(2.0)

    def test_flat_noise_is_near_zero(self) -> None:
        """Alternating noise around a flat level has no trend."""
        assert slope([0, 1, 2, 3], [10, 11, 10, 11]) == pytest.approx(0.2)

    def test_not_enough_points(self) -> None:
        """Fewer than two distinct x give no slope."""
        assert slope([1], [1]) is None
        assert slope([2, 2], [1, 3]) is None


class TestProc:
    def test_stat_with_a_hostile_command_name(self) -> None:
        """utime + stime are found even when the command name holds spaces and parentheses."""
        fields = ["S", "1", "1", "1", "0", "-1", "0", "0", "0", "0", "0", "250", "50", "0"]
        stat = "1234 (we (ird) name) " + " ".join(fields) + " 20 0 1"
        assert parse_stat_cpu(stat) == pytest.approx(300 / CLOCK_TICKS)

    def test_status_rss(self) -> None:
        """VmRSS is read in kB and returned in bytes."""
        status = "Name:\tpython\nVmPeak:\t  999 kB\nVmRSS:\t  2048 kB\nThreads:\t3\n"
        assert parse_status_rss(status) == 2048 * 1024

    def test_status_without_rss(self) -> None:
        """A zombie's status has no VmRSS: that is an error, not a zero."""
        with pytest.raises(ValueError):
            parse_status_rss("Name:\tpython\nState:\tZ (zombie)\n")

    def test_machine_busy_excludes_idle_and_iowait(self) -> None:
        """Busy time is user+nice+system+irq+softirq+steal, across all CPUs."""
        text = "cpu  100 10 50 9000 300 5 5 30 0 0\ncpu0 50 5 25 4500 150 2 2 15 0 0\n"
        assert parse_proc_stat_busy(text) == pytest.approx(200 / CLOCK_TICKS)


def test_run_queue_wait() -> None:
    """The second schedstat field is nanoseconds spent waiting for a CPU."""
    from gateway_bench.measure import parse_schedstat_wait

    assert parse_schedstat_wait("185881291 9576689 412\n") == pytest.approx(0.009576689)
