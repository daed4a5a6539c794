"""Which local addresses ICE offers as host candidates, chosen per peer connection.

aioice gathers host candidates from ``aioice.ice.get_host_addresses()``, a module-level function
that offers every non-loopback interface and takes no options, and aiortc passes nothing through
to it. We wrap that one function, once per process, so that it honours a context variable; the
peer code sets the variable around ``setLocalDescription`` (where aiortc gathers), so each leg
gets its own addresses — loopback included when asked for explicitly — and nothing else in the
process changes. Written against aioice 0.13.0; ``tests/unit/test_ice.py`` fails loudly if
gathering stops going through this function.
"""

from __future__ import annotations

import contextvars
import ipaddress
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import aioice.ice

_override: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "gateway_ice_host_addresses", default=None
)
_original: Callable[[bool, bool], list[str]] | None = None


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    assert _original is not None
    chosen = _override.get()
    if chosen is None:
        return _original(use_ipv4, use_ipv6)
    out = []
    for address in chosen:
        version = ipaddress.ip_address(address).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            out.append(address)
    return out


def install() -> None:
    """Route aioice's host-address lookup through :func:`host_addresses`. Idempotent."""
    global _original
    if _original is None:
        _original = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = _get_host_addresses


@contextmanager
def host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Within this block, ICE gathering offers exactly ``addresses`` (all interfaces if empty)."""
    install()
    token = _override.set(tuple(addresses) if addresses else None)
    try:
        yield
    finally:
        _override.reset(token)
