"""From measured phases to the report: one JSON-able dict, and the table rendered from it.

The dict is the single source: ``--json`` prints it, and the table is drawn from it, so the two
always agree. "Added" figures are the gateway phase's percentile minus the direct baseline's
same percentile, both from this run. Targets are the gateway's published figures
(docs/benchmark.md), checked on the
passthrough phase (the default media path).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from gateway_bench.measure import Spread
from gateway_bench.phase import CallGroup, PhaseResult

MIB = 1024 * 1024
SATURATED_PCT = 90.0
# Above these, a figure carries the machine's noise and the report says so.
LAG_WARN_MS = 20.0
OTHERS_WARN_PCT = 50.0
WAIT_WARN_MS_PER_S = 10.0
Report = dict[str, Any]
RECORDING_PHASE = "passthrough, recording"
Window = tuple[float, float]


def _num(value: float | None, digits: int = 3) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, digits)


def spread(values: Sequence[float]) -> dict[str, Any]:
    s = Spread.of(values)
    return {
        "count": s.count,
        "p50": _num(s.p50),
        "p95": _num(s.p95),
        "p99": _num(s.p99),
        "max": _num(s.max),
    }


def _audio(group: CallGroup, window: Window, direction: str) -> dict[str, Any]:
    start, end = window
    sent = received = identical = foreign = missed = 0
    latencies: list[float] = []
    for probe in group.probes:
        stream = probe.up if direction == "up" else probe.down
        measured = stream.window(start, end)
        sent += measured.sent
        received += measured.received
        latencies += measured.latencies_ms
        identical += measured.identical
        foreign += measured.foreign
        missed += stream.clicks_missed
    return {
        "method": "click" if foreign else "payload",
        "sent": sent,
        "received": received,
        "loss_pct": _num(100.0 * (sent - received) / sent) if sent else None,
        "latency_ms": spread(latencies),
        "identical_payload_pct": _num(100.0 * identical / (identical + foreign), 2)
        if identical + foreign
        else None,
        "clicks_missed": missed,
    }


def _events(group: CallGroup, window: Window, direction: str) -> dict[str, Any]:
    start, end = window
    sent, latencies = 0, []
    for probe in group.probes:
        events = probe.up_events if direction == "up" else probe.down_events
        n, values = events.window(start, end)
        sent += n
        latencies += values
    # Messages at this direction's receiver that were not ours, and what came back the other
    # way instead of ours: a refused event returns to its sender as an ``error`` event.
    other = sum((p.up_events if direction == "up" else p.down_events).other for p in group.probes)
    back = {
        e
        for p in group.probes
        for e in (p.down_events if direction == "up" else p.up_events).errors
    }
    return {
        "sent": sent,
        "received": len(latencies),
        "latency_ms": spread(latencies),
        "unexpected": other,
        "answered_with": sorted(back)[:3],
    }


def _setup(group: CallGroup) -> dict[str, Any]:
    def ms(values: list[float | None]) -> list[float]:
        return [v * 1000.0 for v in values if v is not None]

    probes = group.answered
    return {
        "offer_to_answer": spread(ms([p.offer_to_answer for p in probes])),
        "offer_to_first_audio": spread(ms([p.offer_to_first_audio for p in probes])),
        "upstream_answer": spread(ms([p.upstream_answer_s for p in probes])),
    }


def group_summary(group: CallGroup, window: Window) -> dict[str, Any]:
    return {
        "calls": {
            "requested": group.requested,
            "measured": len(group.probes),
            "failed": len(group.failures),
            "errors": sorted(set(group.failures))[:5],
        },
        "audio": {d: _audio(group, window, d) for d in ("up", "down")},
        "events": {d: _events(group, window, d) for d in ("up", "down")},
        "setup_ms": _setup(group),
    }


def _gateway(phase: PhaseResult) -> dict[str, Any] | None:
    g = phase.gateway
    if g is None:
        return None
    calls, window = len(phase.calls.probes), phase.window_s
    per_call_s = g.cpu_s / (calls * window) if calls and window > 0 else math.nan
    return {
        "cpu_pct": _num(100.0 * g.cpu_s / window) if window > 0 else None,
        "cpu_pct_per_call": _num(100.0 * per_call_s),
        "cpu_s_per_call_s": _num(per_call_s, 5),
        "main_thread_pct": _num(100.0 * g.main_thread_cpu_s / window) if window > 0 else None,
        # Milliseconds per second its event loop was ready to run while other processes had
        # the CPU: the part of its latency that is the machine's, not the gateway's.
        "waited_for_cpu_ms_per_s": _num(1000.0 * g.main_thread_wait_s / window, 2)
        if window > 0
        else None,
        # Two /proc reads a moment apart: clamp the rounding that makes an idle thread negative.
        "other_threads_pct": _num(100.0 * max(0.0, g.cpu_s - g.main_thread_cpu_s) / window)
        if window > 0
        else None,
        "rss_mib": {
            "idle": _num(g.rss_idle / MIB, 1),
            "loaded": _num(g.rss_loaded / MIB, 1),
            "after": _num(g.rss_after / MIB, 1),
        },
        "rss_mib_per_call": _num((g.rss_loaded - g.rss_idle) / MIB / calls, 2) if calls else None,
        "fds": {"idle": g.fds_idle, "loaded": g.fds_loaded, "after": g.fds_after},
        "threads": g.threads_loaded,
        "live_calls": {"loaded": g.live_calls_loaded, "after": g.live_calls_after},
        "exit_code": g.exit_code,
        "problems": g.problems[-10:],
    }


def summarize(phase: PhaseResult, lag_ms: Sequence[float]) -> dict[str, Any]:
    """One phase: the gateway's calls at the top level, the same-window direct calls under
    ``direct``, and what the gateway added (its percentiles minus theirs) under ``added``."""
    window = phase.window_s
    gateway_cpu = phase.gateway.cpu_s if phase.gateway is not None else 0.0
    others = max(0.0, phase.machine_busy_s - phase.load_cpu_s - gateway_cpu)
    summary = group_summary(phase.calls, phase.window)
    summary["direct"] = group_summary(phase.direct, phase.window)
    summary["added"] = added(summary, summary["direct"])
    summary.update(
        {
            "window_s": _num(window, 2),
            "gateway": _gateway(phase),
            "load": {
                "cpu_pct": _num(100.0 * phase.load_cpu_s / window) if window > 0 else None,
                "loop_lag_ms": spread(lag_ms),
                "waited_for_cpu_ms_per_s": _num(1000.0 * phase.load_wait_s / window, 2)
                if window > 0
                else None,
            },
            # What else ran on the machine meanwhile: the noise every figure here carries.
            "other_processes_cpu_pct": _num(100.0 * others / window) if window > 0 else None,
            "upstream_calls_open_after": phase.upstream_open_after,
        }
    )
    return summary


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else _num(a - b)


def added(phase: dict[str, Any], direct: dict[str, Any]) -> dict[str, Any]:
    """Percentile by percentile, what the gateway adds to the direct path of the same run."""

    def diff(path: Sequence[str], keys: Sequence[str]) -> dict[str, float | None]:
        a, b = phase, direct
        for part in path:
            a, b = a[part], b[part]
        return {k: _minus(a[k], b[k]) for k in keys}

    pcts = ("p50", "p95", "p99")
    return {
        "audio_ms": {d: diff(("audio", d, "latency_ms"), pcts) for d in ("up", "down")},
        "events_ms": {d: diff(("events", d, "latency_ms"), pcts) for d in ("up", "down")},
        "setup_ms": {
            "offer_to_answer": diff(("setup_ms", "offer_to_answer"), pcts),
            "offer_to_first_audio": diff(("setup_ms", "offer_to_first_audio"), pcts),
        },
    }


def _check(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _all(checks: Sequence[bool | None]) -> bool | None:
    if any(c is None for c in checks):
        return None
    return all(checks)


def _fmt_pair(up: float | None, down: float | None, unit: str) -> str:
    return f"up {_signed(up)}{unit}, down {_signed(down)}{unit}"


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def targets(report: Report) -> list[dict[str, Any]]:
    """The published figures, each with what this run measured and whether it meets it
    (None: n/a)."""
    phases = report["phases"]
    mode = (
        "passthrough"
        if "passthrough" in phases
        else next((m for m in ("transcode",) if m in phases), None)
    )
    if mode is None:
        return []
    p, calls = phases[mode], report["config"]["calls"]
    add = p["added"]
    out: list[dict[str, Any]] = []

    def row(name: str, target: str, measured: str, ok: bool | None) -> None:
        out.append({"name": name, "target": target, "measured": measured, "pass": ok, "mode": mode})

    up, down = add["audio_ms"]["up"], add["audio_ms"]["down"]
    row(
        "audio latency added, p50",
        "≤ 2 ms each direction",
        _fmt_pair(up["p50"], down["p50"], " ms"),
        _all([_check(up["p50"], 2), _check(down["p50"], 2)]),
    )
    limit, when = (10, "at 1 call") if calls == 1 else (20, "at 50 calls")
    row(
        "audio latency added, p99",
        f"≤ {limit} ms each direction ({when})",
        _fmt_pair(up["p99"], down["p99"], " ms"),
        _all([_check(up["p99"], limit), _check(down["p99"], limit)]),
    )
    g = p["gateway"] or {}
    per_call = g.get("cpu_pct_per_call")
    row(
        "gateway CPU per call",
        "≤ 1.5 % of a core",
        "–" if per_call is None else f"{per_call:.2f} % of a core",
        _check(per_call, 1.5),
    )
    if mode == "passthrough" and "transcode" in phases:
        ratio = report["comparison"].get("transcode_cpu_ratio")
        floor = "at least " if report["comparison"].get("transcode_saturated") else ""
        row(
            "CPU vs transcode (same run)",
            "≥ 5× lower",
            "–" if ratio is None else f"{floor}{ratio:.1f}× lower",
            None if ratio is None else ratio >= 5,
        )
    a_up, a_down = p["audio"]["up"]["loss_pct"], p["audio"]["down"]["loss_pct"]
    loss_ok = _all([_check(a_up, 0.5 - 1e-9), _check(a_down, 0.5 - 1e-9)])
    row("packet loss", "< 0.5 % each direction", f"up {_pct(a_up)}, down {_pct(a_down)}", loss_ok)
    measured, window = p["calls"]["measured"], p["window_s"] or 0
    scale = f"{measured} of {calls} calls for {window:g} s"
    if calls >= 50 and window >= 60:
        row(
            "50 calls held 60 s",
            "≥ 50 calls, 60 s, < 0.5 % loss",
            scale,
            bool(loss_ok) and measured >= 50 and not p["calls"]["failed"],
        )
    else:
        row(
            "50 calls held 60 s",
            "≥ 50 calls, 60 s, < 0.5 % loss",
            scale + " (run --calls 50 --seconds 60)",
            None,
        )
    e_up, e_down = add["events_ms"]["up"]["p50"], add["events_ms"]["down"]["p50"]
    row(
        "data channel added, p50",
        "≤ 1 ms each direction",
        _fmt_pair(e_up, e_down, " ms"),
        _all([_check(e_up, 1), _check(e_down, 1)]),
    )
    s = add["setup_ms"]["offer_to_answer"]["p50"]
    row(
        "setup added (offer → answer, p50)",
        "≤ 20 ms beyond the upstream's own exchange",
        f"{_signed(s)} ms",
        _check(s, 20),
    )
    mem = g.get("rss_mib_per_call")
    row(
        "memory per extra call", "≤ 2 MiB", "–" if mem is None else f"{mem:.2f} MiB", _check(mem, 2)
    )
    if RECORDING_PHASE in phases:
        added_pct = report["comparison"].get("recording_cpu_added_pct")
        row(
            "recording: CPU added per call",
            "≤ 10 %",
            "–" if added_pct is None else f"{added_pct:+.1f} %",
            _check(added_pct, 10),
        )
        made = phases[RECORDING_PHASE].get("recordings") or {}
        per_minute = made.get("cpu_s_per_call_minute")
        row(
            "recording: stereo file after the call",
            "≤ 1 CPU-second per minute of call",
            "–"
            if per_minute is None
            else f"{per_minute:.3f} CPU-s per minute ({made.get('written')} files)",
            None if per_minute is None else per_minute <= 1 and not made.get("failed"),
        )
    return out


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f} %"


def build(
    config: dict[str, Any],
    machine: dict[str, Any],
    phases: dict[str, dict[str, Any]],
) -> Report:
    report: Report = {"config": config, "machine": machine, "phases": phases, "comparison": {}}
    cpu = {
        m: (phases[m].get("gateway") or {}).get("cpu_s_per_call_s")
        for m in ("passthrough", "transcode")
        if m in phases
    }
    passthrough, transcode = cpu.get("passthrough"), cpu.get("transcode")
    recording = (phases.get(RECORDING_PHASE, {}).get("gateway") or {}).get("cpu_s_per_call_s")
    if passthrough and recording:
        # What recording adds to a call's CPU, against the same calls unrecorded, same run.
        report["comparison"]["recording_cpu_added_pct"] = _num(
            100.0 * (recording - passthrough) / passthrough, 1
        )
    if passthrough and transcode:
        report["comparison"]["transcode_cpu_ratio"] = _num(transcode / passthrough, 2)
        # A transcoding gateway near a full core cannot use more: its per-call cost is then
        # understated (it loses packets instead), and the ratio is only a lower bound.
        busy = (phases["transcode"].get("gateway") or {}).get("cpu_pct") or 0.0
        report["comparison"]["transcode_saturated"] = busy >= SATURATED_PCT
    report["targets"] = targets(report)
    return report


def health_notes(report: dict[str, Any]) -> list[str]:
    """Say when a figure should not be trusted: a lagging load process, a busy machine."""
    notes = []
    for name, phase in report["phases"].items():
        lag = phase["load"]["loop_lag_ms"]["p99"]
        others = phase["other_processes_cpu_pct"]
        if lag is not None and lag > LAG_WARN_MS:
            notes.append(
                f"{name}: the load process's event loop lagged (p99 {lag:.0f} ms, using "
                f"{phase['load']['cpu_pct']:.0f} % of a core): its own delays are in these "
                "latencies; use fewer calls, --pin, or a quieter machine"
            )
        waited = (phase.get("gateway") or {}).get("waited_for_cpu_ms_per_s")
        if waited is not None and waited > WAIT_WARN_MS_PER_S:
            notes.append(
                f"{name}: the gateway's event loop waited {waited:.0f} ms per second for a CPU "
                "other processes held: its latency tails include that wait"
            )
        if others is not None and others > OTHERS_WARN_PCT:
            notes.append(
                f"{name}: other processes used {others:.0f} % of a core during the window: "
                "a noisy machine; trust ratios and medians more than tails, or rerun"
            )
        for group, label in ((phase, "call(s)"), (phase["direct"], "direct call(s)")):
            if group["calls"]["failed"]:
                notes.append(
                    f"{name}: {group['calls']['failed']} {label} failed: "
                    f"{'; '.join(group['calls']['errors'])}"
                )
        for direction in ("up", "down"):
            for text in phase["events"][direction]["answered_with"]:
                notes.append(f"{name}: events {direction} were answered with {text}")
        gateway = phase.get("gateway") or {}
        if gateway.get("problems"):
            notes.append(
                f"{name}: the gateway reported {len(gateway['problems'])} problem "
                f"line(s), last: {gateway['problems'][-1][:160]}"
            )
    return notes
