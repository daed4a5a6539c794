"""The demo page at ``/`` and the endpoints that connect it without the gateway key: a client
secret for a Realtime call (``/demo/token``), or a GPT-Live session opened for it
(``/demo/live``)."""

from __future__ import annotations

import importlib.util
import ipaddress
import time
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from gateway.errors import InvalidRequest, PermissionDenied, Unavailable
from gateway.protocol import live as live_protocol
from gateway.server import live, static
from gateway.server.body import read_json
from gateway.server.state import STATE, GatewayState

DEMO_LIVE_MODEL: Final = "gpt-live-1"
DEMO_LIVE_INSTRUCTIONS: Final = (
    "You are the voice on a gateway's demo page. Be friendly and brief: answer in one or two "
    "short sentences."
)


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
    _check_this_machine(request, state, "secrets")
    await state.check_demo_rate(request.remote)
    token, secret = await state.stores.secrets.mint({}, state.settings.client_secret_ttl)
    return web.json_response(
        {"value": token, "expires_at": secret.expires_at, "session": state.resolve_session()}
    )


async def demo_live(request: web.Request) -> web.Response:
    """Open a GPT-Live session for the demo page: ``{"sdp": offer}`` in, Live's ``201`` body
    (``{session:{id}, transport:{type:"webrtc", sdp}}``) out.

    Live has no browser key, so the gateway is the trusted server that creates the session, with
    its own session settings (:data:`DEMO_LIVE_MODEL`, short instructions); the page only sends
    its offer. The same rules as ``/demo/token`` apply: on by default only on the emulator; with
    a real key only for this machine; limited per address like demo secrets.
    """
    started = time.monotonic()
    state: GatewayState = request.app[STATE]
    _check_this_machine(request, state, "sessions")
    await state.check_demo_rate(request.remote)
    try:
        state.check_capacity()
    except Unavailable:
        state.metrics.call_rejected()
        raise
    limit = 64 * 1024 + state.settings.max_sdp_bytes
    offer = _demo_offer(await read_json(request, limit))
    created = live_protocol.parse_create_request(
        {"session": demo_live_session(), "transport": {"type": "webrtc", "sdp": offer}}
    )
    return web.json_response(await live.start_session(state, created, started), status=201)


def demo_live_session() -> dict[str, Any]:
    """The Live session the demo page talks to."""
    return {"model": DEMO_LIVE_MODEL, "instructions": DEMO_LIVE_INSTRUCTIONS}


def _demo_offer(body: Any) -> str:
    """The offer of ``/demo/live``'s body, which is exactly ``{"sdp": "<offer>"}``."""
    if body is None:
        raise InvalidRequest(
            "Missing required parameter: 'sdp'.", code="missing_required_parameter", param="sdp"
        )
    if not isinstance(body, dict):
        raise InvalidRequest(
            'Invalid type for the request body: expected an object like {"sdp": "<offer>"}.',
            code="invalid_type",
        )
    for key in body:
        if key != "sdp":
            raise InvalidRequest(
                f"Unknown parameter: '{str(key)[:100]}'. The demo's session is set by the "
                "gateway; send only 'sdp'.",
                code="unknown_parameter",
                param=str(key)[:100],
            )
    sdp = body.get("sdp")
    if sdp is None:
        raise InvalidRequest(
            "Missing required parameter: 'sdp'.", code="missing_required_parameter", param="sdp"
        )
    if not isinstance(sdp, str):
        raise InvalidRequest(
            "Invalid type for 'sdp': expected a string.", code="invalid_type", param="sdp"
        )
    if not sdp.strip():
        raise InvalidRequest(
            "Invalid value for 'sdp': the SDP offer is empty.", code="invalid_value", param="sdp"
        )
    return sdp


def _check_this_machine(request: web.Request, state: GatewayState, what: str) -> None:
    """With a real OpenAI key, 403 unless the request comes from this machine's own page: from
    loopback, relayed by no proxy, and (when the browser says where it comes from) from this
    gateway's origin rather than another site open in a browser here."""
    if state.settings.uses_emulator:
        return
    if _from_this_machine(request) and _same_origin(request):
        return
    raise PermissionDenied(
        f"The demo page's {what} are served only to this machine while a real OpenAI key "
        "is configured; open the page on http://127.0.0.1, or use your backend with the "
        "gateway key.",
        code="demo_local_only",
    )


def _from_this_machine(request: web.Request) -> bool:
    if any(h in request.headers for h in ("Forwarded", "X-Forwarded-For", "X-Real-IP")):
        return False
    peer = request.transport.get_extra_info("peername") if request.transport else None
    try:
        return peer is not None and ipaddress.ip_address(peer[0]).is_loopback
    except ValueError:
        return False


def _same_origin(request: web.Request) -> bool:
    """No ``Origin`` (not a browser's cross-site request), or this gateway's own."""
    origin = request.headers.get("Origin")
    return origin is None or origin.rstrip("/") == f"{request.scheme}://{request.host}"


def add_routes(app: web.Application, *, demo: bool, web_dir: Path = DEFAULT_WEB_DIR) -> None:
    if demo:
        app.router.add_post("/demo/token", demo_token)
        app.router.add_post("/demo/live", demo_live)
    if web_dir.is_dir():
        static.add_routes(app, web_dir)
