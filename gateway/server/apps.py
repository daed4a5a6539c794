"""Apps at the web layer: what an app's calls may ask for, and reloading the apps file.

A reload (SIGHUP) swaps the apps and the prices at once for new requests; live calls go on as
they started. A file that does not parse changes nothing: the old apps stay, and one line
(``apps.reload_refused``) says why, never with a key in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import structlog

from gateway.config import ConfigError
from gateway.config.apps import App, Apps, read_apps_file
from gateway.errors import InvalidRequest
from gateway.policy import PolicyConfig
from gateway.pricing import PriceTable
from gateway.protocol.paths import MISSING, get_path
from gateway.server.state import GatewayState

log = structlog.get_logger(__name__)

_VOICE = ("audio", "output", "voice")


def app_policy(base: PolicyConfig, app: App) -> PolicyConfig | None:
    """The client-event policy of ``app``'s calls, when it is not the gateway's (``None``).

    An app held to a list of models or voices has them locked too: the list is checked when a
    call opens, and a browser must not change them after."""
    locked = list(
        app.locked_session_fields
        if app.locked_session_fields is not None
        else base.locked_session_fields
    )
    if app.models is not None and "model" not in locked:
        locked.append("model")
    if app.voices is not None and "audio.output.voice" not in locked:
        locked.append("audio.output.voice")
    if tuple(locked) == base.locked_session_fields:
        return None
    return replace(base, locked_session_fields=tuple(locked))


def check_allowed(app: App, session: Mapping[str, Any]) -> None:
    """400 when ``session`` asks for a model or voice ``app`` may not use."""
    model = session.get("model")
    if app.models is not None and model not in app.models:
        raise InvalidRequest(
            f"This app may not use the model {str(model)[:100]!r}; it may use "
            + ", ".join(app.models)
            + ".",
            code="invalid_value",
            param="session.model",
        )
    voice = get_path(session, _VOICE)
    if app.voices is not None and voice is not MISSING and voice not in app.voices:
        raise InvalidRequest(
            f"This app may not use the voice {str(voice)[:100]!r}; it may use "
            + ", ".join(app.voices)
            + ".",
            code="invalid_value",
            param="session.audio.output.voice",
        )


async def reload_apps(state: GatewayState) -> bool:
    """Read ``GATEWAY_APPS`` again and use it from now on; on any mistake keep the apps (and
    prices) in use. Whether the new file was taken."""
    path = state.settings.apps_file
    if path is None:
        log.info("apps.reload_skipped", reason="GATEWAY_APPS is not set")
        return False
    try:
        # Off the event loop: the read is bounded, but a slow disk must not stall calls.
        config = await asyncio.to_thread(read_apps_file, path)
        apps = Apps.of(config, state.settings.gateway_api_key)
    except ConfigError as exc:
        log.error("apps.reload_refused", reason=str(exc), apps=len(state.apps))
        return False
    state.apps = apps
    state.services = replace(state.services, prices=PriceTable(config.prices))
    log.info("apps.reloaded", apps=len(apps), prices=len(config.prices))
    return True
