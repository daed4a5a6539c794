"""The soak's verdicts: memory trend, descriptors, live calls, upstream hangups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_bench import soak


def samples(rss: Sequence[float], every: float = 15.0) -> list[dict[str, Any]]:
    return [{"t": i * every, "rss_mib": v} for i, v in enumerate(rss)]


def result(rss_second: float | None, *, fds_after: int = 7, hung_up: int = 20) -> dict[str, Any]:
    no_loss = {"loss_pct": 0.0}
    return {
        "gateway": {
            "live_calls_after": 0,
            "fds": {"idle": 7, "after": fds_after},
            "rss_slope_mib_per_min": {"first_half": 2.0, "second_half": rss_second},
        },
        "upstream": {"answered": 20, "hung_up": hung_up, "open_after": 20 - hung_up},
        "steady": {"audio": {"up": no_loss, "down": no_loss}},
        "churn": {"calls": 18, "failed": 0},
    }


def verdicts(r: dict[str, Any]) -> dict[str, bool | None]:
    return {c["name"]: c["pass"] for c in soak.checks(r)}


class TestRssTrend:
    def test_warm_up_then_flat(self) -> None:
        """Growth early on, flat later: the second half is flat, the first is not."""
        rss = [100 + min(i, 12) * 2 for i in range(41)]  # 10 min, 15 s apart; grows 3 min
        assert soak._rss_slope(samples(rss), "second") == 0.0
        assert (soak._rss_slope(samples(rss), "first") or 0) > 1.0

    def test_a_leak_grows_in_the_second_half_too(self) -> None:
        """A steady 0.5 MiB/min climb shows in the half that decides."""
        rss = [100 + 0.125 * i for i in range(41)]
        assert soak._rss_slope(samples(rss), "second") == 0.5

    def test_too_short_to_tell(self) -> None:
        """Less than a minute of trend decides nothing."""
        assert soak._rss_slope(samples([100, 101, 102, 103], every=5.0), "second") is None


class TestChecks:
    def test_clean_run_passes(self) -> None:
        assert all(verdicts(result(0.05)).values())

    def test_leaks_fail_their_check(self) -> None:
        """Memory climbing, a descriptor left open, an upstream call never hung up: each fails."""
        got = verdicts(result(0.5, fds_after=20, hung_up=19))
        assert got["memory flat"] is False
        assert got["descriptors after teardown"] is False
        assert got["upstream calls hung up by the gateway"] is False

    def test_short_run_is_not_judged_on_memory(self) -> None:
        assert verdicts(result(None))["memory flat"] is None
