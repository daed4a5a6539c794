"""GPT-Live's sideband WebSocket, ``/v1/live/sessions/{session_id}/attach``
(``../shared/live-protocol.md`` §6).

Server code written for OpenAI's Live sideband (``client.live.sideband.connect(session_id=…)``)
works unchanged against the gateway with the gateway key. It receives every server event of
the session as the upstream sent it, not filtered by the frontend's allow-lists (the sideband
is trusted), except that a session object shows the gateway's id and the app's frontend
setting, as the browser sees them: the upstream's id never leaves the gateway. A sideband that
attaches after the session started first gets its latest ``session.started`` (a short replay;
clients that expect none just see one more event). Its commands follow Live's rules, not the
frontend's allow-lists, and refusals come back on the sideband as Live ``error`` events.

Closing the sideband does not end the session; the session ending closes the sideband (1000),
after what the session said last (``session.closed``) has gone out. ``graceful_close=true``
waits for the client's half of the closing handshake; otherwise the connection is dropped right
after the close frame. A sideband that reads slowly loses its oldest events rather than holding
memory or the call back, and its commands are rate-limited as a browser's are.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any, Final

import structlog
from aiohttp import WSMsgType, web

from gateway.call.call import Call
from gateway.call.pipeline import LogThrottle
from gateway.config.apps import App
from gateway.errors import (
    AuthenticationError,
    GatewayError,
    InvalidRequest,
    NotFound,
    RateLimited,
)
from gateway.protocol.events import OversizedMessage, encode_event, parse_event
from gateway.protocol.live import LiveGate, live_error_event
from gateway.server.auth import require_server, sees
from gateway.server.realtime import elsewhere
from gateway.server.state import STATE, GatewayState
from gateway.types import Message

log = structlog.get_logger(__name__)

_KEY_PROTOCOL: Final = "openai-insecure-api-key."
# What the gateway answers a browser that offers its key as a subprotocol: one it may select
# (a browser fails a handshake that names none of those it offered), never the key.
_PROTOCOLS: Final = ("realtime",)

MAX_SIDEBANDS: Final = 8
"""Sidebands one session takes at once: each costs the call a little on every event."""
OUTBOX_MESSAGES: Final = 1000
OUTBOX_BYTES: Final = 4 * 1024 * 1024
"""What may wait to go out on one sideband; beyond either, its oldest events are dropped."""
FLUSH_TIMEOUT: Final = 2.0
"""Seconds an ended session's last events may take to go out before the sideband closes."""
CLOSE_TIMEOUT: Final = 5.0
"""Seconds a graceful close waits for the client's half of the closing handshake."""
HEARTBEAT: Final = 30.0

_ATTACHED: web.AppKey[dict[str, int]] = web.AppKey("live_sidebands")


# -- before the upgrade ----------------------------------------------------------------------


def _authorize(request: web.Request, state: GatewayState) -> App:
    """The gateway key, as OpenAI's SDK sends a project key (a bearer header), or offered as a
    subprotocol by a browser, which cannot set headers on a WebSocket."""
    if len(state.apps) > 0:
        for offered in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
            offered = offered.strip()
            if offered.startswith(_KEY_PROTOCOL):
                app = state.apps.authenticate(offered[len(_KEY_PROTOCOL) :])
                if app is not None:
                    return app
                raise AuthenticationError("Incorrect API key provided.", code="invalid_api_key")
    return require_server(request, state)


def _graceful_close(request: web.Request) -> bool:
    value = request.query.get("graceful_close")
    if value is None:
        return False
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise InvalidRequest(
        "Invalid value for 'graceful_close': expected 'true' or 'false'.",
        code="invalid_value",
        param="graceful_close",
    )


def _no_such_session(session_id: str) -> NotFound:
    # The same answer for an unknown id and a Realtime call's: no probing for live call ids.
    return NotFound(f"No session found with id '{session_id[:200]}'.", param="session_id")


