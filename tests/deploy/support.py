"""What the deploy checks share: paths, the settings' variable names, the metric catalogue,
the requests a TLS front must and must not pass on, and finding the external tools (hadolint,
promtool, caddy)."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"

# The gateway's metrics, as exposed (counters with their _total suffix): docs/operations.md.
METRICS = frozenset(
    {
        "realtime_gateway_sessions_active",
        "realtime_gateway_sessions_total",
        "realtime_gateway_session_duration_seconds",
        "realtime_gateway_setup_seconds",
        "realtime_gateway_events_total",
        "realtime_gateway_event_bytes_total",
        "realtime_gateway_audio_packets_total",
        "realtime_gateway_audio_packets_lost_total",
        "realtime_gateway_audio_jitter_seconds",
        "realtime_gateway_tool_calls_total",
        "realtime_gateway_tool_duration_seconds",
        "realtime_gateway_policy_violations_total",
        "realtime_gateway_tokens_total",
        "realtime_gateway_cost_usd_total",
        "realtime_gateway_upstream_errors_total",
        "realtime_gateway_http_requests_total",
        "realtime_gateway_capacity_calls",
        "realtime_gateway_draining",
        "realtime_gateway_media_dropped_total",
        "realtime_gateway_messages_dropped_total",
        "realtime_gateway_scrape_processes",
    }
)
# Only on a scrape of a `serve --workers` port (how many workers' figures were added up); a
# single process does not export it.
WORKERS_ONLY = frozenset({"realtime_gateway_scrape_processes"})
HISTOGRAMS = frozenset(
    {
        "realtime_gateway_session_duration_seconds",
        "realtime_gateway_setup_seconds",
        "realtime_gateway_tool_duration_seconds",
    }
)
# (method, request target) a browser or an app's backend sends: a TLS front passes these on.
PUBLIC_REQUESTS = (
    ("POST", "/v1/realtime/client_secrets"),
    ("OPTIONS", "/v1/realtime/client_secrets"),
    ("POST", "/v1/realtime/calls"),
    ("OPTIONS", "/v1/realtime/calls"),
    ("POST", "/v1/realtime/calls/rtc_0123abcd/hangup"),
    ("OPTIONS", "/v1/realtime/calls/rtc_0123abcd/hangup"),
    ("POST", "/v1/realtime/sessions"),
    ("POST", "/v1/realtime"),
    ("POST", "/v1/realtime?model=gpt-realtime"),
    ("POST", "/v1/live/sessions"),
    ("OPTIONS", "/v1/live/sessions"),
    ("POST", "/v1/live/sessions/live_0123abcd/hangup"),
    ("GET", "/"),
    ("GET", "/static/app.js"),
    ("HEAD", "/static/style.css"),
    ("POST", "/demo/token"),
    ("POST", "/demo/live"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
)
# Server-side only (the admin API, the sideband, the scrape) or not the gateway's at all; some
# try to reach /metrics through a public prefix.
PRIVATE_REQUESTS = (
    ("GET", "/metrics"),
    ("GET", "/v1/realtime/calls"),
    ("GET", "/v1/realtime/calls?limit=5"),
    ("GET", "/v1/realtime/calls/rtc_0123abcd"),
    ("GET", "/v1/realtime?call_id=rtc_0123abcd"),
    ("GET", "/v1/live/sessions/live_0123abcd/attach"),
    ("GET", "/v1/live/sessions/live_0123abcd/content"),
    ("GET", "/v1/realtime/calls/rtc_0123abcd/content"),
    ("GET", "/v1/realtime/calls/rtc_0123abcd/hangup"),
    ("DELETE", "/v1/realtime/calls/rtc_0123abcd"),
    ("POST", "/v1/realtime/calls/rtc_0123abcd/extra/hangup"),
    ("POST", "/metrics"),
    ("GET", "/static/../metrics"),
    ("GET", "/static/%2e%2e/metrics"),
    ("GET", "/static/..%2fmetrics"),
    ("GET", "/healthz/../metrics"),
    ("GET", "/static/x%2f..%2f..%2fmetrics"),
    ("GET", "/v1/realtime/calls/x%2f..%2f..%2f..%2fmetrics/hangup"),
    ("GET", "//metrics"),
    ("GET", "/admin"),
)
# Of PRIVATE_REQUESTS, the ones on a public path with another method: a front that routes by
# path alone (an Ingress) passes them on. The gateway answers them only with its key.
SAME_PATH_AS_PUBLIC = frozenset(
    {
        ("GET", "/v1/realtime/calls"),
        ("GET", "/v1/realtime/calls?limit=5"),
        ("GET", "/v1/realtime?call_id=rtc_0123abcd"),
        ("GET", "/v1/realtime/calls/rtc_0123abcd/hangup"),
    }
)
_METRIC_NAME = re.compile(r"\brealtime_gateway_[A-Za-z0-9_]+")
_HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def metric_names(promql: str) -> set[str]:
    """The ``realtime_gateway_*`` metrics a PromQL expression reads, histogram series folded
    into their histogram (``x_bucket`` → ``x``)."""
    names = set()
    for name in _METRIC_NAME.findall(promql):
        for suffix in _HISTOGRAM_SERIES:
            if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def setting_names() -> set[str]:
    """Every environment variable name the gateway's settings read: the string literals of
    gateway/config.py, or of every module of the gateway/config package."""
    single = REPO / "gateway" / "config.py"
    paths = [single] if single.exists() else sorted((REPO / "gateway" / "config").glob("*.py"))
    source = "\n".join(path.read_text() for path in paths)
    names = set(re.findall(r"[\"']((?:GATEWAY|OPENAI)_[A-Z0-9_]+)[\"']", source))
    assert names, "no setting names found under gateway/config"
    return names


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types
    """PyYAML's safe loader, plus compose's ``!reset`` tag (read as its plain value)."""


def _reset(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_Loader.add_constructor("!reset", _reset)


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506  # a SafeLoader subclass


def load_yaml_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=_Loader) if doc is not None]


def port_range(text: str) -> range:
    low, _, high = text.partition("-")
    return range(int(low), int(high or low) + 1)


def tool(name: str, install_hint: str) -> str:
    """Path of an external checker: the venv's first (pip-installed tools live there even when
    the venv is not activated), then PATH. Missing: skip locally, fail under CI=true, so CI
    cannot go green by not checking."""
    for candidate in (Path(sys.executable).parent / name, shutil.which(name)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    message = f"{name} not found ({install_hint})"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI=true, so this check may not be skipped")
    pytest.skip(message)
