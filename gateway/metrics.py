"""Prometheus metrics behind small verbs, on an injected registry.

Callers say what happened (``metrics.call_ended("completed", 12.5)``) and never touch a
Counter. Labels come from bounded sets only — outcomes, stages, documented event types —
never call ids. Audio packet counts are read from the live calls at scrape time instead of being
incremented per packet, which keeps the media hot path free of metric locks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.protocol.catalog import label_for

PREFIX = "realtime_gateway"
# The outcome label of a call (gateway.call.outcomes maps every end reason to one).
OUTCOMES = (
    "completed",
    "browser_gone",
    "upstream_error",
    "rejected",
    "timeout",
    "shutdown",
    "failed",
)
LEGS = ("browser", "upstream")
SETUP_STAGES = ("upstream_sdp", "answer", "browser_connected", "first_upstream_audio")
TOKEN_KINDS = ("input_text", "input_audio", "input_cached", "output_text", "output_audio")

# (leg, direction) -> packets; direction is as seen by the gateway on that leg.
AudioCounts = Mapping[tuple[str, str], int]


class _AudioCollector(Collector):
    def __init__(self, live: Callable[[], Iterable[AudioCounts]], ended: dict[Any, int]) -> None:
        self._live = live
        self._ended = ended

    def collect(self) -> Iterable[CounterMetricFamily]:
        totals = dict(self._ended)
        for counts in self._live():
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
        family = CounterMetricFamily(
            f"{PREFIX}_audio_packets",
            "RTP audio packets relayed, by leg and direction (in: received from that leg).",
            labels=("leg", "direction"),
        )
        for leg in ("browser", "upstream"):
            for direction in ("in", "out"):
                family.add_metric([leg, direction], totals.get((leg, direction), 0))
        yield family


class _JitterCollector(Collector):
    def __init__(self, live: Callable[[], Iterable[Mapping[str, float]]]) -> None:
        self._live = live

    def collect(self) -> Iterable[GaugeMetricFamily]:
        highest = dict.fromkeys(LEGS, 0.0)
        for jitter in self._live():
            for leg, seconds in jitter.items():
                highest[leg] = max(highest.get(leg, 0.0), seconds)
        family = GaugeMetricFamily(
            f"{PREFIX}_audio_jitter_seconds",
            "Highest receive jitter among live calls, per leg (RTCP statistics); 0 without calls.",
            labels=("leg",),
        )
        for leg, seconds in highest.items():
            family.add_metric([leg], seconds)
        yield family


class _DropCollector(Collector):
    def __init__(self, read: Callable[[], Mapping[str, int]]) -> None:
        self._read = read

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            f"{PREFIX}_media_dropped",
            "Datagrams and data-channel messages the media plane refused before the WebRTC "
            "stack handled them, by reason (see SECURITY.md).",
            labels=("reason",),
        )
        for reason, count in sorted(self._read().items()):
            family.add_metric([reason], count)
        yield family


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._active = Gauge(f"{PREFIX}_sessions_active", "Calls in progress.", registry=r)
        self._sessions = Counter(
            f"{PREFIX}_sessions", "Calls ended, by outcome.", ["outcome"], registry=r
        )
        self._started = Counter(
            f"{PREFIX}_calls_started",
            "Calls started, by the API the app speaks (ga, beta: Realtime; live: GPT-Live).",
            ["dialect"],
            registry=r,
        )
        self._duration = Histogram(
            f"{PREFIX}_session_duration_seconds",
            "How long calls lasted.",
            buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
            registry=r,
        )
        self._setup = Histogram(
            f"{PREFIX}_setup_seconds",
            "Call setup, by stage, from the browser's offer arriving.",
            ["stage"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self._events = Counter(
            f"{PREFIX}_events", "Data-channel events relayed.", ["direction", "type"], registry=r
        )
        self._event_bytes = Counter(
            f"{PREFIX}_event_bytes", "Data-channel bytes relayed.", ["direction"], registry=r
        )
        self._lost = Counter(
            f"{PREFIX}_audio_packets_lost",
            "Audio packets the gateway's receivers counted as lost (RTCP statistics).",
            ["leg"],
            registry=r,
        )
        self._messages_dropped = Counter(
            f"{PREFIX}_messages_dropped",
            "Data-channel messages lost by ended calls, per leg (sent after a leg ended, or "
            "beyond a full queue).",
            ["leg"],
            registry=r,
        )
        self._tool_calls = Counter(
            f"{PREFIX}_tool_calls", "Server tool calls.", ["tool", "status"], registry=r
        )
        self._tool_duration = Histogram(
            f"{PREFIX}_tool_duration_seconds", "Server tool run time.", ["tool"], registry=r
        )
        self._violations = Counter(
            f"{PREFIX}_policy_violations",
            "Client events refused by policy.",
            ["rule"],
            registry=r,
        )
        self._tokens = Counter(
            f"{PREFIX}_tokens",
            "Tokens billed upstream, from response.done usage, by app, model and kind.",
            ["app", "model", "kind"],
            registry=r,
        )
        self._cost = Counter(
            f"{PREFIX}_cost_usd",
            "What calls cost upstream in US dollars (usage x the price table), by app and "
            "model; models without a price are not counted here.",
            ["app", "model"],
            registry=r,
        )
        self._voice_seconds = Counter(
            f"{PREFIX}_voice_seconds",
            "Seconds of GPT-Live voice billed upstream, from its session.usage.updated.",
            registry=r,
        )
        self._upstream_errors = Counter(
            f"{PREFIX}_upstream_errors", "Upstream failures, by kind.", ["kind"], registry=r
        )
        self._http = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests, by route and status.",
            ["route", "status"],
            registry=r,
        )
        self._recordings = Counter(
            f"{PREFIX}_recordings",
            "Call recordings finished, by result (written, failed).",
            ["result"],
            registry=r,
        )
        self._recorded = Counter(
            f"{PREFIX}_recorded_seconds", "Seconds of calls in written recordings.", registry=r
        )
        self._recording_cpu = Counter(
            f"{PREFIX}_recording_cpu_seconds",
            "CPU seconds spent making recordings' stereo files after their calls.",
            registry=r,
        )
        self._recording_bytes = Counter(
            f"{PREFIX}_recording_bytes",
            "Bytes written to recordings' leg files while calls run.",
            registry=r,
        )
        self._recording_dropped = Counter(
            f"{PREFIX}_recording_dropped_packets",
            "Audio packets left out of recordings, by reason (queue_full: the disk fell behind; "
            "late: after their place was written; failed: after a write failed).",
            ["reason"],
            registry=r,
        )
        self._swaps = Counter(
            f"{PREFIX}_upstream_swaps",
            "Upstream sessions replaced under a running call, by reason (expired, failed, "
            "vanished: reactive; renewed: before a known expiry) and result (ok, failed).",
            ["reason", "result"],
            registry=r,
        )
        self._swap_seconds = Histogram(
            f"{PREFIX}_upstream_swap_seconds",
            "Seconds from the decision to replace an upstream session to the new one relaying.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
            registry=r,
        )
        self._budget_warnings = Counter(
            f"{PREFIX}_budget_warnings",
            "Budget windows an app (or one of its end users) crossed the warning share of, by app.",
            ["app"],
            registry=r,
        )
        self._budget_refused = Counter(
            f"{PREFIX}_budget_refused",
            "Secrets and calls refused with insufficient_quota because a budget was spent, by app.",
            ["app"],
            registry=r,
        )
        self._capacity = Gauge(f"{PREFIX}_capacity_calls", "GATEWAY_MAX_CALLS.", registry=r)
        self._draining = Gauge(f"{PREFIX}_draining", "1 while draining for shutdown.", registry=r)
        self._ended_audio: dict[Any, int] = {}
        self._live_audio: Callable[[], Iterable[AudioCounts]] = list
        r.register(_AudioCollector(lambda: self._live_audio(), self._ended_audio))
        self._media_drops: Callable[[], Mapping[str, int]] = dict
        r.register(_DropCollector(lambda: self._media_drops()))
        self._live_jitter: Callable[[], Iterable[Mapping[str, float]]] = list
        r.register(_JitterCollector(lambda: self._live_jitter()))
        for outcome in OUTCOMES:
            self._sessions.labels(outcome)
        for dialect in ("ga", "beta", "live", "translation"):
            self._started.labels(dialect)
        for leg in LEGS:
            self._lost.labels(leg)
            self._messages_dropped.labels(leg)
        for result in ("written", "failed"):
            self._recordings.labels(result)
        for reason in ("queue_full", "late", "failed"):
            self._recording_dropped.labels(reason)

    # -- calls --------------------------------------------------------------------------------

    def call_started(self, dialect: str = "ga") -> None:
        self._active.inc()
        self._started.labels(dialect).inc()

    def call_ended(
        self,
        outcome: str,
        duration: float,
        audio: AudioCounts,
        messages_dropped: Mapping[str, int] | None = None,
    ) -> None:
        self._active.dec()
        self._sessions.labels(outcome).inc()
        self._duration.observe(duration)
        for key, value in audio.items():
            self._ended_audio[key] = self._ended_audio.get(key, 0) + value
        for leg, count in (messages_dropped or {}).items():
            if count:
                self._messages_dropped.labels(leg).inc(count)

    def call_rejected(self) -> None:
        self._sessions.labels("rejected").inc()

    def setup_stage(self, stage: str, seconds: float) -> None:
        self._setup.labels(stage).observe(seconds)

    def watch_audio(self, live: Callable[[], Iterable[AudioCounts]]) -> None:
        """Where scrapes read live calls' packet counts from."""
        self._live_audio = live

    def watch_media_drops(self, read: Callable[[], Mapping[str, int]]) -> None:
        """Where scrapes read the media plane's drop counts from (by reason)."""
        self._media_drops = read

    def watch_jitter(self, live: Callable[[], Iterable[Mapping[str, float]]]) -> None:
        """Where scrapes read each live call's latest jitter per leg (seconds) from."""
        self._live_jitter = live

    def audio_lost(self, leg: str, lost: int) -> None:
        if lost > 0:
            self._lost.labels(leg).inc(lost)

    # -- events -------------------------------------------------------------------------------

    def event_relayed(self, direction: str, event_type: str, size: int) -> None:
        self._events.labels(direction, label_for(event_type)).inc()
        self._event_bytes.labels(direction).inc(size)

    def tokens(
        self, by_kind: Mapping[str, int], *, app: str, model: str, cost_usd: float | None = None
    ) -> None:
        """Count one response's tokens, sorted by billing kind, and what they cost (``None``:
        the model has no price). ``model`` is a bounded label (gateway.pricing's)."""
        for kind, value in by_kind.items():
            if value:
                self._tokens.labels(app, model, kind).inc(value)
        if cost_usd is not None:
            self._cost.labels(app, model).inc(cost_usd)

    def voice_seconds(self, seconds: float) -> None:
        """Add seconds of Live voice a session's usage grew by."""
        self._voice_seconds.inc(seconds)

    def tool_call(self, tool: str, status: str, seconds: float) -> None:
        self._tool_calls.labels(tool, status).inc()
        self._tool_duration.labels(tool).observe(seconds)

    def policy_violation(self, rule: str) -> None:
        self._violations.labels(rule).inc()

    def upstream_error(self, kind: str) -> None:
        self._upstream_errors.labels(kind).inc()

    def budget_warning(self, app: str) -> None:
        self._budget_warnings.labels(app).inc()

    def budget_refused(self, app: str) -> None:
        self._budget_refused.labels(app).inc()

    def upstream_swap(self, reason: str, ok: bool, seconds: float) -> None:
        self._swaps.labels(reason, "ok" if ok else "failed").inc()
        if ok:
            self._swap_seconds.observe(seconds)

    # -- recordings (called from the recordings' writer threads too: counters are thread-safe) -

    def recording_bytes(self, count: int) -> None:
        self._recording_bytes.inc(count)

    def recording_dropped(self, reason: str, count: int) -> None:
        if count > 0:
            self._recording_dropped.labels(reason).inc(count)

    def recording_finished(self, result: str, seconds: float, cpu_s: float) -> None:
        self._recordings.labels(result).inc()
        if seconds > 0:
            self._recorded.inc(seconds)
        if cpu_s > 0:
            self._recording_cpu.inc(cpu_s)

    # -- process ------------------------------------------------------------------------------

    def http_request(self, route: str, status: int) -> None:
        self._http.labels(route, str(status)).inc()

    def set_capacity(self, calls: int) -> None:
        self._capacity.set(calls)

    def set_draining(self, draining: bool) -> None:
        self._draining.set(1 if draining else 0)


def tokens_by_kind(usage: Mapping[str, Any]) -> dict[str, int]:
    """``response.done.usage`` → tokens per billing kind (protocol.md §4.5)."""

    def num(value: Any) -> int:
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    inp = usage.get("input_token_details") or {}
    out = usage.get("output_token_details") or {}
    if not isinstance(inp, Mapping):
        inp = {}
    if not isinstance(out, Mapping):
        out = {}
    return {
        "input_text": num(inp.get("text_tokens")),
        "input_audio": num(inp.get("audio_tokens")),
        "input_cached": num(inp.get("cached_tokens")),
        "output_text": num(out.get("text_tokens")),
        "output_audio": num(out.get("audio_tokens")),
    }


def responses_tokens(usage: Mapping[str, Any]) -> dict[str, int]:
    """A Responses API ``usage`` (a Live session's delegate) → tokens per billing kind: its
    input and output are text; cached input is a part of the input, as in Realtime's."""

    def num(value: Any) -> int:
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    details = usage.get("input_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    return {
        "input_text": num(usage.get("input_tokens")),
        "input_audio": 0,
        "input_cached": num(cached),
        "output_text": num(usage.get("output_tokens")),
        "output_audio": 0,
    }
