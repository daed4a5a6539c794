"""A deadline for request heads, so a connection that never finishes one is closed.

aiohttp waits for a request head as long as the client likes: a connection that sends nothing,
or a request line and a few headers and then nothing, holds its socket forever (slow loris;
tests/fuzz/FINDINGS.md F16). Bodies have their own deadline (``gateway.server.body``), heads
have none, so :class:`HeadDeadline` adds one: from the moment a connection opens, or a byte
arrives while no request is being handled, the head must be complete (its request dispatched)
within ``timeout`` seconds, or the connection is closed. Idle keep-alive connections are left
to aiohttp's own keep-alive timeout, and a request in progress (a WebSocket included) is never
cut short.

It wraps aiohttp's protocol factory (:class:`GatewayRunner` serves through it) and learns that a
head is complete from :meth:`HeadDeadline.middleware`, the outermost middleware.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.errors import GatewayError
from gateway.server.middlewares import Handler, error_response, harden

log = structlog.get_logger(__name__)

# What Go servers commonly set as ReadHeaderTimeout, and generous: browsers send a head at once.
HEAD_TIMEOUT = 20.0


class HeadDeadline:
    def __init__(self, timeout: float = HEAD_TIMEOUT) -> None:
        self.timeout = timeout
        self.closed = 0
        """Connections closed for not finishing a head in time."""
        # By aiohttp protocol (which takes no weak references); a guard leaves when its
        # connection is lost.
        self._guards: dict[Any, _Guard] = {}

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        def make() -> asyncio.Protocol:
            inner = factory()
            guard = _Guard(inner, self)
            self._guards[inner] = guard
            return guard

        return make

    def forget(self, inner: asyncio.Protocol) -> None:
        self._guards.pop(inner, None)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        guard = self._guards.get(request.protocol)
        if guard is None:  # served without the wrapper (aiohttp's test server)
            return await handler(request)
        guard.busy += 1
        guard.disarm()
        try:
            return await handler(request)
        finally:
            guard.busy -= 1


class _Guard(asyncio.Protocol):
    """Stands between the event loop and aiohttp's protocol, timing heads."""

    def __init__(self, inner: asyncio.Protocol, owner: HeadDeadline) -> None:
        self._inner = inner
        self._owner = owner
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.busy = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._arm()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is None and not self.busy:
            self._arm()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        self._owner.forget(self._inner)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._owner.timeout, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self.busy or self._transport is None or self._transport.is_closing():
            return
        self._owner.closed += 1
        peer = self._transport.get_extra_info("peername")
        log.info("http.head_timeout", peer=str(peer[0]) if peer else None)
        self._transport.close()


HEADS = web.AppKey("heads", HeadDeadline)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose sites serve through the app's :class:`HeadDeadline` (``app[HEADS]``)."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._deadline = app[HEADS]
        self._wrapped: Callable[[], asyncio.Protocol] | None = None

    @property
    def server(self) -> Any:
        server = super().server
        if server is None:
            return None
        if self._wrapped is None:
            self._wrapped = self._deadline.wrap(_shaping_parse_errors(server))
        return self._wrapped


_UNREADABLE = (
    "The request could not be read: its request line or headers are malformed or too long."
)


class _ShapedRequestHandler(RequestHandler):
    """aiohttp's protocol, answering a request it cannot parse (a request line or header over
    its limits, bad syntax) in OpenAI's error shape: aiohttp does so from ``handle_error``, in
    plain text and before any app code runs."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # aiohttp's logging and checks
        error = GatewayError(
            _UNREADABLE if status < 500 else "The gateway had an internal error.",
            code="invalid_request" if status < 500 else "internal_error",
            status=status,
        )
        if status < 500:
            error.type = "invalid_request_error"
        response = error_response(error)
        harden(request, response)
        response.force_close()
        return response


def _shaping_parse_errors(server: Any) -> Callable[[], Any]:
    """``server``'s protocol factory, making :class:`_ShapedRequestHandler` protocols."""

    def make() -> Any:
        return _ShapedRequestHandler(server, loop=server._loop, **server._kwargs)

    return make
