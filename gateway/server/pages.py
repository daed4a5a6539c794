"""The page at ``/``, its static files, health, and the demo token endpoint."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.server import static
from gateway.server.state import STATE

# The page lives beside the package in the source tree (and at /app/web in the image).
DEFAULT_WEB_DIR = Path(__file__).resolve().parents[2] / "web"


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


async def demo_token(request: web.Request) -> web.Response:
    """Mint a client secret for the demo page, server-side, so the gateway key stays here.

    On by default only on the emulator, where a call costs nothing (GATEWAY_DEMO).
    """
    state = request.app[STATE]
    state.check_demo_rate(request.remote)
    token, secret = state.secrets.mint({}, state.settings.client_secret_ttl)
    return web.json_response(
        {"value": token, "expires_at": secret.expires_at, "session": state.resolve_session()}
    )


def add_routes(app: web.Application, *, demo: bool, web_dir: Path = DEFAULT_WEB_DIR) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if demo:
        app.router.add_post("/demo/token", demo_token)
    if web_dir.is_dir():
        static.add_routes(app, web_dir)
