"""SCTP hooks: reassembly bounded to the message size limit, data-channel control messages
validated, text that is not UTF-8 handed on as a marker instead of raising."""

from __future__ import annotations

import functools
from collections.abc import Callable
from struct import unpack_from
from typing import Any, Final

from aiortc import rtcsctptransport as sctp
from aiortc.utils import uint16_add, uint16_gt, uint32_gt

from gateway.protocol.events import OversizedMessage, UndecodableText
from gateway.rtc import guard
from gateway.rtc.guard import DROPS, AssociationGuard

_ASSOCIATION: Final = "_gateway_association"
# aiortc's initial receive window: what it has not handed up is 1 MiB minus the advertised one.
_INITIAL_RWND: Final = 1024 * 1024
# Untagged associations (a peer the gateway did not build) still get a bound.
DEFAULT_MAX_MESSAGE: Final = 16 * 1024 * 1024


def association_of(transport: Any) -> AssociationGuard:
    association: AssociationGuard | None = getattr(transport, _ASSOCIATION, None)
    if association is None:
        association = AssociationGuard(max_message=DEFAULT_MAX_MESSAGE)
        setattr(transport, _ASSOCIATION, association)
    return association


async def receive_data_chunk(self: Any, chunk: Any) -> None:
    """Replaces ``RTCSctpTransport._receive_data_chunk``: aiortc's, with reassembly bounded."""
    self._sack_needed = True
    last = self._last_received_tsn
    if last is None or uint32_gt(chunk.tsn, (last + guard.MAX_TSN_AHEAD) & 0xFFFFFFFF):
        # Beyond any window we advertise: dropped unacknowledged, as a full receiver would.
        DROPS.drop("sctp_window", association_of(self).leg)
        return
    if self._mark_received(chunk.tsn):
        return
    association = association_of(self)
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


def guarded_channel_receive(original: Any) -> Any:
    async def _data_channel_receive(self: Any, stream_id: int, pp_id: int, data: bytes) -> None:
        """Replaces ``RTCSctpTransport._data_channel_receive``: validate, then hand on."""
        association = association_of(self)
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
