"""The media-plane guard: what reaches aiortc's transports, with real aioice and aiortc objects."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aioice.ice
import pytest
from aiortc import rtcsctptransport as sctp

from gateway.protocol.events import OversizedMessage, UndecodableText
from gateway.rtc import compat, guard, ice
from gateway.rtc.guard import DROPS


def dropped(reason: str) -> int:
    return DROPS.snapshot().get(reason, 0)


class TestClassify:
    @pytest.mark.parametrize(
        ("data", "kind"),
        [
            (b"", "empty"),
            (b"\x00\x01" + bytes(18), guard.STUN),
            (b"\x16\xfe\xfd" + bytes(10), guard.DTLS),
            (b"\x15\xfe\xfd" + bytes(10), guard.DTLS),
            (b"\x80\x6f" + bytes(10), guard.RTP),
            (b"\xbf" + bytes(11), guard.RTP),
            (b"\x80" + bytes(1500), "oversize"),
            (b"\x00" + bytes(1500), "oversize"),
            (b"\x40" + bytes(20), "unknown_protocol"),
            (b"\xff" + bytes(20), "unknown_protocol"),
            (b"\x10" + bytes(20), "unknown_protocol"),
        ],
    )
    def test_first_byte_and_size(self, data: bytes, kind: str) -> None:
        """Datagrams are demultiplexed by their first byte (RFC 7983) and bounded in size."""
        assert guard.classify(data) == kind

    def test_largest_datagram_passes(self) -> None:
        """Exactly MAX_DATAGRAM bytes is still accepted (SRTP's buffer holds it)."""
        assert guard.classify(b"\x80" + bytes(guard.MAX_DATAGRAM - 1)) == guard.RTP


class TestSources:
    def test_rtp_and_rtcp_ssrc(self) -> None:
        """The SSRC is read from the clear header: bytes 8-12 for RTP, 4-8 for RTCP."""
        rtp = b"\x80\x6f\x00\x01" + bytes(4) + (1234).to_bytes(4, "big")
        rtcp = b"\x81\xc9\x00\x07" + (99).to_bytes(4, "big")
        assert guard.rtp_source(rtp) == 1234
        assert guard.rtp_source(rtcp) == 99
        assert guard.rtp_source(b"\x80\x6f") is None

    def test_a_link_admits_a_bounded_number_of_sources(self) -> None:
        """New SSRCs beyond MAX_SSRCS are refused; known ones keep passing."""
        link = guard.Link()
        assert all(link.admit_source(n) for n in range(guard.MAX_SSRCS))
        assert not link.admit_source(10_000)
        assert link.admit_source(0)


class TestDropCounter:
    def test_counts_every_drop_and_logs_rarely(self) -> None:
        """A flood of drops is counted in full but logged once per reason per interval."""
        from structlog.testing import capture_logs

        counter = guard.DropCounter()
        with capture_logs() as logs:
            for _ in range(1000):
                counter.drop("oversize", "browser")
        assert counter.snapshot()["oversize"] == 1000
        assert [e["event"] for e in logs] == ["media.dropped"]


class IcePair:
    """Two aioice connections connected over loopback, as both ends of one leg."""

    def __init__(self) -> None:
        self.a = aioice.ice.Connection(ice_controlling=True)
        self.b = aioice.ice.Connection(ice_controlling=False)

    async def connect(self) -> None:
        with ice.host_addresses(("127.0.0.1",)):
            await self.a.gather_candidates()
            await self.b.gather_candidates()
        for here, there in ((self.a, self.b), (self.b, self.a)):
            for candidate in there.local_candidates:
                await here.add_remote_candidate(candidate)
            await here.add_remote_candidate(None)
            here.remote_username = there.local_username
            here.remote_password = there.local_password
        await asyncio.gather(self.a.connect(), self.b.connect())

    @property
    def a_address(self) -> tuple[str, int]:
        candidate = self.a.local_candidates[0]
        return candidate.host, candidate.port

    async def close(self) -> None:
        await asyncio.gather(self.a.close(), self.b.close())


@pytest.fixture(name="pair")
async def _pair() -> AsyncIterator[IcePair]:
    compat.install()
    pair = IcePair()
    await pair.connect()
    yield pair
    await pair.close()


def send_from_elsewhere(to: tuple[str, int], datagrams: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.2", 0))
        for datagram in datagrams:
            sock.sendto(datagram, to)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


class TestDatagramGuard:
    async def test_validated_peer_gets_through(self, pair: IcePair) -> None:
        """Data from the connected peer reaches the connection and counts as proof of life."""
        before = compat.link_of(pair.a).received
        await pair.b.send(b"\x17\xfe\xfd" + bytes(20))
        async with asyncio.timeout(2):
            assert await pair.a.recv() == b"\x17\xfe\xfd" + bytes(20)
        assert compat.link_of(pair.a).received > before

    async def test_off_path_data_never_reaches_the_connection(self, pair: IcePair) -> None:
        """DTLS alerts, RTP and noise from an address ICE never validated are dropped."""
        before = dropped("unvalidated_source")
        alert = b"\x15\xfe\xfd" + bytes(8) + b"\x00\x02\x02\x28"
        send_from_elsewhere(pair.a_address, [alert] * 50 + [b"\x80" + bytes(40)] * 50)
        await settle()
        assert pair.a._queue.qsize() == 0
        assert dropped("unvalidated_source") - before == 100

    async def test_hostile_shapes_are_dropped_by_reason(self, pair: IcePair) -> None:
        """Empty, oversized, non-WebRTC and malformed-STUN datagrams are counted, not raised."""
        before = DROPS.snapshot()
        send_from_elsewhere(
            pair.a_address,
            [b"", b"\x80" + bytes(2000), b"\x55" * 30, b"\x00\x01\x00\x08" + bytes(16)],
        )
        await settle()
        after = DROPS.snapshot()
        for reason in ("empty", "oversize", "unknown_protocol", "stun_malformed"):
            assert after[reason] - before[reason] == 1, reason

    async def test_backlog_is_bounded(self, pair: IcePair) -> None:
        """A peer sending while nothing reads cannot queue more than MAX_BACKLOG datagrams."""
        for _ in range(guard.MAX_BACKLOG + 100):
            await pair.b.send(b"\x17\xfe\xfd" + bytes(20))
        await settle()
        assert pair.a._queue.qsize() == guard.MAX_BACKLOG

    async def test_sources_beyond_the_limit_are_dropped(self, pair: IcePair) -> None:
        """A validated peer cannot make the stack track unbounded RTP sources."""
        before = dropped("ssrc_limit")
        for ssrc in range(guard.MAX_SSRCS + 5):
            await pair.b.send(b"\x80\x6f\x00\x01" + bytes(4) + ssrc.to_bytes(4, "big"))
        await settle()
        assert dropped("ssrc_limit") - before == 5


class Sctp:
    """A real aiortc SCTP transport, fed DATA chunks directly (no network below it)."""

    def __init__(self, max_message: int) -> None:
        self.transport = sctp.RTCSctpTransport(SimpleNamespace(state="new"))  # type: ignore[arg-type]
        self.transport._last_received_tsn = 0
        self.delivered: list[tuple[int, int, bytes]] = []
        self.emitted: list[Any] = []

        async def receive(stream_id: int, pp_id: int, data: bytes) -> None:
            self.delivered.append((stream_id, pp_id, data))

        self.transport._receive = receive  # type: ignore[method-assign]
        channel = SimpleNamespace(emit=lambda event, message: self.emitted.append(message))
        self.transport._data_channels[1] = channel  # type: ignore[assignment]
        compat.install()
        compat.association_of(self.transport).max_message = max_message
        self.tsn = 0

    async def message(
        self,
        data: bytes,
        *,
        ssn: int,
        fragment: int = 1000,
        stream_id: int = 1,
        ordered: bool = True,
        complete: bool = True,
    ) -> None:
        pieces = [data[i : i + fragment] for i in range(0, len(data), fragment)] or [b""]
        for index, piece in enumerate(pieces):
            flags = 0 if ordered else sctp.SCTP_DATA_UNORDERED
            if index == 0:
                flags |= sctp.SCTP_DATA_FIRST_FRAG
            if index == len(pieces) - 1 and complete:
                flags |= sctp.SCTP_DATA_LAST_FRAG
            self.tsn += 1
            chunk = sctp.DataChunk(flags=flags)
            chunk.tsn, chunk.stream_id, chunk.stream_seq = self.tsn, stream_id, ssn
            chunk.protocol, chunk.user_data = sctp.WEBRTC_STRING, piece
            await self.transport._receive_data_chunk(chunk)

    @property
    def held(self) -> int:
        return 1024 * 1024 - self.transport._advertised_rwnd


class TestReassembly:
    async def test_messages_within_the_limit_are_delivered(self) -> None:
        """Ordinary and maximal messages arrive whole, in order."""
        link = Sctp(max_message=10_000)
        await link.message(b"a" * 10, ssn=0)
        await link.message(b"b" * 10_000, ssn=1)
        assert [len(m[2]) for m in link.delivered] == [10, 10_000]
        assert link.held == 0

    async def test_an_oversized_message_is_discarded_and_the_stream_goes_on(self) -> None:
        """A message over the limit is never held whole; the next one is delivered."""
        link = Sctp(max_message=10_000)
        await link.message(b"x" * 200_000, ssn=0, complete=False)
        assert link.held <= 10_000
        await link.message(b"x" * 1000, ssn=0)  # the rest of it, and its end
        assert link.delivered == []
        assert link.held <= 10_000
        assert [type(m) for m in link.emitted] == [OversizedMessage]
        await link.message(b"after", ssn=1)
        assert link.delivered == [(1, sctp.WEBRTC_STRING, b"after")]

    async def test_an_oversized_message_behind_a_gap_is_skipped_when_reached(self) -> None:
        """Discarding a later message keeps the order of those before it."""
        link = Sctp(max_message=10_000)
        await link.message(b"y" * 50_000, ssn=1)
        await link.message(b"first", ssn=0)
        await link.message(b"third", ssn=2)
        assert [m[2] for m in link.delivered] == [b"first", b"third"]

    async def test_unordered_oversized_messages_are_bounded(self) -> None:
        """Unordered fragments cannot pile up past the limit either."""
        link = Sctp(max_message=10_000)
        await link.message(b"z" * 100_000, ssn=0, ordered=False, complete=False)
        assert link.held <= 10_000
        await link.message(b"ok", ssn=0, ordered=False)
        assert link.delivered[-1][2] == b"ok"

    async def test_chunks_far_ahead_are_refused(self) -> None:
        """A TSN beyond any window the gateway advertises is dropped unacknowledged."""
        link = Sctp(max_message=10_000)
        link.tsn = guard.MAX_TSN_AHEAD + 10
        before = dropped("sctp_window")
        await link.message(b"far", ssn=0)
        assert dropped("sctp_window") - before == 1
        assert link.delivered == []


class TestDataChannelMessages:
    async def test_invalid_utf8_becomes_a_marker(self) -> None:
        """Text that is not UTF-8 reaches the channel as UndecodableText, not as an exception."""
        link = Sctp(max_message=10_000)
        await link.transport._data_channel_receive(1, sctp.WEBRTC_STRING, b"\xff\xfe{")
        assert [type(m) for m in link.emitted] == [UndecodableText]

    @pytest.mark.parametrize(
        ("stream_id", "data"),
        [
            (7, bytes([sctp.DATA_CHANNEL_ACK])),  # ACK for a stream with no channel
            (1, bytes([sctp.DATA_CHANNEL_OPEN]) + bytes(11)),  # OPEN for an existing stream
            (9, bytes([sctp.DATA_CHANNEL_OPEN]) + bytes(7) + b"\x00\x50\x00\x00"),  # label cut
            (9, bytes([sctp.DATA_CHANNEL_OPEN]) + bytes(7) + b"\x00\x02\x00\x00\xff\xff"),
            (9, b""),
        ],
    )
    async def test_stray_control_messages_are_dropped(self, stream_id: int, data: bytes) -> None:
        """DCEP messages that do not fit the open channels are counted and ignored."""
        link = Sctp(max_message=10_000)
        before = dropped("dcep_invalid")
        await link.transport._data_channel_receive(stream_id, sctp.WEBRTC_DCEP, data)
        assert dropped("dcep_invalid") - before == 1

    async def test_channels_are_capped(self) -> None:
        """A peer cannot open more than MAX_CHANNELS data channels."""
        link = Sctp(max_message=10_000)
        transport = link.transport
        for n in range(guard.MAX_CHANNELS - 1):
            transport._data_channels[100 + n] = SimpleNamespace()  # type: ignore[assignment]
        before = dropped("channel_limit")
        open_message = bytes([sctp.DATA_CHANNEL_OPEN, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]) + b"x"
        await transport._data_channel_receive(300, sctp.WEBRTC_DCEP, open_message)
        assert dropped("channel_limit") - before == 1
        assert 300 not in transport._data_channels


class TestCompat:
    def test_every_hooked_name_exists(self) -> None:
        """The installed aiortc/aioice have every private name the hooks touch."""
        assert compat._missing() == []

    def test_install_is_idempotent(self) -> None:
        """Installing twice patches once."""
        compat.install()
        hook = aioice.ice.StunProtocol.datagram_received
        compat.install()
        assert aioice.ice.StunProtocol.datagram_received is hook
