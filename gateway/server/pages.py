"""The page at ``/``, its static files, health, and the demo token endpoint."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.server.state import STATE

# The page lives beside the package in the source tree (and at /app/web in the image).
DEFAULT_WEB_DIR = Path(__file__).resolve().parents[2] / "web"


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def demo_token(request: web.Request) -> web.Response:
    """Mint a client secret for the demo page, server-side, so the gateway key stays here.

    On by default only on the emulator, where a call costs nothing (GATEWAY_DEMO).
    """
    state = request.app[STATE]
    token, secret = state.secrets.mint({}, state.settings.client_secret_ttl)
    return web.json_response(
        {"value": token, "expires_at": secret.expires_at, "session": state.resolve_session()}
    )


def add_routes(app: web.Application, *, demo: bool, web_dir: Path = DEFAULT_WEB_DIR) -> None:
    app.router.add_get("/healthz", healthz)
    if demo:
        app.router.add_post("/demo/token", demo_token)
    index = web_dir / "index.html"
    if index.is_file():

        async def page(request: web.Request) -> web.FileResponse:
            return web.FileResponse(index)

        app.router.add_get("/", page)
        app.router.add_static("/static/", web_dir, follow_symlinks=False)
