"""Every private aiortc/aioice name the gateway relies on, in one package, checked at startup.

aiortc has no public hook for what a relay needs: encoded audio out of a receiver, a connect
task it owns, a say in which datagrams reach its transports. The hooks below are each a few
lines; :func:`check` verifies every name they touch against the installed aiortc and aioice and
fails with one actionable message, and :func:`install` puts the process-wide ones in place (the
datagram guard, and exception containment in the DTLS and SCTP receive paths). Written against
aiortc 1.16.0 and aioice 0.13.0, the versions ``pyproject.toml`` pins.

The decisions (what to drop, how much to hold) live in :mod:`gateway.rtc.guard`; this package
only plugs them in: :mod:`.datagrams` (the datagram guard's hook, exception containment) and
:mod:`.datachannel` (bounded reassembly, data-channel control messages) hold the longer hooks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver
from aiortc import rtcsctptransport as sctp
from aiortc.rtcdtlstransport import RTCDtlsTransport

from gateway.rtc.compat import datachannel, datagrams
from gateway.rtc.compat.datachannel import DEFAULT_MAX_MESSAGE, association_of
from gateway.rtc.compat.datagrams import link_of

__all__ = [
    "DEFAULT_MAX_MESSAGE",
    "IncompatibleStack",
    "OwnedPeerConnection",
    "association_of",
    "check",
    "ice_connections",
    "ice_host_addresses",
    "install",
    "jitter_buffer",
    "link_of",
    "packets_received",
    "replace_ice_host_addresses",
    "replace_jitter_buffer",
    "rtp_payload",
    "stop_decoder_thread",
    "tag",
]

TESTED_WITH: Final = "aiortc 1.16.0 / aioice 0.13.0"

_JITTER_BUFFER: Final = "_RTCRtpReceiver__jitter_buffer"
_DECODER_QUEUE: Final = "_RTCRtpReceiver__decoder_queue"


class IncompatibleStack(RuntimeError):
    """The installed aiortc/aioice lacks a name a hook relies on."""


def _has_code_name(function: Any, name: str) -> bool:
    return name in getattr(getattr(function, "__code__", None), "co_names", ())


def _missing() -> list[str]:
    """Every private name a hook of this module touches that the installed stack lacks."""
    checks: list[tuple[str, bool]] = [
        (
            f"RTCRtpReceiver.{_JITTER_BUFFER}",
            _has_code_name(RTCRtpReceiver.__init__, _JITTER_BUFFER),
        ),
        (
            f"RTCRtpReceiver.{_DECODER_QUEUE}",
            _has_code_name(RTCRtpReceiver.__init__, _DECODER_QUEUE),
        ),
        ("RtpPacket._data", _has_code_name(RTCRtpReceiver._handle_rtp_packet, "_data")),
        ("RTCPeerConnection.__connect", hasattr(RTCPeerConnection, "_RTCPeerConnection__connect")),
        (
            "aioice Connection._query_consent_task",
            _has_code_name(aioice.ice.Connection.__init__, "_query_consent_task"),
        ),
        (
            "aioice Connection._nominated",
            _has_code_name(aioice.ice.Connection.__init__, "_nominated"),
        ),
        (
            "aioice Connection._check_list",
            _has_code_name(aioice.ice.Connection.__init__, "_check_list"),
        ),
        ("aioice Connection._queue", _has_code_name(aioice.ice.Connection.__init__, "_queue")),
        ("aioice Connection.data_received", hasattr(aioice.ice.Connection, "data_received")),
        ("aioice Connection.request_received", hasattr(aioice.ice.Connection, "request_received")),
        (
            "aioice StunProtocol.datagram_received",
            hasattr(aioice.ice.StunProtocol, "datagram_received"),
        ),
        (
            "aioice StunProtocol.transactions",
            _has_code_name(aioice.ice.StunProtocol.__init__, "transactions"),
        ),
        ("aioice get_host_addresses", hasattr(aioice.ice, "get_host_addresses")),
        (
            "aioice CandidatePair.State.SUCCEEDED",
            hasattr(aioice.ice.CandidatePair.State, "SUCCEEDED"),
        ),
        ("RTCDtlsTransport._handle_rtp_data", hasattr(RTCDtlsTransport, "_handle_rtp_data")),
        ("RTCDtlsTransport._handle_rtcp_data", hasattr(RTCDtlsTransport, "_handle_rtcp_data")),
        (
            "RTCDtlsTransport._data_receiver",
            _has_code_name(RTCDtlsTransport._recv_next, "_data_receiver"),
        ),
        ("RTCSctpTransport._handle_data", hasattr(sctp.RTCSctpTransport, "_handle_data")),
        (
            "RTCSctpTransport._receive_data_chunk",
            hasattr(sctp.RTCSctpTransport, "_receive_data_chunk"),
        ),
        (
            "RTCSctpTransport._data_channel_receive",
            hasattr(sctp.RTCSctpTransport, "_data_channel_receive"),
        ),
        ("RTCSctpTransport._mark_received", hasattr(sctp.RTCSctpTransport, "_mark_received")),
        (
            "RTCSctpTransport._get_inbound_stream",
            hasattr(sctp.RTCSctpTransport, "_get_inbound_stream"),
        ),
        (
            "RTCSctpTransport._reset_deferred_streams",
            hasattr(sctp.RTCSctpTransport, "_reset_deferred_streams"),
        ),
        (
            "RTCSctpTransport._advertised_rwnd",
            _has_code_name(sctp.RTCSctpTransport.__init__, "_advertised_rwnd"),
        ),
        (
            "RTCSctpTransport._data_channels",
            _has_code_name(sctp.RTCSctpTransport.__init__, "_data_channels"),
        ),
        ("InboundStream.pop_messages", hasattr(sctp.InboundStream, "pop_messages")),
        ("sctp constants", all(hasattr(sctp, n) for n in _SCTP_CONSTANTS)),
    ]
    return [name for name, present in checks if not present]


_SCTP_CONSTANTS: Final = (
    "WEBRTC_DCEP",
    "WEBRTC_STRING",
    "DATA_CHANNEL_OPEN",
    "DATA_CHANNEL_ACK",
    "SCTP_DATA_UNORDERED",
    "SCTP_DATA_FIRST_FRAG",
    "SCTP_DATA_LAST_FRAG",
)


def check() -> None:
    """Raise :class:`IncompatibleStack` naming what is missing, with what to do about it."""
    missing = _missing()
    if missing:
        raise IncompatibleStack(
            f"The installed aiortc/aioice lack what the gateway hooks into ({', '.join(missing)}); "
            f"it was written for {TESTED_WITH}: install those versions (pip install -e .)."
        )


_installed = False


def install() -> None:
    """Check the stack, then put the process-wide hooks in place. Idempotent."""
    global _installed
    if _installed:
        return
    check()
    aioice.ice.StunProtocol.datagram_received = datagrams.datagram_received  # type: ignore[method-assign]
    RTCDtlsTransport._handle_rtp_data = datagrams.contained(  # type: ignore[method-assign]
        RTCDtlsTransport._handle_rtp_data, "rtp_error"
    )
    RTCDtlsTransport._handle_rtcp_data = datagrams.contained(  # type: ignore[method-assign]
        RTCDtlsTransport._handle_rtcp_data, "rtp_error"
    )
    sctp.RTCSctpTransport._handle_data = datagrams.contained(  # type: ignore[method-assign]
        sctp.RTCSctpTransport._handle_data, "sctp_error"
    )
    sctp.RTCSctpTransport._receive_data_chunk = datachannel.receive_data_chunk  # type: ignore[method-assign]
    original_receive = sctp.RTCSctpTransport._data_channel_receive
    sctp.RTCSctpTransport._data_channel_receive = (  # type: ignore[method-assign]
        datachannel.guarded_channel_receive(original_receive)
    )
    _installed = True


# -- receivers: encoded audio out, no decoder -------------------------------------------------


def replace_jitter_buffer(receiver: RTCRtpReceiver, buffer: Any) -> None:
    """aiortc calls ``buffer.add(packet)`` on the loop for every RTP packet of ``receiver``."""
    setattr(receiver, _JITTER_BUFFER, buffer)


def jitter_buffer(receiver: RTCRtpReceiver) -> Any:
    """The object aiortc hands ``receiver``'s RTP packets to (its JitterBuffer, by default)."""
    return getattr(receiver, _JITTER_BUFFER)


