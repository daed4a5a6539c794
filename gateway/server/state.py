"""What the web layer shares across requests, behind one typed application key."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.budgets import budget_of, end_user
from gateway.call.registry import CallRegistry
from gateway.call.setup import CallServices, LegOptions
from gateway.config import Settings
from gateway.config.apps import DEFAULT_APP, App, Apps
from gateway.emulator import Emulator
from gateway.errors import RateLimited, Unavailable
from gateway.metrics import Metrics
from gateway.protocol.session import deep_merge, resolve_session, with_server_tools
from gateway.rtc import ice
from gateway.stores.base import Stores
from gateway.upstream.base import UpstreamFactory

if TYPE_CHECKING:
    from gateway.server.forward import Forwarder
from gateway.upstream.factory import RealtimeUpstreams
from gateway.upstream.realtime import RealtimeOptions

# After a call found no free media port, readiness stays false this long (seconds), even if the
# sockets this process counts say otherwise: another process may hold ports of the range.
PORTS_RECOVERY = 5.0


@dataclass
class GatewayState:
    settings: Settings
    stores: Stores
    calls: CallRegistry
    services: CallServices = field(default_factory=CallServices)
    draining: bool = False
    ports: ice.PortUsage = field(default_factory=ice.PortUsage)
    # Calls being set up (offer received, answer not yet sent): they count against capacity.
    pending: int = 0
    # Where calls' upstream sessions come from; set once the app has started.
    upstreams: UpstreamFactory | None = None
    # Sends requests about calls other processes own to them; set once the app has started.
    forwarder: Forwarder | None = None
    # Whether another worker of this host had room at the last heartbeat: a full worker behind
    # the shared port passes new calls on, so the host is still ready.
    group_has_room: bool = False
    # Who may call (GATEWAY_API_KEY as "default", and GATEWAY_APPS); replaced on reload.
    apps: Apps = field(default_factory=Apps)
    # Calls of each app being set up (admitted, not yet running): they count against its
    # max_calls.
    app_pending: dict[str, int] = field(default_factory=dict)

    @property
    def emulator(self) -> Emulator | None:
        """The built-in emulator, when calls go to it."""
        made = self.upstreams
        return made.emulator if isinstance(made, RealtimeUpstreams) else None

    @property
    def live_upstreams(self) -> UpstreamFactory | None:
        """Where Live sessions' upstream sessions come from, when the upstream speaks Live."""
        live = getattr(self.upstreams, "live", None)
        return live if callable(live) else None

    @property
    def translation_upstreams(self) -> UpstreamFactory | None:
        """Where translation calls' upstream sessions come from, when the upstream has them."""
        translation = getattr(self.upstreams, "translation", None)
        return translation if callable(translation) else None

    @property
    def metrics(self) -> Metrics:
        return self.services.metrics

    async def check_demo_rate(self, ip: str | None) -> None:
        """429 (with Retry-After) when one address mints demo secrets faster than it may call:
        demo secrets are minted without credentials."""
        limit = self.settings.calls_per_minute_per_ip
        wait = await self.stores.rates.hit("demo_ip", ip or "unknown", limit)
        if wait is not None:
            raise RateLimited(
                f"Too many demo calls from this address: at most {limit} a minute. Retry later.",
                retry_after=max(1, round(wait)),
            )

    async def check_rate(self, ip: str | None, token_digest: bytes | None) -> None:
        """429 (with Retry-After) when a client IP or client secret opens calls too fast."""
        s = self.settings
        for scope, key, limit, what in (
            ("calls_ip", ip, s.calls_per_minute_per_ip, "from this address"),
            (
                "calls_secret",
                token_digest.hex() if token_digest else None,
                s.calls_per_minute_per_token,
                "with this secret",
            ),
        ):
            if key is None:
                continue
            wait = await self.stores.rates.hit(scope, key, limit)
            if wait is not None:
                raise RateLimited(
                    f"Too many calls {what}: at most {limit} a minute. Retry later.",
                    retry_after=max(1, round(wait)),
                )

    def app_named(self, name: str) -> App | None:
        """The app a client secret was minted for, if it is still configured."""
        app = self.apps.get(name)
        if app is None and name == DEFAULT_APP:
            # The demo page's secrets are the gateway's own: without GATEWAY_API_KEY there is
            # no "default" app to hold them to, and nothing to limit.
            return App(name=DEFAULT_APP, key_digest=bytes(32))
        return app

    async def check_app_rate(self, app: App) -> None:
        """429 (with Retry-After) when ``app`` opens calls faster than its calls_per_minute."""
        limit = app.calls_per_minute
        if limit is None:
            return
        wait = await self.stores.rates.hit("calls_app", app.name, limit)
        if wait is not None:
            raise RateLimited(
                f"Too many calls for app '{app.name}': at most {limit} a minute. Retry later.",
                retry_after=max(1, round(wait)),
            )

    def app_calls(self, name: str) -> int:
        """Calls of app ``name`` in this process: running, or being set up."""
        running = sum(1 for call in self.calls if call.request.app == name)
        return running + self.app_pending.get(name, 0)

    def claim_app_slot(self, app: App) -> None:
        """Take one of ``app``'s max_calls for a call about to be set up: 429 when none is
        free. Give it back with :meth:`release_app_slot` once the call runs (it is then counted
        among the app's calls) or has failed.

        No await between the count and the claim: concurrent setups cannot both take the
        last one."""
        limit = app.max_calls
        if limit is not None and self.app_calls(app.name) >= limit:
            raise RateLimited(
                f"Too many concurrent calls for app '{app.name}': at most {limit}. Retry when "
                "one has ended.",
                retry_after=2,
            )
        self.app_pending[app.name] = self.app_pending.get(app.name, 0) + 1

    async def check_budget(self, app: App, session: Mapping[str, Any] | None) -> None:
        """429 ``insufficient_quota`` if ``app`` (or the end user ``session`` names) has spent
        a budget."""
        budget = budget_of(app)
        if budget.limited and self.services.budgets is not None:
            await self.services.budgets.check(app.name, budget, end_user(session))

    def release_app_slot(self, app: App) -> None:
        left = self.app_pending.get(app.name, 0) - 1
        if left > 0:
            self.app_pending[app.name] = left
        else:
            self.app_pending.pop(app.name, None)

    def check_capacity(self) -> None:
        """503 (with Retry-After) while draining or full; setups in flight count as calls."""
        if self.draining:
            raise Unavailable(
                "The gateway is shutting down and takes no new calls; retry on another instance.",
                code="draining",
                retry_after=5,
            )
        if len(self.calls) + self.pending >= self.settings.max_calls:
            raise Unavailable(
                f"The gateway is at capacity ({self.settings.max_calls} calls); retry shortly.",
                code="at_capacity",
                retry_after=2,
            )
        if not self.media_ports_free():
            # Known before anything is dialled: no upstream session is opened for nothing.
            low, high = self.settings.ice_port_range or (0, 0)
            raise Unavailable(
                f"No free UDP port for media in GATEWAY_ICE_PORT_RANGE ({low}-{high}); "
                "retry shortly.",
                code="ice_ports_exhausted",
                retry_after=2,
            )

    @property
    def ready(self) -> bool:
        return self.not_ready_because is None

    @property
    def not_ready_because(self) -> str | None:
        """Why a load balancer should send new calls elsewhere now (None: it should not)."""
        if self.draining:
            return "draining"
        if not self.stores.health.healthy:
            return "store_unavailable"
        full = len(self.calls) + self.pending >= self.settings.max_calls
        reason = "at_capacity" if full else None if self.media_ports_free() else "no_media_ports"
        if reason is not None and self.group_has_room:
            return None  # a worker of this host has room: the call is passed to it
        return reason

    def has_room(self) -> bool:
        """Could take one more call (capacity and media ports; drain and store aside)."""
        return len(self.calls) + self.pending < self.settings.max_calls and self.media_ports_free()

    async def sibling_with_room(self) -> str | None:
        """The address of another process that had room at its last heartbeat: one of this
        host's workers first, else any (None: none, or the stores are not shared)."""
        if not self.stores.shared:
            return None
        try:
            nodes = await self.stores.nodes.nodes()
        except Exception:
            return None
        me, group = self.calls.node.name, self.settings.worker_group
        candidates = [n for n in nodes if n.name != me and n.room and n.address]
        candidates.sort(key=lambda n: (not group or n.group != group, n.name))
        return candidates[0].address if candidates else None

    def media_ports_free(self) -> bool:
        """Whether GATEWAY_ICE_PORT_RANGE has room for one more call's sockets."""
        span = self.settings.ice_port_range
        if span is None:
            return True
        exhausted = self.ports.exhausted_at
        if exhausted is not None and time.monotonic() - exhausted < PORTS_RECOVERY:
            return False
        size = span[1] - span[0] + 1
        return size - self.ports.in_use() >= self.ports_per_call

    @cached_property
    def ports_per_call(self) -> int:
        # The browser leg binds one socket per host address it offers.
        return max(1, len(self.settings.ice_addresses or ice.default_host_addresses()))

    @cached_property
    def leg_options(self) -> LegOptions:
        # Settings never change after startup: built once, not per call.
        return LegOptions(
            ice_addresses=self.settings.ice_addresses,
            connect_timeout=self.settings.connect_timeout,
            peer_timeout=self.settings.peer_timeout,
            idle_timeout=self.settings.idle_timeout,
            max_duration=self.settings.max_call_duration,
            continuity=self.settings.continuity,
            replay_tokens=self.settings.continuity_replay_tokens,
            continuity_lead=self.settings.continuity_lead,
            ice_port_range=self.settings.ice_port_range,
            public_ip=self.settings.public_ip,
            ice_servers=self.settings.ice_servers,
            relay_only=self.settings.ice_transport_policy == "relay",
            media="transcode" if self.settings.media == "transcode" else "passthrough",
            port_usage=self.ports,
        )

    @cached_property
    def realtime_options(self) -> RealtimeOptions:
        """How the upstream leg gathers (OpenAI Realtime over WebRTC)."""
        return RealtimeOptions(
            ice_addresses=self.settings.upstream_ice_addresses,
            ice_servers=self.settings.upstream_ice_servers,
        )

    def resolve_session(
        self, *overrides: dict[str, Any] | None, app: App | None = None
    ) -> dict[str, Any]:
        """The server's defaults (the app's over the gateway's) with each override merged on
        top, later ones winning."""
        s = self.settings
        defaults = s.session_defaults
        if app is not None and app.session:
            defaults = deep_merge(defaults or {}, app.session)
        return resolve_session(s.model, s.voice, s.instructions, defaults, *overrides)

    def upstream_session(
        self, *overrides: dict[str, Any] | None, app: App | None = None
    ) -> dict[str, Any]:
        """The session sent upstream: :meth:`resolve_session` plus the server's tools."""
        return with_server_tools(
            self.resolve_session(*overrides, app=app), self.services.tools.definitions()
        )


STATE = web.AppKey("gateway", GatewayState)
