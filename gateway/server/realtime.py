"""OpenAI's Realtime HTTP API as the browser and the app's backend see it (protocol.md §1-2, §7).

GA: ``POST /v1/realtime/client_secrets``, ``POST /v1/realtime/calls``,
``POST /v1/realtime/calls/{call_id}/hangup``. Beta, for apps written before GA:
``POST /v1/realtime/sessions`` and ``POST /v1/realtime?model=…``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from gateway.budgets import budget_of
from gateway.call.call import Call
from gateway.call.outcomes import EndReason
from gateway.call.setup import CallRequest, Dialect, new_call_id, open_call
from gateway.client_secrets import token_digest
from gateway.config.apps import App
from gateway.errors import (
    AuthenticationError,
    GatewayError,
    InvalidRequest,
    NotFound,
    RateLimited,
    Unavailable,
    UpstreamError,
)
from gateway.protocol import beta, translation
from gateway.protocol.session import (
    check_session,
    parse_client_secret_request,
    without_locked,
)
from gateway.server.apps import app_policy, check_allowed
from gateway.server.auth import Caller, identify, require_server, sees
from gateway.server.body import read_json, read_offer
from gateway.server.forward import Forwarder
from gateway.server.state import STATE, GatewayState
from gateway.stores.base import CallEntry
from gateway.upstream.base import UpstreamFactory

log = structlog.get_logger(__name__)

HANGUP_WAIT = 10.0


def _state(request: web.Request) -> GatewayState:
    return request.app[STATE]


async def _mint(
    state: GatewayState, app: App, requested: dict[str, Any], ttl: int
) -> dict[str, Any]:
    session = state.resolve_session(requested, app=app)
    check_allowed(app, session)  # refused now, not when the browser calls
    await state.check_budget(app, session)
    token, secret = await state.stores.secrets.mint(requested, ttl, app.name)
    return {"value": token, "expires_at": secret.expires_at, "session": session}


async def client_secrets(request: web.Request) -> web.Response:
    """Mint an ``ek_`` client secret for a browser; the app's backend calls this."""
    state = _state(request)
    app = require_server(request, state)
    ttl, requested = parse_client_secret_request(
        await read_json(request), state.settings.client_secret_ttl
    )
    body = await _mint(state, app, requested, ttl)
    log.info("client_secret.minted", expires_at=body["expires_at"], app=app.name)
    return web.json_response(body)


async def beta_sessions(request: web.Request) -> web.Response:
    """Beta ``POST /v1/realtime/sessions``: a flat session body, ``client_secret`` in the reply."""
    state = _state(request)
    app = require_server(request, state)
    body = await read_json(request)
    if body is not None and not isinstance(body, dict):
        check_session(body)  # raises the right 400
    ttl, requested = parse_client_secret_request(
        beta.client_secret_request_from_beta(body or {}), state.settings.client_secret_ttl
    )
    minted = await _mint(state, app, requested, ttl)
    view = beta.client_secret_response_to_beta(minted)
    view.setdefault("id", "sess_" + secrets.token_hex(12))
    view.setdefault("object", "realtime.session")
    log.info("client_secret.minted", expires_at=minted["expires_at"], dialect="beta", app=app.name)
    return web.json_response(view)


async def create_call(request: web.Request) -> web.Response:
    """GA ``POST /v1/realtime/calls``: SDP offer in, 201 with the SDP answer out."""
    return await _create_call(request, "ga")


async def beta_call(request: web.Request) -> web.Response:
    """Beta ``POST /v1/realtime?model=…`` with a raw SDP offer."""
    return await _create_call(request, "beta")


