"""What the web layer shares across requests, behind one typed application key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.calls import CallRegistry
from gateway.config import Settings
from gateway.emulator import Emulator
from gateway.protocol.session import deep_merge, default_session
from gateway.relay import LegOptions
from gateway.tokens import ClientSecretStore
from gateway.upstream.client import UpstreamClient


@dataclass
class GatewayState:
    settings: Settings
    secrets: ClientSecretStore
    calls: CallRegistry = field(default_factory=CallRegistry)
    # Set by the upstream cleanup context once the HTTP client (and the emulator) are up.
    client: UpstreamClient | None = None
    upstream_base_url: str = ""
    emulator: Emulator | None = None

    @property
    def leg_options(self) -> LegOptions:
        return LegOptions(
            ice_addresses=self.settings.ice_addresses,
            upstream_ice_addresses=self.settings.upstream_ice_addresses,
            connect_timeout=self.settings.connect_timeout,
            media="transcode" if self.settings.media == "transcode" else "passthrough",
        )

    def resolve_session(self, *overrides: dict[str, Any] | None) -> dict[str, Any]:
        """The server's defaults with each override merged on top, later ones winning."""
        s = self.settings
        session = default_session(s.model, s.voice, s.instructions)
        for override in overrides:
            if override:
                session = deep_merge(session, override)
        return session


STATE = web.AppKey("gateway", GatewayState)
