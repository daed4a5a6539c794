"""``create_app()``: the aiohttp application, its routes, middlewares and lifecycle."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.budgets import BudgetKeeper
from gateway.call.outcomes import EndReason
from gateway.call.registry import CallRegistry
from gateway.call.setup import CallServices
from gateway.config import Settings
from gateway.config.apps import Apps
from gateway.hooks import load_hooks
from gateway.metrics import Metrics
from gateway.policy import PolicyConfig
from gateway.pricing import PriceTable
from gateway.protocol.catalog import CLIENT_EVENT_TYPES
from gateway.recording import Recordings
from gateway.rtc import compat, guard
from gateway.server import (
    demo,
    live,
    live_content,
    live_sideband,
    probes,
    realtime,
    recordings,
    sideband,
    translations,
    usage,
)
from gateway.server.apps import reload_apps
from gateway.server.cluster import cluster, node_of
from gateway.server.heads import HEADS, HeadDeadline
from gateway.server.middlewares import (
    cors_middleware,
    errors_middleware,
    headers_middleware,
    metrics_middleware,
    shape_bare_errors,
)
from gateway.server.proxies import proxies_middleware
from gateway.server.state import STATE, GatewayState
from gateway.stores.base import Stores
from gateway.stores.memory import memory_stores
from gateway.stores.redis import RedisHealth, redis_client, redis_stores
from gateway.stores.redis_spend import RedisSpendLedger
from gateway.stores.spend import FileSpendLedger
from gateway.tools import ToolRegistry, load_tool_modules
from gateway.upstream.base import UpstreamFactory
from gateway.upstream.factory import realtime_upstreams

log = structlog.get_logger(__name__)

# Room for a maximal SDP inside multipart framing; larger bodies are refused outright.
BODY_SLACK = 16 * 1024


def services_from(settings: Settings, registry: CollectorRegistry | None = None) -> CallServices:
    """Everything calls share, from the settings; raises ConfigError for bad tools/hooks."""
    allowed = (
        frozenset(settings.allowed_client_events)
        if settings.allowed_client_events is not None
        else CLIENT_EVENT_TYPES
    )
    metrics = Metrics(registry)
    prices = settings.apps_config.prices if settings.apps_config is not None else None
    return CallServices(
        metrics=metrics,
        policy=PolicyConfig(
            allowed_client_events=allowed,
            locked_session_fields=settings.locked_session_fields,
            max_event_bytes=settings.max_event_bytes,
            events_per_second=settings.events_per_second,
            response_creates_per_minute=settings.response_creates_per_minute,
        ),
        hooks=load_hooks(settings.hooks),
        tools=load_tool_modules(settings.tools) if settings.tools else ToolRegistry(),
        tool_timeout=settings.tool_timeout,
        transcripts_dir=Path(settings.transcripts_dir) if settings.transcripts_dir else None,
        recordings=Recordings(
            Path(settings.recordings_dir),
            metrics=metrics,
            retention_days=settings.recordings_retention,
        )
        if settings.recordings_dir
        else None,
        prices=PriceTable(prices),
    )


def create_app(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    upstreams: UpstreamFactory | None = None,
    stores: Stores | None = None,
) -> web.Application:
    """The gateway as an aiohttp application. ``upstreams`` makes calls' upstream sessions
    (default: OpenAI Realtime, or the built-in emulator without ``OPENAI_API_KEY``);
    ``stores`` holds what requests share (default: this process's memory)."""
    compat.install()
    if stores is None:
        stores = stores_for(settings)
    services = services_from(settings, registry)
    services = dataclasses.replace(services, budgets=BudgetKeeper(stores.spend, services.metrics))
    state = GatewayState(
        settings=settings,
        stores=stores,
        calls=CallRegistry(stores.calls, node_of(settings)),
        services=services,
        apps=Apps.of(settings.apps_config, settings.gateway_api_key),
    )
    heads = HeadDeadline()
    app = web.Application(
        middlewares=[
            heads.middleware,
            # First: every later middleware and handler sees the client, not the proxy.
            proxies_middleware(settings.trusted_proxies),
            metrics_middleware,
            # Outside the others, so CORS refusals, preflights and error bodies get them too.
            headers_middleware,
            cors_middleware(settings.cors_origins),
            errors_middleware,
        ],
        client_max_size=settings.max_sdp_bytes + BODY_SLACK,
        # Bodies are inflated by gateway.server.body, under its size limit and with errors of
        # ours; aiohttp's parser would answer a broken deflate stream itself (fuzz F13).
        handler_args={"auto_decompress": False},
    )
    app[STATE] = state
    app[HEADS] = heads
    app.on_response_prepare.append(shape_bare_errors)
    state.metrics.set_capacity(settings.max_calls)
    state.metrics.watch_audio(lambda: [call.audio_counts() for call in state.calls])
    state.metrics.watch_jitter(lambda: [call.jitter for call in state.calls])
    state.metrics.watch_media_drops(guard.DROPS.snapshot)
    realtime.add_routes(app)
    live.add_routes(app)
    translations.add_routes(app)
    usage.add_routes(app)
    live_sideband.add_routes(app)
    live_content.add_routes(app)
    sideband.add_routes(app)
    recordings.add_routes(app)
    probes.add_routes(app)
    demo.add_routes(
        app,
        demo=settings.demo_enabled,
        web_dir=Path(settings.web_dir) if settings.web_dir else demo.DEFAULT_WEB_DIR,
    )
    # Cleanup runs in reverse: calls end (and hang up upstream) before the client goes away.
    app.cleanup_ctx.append(_stores)
    app.cleanup_ctx.append(_upstreams(upstreams))
    app.cleanup_ctx.append(cluster)
    app.cleanup_ctx.append(recordings.lifecycle)
    app.cleanup_ctx.append(_calls)
    return app


def _upstreams(factory: UpstreamFactory | None) -> Any:
    async def upstreams(app: web.Application) -> AsyncIterator[None]:
        state = app[STATE]
        if factory is not None:
            state.upstreams = factory
            yield
            return
        async with realtime_upstreams(
            state.settings, state.realtime_options, state.metrics
        ) as made:
            state.upstreams = made
            try:
                yield
            finally:
                state.upstreams = None

    return upstreams


def stores_for(settings: Settings) -> Stores:
    """Redis when GATEWAY_REDIS_URL is set (ConfigError if it is unusable); else memory."""
    if settings.redis_url is None:
        stores = memory_stores(
            single_use=settings.client_secret_single_use, max_secrets=settings.max_client_secrets
        )
        if settings.spend_file is not None:
            # One process alone: its spend survives restarts in this file.
            stores = dataclasses.replace(stores, spend=FileSpendLedger(Path(settings.spend_file)))
        return stores
    client = redis_client(settings.redis_url)
    stores = redis_stores(
        client,
        single_use=settings.client_secret_single_use,
        max_secrets=settings.max_client_secrets,
    )
    assert isinstance(stores.health, RedisHealth)
    return dataclasses.replace(stores, spend=RedisSpendLedger(client, stores.health))


async def _stores(app: web.Application) -> AsyncIterator[None]:
    """Check the stores once at startup (an unreachable Redis is a warning: readiness says it,
    and the gateway recovers when it returns); close their connections at the end."""
    stores = app[STATE].stores
    if stores.shared and not await stores.health.check():
        log.warning("store.unreachable_at_startup")
    yield
    await stores.close()


async def _calls(app: web.Application) -> AsyncIterator[None]:
    yield
    state = app[STATE]
    await state.calls.close_all(EndReason.SHUTDOWN)
    await state.services.background.aclose()


def reload_on_signal(app: web.Application) -> None:
    """SIGHUP: read GATEWAY_APPS again, in the background (the calls' task set owns it)."""
    state = app[STATE]

    async def reload() -> None:
        await reload_apps(state)

    state.services.background.spawn(reload(), name="apps-reload")


async def drain(app: web.Application, grace: float) -> None:
    """Stop taking calls, let live ones finish for up to ``grace`` s, then end the rest.

    Readiness turns false at once and new calls get 503 + Retry-After, so a load balancer moves
    traffic elsewhere while the listener stays up. Calls still live at the deadline end with an
    ``error`` event to the browser, and their upstream calls are hung up.
    """
    state = app[STATE]
    state.draining = True
    state.metrics.set_draining(True)
    log.info("gateway.draining", calls=len(state.calls), grace_s=grace)
    deadline = asyncio.get_running_loop().time() + grace
    while len(state.calls) + state.pending > 0:  # noqa: ASYNC110  # calls end on their own
        if asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(0.2)
    remaining = len(state.calls)
    await state.calls.close_all(EndReason.SHUTDOWN)
    log.info("gateway.drained", ended_by_shutdown=remaining)