async def admit(state: GatewayState, request: web.Request, caller: Caller) -> web.Response | None:
    """Whether a new call may start here: raises 429/503, or returns the answer of another
    process with room that took the call, or ``None`` to go on here."""
    forwarder = state.forwarder
    forwarded = forwarder is not None and forwarder.is_forwarded(request)
    try:
        # The app's backend (gateway key) is trusted with its own pace; browsers are not. A
        # call another process passed on was counted there.
        if not caller.is_server and not forwarded:
            await state.check_rate(request.remote, token_digest(caller.token))
        state.check_capacity()
    except Unavailable as exc:
        if exc.code in ("at_capacity", "ice_ports_exhausted") and not forwarded:
            # Full here, but another process (this host's workers first) may have room: behind
            # a shared port or a load balancer, the call should not fail for landing here.
            sibling = await state.sibling_with_room()
            if sibling is not None and forwarder is not None:
                try:
                    return await forwarder.relay(request, sibling)
                except (aiohttp.ClientError, TimeoutError, OSError):
                    pass
        state.metrics.call_rejected()
        raise
    except RateLimited:
        state.metrics.call_rejected()
        raise
    return None


async def admit_app(state: GatewayState, app: App) -> None:
    """Whether ``app`` may open one more call now: 429 (counted as refused) beyond its
    calls_per_minute or its max_calls. Admitted, the call holds one of the app's slots until
    :meth:`GatewayState.release_app_slot`."""
    try:
        await state.check_app_rate(app)
        state.claim_app_slot(app)
    except RateLimited:
        state.metrics.call_rejected()
        raise


async def open_counted(
    state: GatewayState,
    call_id: str,
    call_request: CallRequest,
    upstreams: UpstreamFactory,
    started: float,
) -> Call:
    """:func:`open_call` for an admitted request: pending (against capacity) while it is set
    up, and counted as rejected, with the upstream's failure kind, if it fails."""
    state.pending += 1
    try:
        return await open_call(
            call_id,
            call_request,
            upstreams=upstreams,
            options=state.leg_options,
            services=state.services,
            started_at=started,
        )
    except UpstreamError as exc:
        state.metrics.call_rejected()
        state.metrics.upstream_error(exc.kind)
        raise
    except GatewayError:
        state.metrics.call_rejected()
        raise
    finally:
        state.pending -= 1


async def _create_call(request: web.Request, dialect: Dialect) -> web.Response:
    started = time.monotonic()
    state = _state(request)
    caller = identify(request, state)
    passed_on = await admit(state, request, caller)
    if passed_on is not None:
        return passed_on
    digest: bytes | None = None
    token_session: dict[str, Any] | None = None
    app = caller.app
    if app is None:
        # Check the secret before reading the body, but consume it only once the call exists,
        # so a bad offer or an upstream hiccup does not burn a single-use secret.
        secret = await state.stores.secrets.peek(caller.token)
        digest, token_session = secret.digest, secret.session
        if translation.is_translation(token_session):
            raise translation_secret_here()
        app = state.app_named(secret.app)
        if app is None:
            # The app was removed since: its outstanding secrets go with it.
            raise AuthenticationError(
                "The app this client secret was minted for is no longer configured.",
                code="invalid_api_key",
            )
    await admit_app(state, app)
    try:
        return await _open_for_app(
            request, state, caller, app, dialect, started, digest, token_session
        )
    finally:
        state.release_app_slot(app)


