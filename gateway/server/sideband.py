"""OpenAI's sideband, served by the gateway: ``GET /v1/realtime?call_id=…`` as a WebSocket.

Server code written for OpenAI's sideband (protocol.md §1: a standard key, ``?call_id=rtc_…``)
works unchanged against the gateway with the gateway key: it receives every server event of the
call as the upstream sent it (server tool calls included) and may send client events, which go
through the same policy, hooks and tool machinery as the browser's. Closing the sideband does not
end the call; the call ending closes the sideband.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiohttp import WSMsgType, web

from gateway.config.apps import App
from gateway.errors import AuthenticationError, InvalidRequest, NotFound
from gateway.server.auth import identify, sees
from gateway.server.realtime import elsewhere
from gateway.server.state import STATE

log = structlog.get_logger(__name__)

_KEY_PROTOCOL = "openai-insecure-api-key."


def _authorize(request: web.Request) -> App:
    state = request.app[STATE]
    # Browsers cannot set headers on a WebSocket; OpenAI's SDKs then put the key in a
    # subprotocol, and so may a sideband client.
    for proto in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        proto = proto.strip()
        if proto.startswith(_KEY_PROTOCOL):
            app = state.apps.authenticate(proto[len(_KEY_PROTOCOL) :])
            if app is not None:
                return app
            raise AuthenticationError("Incorrect API key provided.", code="invalid_api_key")
    caller = identify(request, state)
    if caller.app is None:
        raise AuthenticationError(
            "The sideband needs a gateway key (GATEWAY_API_KEY, or an app's key), not a "
            "client secret.",
            code="invalid_api_key",
        )
    return caller.app


MAX_PENDING_REPLIES = 256


def _text(message: str | bytes) -> str:
    """A WebSocket text frame of ``message`` (bytes from the upstream need not be UTF-8)."""
    return message if isinstance(message, str) else message.decode("utf-8", "replace")


async def sideband(request: web.Request) -> web.StreamResponse:
    call_id = request.query.get("call_id")
    if not call_id:
        raise InvalidRequest(
            "Connect the sideband with ?call_id=<id of a live call>; new sessions start over "
            "WebRTC (POST /v1/realtime/calls).",
            code="missing_required_parameter",
            param="call_id",
        )
    app = _authorize(request)
    state = request.app[STATE]
    call = state.calls.find(call_id)
    if call is None:
        # Another process may run it: the sideband is relayed there, message by message.
        entry = await elsewhere(state, request, call_id)
        if entry is not None and state.forwarder is not None:
            return await state.forwarder.websocket(request, entry)
        call = state.calls.get(call_id)  # raises the 404
    if call.dialect == "live" or not sees(app, call.request.app):
        # A Live session's sideband is Live's own (.../live/sessions/{id}/attach).
        raise NotFound(f"No call found with id '{call_id[:200]}'.", param="call_id")
    ws = web.WebSocketResponse(protocols=("realtime",), heartbeat=30)
    await ws.prepare(request)
    queue = call.subscribe()
    log.info("sideband.opened", call_id=call_id)

    def reply(message: str | bytes) -> None:
        # Bounded: a client that floods refused events and never reads gets no more answers
        # than this many in flight, rather than an unbounded pile of send tasks.
        if not ws.closed and len(pending) < MAX_PENDING_REPLIES:
            task = asyncio.ensure_future(ws.send_str(_text(message)))
            pending.add(task)
            task.add_done_callback(pending.discard)

    async def forward() -> None:
        while True:
            message = await queue.get()
            await ws.send_str(_text(message))

    async def end_with_call() -> None:
        await call.wait_done()
        await ws.close(code=1000, message=b"call ended")

    pending: set[asyncio.Task[None]] = set()
    helpers = [asyncio.ensure_future(forward()), asyncio.ensure_future(end_with_call())]
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await call.inject(msg.data, reply)
            elif msg.type == WSMsgType.BINARY:
                await call.inject(msg.data, reply)  # refused with an error event, as in WebRTC
    finally:
        call.unsubscribe(queue)
        for task in [*helpers, *pending]:
            task.cancel()
        for task in [*helpers, *pending]:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        log.info("sideband.closed", call_id=call_id)
    return ws


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/realtime", sideband)
