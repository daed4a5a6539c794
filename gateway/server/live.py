"""GPT-Live's HTTP API as the app's backend sees it (``../shared/live-protocol.md`` §1, §4-5).

``POST /v1/live/sessions`` takes OpenAI's JSON body with the browser's offer and answers
``201`` with ``{session:{id}, transport:{type:"webrtc", sdp}}``; the id is the gateway's own.
Live has no ephemeral-key flow: a trusted server always creates the session, so the gateway key
is required, and the browser only ever holds the data channel. ``POST …/{id}/hangup`` ends it
(``200``, empty), wherever in the cluster it runs.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from aiohttp import web

from gateway.call.outcomes import EndReason
from gateway.call.setup import CallRequest, new_live_session_id
from gateway.config.apps import DEFAULT_APP
from gateway.errors import GatewayError, InvalidRequest, NotFound, Unavailable
from gateway.protocol import live
from gateway.server import realtime
from gateway.server.auth import identify, require_server, sees
from gateway.server.body import read_json
from gateway.server.state import STATE, GatewayState

log = structlog.get_logger(__name__)

SESSIONS = "/v1/live/sessions"


async def create_session(request: web.Request) -> web.Response:
    started = time.monotonic()
    state: GatewayState = request.app[STATE]
    app = require_server(request, state)
    caller = identify(request, state)
    passed_on = await realtime.admit(state, request, caller)
    if passed_on is not None:
        return passed_on
    await realtime.admit_app(state, app)
    try:
        limit = 64 * 1024 + state.settings.max_sdp_bytes
        created = live.parse_create_request(await read_json(request, limit))
        await state.check_budget(app, created.session)
        body = await start_session(state, created, started, app=app.name)
    finally:
        state.release_app_slot(app)
    return web.json_response(body, status=201)


async def start_session(
    state: GatewayState, created: live.LiveCreate, started: float, *, app: str = DEFAULT_APP
) -> dict[str, Any]:
    """Open a Live session for an admitted request; its ``201`` body."""
    upstreams = state.live_upstreams
    if upstreams is None:
        raise Unavailable("The gateway is starting up; try again in a moment.")
    # Before anything is opened: an app tool named like a server tool is a 400.
    try:
        asked = live.upstream_session(created.session, state.services.tools.definitions())
    except GatewayError:
        state.metrics.call_rejected()
        raise
    session_id = new_live_session_id()
    structlog.contextvars.bind_contextvars(call_id=session_id)
    call = await realtime.open_counted(
        state,
        session_id,
        CallRequest(
            offer_sdp=created.sdp,
            session=created.session,
            upstream_session=asked,
            dialect="live",
            app=app,
        ),
        upstreams,
        started,
    )
    structlog.contextvars.bind_contextvars(upstream_call_id=call.upstream_call_id)
    state.calls.start(call)
    log.info(
        "call.answered",
        call_id=session_id,
        upstream_call_id=call.upstream_call_id,
        kind="json",
        dialect="live",
        setup_ms=round((time.monotonic() - started) * 1000),
    )
    return live.create_response(session_id, call.answer_sdp)


async def hangup(request: web.Request) -> web.Response:
    """End a Live session (gateway key), wherever it runs; ``200`` with an empty body."""
    state: GatewayState = request.app[STATE]
    app = require_server(request, state)
    session_id = request.match_info["session_id"]
    call = state.calls.find(session_id)
    if call is None or call.dialect != "live" or not sees(app, call.request.app):
        if call is None:
            entry = await realtime.elsewhere(state, request, session_id)
            if entry is not None and state.forwarder is not None:
                return await state.forwarder.http(request, entry)
        raise NotFound(f"No session found with id '{session_id[:200]}'.", param="session_id")
    call.stop(EndReason.HANGUP)
    await realtime.wait_ended(call)
    return web.Response(status=200)


async def not_here(request: web.Request) -> web.Response:
    """Session controls the gateway does not offer for its WebRTC sessions: a clear 400."""
    state: GatewayState = request.app[STATE]
    require_server(request, state)
    action = request.path.rsplit("/", 1)[-1]
    if action == "fork":
        message = (
            "Forking is not available through the gateway: start a new session with "
            "POST /v1/live/sessions (its 'input' can carry the conversation so far)."
        )
    else:
        message = f"'{action}' is for SIP sessions; this gateway's Live sessions are WebRTC."
    raise InvalidRequest(message, code="unsupported_operation", param="session_id")


def add_routes(app: web.Application) -> None:
    app.router.add_post(SESSIONS, create_session)
    app.router.add_post(SESSIONS + "/{session_id}/hangup", hangup)
    for action in ("fork", "accept", "reject", "refer"):
        app.router.add_post(SESSIONS + "/{session_id}/" + action, not_here)