async def _open_for_app(
    request: web.Request,
    state: GatewayState,
    caller: Caller,
    app: App,
    dialect: Dialect,
    started: float,
    digest: bytes | None,
    token_session: dict[str, Any] | None,
) -> web.Response:
    body = await read_offer(request, state.settings.max_sdp_bytes)
    requested: list[dict[str, Any]] = []
    if dialect == "beta" and request.query.get("model"):
        requested.append({"model": request.query["model"]})
    if body.session is not None:
        requested.append(check_session(body.session))
    policy = app_policy(state.services.policy, app)
    if not caller.is_server:
        # A browser's choices here are held to the locks its session.update events are.
        server_session = state.upstream_session(token_session, app=app)
        locked = (policy or state.services.policy).locked_session_fields
        for index, override in enumerate(requested):
            requested[index], removed = without_locked(override, locked, server_session)
            if removed:
                log.info("call.locked_fields_ignored", fields=removed, dialect=dialect)
    # What the app's backend put in the client secret wins over what the browser asks for.
    overrides: list[dict[str, Any] | None] = [*requested, token_session]
    session = state.upstream_session(*overrides, app=app)
    check_allowed(app, session)
    await state.check_budget(app, session)
    if state.upstreams is None:
        raise Unavailable("The gateway is starting up; try again in a moment.")
    call_id = new_call_id()
    structlog.contextvars.bind_contextvars(call_id=call_id)
    call = await open_counted(
        state,
        call_id,
        CallRequest(
            offer_sdp=body.sdp,
            session=session,
            dialect=dialect,
            token_digest=digest,
            app=app.name,
            policy=policy,
            budget=budget_of(app),
        ),
        state.upstreams,
        started,
    )
    return await answered(
        state, call, caller, kind=body.kind, started=started, location="/v1/realtime/calls"
    )


async def answered(
    state: GatewayState, call: Call, caller: Caller, *, kind: str, started: float, location: str
) -> web.Response:
    """A call that exists: its secret spent, the call started, and the browser's ``201`` with
    the SDP answer and the call's ``Location`` under ``location``."""
    if not caller.is_server:
        try:
            await state.stores.secrets.redeem(caller.token)
        except AuthenticationError:
            # Another request redeemed this single-use secret first: the call never starts.
            await call.discard(EndReason.TOKEN_REUSED)
            raise
    # Every later line of the call (its task copies this context) names both ids.
    structlog.contextvars.bind_contextvars(upstream_call_id=call.upstream_call_id)
    state.calls.start(call)
    log.info(
        "call.answered",
        call_id=call.call_id,
        upstream_call_id=call.upstream_call_id,
        kind=kind,
        dialect=call.dialect,
        app=call.request.app,
        setup_ms=round((time.monotonic() - started) * 1000),
    )
    return web.Response(
        status=201,
        text=call.answer_sdp,
        content_type="application/sdp",
        headers={"Location": f"{location}/{call.call_id}"},
    )


def translation_secret_here() -> InvalidRequest:
    return InvalidRequest(
        "This client secret was minted for a Realtime translation session "
        "(POST /v1/realtime/translations/client_secrets): open its call with "
        "POST /v1/realtime/translations/calls.",
        code="session_type_mismatch",
    )


async def elsewhere(state: GatewayState, request: web.Request, call_id: str) -> CallEntry | None:
    """The directory entry of ``call_id`` if another process owns it and ``request`` should
    go there (a request that was itself forwarded is answered here, whatever happens)."""
    forwarder = state.forwarder
    if forwarder is None or not state.stores.shared or forwarder.is_forwarded(request):
        return None
    entry = await state.stores.calls.lookup(call_id)
    return entry if forwarder.owner_elsewhere(entry) else None


def _no_such_call(call_id: str) -> NotFound:
    # The same answer for "no such call" and "not yours": no probing for live call ids.
    return NotFound(f"No call found with id '{call_id[:200]}'.", param="call_id")


async def hangup(request: web.Request) -> web.Response:
    """End a call: the app's backend (gateway key) or the browser that opened it (its secret).

    Wherever it lands: a call another process runs is hung up there."""
    state = _state(request)
    caller = identify(request, state)
    call_id = request.match_info["call_id"]
    call = state.calls.find(call_id)
    if call is None:
        entry = await elsewhere(state, request, call_id)
        if entry is not None and state.forwarder is not None:
            return await state.forwarder.http(request, entry)
        raise _no_such_call(call_id)
    allowed = (caller.app is not None and sees(caller.app, call.request.app)) or (
        call.request.token_digest is not None
        and secrets.compare_digest(call.request.token_digest, token_digest(caller.token))
    )
    if not allowed:
        raise _no_such_call(call_id)
    call.stop(EndReason.HANGUP)
    await wait_ended(call)
    return web.Response(status=200)