def stop_decoder_thread(receiver: RTCRtpReceiver) -> None:
    """End the decoder thread aiortc starts per receiver (idle when nothing is decoded)."""
    getattr(receiver, _DECODER_QUEUE).put(None)


def rtp_payload(packet: Any) -> bytes:
    """The depayloaded payload aiortc keeps on its RtpPacket."""
    payload: bytes = packet._data
    return payload


# -- peer connections ---------------------------------------------------------------------------


class OwnedPeerConnection(RTCPeerConnection):
    """An RTCPeerConnection whose connect task is owned, so ``close()`` leaves nothing running.

    aiortc starts ``__connect`` (ICE, then DTLS, then SCTP) with a bare ``ensure_future`` and
    ``close()`` never waits for it. Closed early, that task goes on: ICE can complete after the
    close and start aioice's consent checks on a dead connection, which linger for ~30 s. Here
    the task is tracked and cancelled on close.
    """

    def __init__(self, configuration: RTCConfiguration | None = None) -> None:
        super().__init__(configuration)
        self._connect_tasks: set[asyncio.Task[Any]] = set()

    async def _RTCPeerConnection__connect(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connect_tasks.add(task)
        try:
            await super()._RTCPeerConnection__connect()  # type: ignore[misc]
        finally:
            self._connect_tasks.discard(task)

    async def close(self) -> None:
        await super().close()
        pending = [t for t in self._connect_tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for connection in ice_connections(self):
            consent = getattr(connection, "_query_consent_task", None)
            if isinstance(consent, asyncio.Task) and not consent.done():
                consent.cancel()
                await asyncio.gather(consent, return_exceptions=True)


def ice_connections(pc: RTCPeerConnection) -> list[aioice.ice.Connection]:
    """The aioice connections under ``pc``'s transports (one with BUNDLE)."""
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    found: list[aioice.ice.Connection] = []
    for dtls in transports:
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        if connection is not None and connection not in found:
            found.append(connection)
    return found


def tag(pc: RTCPeerConnection, leg: str, *, max_message: int) -> None:
    """Name ``pc``'s links and association for the guard, and set its message size limit."""
    for connection in ice_connections(pc):
        link_of(connection).leg = leg
    if pc.sctp is not None:
        association = datachannel.association_of(pc.sctp)
        association.leg = leg
        association.max_message = max_message


def packets_received(pc: RTCPeerConnection) -> int:
    """Datagrams ``pc`` accepted from its validated remote peer: STUN, DTLS, SCTP, RTP, RTCP."""
    return sum(link_of(c).received for c in ice_connections(pc))


def ice_host_addresses() -> Callable[[bool, bool], list[str]]:
    """aioice's own host-address lookup (before any replacement)."""
    lookup: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses
    return lookup


def replace_ice_host_addresses(lookup: Callable[[bool, bool], list[str]]) -> None:
    aioice.ice.get_host_addresses = lookup  # type: ignore[assignment]
