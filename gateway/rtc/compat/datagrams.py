"""The datagram guard's hook: ``aioice.ice.StunProtocol.datagram_received``, replaced, and
exception containment for aiortc's receive loops (:func:`contained`)."""

from __future__ import annotations

import ipaddress
from typing import Any, Final

import aioice.ice
import aioice.stun

from gateway.rtc import guard
from gateway.rtc.guard import DROPS, Link

_LINK: Final = "_gateway_link"


def link_of(connection: aioice.ice.Connection) -> Link:
    link: Link | None = getattr(connection, _LINK, None)
    if link is None:
        link = Link()
        setattr(connection, _LINK, link)
    return link


_SUCCEEDED: Final = aioice.ice.CandidatePair.State.SUCCEEDED
_STUN_RESPONSES: Final = (aioice.stun.Class.RESPONSE, aioice.stun.Class.ERROR)


def _same_address(a: tuple[str, int], b: tuple[str, int]) -> bool:
    if a == b:
        return True
    if a[1] != b[1]:
        return False
    try:
        return ipaddress.ip_address(a[0]) == ipaddress.ip_address(b[0])
    except ValueError:
        return False


def _validated(
    connection: aioice.ice.Connection, protocol: Any, addr: tuple[str, int], link: Link
) -> bool:
    """``addr`` is the remote end of a pair on ``protocol`` that ICE validated or nominated."""
    key = (id(protocol), addr)
    if key in link.allowed:
        return True
    pairs = list(connection._nominated.values())
    pairs += [p for p in connection._check_list if p.state is _SUCCEEDED]
    for pair in pairs:
        if pair.protocol is protocol and _same_address(pair.remote_addr, addr):
            link.allowed.add(key)
            return True
    return False


def datagram_received(self: Any, data: bytes | str, addr: tuple[Any, ...]) -> None:
    """Replaces ``aioice.ice.StunProtocol.datagram_received``: judge, then hand on."""
    address = (addr[0], addr[1])
    connection = self.receiver
    link = link_of(connection)
    raw = data if isinstance(data, bytes) else data.encode()
    kind = guard.classify(raw)
    if kind == guard.STUN:
        try:
            message = aioice.stun.parse_message(raw)
        except Exception:
            DROPS.drop("stun_malformed", link.leg)
            return
        if _validated(connection, self, address, link):
            link.received += 1
        try:
            if message.message_class in _STUN_RESPONSES:
                transaction = self.transactions.get(message.transaction_id)
                if transaction is not None:
                    transaction.response_received(message, address)
            elif message.message_class == aioice.stun.Class.REQUEST:
                connection.request_received(message, address, self)
        except Exception as exc:
            DROPS.drop("stun_error", link.leg, error=exc)
        return
    if kind != guard.DTLS and kind != guard.RTP:
        DROPS.drop(kind, link.leg)
        return
    if not _validated(connection, self, address, link):
        DROPS.drop("unvalidated_source", link.leg)
        return
    if kind == guard.RTP:
        source = guard.rtp_source(raw)
        if source is not None and not link.admit_source(source):
            DROPS.drop("ssrc_limit", link.leg)
            return
    if connection._queue.qsize() >= guard.MAX_BACKLOG:
        DROPS.drop("backlog", link.leg)
        return
    link.received += 1
    connection.data_received(raw, self.local_candidate.component)


def contained(handler: Any, reason: str) -> Any:
    """``handler`` (a coroutine method of a receive loop) that can no longer raise into it."""

    async def contained(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            await handler(self, *args, **kwargs)
        except Exception as exc:
            DROPS.drop(reason, None, error=exc)

    contained.__wrapped__ = handler  # type: ignore[attr-defined]
    return contained
