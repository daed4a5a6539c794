"""The names of the settings: a misspelt one is pointed out, and the effective ones shown.

A ``GATEWAY_*`` variable that is not a setting would otherwise be ignored without a word (the
gateway then runs with a default its operator meant to change), so startup warns about it with
the closest real name.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Final

from gateway.config.base import Secret

SETTINGS: Final[dict[str, str]] = {
    "OPENAI_API_KEY": "openai_api_key",
    "OPENAI_BASE_URL": "openai_base_url",
    "GATEWAY_HOST": "host",
    "GATEWAY_PORT": "port",
    "GATEWAY_API_KEY": "gateway_api_key",
    "GATEWAY_APPS": "apps_file",
    "GATEWAY_ICE_ADDRESSES": "ice_addresses",
    "GATEWAY_UPSTREAM_ICE_ADDRESSES": "upstream_ice_addresses",
    "GATEWAY_MODEL": "model",
    "GATEWAY_VOICE": "voice",
    "GATEWAY_INSTRUCTIONS": "instructions",
    "GATEWAY_CLIENT_SECRET_TTL": "client_secret_ttl",
    "GATEWAY_CLIENT_SECRET_SINGLE_USE": "client_secret_single_use",
    "GATEWAY_MAX_CLIENT_SECRETS": "max_client_secrets",
    "GATEWAY_CORS_ORIGINS": "cors_origins",
    "GATEWAY_DEMO": "demo_enabled",
    "GATEWAY_MAX_SDP_BYTES": "max_sdp_bytes",
    "GATEWAY_UPSTREAM_TIMEOUT": "upstream_timeout",
    "GATEWAY_LOG_LEVEL": "log_level",
    "GATEWAY_LOG_FORMAT": "log_format",
    "GATEWAY_MEDIA": "media",
    "GATEWAY_MAX_CALLS": "max_calls",
    "GATEWAY_CONNECT_TIMEOUT": "connect_timeout",
    "GATEWAY_PEER_TIMEOUT": "peer_timeout",
    "GATEWAY_IDLE_TIMEOUT": "idle_timeout",
    "GATEWAY_MAX_CALL_DURATION": "max_call_duration",
    "GATEWAY_CONTINUITY": "continuity",
    "GATEWAY_SPEND_FILE": "spend_file",
    "GATEWAY_CONTINUITY_REPLAY_TOKENS": "continuity_replay_tokens",
    "GATEWAY_CONTINUITY_LEAD": "continuity_lead",
    "GATEWAY_CALLS_PER_MINUTE_PER_IP": "calls_per_minute_per_ip",
    "GATEWAY_CALLS_PER_MINUTE_PER_TOKEN": "calls_per_minute_per_token",
    "GATEWAY_DRAIN_TIMEOUT": "drain_timeout",
    "GATEWAY_ICE_PORT_RANGE": "ice_port_range",
    "GATEWAY_PUBLIC_IP": "public_ip",
    "GATEWAY_ICE_SERVERS": "ice_servers",
    "GATEWAY_ICE_TRANSPORT_POLICY": "ice_transport_policy",
    "GATEWAY_UPSTREAM_ICE_SERVERS": "upstream_ice_servers",
    "GATEWAY_SESSION": "session_defaults",
    "GATEWAY_TOOLS": "tools",
    "GATEWAY_WEB_DIR": "web_dir",
    "GATEWAY_TOOL_TIMEOUT": "tool_timeout",
    "GATEWAY_HOOKS": "hooks",
    "GATEWAY_TRANSCRIPTS_DIR": "transcripts_dir",
    "GATEWAY_RECORDINGS_DIR": "recordings_dir",
    "GATEWAY_RECORDINGS_RETENTION": "recordings_retention",
    "GATEWAY_ALLOWED_CLIENT_EVENTS": "allowed_client_events",
    "GATEWAY_LOCKED_SESSION_FIELDS": "locked_session_fields",
    "GATEWAY_MAX_EVENT_BYTES": "max_event_bytes",
    "GATEWAY_EVENTS_PER_SECOND": "events_per_second",
    "GATEWAY_RESPONSE_CREATES_PER_MINUTE": "response_creates_per_minute",
    "GATEWAY_REDIS_URL": "redis_url",
    "GATEWAY_NODE_NAME": "node_name",
    "GATEWAY_NODE_ADDRESS": "node_address",
    "GATEWAY_CLUSTER_SECRET": "cluster_secret",
    "GATEWAY_TRUSTED_PROXIES": "trusted_proxies",
    "GATEWAY_WORKERS": "workers",
    "GATEWAY_WORKER_GROUP": "worker_group",
    "GATEWAY_INTERNAL_PORT": "internal_port",
}
"""Every environment variable the gateway reads, and the :class:`Settings` field it sets."""

# Set by `serve --workers` for its workers, not by operators: not shown, not suggested.
INTERNAL: Final = frozenset({"GATEWAY_WORKER_GROUP", "GATEWAY_INTERNAL_PORT"})


def unknown(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``GATEWAY_*`` variables that are not settings, each with the closest real name."""
    known = [name for name in SETTINGS if name not in INTERNAL]
    out = []
    for name in sorted(environ):
        if name.startswith("GATEWAY_") and name not in SETTINGS:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            out.append((name, close[0] if close else None))
    return out


def describe(settings: Any) -> list[tuple[str, str]]:
    """(variable, effective value) for every setting, secrets masked, in a stable order."""
    values = {f.name: getattr(settings, f.name) for f in fields(settings)}
    rows = []
    for name, field in SETTINGS.items():
        if name in INTERNAL:
            continue
        rows.append((name, _shown(values.get(field))))
    return rows


def _shown(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, Secret):
        return "(set, hidden)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        if value and all(isinstance(v, int) for v in value) and len(value) == 2:
            return f"{value[0]}-{value[1]}"
        return ",".join(_shown(v) for v in value) or "(none)"
    if hasattr(value, "urls"):  # an ICE server: its credential stays hidden
        return ",".join(value.urls)
    if isinstance(value, dict):
        import json

        return json.dumps(value, separators=(",", ":"))
    return str(value)
