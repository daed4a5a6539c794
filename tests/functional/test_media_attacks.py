"""The media plane under attack (attack review findings 1, 2, 3, 5, 9, 10 and 12).

Off-path: hosts that are not the browser (127.0.0.2, 127.0.0.3, ...) send datagrams to the ICE
ports of both legs of a call: the browser leg's (in the gateway's SDP answer) and the upstream
leg's (in its offer to the emulator). On-path: a connected browser sends, through its own SCTP
association and SRTP context, what no well-behaved stack would. Whatever comes, the call goes
on: events and audio keep flowing both ways, nothing queues without bound, and aiortc's receive
loops log no traceback.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiortc import RTCDataChannel

from gateway.emulator import Emulator, EmulatorCall
from tests.functional.conftest import GatewayFactory
from tests.support import attacker
from tests.support.attacker import Address, Client, LiveCall, StackErrors, UdpAttacker, dial
from tests.support.peer import MicrophoneTrack, TestPeer

FUZZ_SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
PEER_TIMEOUT = 2.0
MAX_MESSAGE_SIZE = 262144  # what the gateway's answer advertises (a=max-message-size)


def answer_after_oversized(size: int) -> float:
    """How long the event sent right after an oversized message may take to be answered: the
    browser's own SCTP must first send all that precedes it (about 0.1 s per MiB on loopback
    when the gateway drops it as it comes; reassembling 12 MiB first took 7-11 s of CPU)."""
    return 2.0 + 0.25 * size / (1 << 20)


@pytest.fixture(name="stack_errors")
async def _stack_errors() -> AsyncIterator[StackErrors]:
    """What the WebRTC stack threw during the test; printed if anything (shown on failure)."""
    with StackErrors() as errors:
        yield errors
    for found in errors.found:
        print(f"stack error: {found}")


LiveCallFactory = Callable[..., Awaitable[LiveCall]]


@pytest.fixture(name="live_call")
def _live_call(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
) -> LiveCallFactory:
    """A connected call on a new gateway (``settings``: Settings overrides); ``peer``: the
    browser to use (a plain TestPeer by default)."""

    async def make(peer: TestPeer | None = None, **settings: Any) -> LiveCall:
        gateway = await make_gateway(**settings)
        peer = peer or TestPeer()
        peers.append(peer)
        live = await dial(gateway, emulator, peer)
        await live.connect()
        return live

    return make


@pytest.fixture(name="upstream_ports")
def _upstream_ports(monkeypatch: pytest.MonkeyPatch) -> list[Address]:
    """The ports of every upstream leg the gateway dials, known as soon as its offer reaches
    the emulator (before the emulator answers, so before any handshake on that leg)."""
    ports: list[Address] = []
    answer = EmulatorCall.answer

    async def tapped(self: EmulatorCall, offer_sdp: str) -> str:
        ports.extend(attacker.host_candidates(offer_sdp))
        return await answer(self, offer_sdp)

    monkeypatch.setattr(EmulatorCall, "answer", tapped)
    return ports


# -- 1, 2: off-path datagrams -------------------------------------------------------------------


class TestOffPathDatagrams:
    async def test_dtls_alerts_during_setup_do_not_stop_the_call(
        self,
        gateway: Client,
        emulator: Emulator,
        peers: list[TestPeer],
        upstream_ports: list[Address],
        stack_errors: StackErrors,
    ) -> None:
        """DTLS alerts and stray handshake records from other hosts, every millisecond, to both
        legs' ports from the moment each is known: the call connects and relays."""
        targets = upstream_ports  # read by the flood on each round; the browser leg's added
        peer = TestPeer()
        peers.append(peer)
        with UdpAttacker() as udp:
            async with udp.flooding(targets, attacker.setup_disruptors(), interval=0.001):
                live = await dial(gateway, emulator, peer)
                assert targets, "the upstream leg's offer had no candidates"
                # The browser leg's ports, before the browser even starts its handshake.
                targets.extend(attacker.host_candidates(live.answer_sdp))
                await live.connect()
                await live.assert_relaying()
            assert udp.sent > 500, udp.sent
        stack_errors.assert_none()

    @pytest.mark.parametrize(
        "datagram",
        [
            pytest.param(attacker.rtp_shaped(1501), id="rtp-1501-bytes"),
            pytest.param(attacker.rtcp_shaped(2048), id="rtcp-2048-bytes"),
            pytest.param(b"", id="empty"),
        ],
    )
    async def test_malformed_datagrams_leave_a_live_call_up(
        self, live_call: LiveCallFactory, stack_errors: StackErrors, datagram: bytes
    ) -> None:
        """Datagrams SRTP cannot hold (over 1500 bytes, first byte 128-191) or with no first
        byte at all, to every port of both legs, from other hosts and from each leg's own
        peer (the browser's and the emulator's ICE sockets): the call keeps relaying."""
        live = await live_call()
        ports = live.ports
        assert len(ports) >= 2, ports
        with UdpAttacker() as udp:
            for port in ports:
                for _ in range(3):
                    udp.send(datagram, port)
        emulator_pc = live.upstream._pc  # the emulator's end of the upstream leg
        assert live.peer.pc is not None and emulator_pc is not None
        for far_end, leg in (
            (live.peer.pc, attacker.browser_leg(live.call)),
            (emulator_pc, attacker.upstream_leg(live.call)),
        ):
            for sock in attacker.ice_sockets(far_end).values():
                for port in attacker.local_addresses(leg.pc):
                    sock.sendto(datagram, port)
        await live.assert_relaying()
        stack_errors.assert_none()


