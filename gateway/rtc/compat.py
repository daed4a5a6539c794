"""Every private aiortc/aioice name the gateway relies on, in one module, checked at startup.

aiortc has no public hook for what a relay needs: encoded audio out of a receiver, a connect
task it owns, a say in which datagrams reach its transports. The hooks below are each a few
lines; :func:`check` verifies every name they touch against the installed aiortc and aioice and
fails with one actionable message, and :func:`install` puts the process-wide ones in place (the
datagram guard, and exception containment in the DTLS and SCTP receive paths). Written against
aiortc 1.16.0 and aioice 0.13.0, the versions ``pyproject.toml`` pins.

The decisions (what to drop, how much to hold) live in :mod:`gateway.rtc.guard`; this module
only plugs them in.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Callable
from struct import unpack_from
from typing import Any, Final

import aioice.ice
import aioice.stun
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver
from aiortc import rtcsctptransport as sctp
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.utils import uint16_add, uint16_gt, uint32_gt

from gateway.protocol.events import OversizedMessage, UndecodableText
from gateway.rtc import guard
from gateway.rtc.guard import DROPS, AssociationGuard, Link

TESTED_WITH: Final = "aiortc 1.16.0 / aioice 0.13.0"

_JITTER_BUFFER: Final = "_RTCRtpReceiver__jitter_buffer"
_DECODER_QUEUE: Final = "_RTCRtpReceiver__decoder_queue"
_LINK: Final = "_gateway_link"
_ASSOCIATION: Final = "_gateway_association"
# aiortc's initial receive window: what it has not handed up is 1 MiB minus the advertised one.
_INITIAL_RWND: Final = 1024 * 1024
# Untagged associations (a peer the gateway did not build) still get a bound.
DEFAULT_MAX_MESSAGE: Final = 16 * 1024 * 1024


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
    aioice.ice.StunProtocol.datagram_received = _datagram_received  # type: ignore[method-assign]
    RTCDtlsTransport._handle_rtp_data = _contained(  # type: ignore[method-assign]
        RTCDtlsTransport._handle_rtp_data, "rtp_error"
    )
    RTCDtlsTransport._handle_rtcp_data = _contained(  # type: ignore[method-assign]
        RTCDtlsTransport._handle_rtcp_data, "rtp_error"
    )
    sctp.RTCSctpTransport._handle_data = _contained(  # type: ignore[method-assign]
        sctp.RTCSctpTransport._handle_data, "sctp_error"
    )
    sctp.RTCSctpTransport._receive_data_chunk = _receive_data_chunk  # type: ignore[method-assign]
    original_receive = sctp.RTCSctpTransport._data_channel_receive
    sctp.RTCSctpTransport._data_channel_receive = (  # type: ignore[method-assign]
        _guarded_channel_receive(original_receive)
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


def link_of(connection: aioice.ice.Connection) -> Link:
    link: Link | None = getattr(connection, _LINK, None)
    if link is None:
        link = Link()
        setattr(connection, _LINK, link)
    return link


def tag(pc: RTCPeerConnection, leg: str, *, max_message: int) -> None:
    """Name ``pc``'s links and association for the guard, and set its message size limit."""
    for connection in ice_connections(pc):
        link_of(connection).leg = leg
    if pc.sctp is not None:
        association = _association(pc.sctp)
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


# -- datagrams --------------------------------------------------------------------------------

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


def _datagram_received(self: Any, data: bytes | str, addr: tuple[Any, ...]) -> None:
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


