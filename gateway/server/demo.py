"""The demo page at ``/`` and the endpoint that gives it client secrets."""

from __future__ import annotations

import importlib.util
import ipaddress
from pathlib import Path

from aiohttp import web

from gateway.errors import PermissionDenied
from gateway.server import static
from gateway.server.state import STATE


def _shipped_page() -> Path:
    """The page that ships with the gateway: inside the installed package (``gateway.web``),
    or beside the package in a source tree (``web/``)."""
    try:
        spec = importlib.util.find_spec("gateway.web")
    except ImportError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[2] / "web"


DEFAULT_WEB_DIR = _shipped_page()


async def demo_token(request: web.Request) -> web.Response:
    """Mint a client secret for the demo page, server-side, so the gateway key stays here.

    On by default only on the emulator, where a call costs nothing (GATEWAY_DEMO). With a real
    OpenAI key it is for trying the page on this machine: it answers only requests from
    loopback that no proxy relayed, so a gateway left with GATEWAY_DEMO=true behind a public
    front does not hand out secrets that spend the key.
    """
    state = request.app[STATE]
    if not state.settings.uses_emulator and not _from_this_machine(request):
        raise PermissionDenied(
            "The demo page's secrets are served only to this machine while a real OpenAI key "
            "is configured; open the page on http://127.0.0.1, or mint secrets from your "
            "backend with the gateway key.",
            code="demo_local_only",
        )
    await state.check_demo_rate(request.remote)
    token, secret = await state.stores.secrets.mint({}, state.settings.client_secret_ttl)
    return web.json_response(
        {"value": token, "expires_at": secret.expires_at, "session": state.resolve_session()}
    )


def _from_this_machine(request: web.Request) -> bool:
    if any(h in request.headers for h in ("Forwarded", "X-Forwarded-For", "X-Real-IP")):
        return False
    peer = request.transport.get_extra_info("peername") if request.transport else None
    try:
        return peer is not None and ipaddress.ip_address(peer[0]).is_loopback
    except ValueError:
        return False


def add_routes(app: web.Application, *, demo: bool, web_dir: Path = DEFAULT_WEB_DIR) -> None:
    if demo:
        app.router.add_post("/demo/token", demo_token)
    if web_dir.is_dir():
        static.add_routes(app, web_dir)
