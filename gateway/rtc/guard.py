"""What the network may hand the WebRTC stack: every datagram and data-channel chunk is judged
before aiortc sees it.

aioice passes every non-STUN datagram to the ICE connection whatever its source, and aiortc tears
a transport down on the first exception its receive loop meets. So, as libwebrtc does:

* a datagram is demultiplexed by its first byte (RFC 7983): STUN, DTLS, RTP/RTCP; anything else,
  anything empty and anything over :data:`MAX_DATAGRAM` (more than SRTP's buffer, more than any
  path MTU a browser uses) is dropped;
* a non-STUN datagram is accepted only from the remote address of a validated candidate pair
  (a connectivity check succeeded on it, or it was nominated): before ICE completes, only STUN
  gets in, and off-path senders never reach DTLS, SRTP or SCTP;
* what waits for a transport that is not reading yet (before DTLS starts) is bounded;
* one peer may use at most :data:`MAX_SSRCS` RTP/RTCP sources (each new SSRC costs an SRTP
  stream and routing state);
* the SCTP association holds at most one maximum-size message per stream while reassembling,
  and refuses chunks far ahead of what it has acknowledged.

Everything dropped is counted by reason (:data:`DROPS`, read by the metrics at scrape time) and
logged at most once a minute per reason. This module decides; :mod:`gateway.rtc.compat` is where
the decisions are plugged into aioice and aiortc.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import structlog

log = structlog.get_logger(__name__)

# pylibsrtp refuses (with an exception aiortc does not catch) anything longer than its 1500-byte
# buffer; browsers keep RTP, DTLS records and SCTP packets under ~1200 bytes.
MAX_DATAGRAM: Final = 1500
# Datagrams queued for a transport that is not reading yet: DTLS starts reading within one
# round trip of ICE completing; a live call's queue is drained continuously.
MAX_BACKLOG: Final = 256
# A browser sends one audio SSRC, perhaps one more for RTCP while it only receives; a few spare.
MAX_SSRCS: Final = 8
# SCTP: how far ahead of the cumulative acknowledgement a chunk may be (aiortc advertises a
# 1 MiB window: about 900 full chunks), and how many channels one peer may open.
MAX_TSN_AHEAD: Final = 8192
MAX_CHANNELS: Final = 8
# What an SCTP association may hold in reassembly, whatever its streams.
MAX_REASSEMBLY_BYTES: Final = 1024 * 1024

REASONS: Final = (
    "empty",  # a zero-length datagram
    "oversize",  # over MAX_DATAGRAM
    "unknown_protocol",  # first byte neither STUN, DTLS nor RTP/RTCP (RFC 7983)
    "stun_malformed",  # looks like STUN, does not parse
    "stun_error",  # parsed, but aioice failed handling it
    "unvalidated_source",  # non-STUN from an address no connectivity check validated
    "backlog",  # the transport is not reading and MAX_BACKLOG datagrams are waiting
    "ssrc_limit",  # an RTP/RTCP source beyond MAX_SSRCS
    "rtp_error",  # authenticated RTP/RTCP that aiortc failed to handle
    "sctp_error",  # an SCTP packet aiortc failed to handle
    "sctp_window",  # an SCTP chunk too far ahead of the acknowledged sequence
    "message_too_large",  # a data-channel message over the limit, discarded while arriving
    "dcep_invalid",  # a data-channel control message that does not fit the channels open
    "channel_limit",  # a data channel beyond MAX_CHANNELS
    "text_invalid",  # a text message that is not UTF-8 (answered with an error event)
)
_LOG_INTERVAL: Final = 60.0


class DropCounter:
    """Process-wide counts of what the guard dropped, by reason; logs rarely, counts always."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._logged_at: dict[str, float] = {}
        self._logged_count: dict[str, int] = {}

    def drop(
        self, reason: str, leg: str | None = None, *, error: BaseException | None = None
    ) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = time.monotonic()
        last = self._logged_at.get(reason)
        if last is None or now - last >= _LOG_INTERVAL:
            since = self.counts[reason] - self._logged_count.get(reason, 0)
            self._logged_at[reason] = now
            self._logged_count[reason] = self.counts[reason]
            log.info(
                "media.dropped", reason=reason, leg=leg, count=since, total=self.counts[reason]
            )

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)


DROPS = DropCounter()


# -- datagrams --------------------------------------------------------------------------------

STUN, DTLS, RTP = "stun", "dtls", "rtp"


def classify(data: bytes) -> str:
    """The protocol a datagram claims to be (RFC 7983), or the reason to drop it."""
    size = len(data)
    if size == 0:
        return "empty"
    if size > MAX_DATAGRAM:
        return "oversize"
    first = data[0]
    if first < 4:
        return STUN
    if 19 < first < 64:
        return DTLS
    if 127 < first < 192:
        return RTP
    return "unknown_protocol"


def rtp_source(data: bytes) -> int | None:
    """The sender SSRC in the clear part of an SRTP or SRTCP packet (None if too short)."""
    if len(data) >= 2 and 192 <= data[1] <= 223:  # RTCP (RFC 5761): packet types 192-223
        return int.from_bytes(data[4:8], "big") if len(data) >= 8 else None
    return int.from_bytes(data[8:12], "big") if len(data) >= 12 else None


@dataclass
class Link:
    """What the guard knows about one ICE connection: its leg, sources, and traffic seen."""

    leg: str | None = None
    # Remote addresses validated per local socket (by id of aioice's StunProtocol).
    allowed: set[tuple[int, tuple[str, int]]] = field(default_factory=set)
    ssrcs: set[int] = field(default_factory=set)
    # Datagrams accepted from validated sources (media, DTLS, SCTP, STUN): proof of life.
    received: int = 0

    def admit_source(self, ssrc: int) -> bool:
        if ssrc in self.ssrcs:
            return True
        if len(self.ssrcs) >= MAX_SSRCS:
            return False
        self.ssrcs.add(ssrc)
        return True


# -- SCTP reassembly ----------------------------------------------------------------------------


@dataclass
class StreamGuard:
    """Per inbound stream: ordered messages being discarded, and unordered ones skipped."""

    discarded: deque[int] = field(default_factory=lambda: deque(maxlen=64))
    skipping_unordered: bool = False


@dataclass
class AssociationGuard:
    """Per SCTP association: the message size limit and each stream's discard state."""

    max_message: int
    leg: str | None = None
    streams: dict[int, StreamGuard] = field(default_factory=dict)

    def stream(self, stream_id: int) -> StreamGuard:
        guard = self.streams.get(stream_id)
        if guard is None:
            guard = self.streams[stream_id] = StreamGuard()
        return guard
