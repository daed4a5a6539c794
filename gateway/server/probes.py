"""What operators and orchestrators ask: liveness, readiness and the Prometheus scrape."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.server.state import STATE


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers. Liveness probes use this."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready for new calls: not draining, below capacity, media ports free. Load balancers
    use this."""
    state = request.app[STATE]
    reason = state.not_ready_because
    body = {
        "status": reason or "ready",
        "calls": len(state.calls),
        "capacity": state.settings.max_calls,
    }
    return web.json_response(body, status=200 if reason is None else 503)


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[STATE].metrics.registry
    response = web.Response(body=generate_latest(registry))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
