"""Requests about a call that another gateway process owns go to that process.

Behind a load balancer that spreads requests freely, a hangup, a ``GET`` of a call or a sideband
WebSocket may land on any process. The process that receives it finds the call's owner in the
shared call directory and forwards the request there unchanged (method, path, query, headers,
body; a WebSocket is relayed message by message), then returns the owner's answer as it came:
the client sees no difference. The owner authorises the caller as it would have itself.

A forwarded request is signed with the cluster secret (HMAC-SHA256 over the method, the path with
its query, the sending node and a timestamp): the owner handles a signed request itself and
never forwards it again, so a stale directory entry ends in a 404, not a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from typing import Final

import aiohttp
import structlog
from aiohttp import WSMsgType, web

from gateway.call.registry import Node
from gateway.errors import (
    AuthenticationError,
    GatewayError,
    InvalidRequest,
    NotFound,
    RateLimited,
    Unavailable,
)
from gateway.stores.base import CallEntry

log = structlog.get_logger(__name__)

FORWARDED_BY: Final = "X-Gateway-Forwarded-By"
FORWARDED_AT: Final = "X-Gateway-Forwarded-At"
SIGNATURE: Final = "X-Gateway-Signature"
# A signed request older (or newer) than this is not trusted: clocks of one cluster agree
# within seconds, and a captured request must not be replayable later.
MAX_SKEW: Final = 30.0
# Longer than the owner may take to end a call on hangup.
FORWARD_TIMEOUT: Final = 20.0
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)


def cluster_key(secret: str) -> bytes:
    return hashlib.sha256(b"realtime-gateway cluster\0" + secret.encode()).digest()


class Forwarder:
    def __init__(self, http: aiohttp.ClientSession, node: Node, key: bytes) -> None:
        self._http = http
        self.node = node
        self._key = key

    # -- signing ---------------------------------------------------------------------------

    def _signature(self, method: str, target: str, sender: str, at: str) -> str:
        message = "\n".join((method.upper(), target, sender, at)).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, method: str, target: str) -> dict[str, str]:
        at = f"{time.time():.3f}"
        return {
            FORWARDED_BY: self.node.name,
            FORWARDED_AT: at,
            SIGNATURE: self._signature(method, target, self.node.name, at),
        }

    def is_forwarded(self, request: web.Request) -> bool:
        """A request another process of this gateway signed and sent here."""
        sender = request.headers.get(FORWARDED_BY)
        at = request.headers.get(FORWARDED_AT)
        signature = request.headers.get(SIGNATURE)
        if not (sender and at and signature):
            return False
        try:
            skew = abs(time.time() - float(at))
        except ValueError:
            return False
        expected = self._signature(request.method, request.path_qs, sender, at)
        return skew <= MAX_SKEW and hmac.compare_digest(expected, signature)

    def owner_elsewhere(self, entry: CallEntry | None) -> bool:
        return entry is not None and entry.owner != self.node.name and bool(entry.address)

    # -- HTTP --------------------------------------------------------------------------------

    async def http(self, request: web.Request, entry: CallEntry) -> web.Response:
        """Send ``request`` to the owner of ``entry``'s call; its answer, as it came (a 404 if
        the owner is gone: its entry will expire within seconds, and the call with it)."""
        try:
            return await self.relay(request, entry.address)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning(
                "forward.failed", call_id=entry.call_id, owner=entry.owner, error=type(exc).__name__
            )
            raise NotFound(f"No call found with id '{entry.call_id}'.", param="call_id") from None

    async def relay(self, request: web.Request, address: str) -> web.Response:
        """Send ``request`` to the process at ``address``, signed; its answer, as it came.
        Raises the transport's error if that process cannot be reached."""
        target = request.path_qs
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers.update(self.sign(request.method, target))
        body = await request.read()
        async with asyncio.timeout(FORWARD_TIMEOUT):
            async with self._http.request(
                request.method, address + target, headers=headers, data=body
            ) as answer:
                payload = await answer.read()
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
                return web.Response(status=answer.status, body=payload, headers=kept)

    async def stream(self, request: web.Request, address: str) -> web.StreamResponse:
        """Send a ``GET`` (or ``HEAD``) to the process at ``address``, signed, and stream its
        answer back as it comes (a file: the body is not held in memory)."""
        target = request.path_qs
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers.update(self.sign(request.method, target))
        try:
            async with asyncio.timeout(FORWARD_TIMEOUT):
                answer = await self._http.request(request.method, address + target, headers=headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("forward.failed", target=request.path, error=type(exc).__name__)
            # Listed but not answering: just died, or restarting. Its files are still there.
            raise Unavailable(
                "The gateway process holding this resource did not answer; retry shortly.",
                retry_after=10,
            ) from None
        async with answer:
            response = web.StreamResponse(status=answer.status)
            for name, value in answer.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    response.headers[name] = value
            if answer.content_length is not None:
                response.content_length = answer.content_length
            await response.prepare(request)
            async for chunk in answer.content.iter_chunked(64 * 1024):
                await response.write(chunk)
            await response.write_eof()
            return response

    async def get_text(self, address: str, target: str) -> str:
        """A signed ``GET`` of another process's text."""
        async with asyncio.timeout(3.0):
            async with self._http.get(address + target, headers=self.sign("GET", target)) as answer:
                answer.raise_for_status()
                return await answer.text()

    async def get_json(self, entry_address: str, target: str) -> object:
        """A signed ``GET`` of another process's JSON (what it alone knows)."""
        async with asyncio.timeout(3.0):
            async with self._http.get(
                entry_address + target, headers=self.sign("GET", target)
            ) as answer:
                answer.raise_for_status()
                return await answer.json()

    # -- WebSocket ----------------------------------------------------------------------------

    async def websocket(self, request: web.Request, entry: CallEntry) -> web.StreamResponse:
        """Relay a WebSocket to the call's owner, message by message, both ways."""
        target = request.path_qs
        protocols = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
        ]
        protocols = [p for p in protocols if p]
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "user-agent", "origin")
        }
        headers.update(self.sign(request.method, target))
        url = entry.address.replace("http", "ws", 1) + target
        try:
            upstream = await self._http.ws_connect(
                url, protocols=protocols, headers=headers, timeout=aiohttp.ClientWSTimeout(10)
            )
        except aiohttp.WSServerHandshakeError as exc:
            # The owner refused (no such call, a bad key): the client gets the same refusal.
            raise _refusal(exc.status, entry) from None
        except (aiohttp.ClientError, TimeoutError, OSError):
            raise NotFound(f"No call found with id '{entry.call_id}'.", param="call_id") from None
        # Answer with the subprotocol the owner chose, never one of the client's own offers:
        # a browser may offer its key as a subprotocol, and an echo would hand it back.
        chosen = upstream.protocol
        ws = web.WebSocketResponse(protocols=(chosen,) if chosen else (), heartbeat=30)
        await ws.prepare(request)
        log.info("forward.websocket", call_id=entry.call_id, owner=entry.owner)

        async def pipe(
            source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
            sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        ) -> None:
            async for message in source:
                if message.type == WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
                else:
                    break
            await sink.close()

        tasks = [
            asyncio.ensure_future(pipe(ws, upstream)),
            asyncio.ensure_future(pipe(upstream, ws)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
            await upstream.close()
            if not ws.closed:
                await ws.close()
        return ws


def _refusal(status: int, entry: CallEntry) -> GatewayError:
    if status == 401:
        return AuthenticationError("Incorrect API key provided.", code="invalid_api_key")
    if status == 400:
        return InvalidRequest("The sideband request was refused by the call's gateway process.")
    if status == 429:
        return RateLimited("The call's gateway process refused the sideband: too many attached.")
    if status >= 500:
        return Unavailable("The call's gateway process could not take the sideband; retry.")
    return NotFound(f"No call found with id '{entry.call_id}'.", param="call_id")
