"""From measured phases to the report: added latency, ratios, targets, the table and JSON."""

from __future__ import annotations

import json

import pytest

from gateway_bench import report, table
from gateway_bench.audio import MarkerLoop
from gateway_bench.phase import CallGroup, GatewayFigures, PhaseResult
from gateway_bench.probe import CallProbe
from gateway_bench.stream import AudioStream

MIB = 1024 * 1024


@pytest.fixture(name="loop", scope="module")
def _loop() -> MarkerLoop:
    return MarkerLoop.build()


def make_probes(
    loop: MarkerLoop,
    calls: int,
    latency_ms: float,
    seconds: float,
    lost: int,
    event_ms: float,
    answer_ms: float,
) -> list[CallProbe]:
    probes = []
    for c in range(calls):
        probe = CallProbe(f"bench:{c}", AudioStream(loop), AudioStream(loop))
        for stream in (probe.up, probe.down):
            count = round(seconds / 0.02)
            for i in range(count):
                stream.record_send(i * 0.02)
                if i >= lost:
                    stream.latency[i] = latency_ms / 1000.0
            stream.identical = count - lost
        for events in (probe.up_events, probe.down_events):
            events.receive(events.next_message(0.5), 0.5 + event_ms / 1000.0)
        probe.offer_sent, probe.answer_received = 0.0, answer_ms / 1000.0
        probe.down.first_arrival = 0.03
        probes.append(probe)
    return probes


def make_phase(
    loop: MarkerLoop,
    name: str,
    latency_ms: float,
    *,
    calls: int = 2,
    seconds: float = 2.0,
    lost: int = 0,
    cpu_pct_per_call: float = 1.0,
    event_ms: float = 0.3,
    answer_ms: float = 4.0,
    direct_ms: float = 0.1,
) -> PhaseResult:
    probes = make_probes(loop, calls, latency_ms, seconds, lost, event_ms, answer_ms)
    direct = make_probes(loop, 1, direct_ms, seconds, 0, 0.3, 4.0)
    cpu = cpu_pct_per_call / 100.0 * calls * seconds
    gateway = GatewayFigures(
        cpu_s=cpu,
        main_thread_cpu_s=cpu,
        rss_idle=100 * MIB,
        rss_loaded=100 * MIB + calls * MIB,
        rss_after=100 * MIB,
        fds_idle=9,
        fds_loaded=9 + 2 * calls,
        fds_after=9,
        live_calls_after=0,
        exit_code=0,
    )
    return PhaseResult(
        name=name,
        calls=CallGroup(calls, probes, probes, []),
        direct=CallGroup(1, direct, direct, []),
        window=(0.0, seconds),
        load_cpu_s=0.1,
        upstream_open_after=0,
        gateway=gateway,
        machine_busy_s=0.5,
    )


def build(phases: list[PhaseResult], calls: int = 2) -> report.Report:
    summaries = {p.name: report.summarize(p, [0.5, 1.0]) for p in phases}
    config = {
        "calls": calls,
        "direct_calls": 1,
        "seconds": 2.0,
        "media": [p.name for p in phases],
        "events_per_second": 2.0,
        "ramp": 0.05,
        "gateway_cpus": None,
    }
    machine = {
        "cpus": 2,
        "python": "3.11",
        "aiortc": "1.16.0",
        "loadavg_start": [0.5, 0.5, 0.5],
        "loadavg_end": [0.6, 0.5, 0.5],
    }
    return report.build(config, machine, summaries)


def marks(r: report.Report) -> dict[str, bool | None]:
    return {t["name"]: t["pass"] for t in r["targets"]}


