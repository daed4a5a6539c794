"""What ``serve`` says when it starts: what it relays to, where, and what is missing.

Printed, not logged: the log redactor would mask the generated gateway key, and in emulator
mode that key guards nothing that costs money.
"""

from __future__ import annotations

from gateway import __version__
from gateway.config import Settings

_ANY = ("", "0.0.0.0", "::")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def page_url(settings: Settings, primary_address: str | None = None) -> str:
    """The URL to open: a reachable address, not 0.0.0.0."""
    host = settings.host
    if host in _ANY:
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/"


def banner(settings: Settings, *, workers: int = 1, primary_address: str | None = None) -> str:
    lines = [f"realtime-gateway {__version__}"]
    if settings.uses_emulator:
        lines.append(
            "  upstream:     the built-in Realtime emulator (a test double, not a model): set "
            "OPENAI_API_KEY to relay to OpenAI"
        )
    else:
        lines.append(f"  upstream:     OpenAI at {settings.openai_base_url}")
    url = page_url(settings)
    lines.append(f"  listening:    {url}" + (f" ({workers} workers)" if workers > 1 else ""))
    if settings.host in _ANY:
        other = f"http://{primary_address}:{settings.port}/" if primary_address else "this host"
        lines.append(
            f"                on every interface; from other machines: {other} (browsers grant "
            "the microphone only on https or localhost: put a TLS proxy in front, or use an SSH "
            "tunnel to localhost)"
        )
    if settings.demo_enabled:
        mode = "" if settings.uses_emulator else " (demo secrets for browsers on this machine only)"
        lines.append(f"  demo page:    {url}{mode}")
    elif settings.uses_emulator:
        lines.append("  demo page:    off (GATEWAY_DEMO=false)")
    else:
        lines.append(
            "  demo page:    off with a real key; GATEWAY_DEMO=true serves it to this machine "
            "only, for trials"
        )
    key = settings.gateway_api_key
    apps = settings.apps_config.apps if settings.apps_config is not None else ()
    if apps:
        names = ", ".join(app.name for app in apps[:5]) + (", …" if len(apps) > 5 else "")
        lines.append(f"  apps:         {len(apps)} from GATEWAY_APPS ({names})")
    if key is not None and settings.gateway_api_key_generated:
        lines.append(
            f"  gateway key:  {key.reveal()}  (generated for this run; set GATEWAY_API_KEY "
            "to fix it)"
        )
    elif key is not None:
        lines.append("  gateway key:  set (GATEWAY_API_KEY)")
    elif not apps:
        lines.append(
            "  gateway key:  MISSING: your backend cannot mint client secrets; set "
            "GATEWAY_API_KEY (e.g. openssl rand -hex 24)"
        )
    lines.append(
        "  shared store: Redis (GATEWAY_REDIS_URL)"
        if settings.redis_url is not None
        else "  shared store: this process's memory"
    )
    if settings.recordings_dir:
        kept = (
            f"kept {settings.recordings_retention:g} days"
            if settings.recordings_retention > 0
            else "kept until deleted"
        )
        lines.append(
            f"  recording:    on, to {settings.recordings_dir} ({kept}); tell your "
            "users their calls are recorded"
        )
    lines.append("  settings:     realtime-gateway config shows them all; README, Configuration")
    return "\n".join(lines)