async def attach(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    app = _authorize(request, state)
    graceful = _graceful_close(request)
    session_id = request.match_info["session_id"]
    call = state.calls.find(session_id)
    if call is None:
        # Another process may run it: the sideband is relayed there, message by message.
        entry = await elsewhere(state, request, session_id)
        if entry is not None and state.forwarder is not None:
            try:
                return await state.forwarder.websocket(request, entry)
            except NotFound:
                raise _no_such_session(session_id) from None
        raise _no_such_session(session_id)
    gate = call.pipeline.live
    if call.dialect != "live" or gate is None or not sees(app, call.request.app):
        raise _no_such_session(session_id)
    attached = request.app[_ATTACHED]
    if attached.get(session_id, 0) >= MAX_SIDEBANDS:
        raise RateLimited(
            f"At most {MAX_SIDEBANDS} sidebands may be attached to one session at once.",
            code="too_many_sidebands",
            retry_after=5,
        )
    ws = web.WebSocketResponse(
        protocols=_PROTOCOLS,
        heartbeat=HEARTBEAT,
        timeout=CLOSE_TIMEOUT,
        max_msg_size=state.settings.max_event_bytes,
    )
    attached[session_id] = attached.get(session_id, 0) + 1  # before any await: no overshoot
    try:
        await ws.prepare(request)
        await Sideband(call, gate, ws, state, graceful=graceful).run()
    finally:
        left = attached.pop(session_id, 1) - 1
        if left > 0:
            attached[session_id] = left
    return ws


# -- attached --------------------------------------------------------------------------------


class Outbox:
    """What waits to go out on one sideband, in order, bounded in count and bytes: when full,
    the oldest is dropped (the newest, such as ``session.closed``, matter most)."""

    def __init__(self, max_messages: int = OUTBOX_MESSAGES, max_bytes: int = OUTBOX_BYTES) -> None:
        self._items: deque[Message] = deque()
        self._bytes = 0
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._ready = asyncio.Event()
        self._finished = False
        self.dropped = 0

    def put(self, message: Message) -> None:
        if self._finished:
            return
        self._items.append(message)
        self._bytes += len(message)
        while len(self._items) > self._max_messages or (
            self._bytes > self._max_bytes and len(self._items) > 1
        ):
            self._bytes -= len(self._items.popleft())
            self.dropped += 1
        self._ready.set()

    def finish(self) -> None:
        """Take no more; :meth:`get` returns ``None`` once what is held has gone."""
        self._finished = True
        self._ready.set()

    async def get(self) -> Message | None:
        while not self._items:
            if self._finished:
                return None
            self._ready.clear()
            await self._ready.wait()
        message = self._items.popleft()
        self._bytes -= len(message)
        return message


class Sideband:
    """One attached sideband: its tasks, all owned and ended by :meth:`run`."""

    def __init__(
        self,
        call: Call,
        gate: LiveGate,
        ws: web.WebSocketResponse,
        state: GatewayState,
        *,
        graceful: bool,
    ) -> None:
        self.call = call
        self.gate = gate
        self.ws = ws
        self.graceful = graceful
        self.outbox = Outbox()
        policy = state.services.policy
        # Trusted, but a flood must not reach the upstream's data channel, which the browser
        # shares: the same rate a browser of a Realtime call is held to.
        self._rate = policy.events_per_second
        self._burst = float(policy.event_burst)
        self._tokens = self._burst
        self._refilled_at = time.monotonic()
        self._log_throttle = LogThrottle()
        self._replayed: dict[str, Any] | None = None
        self.commands = 0
        self.refused = 0

    async def run(self) -> None:
        call_id = self.call.call_id
        started = time.monotonic()
        queue = self.call.subscribe()
        # Read in the same step as subscribing: a session.started the call handled before it
        # is replayed; one it handles after comes through the queue (and is not sent twice).
        self._replayed = self.gate.started
        if self._replayed is not None:
            self.outbox.put(encode_event(self._replayed))
        log.info("live_sideband.opened", call_id=call_id, graceful_close=self.graceful)
        mover = asyncio.ensure_future(self._move(queue))
        sender = asyncio.ensure_future(self._send())
        reader = asyncio.ensure_future(self._read())
        ended = asyncio.ensure_future(self.call.wait_done())
        tasks = (mover, sender, reader, ended)
        for task in tasks:
            task.add_done_callback(self._reaped)
        reason = "client_closed"
        try:
            await asyncio.wait((sender, reader, ended), return_when=asyncio.FIRST_COMPLETED)
            if ended.done():
                reason = "session_ended"
                await self._finish(queue, mover, sender, reader)
            elif sender.done():
                reason = "send_failed"
        finally:
            # Once its socket is closed, aiohttp cancels this handler at its next await: what
            # must happen is done before any. The tasks are cancelled here and their outcome
            # collected by _reaped, whether or not the waits below get to run.
            self.call.unsubscribe(queue)
            for task in tasks:
                task.cancel()
            log.info(
                "live_sideband.closed",
                call_id=call_id,
                reason=reason,
                close_code=self.ws.close_code,
                commands=self.commands,
                refused_rate=self.refused,
                dropped=self.outbox.dropped,
                duration_s=round(time.monotonic() - started, 3),
            )
            await asyncio.wait(tasks)
            if not self.ws.closed:
                with contextlib.suppress(ConnectionError):
                    await self.ws.close(code=1000, message=b"sideband closed")

    def _reaped(self, task: asyncio.Future[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not isinstance(error, ConnectionError):
            log.error("live_sideband.task_failed", call_id=self.call.call_id, exc_info=error)

    async def _finish(
        self,
        queue: asyncio.Queue[Message],
        mover: asyncio.Task[None],
        sender: asyncio.Task[None],
        reader: asyncio.Task[None],
    ) -> None:
        """The session ended: its last events go out (a bounded while), then the close."""
        mover.cancel()
        while not queue.empty():
            self._shown_into_outbox(queue.get_nowait())
        self.outbox.finish()
        await asyncio.wait((sender,), timeout=FLUSH_TIMEOUT)
        sender.cancel()  # a sideband too slow for its last events does not hold the close
        await asyncio.wait((sender,))
        if self.graceful:
            # With nobody else reading, close() waits for the client's close frame: the whole
            # closing handshake, as graceful_close asks.
            reader.cancel()
            await asyncio.wait((reader,))
        # Otherwise the reader is mid-receive, and close() sends its close frame and drops the
        # connection at once.
        with contextlib.suppress(ConnectionError):
            await self.ws.close(code=1000, message=b"session ended")

    # -- out -----------------------------------------------------------------------------------

    async def _move(self, queue: asyncio.Queue[Message]) -> None:
        """Keeps the call's queue empty however slowly the client reads: a slow sideband loses
        from its own outbox, and the call never waits or warns for it."""
        while True:
            self._shown_into_outbox(await queue.get())

    def _shown_into_outbox(self, message: Message) -> None:
        if isinstance(message, OversizedMessage):
            return  # discarded on arrival: nothing of it is left to show
        if isinstance(message, str):
            try:
                event = parse_event(message)
            except GatewayError:
                pass  # not the gateway's to judge: sent as it came
            else:
                shown = self.gate.shown(event)
                if shown is not event:
                    if shown["type"] == "session.started" and self._replayed is not None:
                        replayed, self._replayed = self._replayed, None
                        if shown == replayed:
                            return  # already sent first, as the replay
                    message = encode_event(shown)
        self.outbox.put(message)

    async def _send(self) -> None:
        while (message := await self.outbox.get()) is not None:
            if isinstance(message, str):
                await self.ws.send_str(message)
            else:
                await self.ws.send_bytes(message)  # the upstream sent binary (or not UTF-8)

    def reply(self, message: Message) -> None:
        """A refusal of one of this sideband's commands, in order with its events."""
        self.outbox.put(message)

    # -- in ------------------------------------------------------------------------------------

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break  # an error frame (bad UTF-8, too large): aiohttp has closed it already
            self.commands += 1
            if not self._take_token():
                self.refused += 1
                self.reply(encode_event(live_error_event(_too_fast(self._rate))))
                continue
            await self._inject(msg.data)

    async def _inject(self, data: Message) -> None:
        try:
            await self.call.inject(data, self.reply, trusted=True)
        except Exception:
            # A hook or tool failing on one command: that command fails, the session goes on.
            if (suppressed := self._log_throttle.take()) is not None:
                log.exception(
                    "live_sideband.command_failed",
                    call_id=self.call.call_id,
                    suppressed=suppressed,
                )
            error = GatewayError(
                "The gateway failed to handle this command; it has been logged.",
                code="internal_error",
            )
            self.reply(encode_event(live_error_event(error)))

    def _take_token(self) -> bool:
        now = time.monotonic()
        elapsed = max(0.0, now - self._refilled_at)
        self._refilled_at = max(self._refilled_at, now)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if self._tokens >= 1.0 - 1e-9:  # float time deltas must not lose a whole token
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False


def _too_fast(rate: float) -> RateLimited:
    return RateLimited(
        f"Too many commands: this gateway accepts at most {rate:g} per second per sideband.",
        code="rate_limit_exceeded",
    )


def add_routes(app: web.Application) -> None:
    app[_ATTACHED] = {}
    app.router.add_get("/v1/live/sessions/{session_id}/attach", attach)
