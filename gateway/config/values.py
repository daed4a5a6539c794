"""Parsing one setting's text: each parser names the variable and what it expects on failure."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any
from urllib.parse import urlsplit

from gateway.config.base import ConfigError, IceServer, Secret


def _secret(value: str | None) -> Secret | None:
    return Secret(value.strip()) if value and value.strip() else None


def _int(name: str, raw: str | None, default: int, lo: int, hi: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(
    name: str, raw: str | None, default: float, lo: float, hi: float, unit: str = "seconds"
) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of {unit}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _bool(name: str, raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _choice(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


def _url(name: str, raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {raw!r}")
    return value


def _addresses(name: str, raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    out: list[str] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(str(ipaddress.ip_address(part)))
        except ValueError:
            raise ConfigError(
                f"{name} must be a comma-separated list of IP addresses, got {part!r}"
            ) from None
    return tuple(out)


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ConfigError(
                "GATEWAY_CORS_ORIGINS must be * or a comma-separated list of origins such as "
                f"https://app.example.com, got {origin!r}"
            )
    return origins or ("*",)


def _port_range(raw: str | None) -> tuple[int, int] | None:
    if raw is None:
        return None
    low, sep, high = raw.partition("-")
    try:
        lo, hi = int(low), int(high if sep else low)
    except ValueError:
        raise ConfigError(
            f"GATEWAY_ICE_PORT_RANGE must look like 40000-40100, got {raw!r}"
        ) from None
    if not 1024 <= lo <= hi <= 65535:
        raise ConfigError(
            f"GATEWAY_ICE_PORT_RANGE must be within 1024-65535 with low <= high, got {raw!r}"
        )
    return lo, hi


def _public_ip(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        raise ConfigError(f"GATEWAY_PUBLIC_IP must be an IP address, got {raw!r}") from None


def _ice_servers(name: str, raw: str | None) -> tuple[IceServer, ...]:
    """JSON as in RTCConfiguration.iceServers, or comma-separated credential-less URLs."""
    if raw is None:
        return ()
    text = raw.strip()
    if not text.startswith("["):
        entries: list[Any] = [{"urls": u.strip()} for u in text.split(",") if u.strip()]
    else:
        try:
            entries = json.loads(text)
        except ValueError:
            raise ConfigError(f"{name} is not valid JSON") from None
        if not isinstance(entries, list):
            raise ConfigError(f"{name} must be a JSON list of {{urls, username, credential}}")
    servers = []
    for entry in entries:
        if not isinstance(entry, dict) or "urls" not in entry:
            raise ConfigError(f"{name}: every entry needs 'urls'")
        urls = entry["urls"]
        urls = (urls,) if isinstance(urls, str) else tuple(urls)
        for url in urls:
            if not isinstance(url, str) or not url.startswith(("stun:", "turn:", "turns:")):
                raise ConfigError(
                    f"{name}: URLs must start with stun:, turn: or turns:, got {url!r}"
                )
        if any(u.startswith("turn") for u in urls) and not (
            entry.get("username") and entry.get("credential")
        ):
            raise ConfigError(f"{name}: TURN servers need a username and a credential")
        credential = entry.get("credential")
        servers.append(
            IceServer(
                urls=urls,
                username=entry.get("username"),
                credential=Secret(str(credential)) if credential else None,
            )
        )
    return tuple(servers)


def _names(raw: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (raw or "").split(",") if p.strip())


def _json_object(name: str, raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigError(
            f"{name} must be a JSON object (a session config), not valid JSON"
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object (a session config)")
    return value


def _redis_url(raw: str | None) -> Secret | None:
    if raw is None:
        return None
    parsed = urlsplit(raw.strip())
    if parsed.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            "GATEWAY_REDIS_URL must be a redis://, rediss:// or unix:// URL "
            "(e.g. redis://:password@redis:6379/0)"
        )
    try:
        port = parsed.port
    except ValueError:
        raise ConfigError("GATEWAY_REDIS_URL has a port that is not a number") from None
    if parsed.scheme != "unix" and not parsed.hostname:
        raise ConfigError("GATEWAY_REDIS_URL names no host (e.g. redis://redis:6379/0)")
    if parsed.scheme == "unix" and not parsed.path:
        raise ConfigError("GATEWAY_REDIS_URL names no socket path (e.g. unix:///run/redis.sock)")
    del port
    database = parsed.path.strip("/") if parsed.scheme != "unix" else ""
    if database and not database.isdigit():
        raise ConfigError(
            "GATEWAY_REDIS_URL's path must be a database number (e.g. redis://redis:6379/0)"
        )
    # The URL may carry a password: it is a secret from here on.
    return Secret(raw.strip())


def _node_name(raw: str | None) -> str | None:
    if raw is None:
        return None
    name = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
        raise ConfigError(
            "GATEWAY_NODE_NAME must be 1-63 letters, digits, '.', '_' or '-', got " + repr(raw)
        )
    return name


def _cluster_secret(raw: str | None) -> Secret | None:
    if raw is None:
        return None
    if len(raw.strip()) < 16:
        raise ConfigError("GATEWAY_CLUSTER_SECRET must be at least 16 characters long")
    return Secret(raw.strip())


def _networks(name: str, raw: str | None) -> tuple[str, ...]:
    out: list[str] = []
    for part in (raw or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(
                f"{name} must be a comma-separated list of addresses or CIDR networks "
                f"(e.g. 10.0.0.0/8,127.0.0.1), got {part!r}"
            ) from None
    return tuple(out)


def _workers(raw: str | None) -> int:
    if raw is None:
        return 1
    if raw.strip().lower() == "auto":
        return 0
    return _int("GATEWAY_WORKERS", raw, 1, 1, 256)
