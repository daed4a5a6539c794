"""Who the client is behind a reverse proxy: ``X-Forwarded-For`` / ``Forwarded``, when trusted.

Behind a proxy every request comes from the proxy's address, so per-address limits and logs
would see one client. The headers that name the real one are believed only when the request
comes from ``GATEWAY_TRUSTED_PROXIES`` (anyone else could write them): the chain is read from
the right, skipping trusted proxies, and the first address that is not one is the client.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from gateway.server.middlewares import Handler

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_FORWARDED_FOR = re.compile(r'for\s*=\s*"?\[?([^\]";,\s]+)', re.IGNORECASE)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # [v6]:port
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def forwarded_chain(forwarded: str | None, x_forwarded_for: str | None) -> list[str]:
    """The addresses the proxies recorded, client first. ``X-Forwarded-For`` wins when present:
    proxies (Caddy, nginx, ingress-nginx) rewrite it but pass a client's own ``Forwarded`` on,
    so that one is read only where a proxy writes nothing else."""
    if x_forwarded_for:
        return [part.strip() for part in x_forwarded_for.split(",") if part.strip()]
    if forwarded:
        return _FORWARDED_FOR.findall(forwarded)
    return []


def client_address(
    peer: str | None, chain: Sequence[str], trusted: Sequence[Network]
) -> str | None:
    """The client's address: ``peer`` unless it is a trusted proxy, then the nearest address
    in ``chain`` (read from the right) that is not one."""

    def is_trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in trusted)

    if peer is None or not is_trusted(_address(peer)):
        return peer
    for hop in reversed(chain):
        address = _address(hop)
        if address is None:
            break  # a hop we cannot read: trust nothing before it
        if not is_trusted(address):
            return str(address)
    return peer


def proxies_middleware(
    trusted: Sequence[str],
) -> Callable[..., Awaitable[web.StreamResponse]]:
    networks: list[Network] = [ipaddress.ip_network(n, strict=False) for n in trusted]

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if networks:
            chain = forwarded_chain(
                request.headers.get("Forwarded"), request.headers.get("X-Forwarded-For")
            )
            client = client_address(request.remote, chain, networks)
            if client is not None and client != request.remote:
                request = request.clone(remote=client)
        return await handler(request)

    return middleware