class TestReport:
    def test_added_is_the_difference_of_percentiles(self, loop: MarkerLoop) -> None:
        """What the gateway adds is its phase's percentile minus the direct one's."""
        r = build(
            [
                make_phase(loop, "passthrough", 0.8, cpu_pct_per_call=1.0),
            ]
        )
        added = r["phases"]["passthrough"]["added"]
        assert added["audio_ms"]["up"]["p50"] == pytest.approx(0.7)
        assert added["audio_ms"]["down"]["p99"] == pytest.approx(0.7)
        assert added["setup_ms"]["offer_to_answer"]["p50"] == pytest.approx(0.0)

    def test_good_passthrough_passes(self, loop: MarkerLoop) -> None:
        """Within every target, and 8× cheaper than transcode: every applicable mark passes."""
        r = build(
            [
                make_phase(loop, "passthrough", 0.6, cpu_pct_per_call=1.0, event_ms=0.8),
                make_phase(loop, "transcode", 88.0, cpu_pct_per_call=8.0),
            ]
        )
        assert r["comparison"]["transcode_cpu_ratio"] == pytest.approx(8.0)
        got = marks(r)
        assert got.pop("50 calls held 60 s") is None  # not at this scale
        assert all(got.values()), r["targets"]
        assert {t["mode"] for t in r["targets"]} == {"passthrough"}

    def test_slow_lossy_expensive_fails(self, loop: MarkerLoop) -> None:
        """Over the latency, loss, CPU and ratio targets: those marks fail."""
        r = build(
            [
                make_phase(loop, "passthrough", 5.0, lost=2, cpu_pct_per_call=3.0),
                make_phase(loop, "transcode", 88.0, cpu_pct_per_call=6.0),
            ]
        )
        got = marks(r)
        assert got["audio latency added, p50"] is False
        assert got["packet loss"] is False
        assert got["gateway CPU per call"] is False
        assert got["CPU vs transcode (same run)"] is False

    def test_one_call_has_the_tighter_p99_target(self, loop: MarkerLoop) -> None:
        """At 1 call the p99 target is 10 ms; at more it is the 50-call 20 ms."""
        phases = [
            make_phase(loop, "passthrough", 15.0, calls=1, cpu_pct_per_call=1.0),
        ]
        one = next(t for t in build(phases, calls=1)["targets"] if "p99" in t["name"])
        assert "≤ 10 ms" in one["target"] and one["pass"] is False

    def test_json_is_strict(self, loop: MarkerLoop) -> None:
        """No NaN reaches the JSON (an empty sample is null), so strict parsers accept it."""
        phase = make_phase(loop, "passthrough", 0.5)
        for probe in phase.direct.probes:  # direct events that never arrive: an empty sample
            probe.up_events = type(probe.up_events)(
                lambda seq: {"type": "x", "event_id": f"bench_{seq}"}
            )
            probe.up_events.next_message(0.5)
        text = json.dumps(build([phase]), allow_nan=False)
        assert '"p50": null' in text


class TestTable:
    def test_phases_side_by_side_with_targets(self, loop: MarkerLoop) -> None:
        """One column per mode; the same-window direct figures and the signed difference under
        each; a meets/misses/n/a mark per target, stated as the published figures."""
        r = build(
            [
                make_phase(loop, "passthrough", 0.6, cpu_pct_per_call=1.0),
                make_phase(loop, "transcode", 88.0, cpu_pct_per_call=9.0),
            ]
        )
        text = table.render(r)
        assert ["passthrough", "transcode"] in [line.split() for line in text.splitlines()]
        assert "+0.50 / +0.50 / +0.50" in text and "0.10 / 0.10 / 0.10" in text
        assert "transcode costs 9.0× the CPU of passthrough" in text
        assert "meets  gateway CPU per call" in text
        assert "n/a  50 calls held 60 s" in text
        assert "published figures" in text and "issue" not in text.lower()
        assert "FAIL" not in text

    def test_a_short_run_says_its_figures_are_indicative(self, loop: MarkerLoop) -> None:
        """A run below the published run size marks a miss "misses here", never FAIL."""
        r = build([make_phase(loop, "passthrough", 0.6, cpu_pct_per_call=3.0)])
        r["config"]["calls"], r["config"]["seconds"] = 1, 5.0
        text = table.render(r)
        assert "a short run" in text and "indicative" in text
        assert "misses here  gateway CPU per call" in text

    def test_missing_figures_render_as_dashes(self) -> None:
        """A cell whose figure is absent shows a dash instead of failing the whole table."""
        assert table._safe(lambda p: p["nope"]["deeper"], {}) == "–"
        assert table._f(None) == "–" and table._f(1.234, 2, signed=True) == "+1.23"


class TestHealthNotes:
    def test_quiet_run_has_no_notes(self, loop: MarkerLoop) -> None:
        r = build([make_phase(loop, "passthrough", 0.5)])
        assert report.health_notes(r) == []

    def test_noise_is_named(self, loop: MarkerLoop) -> None:
        """A lagging load, a gateway kept off its CPU, a busy machine, failed calls: each is
        said, so a bad tail is not read as the gateway's fault (or merit)."""
        phase = make_phase(loop, "passthrough", 0.5)
        assert phase.gateway is not None
        phase.gateway.main_thread_wait_s = 0.5  # 250 ms per second of a 2 s window
        phase.machine_busy_s = 10.0
        phase.calls.failures.append("offer: HTTP 429: too many")
        r = build([phase])
        r["phases"]["passthrough"]["load"]["loop_lag_ms"]["p99"] = 45.0
        text = "\n".join(report.health_notes(r))
        assert "lagged (p99 45 ms" in text
        assert "waited 250 ms per second" in text
        assert "other processes used" in text
        assert "1 call(s) failed: offer: HTTP 429" in text