async def wait_ended(call: Call) -> None:
    """Wait (a bounded while) for a call told to stop to have ended: both peers closed, the
    upstream hung up."""
    try:
        async with asyncio.timeout(HANGUP_WAIT):
            await call.wait_done()
    except TimeoutError:
        log.warning("call.hangup_slow", call_id=call.call_id)


def _view(state: GatewayState, call: Call) -> dict[str, Any]:
    return {**call.snapshot().view(), "owner": state.calls.node.name}


async def list_calls(request: web.Request) -> web.Response:
    """Admin (gateway key): every live call of the gateway, each naming the process it runs on.

    Another process's calls are as that process reports them; one that does not answer in time
    has its calls listed from the directory, with what the directory knows."""
    state = _state(request)
    forwarder = state.forwarder
    local_only = request.query.get("scope") == "local" and (
        forwarder is not None and forwarder.is_forwarded(request)
    )
    # A sibling's signed request for this process's own calls carries no key of an app (it
    # asks on behalf of whichever app listed, and keeps only that app's calls).
    app = None if local_only else require_server(request, state)
    data = [
        _view(state, call) for call in state.calls if app is None or sees(app, call.request.app)
    ]
    if app is not None and state.stores.shared and forwarder is not None and not local_only:
        elsewhere_by_owner: dict[str, list[CallEntry]] = {}
        for entry in await state.stores.calls.entries():
            if forwarder.owner_elsewhere(entry) and sees(app, entry.app):
                elsewhere_by_owner.setdefault(entry.address, []).append(entry)
        for address, entries in elsewhere_by_owner.items():
            data += await _remote_views(forwarder, address, entries)
    return web.json_response({"object": "list", "data": data})


async def _remote_views(
    forwarder: Forwarder, address: str, entries: list[CallEntry]
) -> list[dict[str, Any]]:
    try:
        answer = await forwarder.get_json(address, "/v1/realtime/calls?scope=local")
        views = answer["data"] if isinstance(answer, dict) else None
        if isinstance(views, list):
            wanted = {e.call_id for e in entries}
            return [v for v in views if isinstance(v, dict) and v.get("id") in wanted]
    except Exception as exc:  # an owner that cannot answer is listed from the directory
        log.warning("calls.owner_unreachable", address=address, error=type(exc).__name__)
    return [
        {
            "id": e.call_id,
            "object": "realtime.call",
            "upstream_call_id": e.upstream_call_id,
            "dialect": e.dialect,
            "age_s": round(max(0.0, time.time() - e.started_at), 3),
            "owner": e.owner,
            "app": e.app,
            "state": "unknown",
        }
        for e in entries
    ]


async def get_call(request: web.Request) -> web.Response:
    """Admin (gateway key): one live call, wherever it runs."""
    state = _state(request)
    app = require_server(request, state)
    call_id = request.match_info["call_id"]
    call = state.calls.find(call_id)
    if call is None:
        entry = await elsewhere(state, request, call_id)
        if entry is not None and state.forwarder is not None and sees(app, entry.app):
            return await state.forwarder.http(request, entry)
    if call is None or not sees(app, call.request.app):
        # Another app's call is as absent as no call: no probing for live call ids.
        raise NotFound(f"No live call with id '{call_id[:200]}'.", param="call_id")
    return web.json_response(_view(state, call))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/realtime/client_secrets", client_secrets)
    app.router.add_post("/v1/realtime/calls", create_call)
    app.router.add_get("/v1/realtime/calls", list_calls)
    app.router.add_get("/v1/realtime/calls/{call_id}", get_call)
    app.router.add_post("/v1/realtime/calls/{call_id}/hangup", hangup)
    app.router.add_post("/v1/realtime/sessions", beta_sessions)
    app.router.add_post("/v1/realtime", beta_call)
