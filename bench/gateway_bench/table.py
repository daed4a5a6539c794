"""The report as a plain-text table: one column per media mode, then the targets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Cell = Callable[[dict[str, Any]], str]
MARKS = {True: "meets", False: "misses", None: "n/a"}
# Fewer calls or a shorter window than the published figures were measured with: what this run
# says about them is indicative, not a verdict.
SHORT_CALLS, SHORT_SECONDS = 10, 20.0
PCTS = ("p50", "p95", "p99")


def _get(data: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _f(value: Any, digits: int = 1, signed: bool = False) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _join(path: Sequence[str], keys: Sequence[str] = PCTS, **kw: Any) -> Cell:
    return lambda p: " / ".join(_f(_get(p, *path, k), **kw) for k in keys)


def _spread_rows(
    label: str, path: Sequence[str], added: Sequence[str], keys: Sequence[str] = PCTS
) -> list[tuple[str, Cell]]:
    """The gateway's figure, the direct calls' in the same window, and the difference."""
    return [
        (label, _join(path, keys, digits=2)),
        ("  direct, same window", _join(("direct", *path), keys, digits=2)),
        ("  added by the gateway", _join(("added", *added), keys, digits=2, signed=True)),
    ]


def _pair(*path: str, digits: int = 1) -> Cell:
    return lambda p: " / ".join(
        _f(_get(p, *path[:-1], d, path[-1]), digits) for d in ("up", "down")
    )


def _arrow(*path: str, digits: int = 1) -> Cell:
    return lambda p: " → ".join(_f(_get(p, *path, k), digits) for k in ("idle", "loaded", "after"))


def _calls(p: dict[str, Any]) -> str:
    return (
        f"{_get(p, 'calls', 'measured')}/{_get(p, 'calls', 'requested')} "
        f"(+{_get(p, 'direct', 'calls', 'measured')} direct)"
    )


ROWS: list[tuple[str, Cell]] = [
    ("calls measured/requested", _calls),
    *_spread_rows("audio up ms p50 / p95 / p99", ("audio", "up", "latency_ms"), ("audio_ms", "up")),
    *_spread_rows("audio down ms", ("audio", "down", "latency_ms"), ("audio_ms", "down")),
    ("audio timed by", lambda p: str(_get(p, "audio", "up", "method") or "–")),
    ("  payload byte-identical % up/down", _pair("audio", "identical_payload_pct", digits=0)),
    ("audio loss % up / down", _pair("audio", "loss_pct", digits=3)),
    ("  direct, same window", _pair("direct", "audio", "loss_pct", digits=3)),
    *_spread_rows("events up ms", ("events", "up", "latency_ms"), ("events_ms", "up")),
    *_spread_rows("events down ms", ("events", "down", "latency_ms"), ("events_ms", "down")),
    *_spread_rows(
        "setup offer→answer ms p50 / p95",
        ("setup_ms", "offer_to_answer"),
        ("setup_ms", "offer_to_answer"),
        ("p50", "p95"),
    ),
    *_spread_rows(
        "setup offer→first audio ms",
        ("setup_ms", "offer_to_first_audio"),
        ("setup_ms", "offer_to_first_audio"),
        ("p50", "p95"),
    ),
    ("  bench upstream's own answer ms", _join(("setup_ms", "upstream_answer"), ("p50", "p95"))),
    ("gateway CPU % of a core", lambda p: _f(_get(p, "gateway", "cpu_pct"))),
    ("  per call", lambda p: _f(_get(p, "gateway", "cpu_pct_per_call"), 2)),
    (
        "  main thread / other threads",
        lambda p: (
            f"{_f(_get(p, 'gateway', 'main_thread_pct'))} / "
            f"{_f(_get(p, 'gateway', 'other_threads_pct'))}"
        ),
    ),
    ("gateway RSS MiB idle→loaded→after", _arrow("gateway", "rss_mib")),
    ("  per call MiB", lambda p: _f(_get(p, "gateway", "rss_mib_per_call"), 2)),
    ("gateway fds idle→loaded→after", _arrow("gateway", "fds", digits=0)),
    ("gateway live calls after hangup", lambda p: str(_get(p, "gateway", "live_calls", "after"))),
    ("other processes' CPU % of a core", lambda p: _f(_get(p, "other_processes_cpu_pct"))),
    (
        "waited for a CPU ms/s gateway / load",
        lambda p: (
            f"{_f(_get(p, 'gateway', 'waited_for_cpu_ms_per_s'))} / "
            f"{_f(_get(p, 'load', 'waited_for_cpu_ms_per_s'))}"
        ),
    ),
    (
        "load process CPU % / lag p99 ms",
        lambda p: f"{_f(_get(p, 'load', 'cpu_pct'))} / {_f(_get(p, 'load', 'loop_lag_ms', 'p99'))}",
    ),
]


def render(report: dict[str, Any]) -> str:
    config, machine, phases = report["config"], report["machine"], report["phases"]
    names = list(phases)
    lines = [
        f"realtime-gateway bench: {config['calls']} call(s) (+{config['direct_calls']} direct) "
        f"× {config['seconds']:g} s, media {', '.join(config['media'])}, events "
        f"{config['events_per_second']:g}/s each way, gateway pinned to CPU: "
        f"{config['gateway_cpus'] or 'no'}",
        f"machine: {machine['cpus']} CPU(s), load average {machine['loadavg_start'][0]:.2f} → "
        f"{machine['loadavg_end'][0]:.2f}, aiortc {machine['aiortc']}, "
        f"Python {machine['python']}",
        "",
    ]
    table = [["", *names]]
    for label, cell in ROWS:
        table.append([label, *(_safe(cell, phases[n]) for n in names)])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    added = report["comparison"].get("recording_cpu_added_pct")
    if added is not None:
        lines.append(f"\nrecording changes the CPU of a call by {added:+.1f} %")
    for name, phase in phases.items():
        made = phase.get("recordings")
        if made:
            lines.append(
                f"{name}: {made['written']} stereo files made ({made['failed']} failed) for "
                f"{made['seconds']:g} s of calls (the warm-up call's included), "
                f"{made['cpu_s']:.3f} CPU-s after the calls "
                f"({_f(made['cpu_s_per_call_minute'], 3)} per call-minute), "
                f"{made['dropped_packets']} packets dropped"
            )
    ratio = report["comparison"].get("transcode_cpu_ratio")
    if ratio is not None:
        lines.append(f"\ntranscode costs {ratio:.1f}× the CPU of passthrough per call")
        if report["comparison"].get("transcode_saturated"):
            lines.append(
                "  (at least: the transcoding gateway was near a full core, so it dropped "
                "audio rather than use more; compare at fewer calls)"
            )
    if report["targets"]:
        mode = report["targets"][0]["mode"]
        config = report["config"]
        short = config["calls"] < SHORT_CALLS or config["seconds"] < SHORT_SECONDS
        lines += ["", f"the gateway's published figures (docs/benchmark.md), on {mode}:"]
        if short:
            lines.append(
                f"  (a short run: {config['calls']} call(s) for {config['seconds']:g} s; the "
                f"figures were published at 10 and 50 calls over 20-60 s, so these are indicative)"
            )
        for t in report["targets"]:
            mark = MARKS[t["pass"]]
            if short and t["pass"] is False:
                mark = "misses here"
            lines.append(f"  {mark:>11}  {t['name']}: {t['target']}; measured {t['measured']}")
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _safe(cell: Cell, phase: dict[str, Any]) -> str:
    try:
        return cell(phase)
    except (KeyError, TypeError):
        return "–"
