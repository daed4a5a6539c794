"""OpenAI's Realtime translations HTTP API as the browser and the app's backend see it.

``POST /v1/realtime/translations/client_secrets`` (gateway key) mints the gateway's own ``ek_``
secret bound to a translation session, answered in OpenAI's shape
(``RealtimeTranslationClientSecretCreateResponse``). ``POST /v1/realtime/translations/calls``
takes the browser's raw SDP offer with that secret and answers ``201`` with the SDP answer, as
``POST /v1/realtime/calls`` does. The calls path is the one OpenAI's public client samples use;
no reference page documents it. A translation secret opens only a translation call, and a
Realtime secret only a Realtime call.

Everything else is a call like any other: admission (rate, capacity, drain, another process
with room), the client-secret store, call setup and teardown, the admin listing.
"""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from gateway.budgets import budget_of
from gateway.call.setup import CallRequest, new_call_id
from gateway.client_secrets import ClientSecret
from gateway.config.apps import App
from gateway.errors import AuthenticationError, InvalidRequest, Unavailable
from gateway.protocol import translation
from gateway.server import realtime
from gateway.server.auth import Caller, identify, require_server
from gateway.server.body import read_json, read_offer
from gateway.server.state import STATE, GatewayState

log = structlog.get_logger(__name__)

BASE = "/v1/realtime/translations"


async def client_secrets(request: web.Request) -> web.Response:
    """Mint an ``ek_`` client secret for a browser's translation call (the app's backend)."""
    state: GatewayState = request.app[STATE]
    app = require_server(request, state)
    ttl, requested = translation.parse_client_secret_request(
        await read_json(request), state.settings.client_secret_ttl
    )
    session = translation.bound_session(translation.new_session_id(), requested)
    await state.check_budget(app, session)
    token, secret = await state.stores.secrets.mint(session, ttl, app.name)
    log.info(
        "client_secret.minted", expires_at=secret.expires_at, dialect="translation", app=app.name
    )
    return web.json_response(
        {
            "value": token,
            "expires_at": secret.expires_at,
            # The session cannot start once its secret has expired.
            "session": translation.session_view(session, secret.expires_at),
        }
    )


async def create_call(request: web.Request) -> web.Response:
    """SDP offer in (with a translation client secret), ``201`` with the SDP answer out."""
    started = time.monotonic()
    state: GatewayState = request.app[STATE]
    caller = identify(request, state)
    if caller.is_server:
        # The session of a translation call is the one its client secret was minted for; the
        # app's backend mints one and hands it to the browser.
        raise InvalidRequest(
            "A translation call is opened with a client secret: mint one with "
            "POST /v1/realtime/translations/client_secrets and send it as the bearer token.",
            code="client_secret_required",
        )
    passed_on = await realtime.admit(state, request, caller)
    if passed_on is not None:
        return passed_on
    # Checked before the body is read, spent only once the call exists (as Realtime's).
    secret = await state.stores.secrets.peek(caller.token)
    if not translation.is_translation(secret.session):
        raise InvalidRequest(
            "This client secret was minted for a Realtime session "
            "(POST /v1/realtime/client_secrets): open its call with POST /v1/realtime/calls.",
            code="session_type_mismatch",
        )
    app = state.app_named(secret.app)
    if app is None:
        # The app was removed since: its outstanding secrets go with it.
        raise AuthenticationError(
            "The app this client secret was minted for is no longer configured.",
            code="invalid_api_key",
        )
    await state.check_budget(app, secret.session)
    await realtime.admit_app(state, app)
    try:
        return await _open(request, state, caller, app, secret, started)
    finally:
        state.release_app_slot(app)


async def _open(
    request: web.Request,
    state: GatewayState,
    caller: Caller,
    app: App,
    secret: ClientSecret,
    started: float,
) -> web.Response:
    body = await read_offer(request, state.settings.max_sdp_bytes)
    if body.session is not None:
        raise InvalidRequest(
            "Unknown parameter: 'session'. A translation call's session is the one its client "
            "secret was minted with.",
            code="unknown_parameter",
            param="session",
        )
    upstreams = state.translation_upstreams
    if upstreams is None:
        raise Unavailable("The gateway is starting up; try again in a moment.")
    call_id = new_call_id()
    structlog.contextvars.bind_contextvars(call_id=call_id)
    call = await realtime.open_counted(
        state,
        call_id,
        CallRequest(
            offer_sdp=body.sdp,
            session=secret.session,
            upstream_session=translation.upstream_request(secret.session),
            dialect="translation",
            token_digest=secret.digest,
            app=app.name,
            budget=budget_of(app),
        ),
        upstreams,
        started,
    )
    return await realtime.answered(
        state, call, caller, kind=body.kind, started=started, location=BASE + "/calls"
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post(BASE + "/client_secrets", client_secrets)
    app.router.add_post(BASE + "/calls", create_call)
