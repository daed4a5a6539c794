"""The demo page at ``/`` and the endpoint that gives it client secrets."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.server import static
from gateway.server.state import STATE

# The page lives beside the package in the source tree (and at /app/web in the image).
DEFAULT_WEB_DIR = Path(__file__).resolve().parents[2] / "web"


async def demo_token(request: web.Request) -> web.Response:
    """Mint a client secret for the demo page, server-side, so the gateway key stays here.

    On by default only on the emulator, where a call costs nothing (GATEWAY_DEMO).
    """
    state = request.app[STATE]
    await state.check_demo_rate(request.remote)
    token, secret = await state.stores.secrets.mint({}, state.settings.client_secret_ttl)
    return web.json_response(
        {"value": token, "expires_at": secret.expires_at, "session": state.resolve_session()}
    )


def add_routes(app: web.Application, *, demo: bool, web_dir: Path = DEFAULT_WEB_DIR) -> None:
    if demo:
        app.router.add_post("/demo/token", demo_token)
    if web_dir.is_dir():
        static.add_routes(app, web_dir)
