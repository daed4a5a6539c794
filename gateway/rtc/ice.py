"""Where ICE gathers, chosen per peer connection: host addresses and a UDP port range.

aioice gathers host candidates from ``aioice.ice.get_host_addresses()`` — a module-level function
that offers every non-loopback interface — and binds one socket per address with
``loop.create_datagram_endpoint(local_addr=(address, 0))``, letting the OS pick the port. aiortc
passes no options through to either. We wrap both, once per process/loop, so that they honour a
context variable; the peer code sets it around ``setLocalDescription`` (where aiortc gathers), so
each leg gets its own addresses (loopback, or ``0.0.0.0``, when asked for explicitly) and ports,
and nothing else in the process changes. Written against aioice 0.13.0;
``tests/unit/test_ice.py`` fails loudly if gathering stops going through these two points.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import ipaddress
import itertools
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCIceServer

from gateway.config import IceServer
from gateway.rtc import compat


class PortUsage:
    """The sockets one gateway holds in its port range, so readiness can see it running out."""

    def __init__(self) -> None:
        self._transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self.exhausted_at: float | None = None

    def bound(self, transport: asyncio.BaseTransport) -> None:
        self._transports.add(transport)

    def in_use(self) -> int:
        return sum(1 for t in list(self._transports) if not t.is_closing())


@dataclass
class Gathering:
    addresses: tuple[str, ...] = ()
    port_range: tuple[int, int] | None = None
    usage: PortUsage | None = None
    # Set when the port range had no free port for some socket.
    exhausted: bool = field(default=False)


_current: contextvars.ContextVar[Gathering | None] = contextvars.ContextVar(
    "gateway_ice_gathering", default=None
)
_original_host_addresses: Callable[[bool, bool], list[str]] | None = None
# Rotates the first port tried, so consecutive calls do not all probe from the bottom.
_next_port = itertools.count()


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    assert _original_host_addresses is not None
    gathering = _current.get()
    if gathering is None or not gathering.addresses:
        return _original_host_addresses(use_ipv4, use_ipv6)
    out = []
    for address in gathering.addresses:
        version = ipaddress.ip_address(address).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            out.append(address)
    return out


def install() -> None:
    """Route aioice's host-address lookup through :func:`gathering`. Idempotent."""
    global _original_host_addresses
    if _original_host_addresses is None:
        _original_host_addresses = compat.ice_host_addresses()
        compat.replace_ice_host_addresses(_get_host_addresses)


def rtc_servers(servers: Sequence[IceServer]) -> list[RTCIceServer]:
    """STUN/TURN servers as aiortc takes them (the credential revealed only here)."""
    return [
        RTCIceServer(
            urls=list(server.urls),
            username=server.username,
            credential=server.credential.reveal() if server.credential else None,
        )
        for server in servers
    ]


def default_host_addresses() -> list[str]:
    """The addresses ICE offers when none are configured (every non-loopback interface)."""
    install()
    assert _original_host_addresses is not None
    return _original_host_addresses(True, True)


def _wrap_loop(loop: asyncio.AbstractEventLoop) -> None:
    if getattr(loop, "_gateway_ice_ports", False):
        return
    original = loop.create_datagram_endpoint

    async def create_datagram_endpoint(protocol_factory: Any, *args: Any, **kwargs: Any) -> Any:
        gathering = _current.get()
        local_addr = kwargs.get("local_addr")
        if (
            gathering is None
            or gathering.port_range is None
            or not isinstance(local_addr, tuple)
            or local_addr[1] != 0
        ):
            return await original(protocol_factory, *args, **kwargs)
        low, high = gathering.port_range
        size = high - low + 1
        start = next(_next_port) % size
        for offset in range(size):
            port = low + (start + offset) % size
            try:
                transport, protocol = await original(
                    protocol_factory, *args, **{**kwargs, "local_addr": (local_addr[0], port)}
                )
            except OSError as exc:
                if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise
            else:
                if gathering.usage is not None:
                    gathering.usage.bound(transport)
                return transport, protocol
        gathering.exhausted = True
        if gathering.usage is not None:
            gathering.usage.exhausted_at = time.monotonic()
        raise OSError(errno.EADDRINUSE, f"no free UDP port in {low}-{high}")

    loop.create_datagram_endpoint = create_datagram_endpoint  # type: ignore[method-assign]
    loop._gateway_ice_ports = True  # type: ignore[attr-defined]


@contextmanager
def gathering(
    addresses: Sequence[str] = (),
    port_range: tuple[int, int] | None = None,
    usage: PortUsage | None = None,
) -> Iterator[Gathering]:
    """Within this block, ICE offers exactly ``addresses`` (all interfaces if empty), on ports
    from ``port_range`` (the OS's choice if None). The yielded object says if ports ran out."""
    install()
    if port_range is not None:
        _wrap_loop(asyncio.get_running_loop())
    state = Gathering(addresses=tuple(addresses), port_range=port_range, usage=usage)
    token = _current.set(state)
    try:
        yield state
    finally:
        _current.reset(token)


@contextmanager
def host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Within this block, ICE gathering offers exactly ``addresses`` (all interfaces if empty)."""
    with gathering(addresses):
        yield