def _contained(handler: Any, reason: str) -> Any:
    """``handler`` (a coroutine method of a receive loop) that can no longer raise into it."""

    async def contained(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            await handler(self, *args, **kwargs)
        except Exception as exc:
            DROPS.drop(reason, None, error=exc)

    contained.__wrapped__ = handler  # type: ignore[attr-defined]
    return contained


# -- SCTP -----------------------------------------------------------------------------------------


def _association(transport: Any) -> AssociationGuard:
    association: AssociationGuard | None = getattr(transport, _ASSOCIATION, None)
    if association is None:
        association = AssociationGuard(max_message=DEFAULT_MAX_MESSAGE)
        setattr(transport, _ASSOCIATION, association)
    return association


async def _receive_data_chunk(self: Any, chunk: Any) -> None:
    """Replaces ``RTCSctpTransport._receive_data_chunk``: aiortc's, with reassembly bounded."""
    self._sack_needed = True
    last = self._last_received_tsn
    if last is None or uint32_gt(chunk.tsn, (last + guard.MAX_TSN_AHEAD) & 0xFFFFFFFF):
        # Beyond any window we advertise: dropped unacknowledged, as a full receiver would.
        DROPS.drop("sctp_window", _association(self).leg)
        return
    if self._mark_received(chunk.tsn):
        return
    association = _association(self)
    stream = self._get_inbound_stream(chunk.stream_id)
    if _admit(self, association, stream, chunk):
        stream.add_chunk(chunk)
        self._advertised_rwnd -= len(chunk.user_data)
    state = association.stream(chunk.stream_id)
    while True:
        for message in stream.pop_messages():
            self._advertised_rwnd += len(message[2])
            await self._receive(*message)
        if not _skip_discarded(stream, state):
            break
    await self._reset_deferred_streams()


def _admit(self: Any, association: AssociationGuard, stream: Any, chunk: Any) -> bool:
    """Whether ``chunk`` joins its stream's reassembly; discards its message if it is too big."""
    state = association.stream(chunk.stream_id)
    size = len(chunk.user_data)
    held = _INITIAL_RWND - self._advertised_rwnd
    unordered = bool(chunk.flags & sctp.SCTP_DATA_UNORDERED)
    same: Callable[[Any], bool]
    if unordered:
        if state.skipping_unordered:
            if not chunk.flags & sctp.SCTP_DATA_FIRST_FRAG:
                DROPS.drop("message_too_large", association.leg)
                return False
            state.skipping_unordered = False
        same = _is_unordered
    else:
        ssn = chunk.stream_seq
        if uint16_gt(stream.sequence_number, ssn) or ssn in state.discarded:
            # A fragment of a message already delivered or discarded.
            DROPS.drop("message_too_large", association.leg)
            return False
        same = functools.partial(_is_ordered, ssn)
    if held + size <= association.max_message:
        return True  # the common case: nothing held comes near the limit
    pending = sum(len(c.user_data) for c in stream.reassembly if same(c))
    # Whatever the streams, the association holds at most a couple of maximal messages.
    cap = max(guard.MAX_REASSEMBLY_BYTES, 2 * association.max_message)
    if pending + size <= association.max_message and held + size <= cap:
        return True
    kept = [c for c in stream.reassembly if not same(c)]
    self._advertised_rwnd += pending
    stream.reassembly = kept
    if unordered:
        state.skipping_unordered = not chunk.flags & sctp.SCTP_DATA_LAST_FRAG
    else:
        state.discarded.append(chunk.stream_seq)
    DROPS.drop("message_too_large", association.leg)
    channel = self._data_channels.get(chunk.stream_id)
    if channel is not None:
        # The browser is told, in the event shape it knows, once per discarded message.
        channel.emit("message", OversizedMessage(association.max_message))
    return False


def _is_unordered(chunk: Any) -> bool:
    return bool(chunk.flags & sctp.SCTP_DATA_UNORDERED)


def _is_ordered(ssn: int, chunk: Any) -> bool:
    return not chunk.flags & sctp.SCTP_DATA_UNORDERED and chunk.stream_seq == ssn


def _skip_discarded(stream: Any, state: guard.StreamGuard) -> bool:
    """Move an ordered stream past the discarded message it waits for; True if it moved."""
    moved = False
    while stream.sequence_number in state.discarded:
        state.discarded.remove(stream.sequence_number)
        stream.sequence_number = uint16_add(stream.sequence_number, 1)
        moved = True
    return moved


def _guarded_channel_receive(original: Any) -> Any:
    async def _data_channel_receive(self: Any, stream_id: int, pp_id: int, data: bytes) -> None:
        """Replaces ``RTCSctpTransport._data_channel_receive``: validate, then hand on."""
        association = _association(self)
        if pp_id == sctp.WEBRTC_DCEP:
            problem = _dcep_problem(self, stream_id, data)
            if problem is not None:
                DROPS.drop(problem, association.leg)
                return
        elif pp_id == sctp.WEBRTC_STRING:
            channel = self._data_channels.get(stream_id)
            if channel is None:
                return
            try:
                text = data.decode("utf8")
            except UnicodeDecodeError:
                DROPS.drop("text_invalid", association.leg)
                channel.emit("message", UndecodableText())
                return
            channel.emit("message", text)
            return
        try:
            await original(self, stream_id, pp_id, data)
        except Exception as exc:
            DROPS.drop("sctp_error", association.leg, error=exc)

    return _data_channel_receive


def _dcep_problem(transport: Any, stream_id: int, data: bytes) -> str | None:
    """Why a data-channel control message cannot be applied (None: it can)."""
    if not data:
        return "dcep_invalid"
    kind = data[0]
    channels = transport._data_channels
    if kind == sctp.DATA_CHANNEL_OPEN:
        if len(data) < 12 or stream_id in channels:
            return "dcep_invalid"
        label_length, protocol_length = unpack_from("!HH", data, 8)
        if 12 + label_length + protocol_length > len(data):
            return "dcep_invalid"
        try:
            data[12 : 12 + label_length].decode("utf8")
            data[12 + label_length : 12 + label_length + protocol_length].decode("utf8")
        except UnicodeDecodeError:
            return "dcep_invalid"
        if len(channels) >= guard.MAX_CHANNELS:
            return "channel_limit"
    elif kind == sctp.DATA_CHANNEL_ACK and stream_id not in channels:
        return "dcep_invalid"
    return None
