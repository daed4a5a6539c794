"""Settings, read once at startup from an injectable mapping (``os.environ`` in production).

This package is the only code that knows environment variable names. Everything else receives a
:class:`Settings`. Secrets are wrapped in :class:`Secret` so that no ``repr``, log line or
traceback shows them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from gateway.config.apps import Apps, AppsConfig, read_apps_file
from gateway.config.base import DEFAULT_OPENAI_BASE_URL, ConfigError, IceServer, Secret
from gateway.config.values import (
    _addresses,
    _bool,
    _choice,
    _cluster_secret,
    _float,
    _ice_servers,
    _int,
    _json_object,
    _names,
    _networks,
    _node_name,
    _origins,
    _port_range,
    _public_ip,
    _redis_url,
    _secret,
    _url,
    _workers,
)

__all__ = ["DEFAULT_OPENAI_BASE_URL", "ConfigError", "IceServer", "Secret", "Settings"]


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    openai_api_key: Secret | None = None
    openai_base_url: str = DEFAULT_OPENAI_BASE_URL
    gateway_api_key: Secret | None = None
    # True when GATEWAY_API_KEY was not set and one was generated for this run (emulator mode).
    gateway_api_key_generated: bool = False
    # GATEWAY_APPS: the apps file, and what it held at startup (SIGHUP reads it again).
    apps_file: str | None = None
    apps_config: AppsConfig | None = None
    # Host addresses ICE may offer on each leg; empty means aioice's default (every non-loopback).
    ice_addresses: tuple[str, ...] = ()
    upstream_ice_addresses: tuple[str, ...] = ()
    model: str = "gpt-realtime"
    voice: str = "marin"
    instructions: str | None = None
    client_secret_ttl: int = 600
    client_secret_single_use: bool = True
    # Unused client secrets kept at most (each costs memory until it expires or is used).
    max_client_secrets: int = 100_000
    cors_origins: tuple[str, ...] = ("*",)
    demo_enabled: bool = False
    max_sdp_bytes: int = 64 * 1024
    upstream_timeout: float = 10.0
    log_level: str = "info"
    log_format: str = "auto"
    # How audio crosses the gateway: forwarded as encoded Opus, or decoded and re-encoded.
    media: str = "passthrough"
    max_calls: int = 100
    connect_timeout: float = 20.0
    peer_timeout: float = 6.0
    idle_timeout: float = 600.0
    max_call_duration: float = 3600.0
    # A call outlives its upstream session: a new one is opened under it when the old one
    # expires or fails, seeded with the conversation (passthrough media only).
    continuity: bool = False
    # At most this many tokens (estimated) of the conversation seed a replacement session.
    continuity_replay_tokens: int = 8000
    # A session known to expire is replaced this many seconds before, at a quiet moment.
    continuity_lead: float = 60.0
    # A lone process keeps what each app spent in this SQLite file (Redis does, when set).
    spend_file: str | None = None
    calls_per_minute_per_ip: int = 30
    calls_per_minute_per_token: int = 10
    drain_timeout: float = 30.0
    # (low, high) inclusive UDP port range for every ICE socket; None lets the OS choose.
    ice_port_range: tuple[int, int] | None = None
    # 1:1 NAT: the address browsers are told to send media to.
    public_ip: str | None = None
    ice_servers: tuple[IceServer, ...] = ()
    # "relay": the browser leg uses TURN only (every packet through GATEWAY_ICE_SERVERS).
    ice_transport_policy: str = "all"
    upstream_ice_servers: tuple[IceServer, ...] = ()
    # Server-side session defaults beyond model/voice/instructions (turn detection, transcription…)
    session_defaults: Mapping[str, Any] | None = None
    tools: tuple[str, ...] = ()
    # Where the page at / lives; the source tree's web/ when unset (the image sets /app/web).
    web_dir: str | None = None
    tool_timeout: float = 10.0
    hooks: str | None = None
    transcripts_dir: str | None = None
    # Where calls are recorded (off when unset), and how many days recordings are kept (0: ever).
    recordings_dir: str | None = None
    recordings_retention: float = 30.0
    allowed_client_events: tuple[str, ...] | None = None
    locked_session_fields: tuple[str, ...] = ("instructions", "model")
    max_event_bytes: int = 256 * 1024
    events_per_second: float = 50.0
    response_creates_per_minute: int = 30
    # Shared state for several processes (secrets, the call directory, rate windows).
    redis_url: Secret | None = None
    # This process as the others know it: a name, and where they reach it.
    node_name: str | None = None
    node_address: str | None = None
    # Authenticates requests one gateway process forwards to another.
    cluster_secret: Secret | None = None
    # Proxies whose X-Forwarded-For / Forwarded headers name the real client (CIDRs).
    trusted_proxies: tuple[str, ...] = ()
    # Worker processes sharing the port (serve --workers); 0 means one per usable CPU.
    workers: int = 1
    # Set by serve --workers for its workers: the processes of one host, summed in one scrape,
    # and a port each also serves on, so its siblings can reach it alone.
    worker_group: str = ""
    internal_port: int | None = None

    @property
    def uses_emulator(self) -> bool:
        """No OpenAI key: calls go to the built-in emulator."""
        return self.openai_api_key is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Build settings from ``environ``; ``overrides`` (command-line flags) win over it."""
        env = {k: v for k, v in environ.items() if v != ""}
        openai_key = _secret(env.get("OPENAI_API_KEY"))
        gateway_key = _secret(env.get("GATEWAY_API_KEY"))
        generated = False
        apps_file = env.get("GATEWAY_APPS")
        apps_config = read_apps_file(apps_file) if apps_file is not None else None
        Apps.of(apps_config, gateway_key)  # refuses an app that clashes with GATEWAY_API_KEY
        no_apps = apps_config is None or not apps_config.apps
        if gateway_key is None and openai_key is None and no_apps:
            # Emulator mode spends nothing, so a fresh key per run is safe and saves a step.
            gateway_key = Secret("gk_" + secrets.token_urlsafe(24))
            generated = True
        if openai_key is not None and env.get("OPENAI_API_KEY", "").startswith("ek_"):
            raise ConfigError(
                "OPENAI_API_KEY must be a standard OpenAI API key (sk-…), not an ephemeral ek_ "
                "token: ephemeral tokens expire within minutes"
            )
        ice = _addresses("GATEWAY_ICE_ADDRESSES", env.get("GATEWAY_ICE_ADDRESSES"))
        upstream_ice = _addresses(
            "GATEWAY_UPSTREAM_ICE_ADDRESSES", env.get("GATEWAY_UPSTREAM_ICE_ADDRESSES")
        )
        if not upstream_ice and openai_key is None:
            # The built-in emulator listens on loopback only.
            upstream_ice = ("127.0.0.1",)
        media = _choice(
            "GATEWAY_MEDIA",
            env.get("GATEWAY_MEDIA", "passthrough").lower(),
            ("passthrough", "transcode"),
        )
        continuity = _bool(
            "GATEWAY_CONTINUITY", env.get("GATEWAY_CONTINUITY"), media == "passthrough"
        )
        if continuity and media != "passthrough":
            raise ConfigError(
                "GATEWAY_CONTINUITY=true needs GATEWAY_MEDIA=passthrough: a transcoded call "
                "cannot change its upstream session"
            )
        values: dict[str, Any] = {
            "host": env.get("GATEWAY_HOST", cls.host),
            "port": _int("GATEWAY_PORT", env.get("GATEWAY_PORT"), cls.port, 0, 65535),
            "openai_api_key": openai_key,
            "openai_base_url": _url(
                "OPENAI_BASE_URL", env.get("OPENAI_BASE_URL", DEFAULT_OPENAI_BASE_URL)
            ),
            "gateway_api_key": gateway_key,
            "gateway_api_key_generated": generated,
            "apps_file": apps_file,
            "apps_config": apps_config,
            "ice_addresses": ice,
            "upstream_ice_addresses": upstream_ice,
            "model": env.get("GATEWAY_MODEL", cls.model),
            "voice": env.get("GATEWAY_VOICE", cls.voice),
            "instructions": env.get("GATEWAY_INSTRUCTIONS"),
            "client_secret_ttl": _int(
                "GATEWAY_CLIENT_SECRET_TTL", env.get("GATEWAY_CLIENT_SECRET_TTL"), 600, 10, 7200
            ),
            "client_secret_single_use": _bool(
                "GATEWAY_CLIENT_SECRET_SINGLE_USE",
                env.get("GATEWAY_CLIENT_SECRET_SINGLE_USE"),
                True,
            ),
            "max_client_secrets": _int(
                "GATEWAY_MAX_CLIENT_SECRETS",
                env.get("GATEWAY_MAX_CLIENT_SECRETS"),
                100_000,
                1,
                10_000_000,
            ),
            "cors_origins": _origins(env.get("GATEWAY_CORS_ORIGINS", "*")),
            "demo_enabled": _bool("GATEWAY_DEMO", env.get("GATEWAY_DEMO"), openai_key is None),
            "max_sdp_bytes": _int(
                "GATEWAY_MAX_SDP_BYTES", env.get("GATEWAY_MAX_SDP_BYTES"), 64 * 1024, 1024, 1 << 20
            ),
            "upstream_timeout": _float(
                "GATEWAY_UPSTREAM_TIMEOUT", env.get("GATEWAY_UPSTREAM_TIMEOUT"), 10.0, 0.1, 120.0
            ),
            "log_level": _choice(
                "GATEWAY_LOG_LEVEL",
                env.get("GATEWAY_LOG_LEVEL", "info").lower(),
                ("debug", "info", "warning", "error"),
            ),
            "log_format": _choice(
                "GATEWAY_LOG_FORMAT",
                env.get("GATEWAY_LOG_FORMAT", "auto").lower(),
                ("auto", "json", "console"),
            ),
            "media": media,
            "max_calls": _int("GATEWAY_MAX_CALLS", env.get("GATEWAY_MAX_CALLS"), 100, 1, 100000),
            "connect_timeout": _float(
                "GATEWAY_CONNECT_TIMEOUT", env.get("GATEWAY_CONNECT_TIMEOUT"), 20.0, 1.0, 300.0
            ),
            "peer_timeout": _float(
                "GATEWAY_PEER_TIMEOUT", env.get("GATEWAY_PEER_TIMEOUT"), 6.0, 1.0, 600.0
            ),
            "idle_timeout": _float(
                "GATEWAY_IDLE_TIMEOUT", env.get("GATEWAY_IDLE_TIMEOUT"), 600.0, 1.0, 86400.0
            ),
            # With continuity a call is not bound by the upstream's 60 minutes; a cap stays.
            "max_call_duration": _float(
                "GATEWAY_MAX_CALL_DURATION",
                env.get("GATEWAY_MAX_CALL_DURATION"),
                4 * 3600.0 if continuity else 3600.0,
                1.0,
                86400.0,
            ),
            "continuity": continuity,
            "spend_file": env.get("GATEWAY_SPEND_FILE"),
            "continuity_replay_tokens": _int(
                "GATEWAY_CONTINUITY_REPLAY_TOKENS",
                env.get("GATEWAY_CONTINUITY_REPLAY_TOKENS"),
                8000,
                0,
                1_000_000,
            ),
            "continuity_lead": _float(
                "GATEWAY_CONTINUITY_LEAD", env.get("GATEWAY_CONTINUITY_LEAD"), 60.0, 0.0, 3600.0
            ),
            "calls_per_minute_per_ip": _int(
                "GATEWAY_CALLS_PER_MINUTE_PER_IP",
                env.get("GATEWAY_CALLS_PER_MINUTE_PER_IP"),
                30,
                1,
                1000000,
            ),
            "calls_per_minute_per_token": _int(
                "GATEWAY_CALLS_PER_MINUTE_PER_TOKEN",
                env.get("GATEWAY_CALLS_PER_MINUTE_PER_TOKEN"),
                10,
                1,
                1000000,
            ),
            "drain_timeout": _float(
                "GATEWAY_DRAIN_TIMEOUT", env.get("GATEWAY_DRAIN_TIMEOUT"), 30.0, 0.0, 86400.0
            ),
            "ice_port_range": _port_range(env.get("GATEWAY_ICE_PORT_RANGE")),
            "public_ip": _public_ip(env.get("GATEWAY_PUBLIC_IP")),
            "ice_servers": _ice_servers("GATEWAY_ICE_SERVERS", env.get("GATEWAY_ICE_SERVERS")),
            "ice_transport_policy": _choice(
                "GATEWAY_ICE_TRANSPORT_POLICY",
                env.get("GATEWAY_ICE_TRANSPORT_POLICY", "all").lower(),
                ("all", "relay"),
            ),
            "upstream_ice_servers": _ice_servers(
                "GATEWAY_UPSTREAM_ICE_SERVERS", env.get("GATEWAY_UPSTREAM_ICE_SERVERS")
            ),
            "session_defaults": _json_object("GATEWAY_SESSION", env.get("GATEWAY_SESSION")),
            "tools": _names(env.get("GATEWAY_TOOLS")),
            "web_dir": env.get("GATEWAY_WEB_DIR"),
            "tool_timeout": _float(
                "GATEWAY_TOOL_TIMEOUT", env.get("GATEWAY_TOOL_TIMEOUT"), 10.0, 0.1, 600.0
            ),
            "hooks": env.get("GATEWAY_HOOKS"),
            "transcripts_dir": env.get("GATEWAY_TRANSCRIPTS_DIR"),
            "recordings_dir": env.get("GATEWAY_RECORDINGS_DIR"),
            "recordings_retention": _float(
                "GATEWAY_RECORDINGS_RETENTION",
                env.get("GATEWAY_RECORDINGS_RETENTION"),
                30.0,
                0.0,
                36500.0,
                unit="days",
            ),
            "allowed_client_events": _names(env["GATEWAY_ALLOWED_CLIENT_EVENTS"])
            if "GATEWAY_ALLOWED_CLIENT_EVENTS" in env
            else None,
            "locked_session_fields": _names(
                env.get("GATEWAY_LOCKED_SESSION_FIELDS", "instructions,model")
            )
            if env.get("GATEWAY_LOCKED_SESSION_FIELDS", "x").strip().lower() != "none"
            else (),
            "max_event_bytes": _int(
                "GATEWAY_MAX_EVENT_BYTES",
                env.get("GATEWAY_MAX_EVENT_BYTES"),
                256 * 1024,
                256,
                16 * 1024 * 1024,
            ),
            "events_per_second": _float(
                "GATEWAY_EVENTS_PER_SECOND",
                env.get("GATEWAY_EVENTS_PER_SECOND"),
                50.0,
                1.0,
                100000.0,
            ),
            "response_creates_per_minute": _int(
                "GATEWAY_RESPONSE_CREATES_PER_MINUTE",
                env.get("GATEWAY_RESPONSE_CREATES_PER_MINUTE"),
                30,
                1,
                100000,
            ),
            "redis_url": _redis_url(env.get("GATEWAY_REDIS_URL")),
            "node_name": _node_name(env.get("GATEWAY_NODE_NAME")),
            "node_address": _url("GATEWAY_NODE_ADDRESS", env["GATEWAY_NODE_ADDRESS"])
            if "GATEWAY_NODE_ADDRESS" in env
            else None,
            "cluster_secret": _cluster_secret(env.get("GATEWAY_CLUSTER_SECRET")),
            "trusted_proxies": _networks(
                "GATEWAY_TRUSTED_PROXIES", env.get("GATEWAY_TRUSTED_PROXIES")
            ),
            "workers": _workers(env.get("GATEWAY_WORKERS")),
            "worker_group": env.get("GATEWAY_WORKER_GROUP", ""),
            "internal_port": _int(
                "GATEWAY_INTERNAL_PORT", env["GATEWAY_INTERNAL_PORT"], 0, 1, 65535
            )
            if "GATEWAY_INTERNAL_PORT" in env
            else None,
        }
        names = {f.name for f in fields(cls)}
        for key, value in overrides.items():
            if key not in names:
                raise ConfigError(f"unknown setting {key!r}")
            if value is not None:
                values[key] = value
        return cls(**values)
