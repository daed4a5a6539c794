"""``GET /v1/realtime/calls/{call_id}/content``: a call's recording, for the app's backend.

The stereo Ogg Opus file (browser left, model right) once the call has ended and the file is
made; ``404`` before, after it expires, and for calls that were not recorded. Range requests are
answered (``206``), so players can seek. With several gateway processes, a process that does not
hold the file asks the shared index which one does and forwards the request there (or all of
them share ``GATEWAY_RECORDINGS_DIR`` and any finds it).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import structlog
from aiohttp import hdrs, web

from gateway.errors import GatewayError, NotFound, Unavailable
from gateway.recording.service import Finished
from gateway.server.auth import require_server
from gateway.server.middlewares import error_response
from gateway.server.state import STATE, GatewayState

log = structlog.get_logger(__name__)


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Start the recordings (directory, writer, retention sweep) before calls; finish the
    recordings under way after the calls have ended."""
    state = app[STATE]
    recordings = state.services.recordings
    if recordings is None:
        yield
        return

    async def index(finished: Finished) -> None:
        if state.stores.shared:
            await state.stores.recordings.place(
                finished.call_id, state.calls.node.name, recordings.retention_s
            )

    recordings.on_finished = index
    await recordings.start()
    try:
        yield
    finally:
        await recordings.close()


def _no_recording(call_id: str) -> NotFound:
    return NotFound(f"No recording found for call '{call_id}'.", param="call_id")


async def content(request: web.Request) -> web.StreamResponse:
    state: GatewayState = request.app[STATE]
    require_server(request, state)
    call_id = request.match_info["call_id"]
    recordings = state.services.recordings
    if recordings is None:
        raise NotFound(
            "This gateway does not record calls (GATEWAY_RECORDINGS_DIR is not set).",
            param="call_id",
        )
    path = await asyncio.to_thread(recordings.path_of, call_id)
    if path is not None:
        refused = _unsatisfiable(request, await asyncio.to_thread(path.stat))
        if refused is not None:
            return refused
        return web.FileResponse(
            path, headers={"Content-Type": "audio/ogg", "Cache-Control": "private, no-store"}
        )
    return await from_holder(request, state, call_id, _no_recording(call_id), f"call '{call_id}'")


async def from_holder(
    request: web.Request, state: GatewayState, call_id: str, missing: NotFound, what: str
) -> web.StreamResponse:
    """The answer of the process holding ``call_id``'s recording, forwarded and streamed back;
    raises ``missing`` when no other process holds it, and :class:`Unavailable` when the one
    that does is not running (``what`` names the recording's call in that message)."""
    forwarder = state.forwarder
    if forwarder is None or not state.stores.shared or forwarder.is_forwarded(request):
        raise missing
    holder = await state.stores.recordings.locate(call_id)
    if holder is None or holder == state.calls.node.name:
        raise missing
    address = next((n.address for n in await state.stores.nodes.nodes() if n.name == holder), None)
    if not address:
        log.warning("recording.holder_gone", call_id=call_id, node=holder)
        raise Unavailable(
            f"The recording of {what} is kept by a gateway process that is not "
            "running now. Retry once it is back.",
            retry_after=30,
        )
    return await forwarder.stream(request, address)


def _unsatisfiable(request: web.Request, st: os.stat_result) -> web.Response | None:
    """The 416 that ``FileResponse`` would send for this ``Range`` (it sends an empty body
    after every middleware has run), in OpenAI's error shape; ``None`` when it would serve."""
    spec = request.headers.get(hdrs.RANGE)
    if spec is None:
        return None
    if_range = request.if_range
    if if_range is not None and st.st_mtime > if_range.timestamp():
        return None  # the file changed: the whole of it is sent, the range ignored
    try:
        start = request.http_range.start
    except ValueError:
        start = st.st_size
    if start is None or start < 0 or start < st.st_size:
        return None
    error = GatewayError(
        f"The range {spec[:100]!r} is not satisfiable: the recording is {st.st_size} bytes.",
        code="range_not_satisfiable",
        param="Range",
        status=416,
    )
    error.type = "invalid_request_error"
    response = error_response(error)
    response.headers[hdrs.CONTENT_RANGE] = f"bytes */{st.st_size}"
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/realtime/calls/{call_id}/content", content)