# -- 3: half-open calls ---------------------------------------------------------------------------

# What a transport that is not reading yet may have waiting from the address ICE validated.
MAX_BACKLOG = 256
HALF_OPEN_DATAGRAMS = 20_000


class TestHalfOpenCalls:
    """A call whose browser posted its offer and never applied the answer: its browser leg's
    DTLS transport never starts reading, until the connect watchdog ends the call."""

    async def _flood(self, live: LiveCall, send: Callable[[bytes, Address], None]) -> int:
        """:data:`HALF_OPEN_DATAGRAMS` RTP-shaped datagrams to the browser leg, paced so the
        gateway reads each (one per turn of the loop); the largest backlog seen."""
        ports = attacker.host_candidates(live.answer_sdp)
        assert ports, live.answer_sdp
        datagram = attacker.rtp_shaped(200)
        largest = 0
        for index in range(HALF_OPEN_DATAGRAMS):
            for port in ports:
                send(datagram, port)
            await asyncio.sleep(0)
            if index % 100 == 99:
                largest = max(largest, attacker.backlog(attacker.browser_leg(live.call).pc))
        await asyncio.sleep(0.05)
        return max(largest, attacker.backlog(attacker.browser_leg(live.call).pc))

    async def test_off_path_datagrams_are_not_queued(
        self, make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """20 000 datagrams from other hosts to a call that never connected: none wait."""
        gateway = await make_gateway(connect_timeout=30.0)
        peer = TestPeer()
        peers.append(peer)
        live = await dial(gateway, emulator, peer)
        with UdpAttacker() as udp:
            largest = await self._flood(live, udp.send)
            assert udp.sent > HALF_OPEN_DATAGRAMS * 0.9, (udp.sent, udp.refused)
        assert largest == 0, f"{largest} datagrams queued for a call that never connected"

    async def test_the_browsers_own_address_queues_a_bounded_backlog(
        self, make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """From the browser's own ICE address (validated by a connectivity check), at most
        MAX_BACKLOG (256) datagrams wait for a DTLS transport that never starts reading."""
        gateway = await make_gateway(connect_timeout=30.0)
        peer = TestPeer()
        peers.append(peer)
        live = await dial(gateway, emulator, peer)
        validated = await self._validated_address(live)
        assert peer.pc is not None
        largest = await self._flood(live, attacker.ice_sockets(peer.pc)[validated].sendto)
        assert largest <= MAX_BACKLOG, f"{largest} datagrams queued for a call never connected"

    async def _validated_address(self, live: LiveCall) -> Address:
        """The browser address a connectivity check of the gateway's succeeded on."""
        async with asyncio.timeout(5):
            while True:
                for connection in attacker.ice_connections(attacker.browser_leg(live.call).pc):
                    for pair in connection._check_list:
                        if pair.state.name == "SUCCEEDED":
                            return (pair.remote_candidate.host, pair.remote_candidate.port)
                await asyncio.sleep(0.02)


# -- 5, 9, 10: a hostile browser's data channel -----------------------------------------------


def oversized_sizes() -> list[int]:
    """2 MiB by default; also the review's 12 MiB in a scaled-up run (FUZZ_SCALE > 1)."""
    return [2 << 20] if FUZZ_SCALE <= 1 else [2 << 20, 12 << 20]


class TestHostileBrowserData:
    @pytest.mark.parametrize("size", oversized_sizes(), ids=lambda n: f"{n >> 20}MiB")
    async def test_a_message_over_max_message_size_is_dropped_as_it_arrives(
        self, live_call: LiveCallFactory, stack_errors: StackErrors, size: int
    ) -> None:
        """A message far over a=max-message-size is never held whole: the gateway keeps at
        most two maximum-size messages' worth in reassembly, answers event_too_large, and a
        small event sent right after it on the same channel is answered."""
        live = await live_call()
        peer = live.peer
        assert f"a=max-message-size:{MAX_MESSAGE_SIZE}" in live.answer_sdp
        attacker.lift_message_limit(peer)
        held = 0

        async def watch() -> None:
            nonlocal held
            while True:
                held = max(held, attacker.reassembly_bytes(attacker.browser_leg(live.call).pc))
                await asyncio.sleep(0.005)

        content = [{"type": "input_text", "text": "x" * size}]
        big = {
            "type": "conversation.item.create",
            "event_id": "evt_huge",
            "item": {"type": "message", "role": "user", "content": content},
        }
        watcher = asyncio.create_task(watch())
        try:
            started = time.monotonic()
            peer.send(big)
            del big, content
            await live.round_trip(timeout=answer_after_oversized(size))
            took = time.monotonic() - started
        finally:
            watcher.cancel()
        print(f"{size >> 20} MiB message: the next event answered after {took:.2f} s")
        error = await peer.next_event("error", timeout=5)
        assert error["error"]["code"] == "event_too_large", error
        assert "evt_huge" not in [e.get("event_id") for e in live.upstream.received_events]
        assert held <= 2 * MAX_MESSAGE_SIZE, f"the gateway held {held} bytes of one message"
        assert live.alive()
        stack_errors.assert_none()

    async def test_invalid_utf8_text_gets_an_error_event(
        self, live_call: LiveCallFactory, stack_errors: StackErrors
    ) -> None:
        """A text message (PPID 51) whose bytes are not UTF-8: an invalid_json error event
        that says so, and the call goes on."""
        live = await live_call()
        channel = live.peer.channel
        assert channel is not None and channel.id is not None
        text = b'{"type": "\xff\xfe"}'
        await attacker.send_sctp(live.peer, channel.id, attacker.PPID_STRING, text)
        error = await live.unless_ended(live.peer.next_event("error"), "an error event")
        assert error["error"]["code"] == "invalid_json", error
        assert "UTF-8" in error["error"]["message"], error
        await live.round_trip()
        stack_errors.assert_none()

    @pytest.mark.parametrize(
        "stray",
        [
            "ack-for-no-channel",
            "open-for-an-open-stream",
            "open-truncated-header",
            "open-truncated-label",
            "open-label-not-utf8",
        ],
    )
    async def test_stray_dcep_is_ignored(
        self, live_call: LiveCallFactory, stack_errors: StackErrors, stray: str
    ) -> None:
        """Data-channel control messages that fit no channel are ignored silently: no event,
        the same channel, the call goes on."""
        live = await live_call()
        channel = live.peer.channel
        assert channel is not None and channel.id is not None
        spare = channel.id + 100  # a stream no channel uses
        messages = {
            "ack-for-no-channel": (spare, attacker.DCEP_ACK_MESSAGE),
            "open-for-an-open-stream": (channel.id, attacker.dcep_open(b"oai-events")),
            "open-truncated-header": (spare, attacker.dcep_open(b"oai-events")[:7]),
            # The label ends in the middle of a UTF-8 character (a 2-byte "é" cut after 1).
            "open-truncated-label": (spare, attacker.dcep_open(b"\xc3", label_length=2)),
            "open-label-not-utf8": (spare, attacker.dcep_open(b"oai-\xff-events")),
        }
        stream_id, message = messages[stray]
        before = len(live.peer.events)
        await attacker.send_sctp(live.peer, stream_id, attacker.PPID_DCEP, message)
        await live.round_trip()  # the sentinel: sent after the stray message, on the same path
        assert "error" not in [e["type"] for e in live.peer.events[before:]]
        assert attacker.browser_leg(live.call).channel is not None
        adopted = attacker.browser_leg(live.call).channel
        assert adopted is not None and adopted.id == channel.id
        stack_errors.assert_none()

    @pytest.mark.parametrize("label", ["oai-events", "other"])
    async def test_a_second_channel_does_not_take_over(
        self, live_call: LiveCallFactory, label: str
    ) -> None:
        """The first oai-events channel stays the call's: server events keep coming on it, the
        second channel gets none, and closing the second does not end the call."""
        live = await live_call()
        assert live.peer.pc is not None
        second = live.peer.pc.createDataChannel(label)
        on_second: list[str | bytes] = []
        stolen = asyncio.Event()

        def on_message(message: str | bytes) -> None:
            on_second.append(message)
            stolen.set()

        second.on("message", on_message)
        # The sentinel: a client event on the first channel, sent after the second channel's
        # DATA_CHANNEL_OPEN, whose answer must come back on the first (the gateway may accept
        # the second channel or refuse it; it may not hand it the call's events).
        answered = asyncio.ensure_future(live.round_trip())
        diverted = asyncio.ensure_future(stolen.wait())
        try:
            await asyncio.wait({answered, diverted}, return_when=FIRST_COMPLETED)
        finally:
            for task in (answered, diverted):
                task.cancel()
            await asyncio.gather(answered, diverted, return_exceptions=True)
        assert on_second == [], f"server events on the second channel: {on_second[:2]}"
        answered.result()
        second.close()
        await wait_state(second, "closed")
        await live.round_trip()
        assert on_second == [], f"server events on the second channel: {on_second[:2]}"
        assert live.alive(), f"the call ended: {live.call.end_reason}"


async def wait_state(channel: RTCDataChannel, state: str, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    try:
        async with asyncio.timeout(timeout):
            while channel.readyState != state:
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"channel {channel.label!r} not {state} within {timeout}s") from None


# -- a hostile browser's RTP and RTCP -----------------------------------------------------------

Mangle = Callable[[bytes], bytes]


def rtp_payload(packet: bytes) -> bytes:
    """What follows a real RTP packet's header, its CSRCs and its header extension."""
    size = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        size += 4 + 4 * int.from_bytes(packet[size + 2 : size + 4], "big")
    return packet[size:]


def _header(first: int = 0x80, pt: int | None = None, ssrc: int | None = None) -> Mangle:
    """A real packet's fixed header (its sequence number and timestamp), with ``first`` as
    its first byte (version, padding, extension and CSRC count) and maybe another payload
    type or SSRC."""

    def header(packet: bytes) -> bytes:
        out = bytearray(packet[:12])
        out[0] = first
        if pt is not None:
            out[1] = (out[1] & 0x80) | pt
        if ssrc is not None:
            out[8:12] = ssrc.to_bytes(4, "big")
        return bytes(out)

    return header


def malformed_rtp() -> list[tuple[str, Mangle]]:
    """Rewrites of a real outgoing RTP packet (same sequence number and timestamp)."""
    plain, padded, extended = _header(), _header(0xA0), _header(0x90)
    payload = rtp_payload
    return [
        ("header-only", plain),
        ("truncated-header", lambda p: p[:9]),
        ("csrc-count-past-end", lambda p: _header(0x8F)(p) + b"\x00\x00\x00\x01"),
        ("extension-length-past-end", lambda p: extended(p) + b"\xbe\xde\x7f\xff\x10"),
        (
            "extension-garbage",
            lambda p: extended(p) + b"\xbe\xde\x00\x02" + b"\xff" * 8 + payload(p),
        ),
        (
            "extension-two-byte",
            lambda p: extended(p) + b"\x10\x00\x00\x01\x05\xff\0\0" + payload(p),
        ),
        ("padding-past-payload", lambda p: padded(p) + payload(p) + b"\xff"),
        ("padding-zero", lambda p: padded(p) + payload(p) + b"\x00"),
        ("padding-only", lambda p: padded(p) + b"\x01"),
        ("unknown-payload-type", lambda p: _header(pt=35)(p) + payload(p)),
        ("rtx-looking", lambda p: _header(pt=97)(p) + p[2:4] + payload(p)),
        ("rtx-looking-short", lambda p: _header(pt=97)(p) + b"\x00"),
        ("garbage-payload", lambda p: plain(p) + bytes(range(256)) * 4),
        ("other-ssrc", lambda p: _header(ssrc=0xDEAD)(p) + payload(p)),
        ("version-0", lambda p: _header(0x00)(p) + payload(p)),
    ]


def malformed_rtcp(ssrc: int) -> Iterator[tuple[str, bytes]]:
    """RTCP no sane stack sends, from the browser's SSRC."""

    def head(first: int, kind: int, words: int) -> bytes:
        return struct.pack("!BBHI", first, kind, words, ssrc)

    sr = head(0x80, 200, 6) + bytes(20)
    yield "sr-length-past-end", head(0x80, 200, 200) + bytes(20)
    yield "sr-length-short", head(0x80, 200, 1) + bytes(20)
    yield "rr-count-past-end", head(0x9F, 201, 1)
    yield "compound-bad-second", sr + head(0x80, 202, 90)
    yield "sdes-garbage", head(0x81, 202, 2) + b"\x01\xff\xff\xff"
    yield "bye-reason-past-end", head(0xA1, 203, 2) + b"\x20abc"
    yield "nack-empty", head(0x81, 205, 2) + struct.pack("!I", 1)
    yield "nack-everything", head(0x81, 205, 3) + struct.pack("!IHH", 1, 7, 0xFFFF)
    yield "pli-for-nobody", head(0x81, 206, 2) + struct.pack("!I", 12345)
    yield "remb-garbage", head(0x8F, 206, 4) + struct.pack("!I", 0) + b"REMB\xff\xff\xff\xff"
    yield "xr", head(0x80, 207, 3) + b"\x04\x00\x00\x02" + bytes(4)
    yield "padding-past-end", head(0xA0, 200, 6) + bytes(19) + b"\xff"
    yield "version-0", head(0x00, 200, 6) + bytes(20)


# A packet whose payload is empty once its header (and padding) is taken away: no audio at all.
EMPTY_PAYLOADS = ("header-only", "padding-only")


class TestHostileBrowserMedia:
    async def test_malformed_rtp_and_rtcp_through_srtp(
        self, live_call: LiveCallFactory, stack_errors: StackErrors
    ) -> None:
        """Authenticated but malformed RTP and RTCP from the browser (bad extensions, padding
        past the payload, unknown and RTX-looking payload types, foreign SSRCs, RTCP with
        lengths and counts past the end, a REMB naming more SSRCs than it holds): the call
        survives and audio keeps flowing. (Truncated headers and CSRC counts or extension
        lengths past the end cannot be SRTP-protected: the browser's own libsrtp refuses them,
        as the gateway's would; the fuzzer sends them unprotected.)"""
        live = await live_call()
        ssrc = attacker.audio_ssrc(live.peer)
        variants = [v for v in malformed_rtp() if v[0] not in EMPTY_PAYLOADS]
        with attacker.RtpMangler(live.peer, variants) as mangler:
            for _, packet in malformed_rtcp(ssrc):
                try:
                    await attacker.send_rtp(live.peer, packet)
                except ValueError:
                    pass  # refused by the browser's own libsrtp (shorter than an RTCP header)
            await live.unless_ended(mangler.done.wait(), "the malformed RTP sent")
        print(f"malformed RTP sent: {mangler.sent}; refused by libsrtp: {mangler.refused}")
        assert len(mangler.sent) >= 10, mangler.refused
        await live.assert_relaying()
        stack_errors.assert_none()

    @pytest.mark.parametrize("variant", EMPTY_PAYLOADS)
    async def test_an_empty_rtp_payload_does_not_end_the_upstreams_audio(
        self, live_call: LiveCallFactory, stack_errors: StackErrors, variant: str
    ) -> None:
        """An RTP packet from the browser with no payload (a bare header, or only padding)
        carries no audio and is not relayed as a frame: an upstream decoder (libav's) takes an
        empty packet for the end of the stream and decodes nothing after it. Speech that
        follows still gets its spoken answer."""
        live = await live_call()
        variants = [v for v in malformed_rtp() if v[0] == variant]
        with attacker.RtpMangler(live.peer, variants * 3) as mangler:
            await live.unless_ended(mangler.done.wait(), "the empty RTP sent")
        assert len(mangler.sent) == 3, mangler.refused
        await live.assert_relaying()
        stack_errors.assert_none()


# -- 12: liveness ---------------------------------------------------------------------------------


class SilentMicrophone(MicrophoneTrack):
    """A microphone that never yields a frame: its sender sends no RTP at all."""

    async def recv(self) -> Any:
        await asyncio.Event().wait()


class ListenOnlyPeer(TestPeer):
    """A browser that only listens: no audio packets and no events; RTCP and consent only."""

    def __init__(self) -> None:
        super().__init__()
        self.mic = SilentMicrophone()
        self.client.microphone = self.mic


class TestLiveness:
    async def test_a_listen_only_browser_is_not_taken_for_gone(
        self, live_call: LiveCallFactory
    ) -> None:
        """A browser that sends no audio and no events, only RTCP reports and ICE consent
        checks, stays connected for three times the peer timeout and still hears the model."""
        live = await live_call(ListenOnlyPeer(), peer_timeout=PEER_TIMEOUT)
        ended = asyncio.ensure_future(live.call.wait_done())
        try:
            done, _ = await asyncio.wait({ended}, timeout=3 * PEER_TIMEOUT)
        finally:
            ended.cancel()
        assert not done, f"a listen-only browser was ended: {live.call.end_reason}"
        live.peer.send({"type": "response.create"})
        await live.unless_ended(live.peer.next_event("response.done", 10), "response.done", 10)
        assert live.upstream.input_audio.frames == 0  # it really sent no audio

    async def test_an_unplugged_browser_is_ended_within_the_peer_timeout(
        self, live_call: LiveCallFactory
    ) -> None:
        """The other side of the same watchdog: a browser whose traffic stops entirely (no
        RTP, RTCP, consent or DTLS close) is ended within peer_timeout + 1 s."""
        live = await live_call(peer_timeout=PEER_TIMEOUT)
        await live.peer.received.wait_energy(frames=1, threshold=0.0, timeout=5)
        attacker.unplug(live.peer)
        unplugged = time.monotonic()
        async with asyncio.timeout(PEER_TIMEOUT + 1.0):
            await live.call.wait_done()
        print(f"unplugged browser: call ended after {time.monotonic() - unplugged:.2f} s")
        assert live.call.end_reason == "browser_vanished"
