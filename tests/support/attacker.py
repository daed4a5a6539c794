"""Attackers of the media plane, and probes into a call's ICE and SCTP state, for tests.

Off-path: :class:`UdpAttacker` owns plain UDP sockets bound to other loopback hosts (127.0.0.2,
127.0.0.3, ...): machines that learnt or guessed a gateway port and send it whatever they like.
On-path: :func:`send_sctp` and :func:`send_rtp` go through a connected :class:`TestPeer`'s own
SCTP association and SRTP context, as a browser with a modified WebRTC stack would.

Addresses of a leg come from SDP (:func:`host_candidates`) or, for a gateway peer connection, from
its ICE sockets (:func:`local_addresses`). Written against aiortc 1.16.0 / aioice 0.13.0: the
probes read their private state (aioice's receive queue, aiortc's SCTP reassembly), the only
place the damage shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import itertools
import json
import logging
import re
import secrets
import socket
import struct
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import pylibsrtp
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiortc import RTCPeerConnection
from aiortc.rtp import is_rtcp

from gateway.call.call import Call
from gateway.emulator import Emulator, EmulatorCall
from gateway.rtc.peer import Peer
from gateway.upstream.realtime import RealtimeUpstream
from tests.functional.conftest import mint, state_of
from tests.support.peer import Event, TestPeer

Client = TestClient[web.Request, web.Application]
T = TypeVar("T")

Address = tuple[str, int]

# Hosts that are not the gateway's, the browser's or the emulator's (all on 127.0.0.1).
OTHER_HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")

_CANDIDATE = re.compile(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host", re.IGNORECASE)


def browser_leg(call: Call) -> Peer:
    """The gateway's WebRTC leg to the browser (the call is typed against a protocol)."""
    return cast(Peer, call.browser)


def upstream_leg(call: Call) -> Peer:
    """The gateway's WebRTC leg to the upstream (an OpenAI Realtime upstream's peer)."""
    return cast(RealtimeUpstream, call.upstream).peer


def host_candidates(sdp: str) -> list[Address]:
    """The host candidates (address, port) an SDP offer or answer announces."""
    found = [(host, int(port)) for host, port in _CANDIDATE.findall(sdp)]
    return list(dict.fromkeys(found))


# -- a peer connection's insides ---------------------------------------------------------------


def ice_connections(pc: RTCPeerConnection) -> list[Any]:
    """The aioice ``Connection`` of every transport of ``pc`` (one with BUNDLE)."""
    dtls = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        dtls.append(pc.sctp.transport)
    found: list[Any] = []
    for transport in dtls:
        connection = getattr(getattr(transport, "transport", None), "_connection", None)
        if connection is not None and connection not in found:
            found.append(connection)
    return found


def ice_sockets(pc: RTCPeerConnection) -> dict[Address, asyncio.DatagramTransport]:
    """``pc``'s ICE sockets (one per host candidate), by the address each is bound to."""
    out: dict[Address, asyncio.DatagramTransport] = {}
    for connection in ice_connections(pc):
        for protocol in connection._protocols:
            host, port = protocol.transport.get_extra_info("sockname")[:2]
            out[(str(host), int(port))] = protocol.transport
    return out


def local_addresses(pc: RTCPeerConnection) -> list[Address]:
    """Every UDP address ``pc``'s ICE listens on."""
    return list(ice_sockets(pc))


def backlog(pc: RTCPeerConnection) -> int:
    """Datagrams waiting in ``pc``'s ICE receive queues for a transport to read them."""
    return sum(connection._queue.qsize() for connection in ice_connections(pc))


def reassembly_bytes(pc: RTCPeerConnection) -> int:
    """Bytes of data-channel messages ``pc``'s SCTP association holds while reassembling."""
    if pc.sctp is None:
        return 0
    streams = pc.sctp._inbound_streams.values()
    return sum(len(chunk.user_data) for stream in streams for chunk in stream.reassembly)


def unplug(peer: TestPeer) -> None:
    """The browser's network goes away: nothing it sends leaves any more (no RTP, no RTCP, no
    consent checks, no DTLS close), though it carries on as if connected."""
    assert peer.pc is not None
    for transport in ice_sockets(peer.pc).values():
        transport.sendto = _blackhole  # type: ignore[method-assign]  # the cable, pulled


def _blackhole(data: Any, addr: Any = None) -> None:
    return None


# -- watching the stack ---------------------------------------------------------------------------

_STACK_LOGGERS = ("aiortc", "aioice", "asyncio")


class StackErrors(logging.Handler):
    """While installed (``with StackErrors() as errors:``, on the loop): every exception that
    reaches the event loop, and every record of aiortc, aioice or asyncio at ERROR or carrying a
    traceback (aiortc logs one, at WARNING, when a transport's receive loop dies)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.found: list[str] = []
        self._undo: list[Callable[[], None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.ERROR or "Traceback" in text or record.exc_info:
            lines = text.strip().splitlines() or [""]
            self.found.append(f"{record.name}: {lines[0]} ... {lines[-1]}")

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.found.append(f"event loop: {context.get('message')}: {context.get('exception')!r}")

    def __enter__(self) -> StackErrors:
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_error)
        self._undo.append(lambda: loop.set_exception_handler(previous))
        for name in _STACK_LOGGERS:
            logger = logging.getLogger(name)
            level = logger.level
            if not logger.isEnabledFor(logging.WARNING):
                logger.setLevel(logging.WARNING)
            logger.addHandler(self)
            self._undo.append(functools.partial(_detach, logger, self, level))
        return self

    def __exit__(self, *exc: object) -> None:
        while self._undo:
            self._undo.pop()()

    def assert_none(self) -> None:
        assert not self.found, "the WebRTC stack failed:\n" + "\n".join(self.found)


def _detach(logger: logging.Logger, handler: logging.Handler, level: int) -> None:
    logger.removeHandler(handler)
    logger.setLevel(level)


# -- a call to attack ---------------------------------------------------------------------------


@dataclass
class LiveCall:
    """A call through the gateway, from its browser to the emulator."""

    gateway: Client
    peer: TestPeer
    call: Call
    upstream: EmulatorCall
    answer_sdp: str

    @property
    def ports(self) -> list[Address]:
        """Every UDP address of the call on the gateway: both legs."""
        return local_addresses(browser_leg(self.call).pc) + local_addresses(
            upstream_leg(self.call).pc
        )

    def alive(self) -> bool:
        return self.call in list(state_of(self.gateway).calls) and not self.call.done

    async def connect(self) -> None:
        """The browser applies the answer; its channel opens and the session is created."""
        await self.peer.accept_answer(self.answer_sdp)
        await self.unless_ended(self.peer.wait_open(10), "the channel opened", timeout=10)
        await self.unless_ended(self.peer.next_event("session.created"), "session.created")

    async def unless_ended(self, wait: Awaitable[T], what: str, timeout: float = 5.0) -> T:  # noqa: ASYNC109
        """``wait``'s result; fails as soon as the call ends, or after ``timeout`` seconds."""
        waiting = asyncio.ensure_future(wait)
        ended = asyncio.ensure_future(self.call.wait_done())
        try:
            await asyncio.wait({waiting, ended}, timeout=timeout, return_when=FIRST_COMPLETED)
        finally:
            for task in (waiting, ended):
                task.cancel()
            await asyncio.gather(waiting, ended, return_exceptions=True)
        if waiting.done() and not waiting.cancelled():
            return waiting.result()
        if self.call.done:
            raise AssertionError(f"the call ended ({self.call.end_reason}) before {what}")
        raise AssertionError(f"not within {timeout}s: {what}")

    async def round_trip(self, timeout: float = 5.0) -> Event:  # noqa: ASYNC109
        """A client event reaches the upstream and the server's answer to it comes back."""
        marker = "probe-" + secrets.token_hex(6)
        self.peer.send(
            {
                "type": "conversation.item.create",
                "event_id": "evt_" + marker,
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": marker}],
                },
            }
        )

        async def answered() -> Event:
            while True:
                added = await self.peer.next_event("conversation.item.added", timeout)
                if marker in json.dumps(added):
                    return added

        added = await self.unless_ended(answered(), "the answer to a client event", timeout)
        assert any(e.get("event_id") == "evt_" + marker for e in self.upstream.received_events)
        return added

    async def assert_relaying(self) -> None:
        """Events go both ways; speech reaches the upstream and its spoken answer (the
        emulator plays the speech back) reaches the browser with real energy."""
        assert self.alive(), f"the call ended: {self.call.end_reason}"
        await self.round_trip()
        mark = self.peer.received.mark()
        self.peer.mic.say(0.6)
        await self.unless_ended(
            self.peer.next_event("response.done", timeout=10), "response.done", timeout=10
        )
        await self.unless_ended(
            self.peer.received.wait_energy(frames=10, threshold=0.02, since=mark),
            "the answer's audio",
        )
        assert self.alive(), f"the call ended: {self.call.end_reason}"


async def dial(gateway: Client, emulator: Emulator, peer: TestPeer) -> LiveCall:
    """POST the browser's offer; the call exists, the browser has not applied the answer."""
    offer = await peer.create_offer()
    token = await mint(gateway)
    response = await gateway.post(
        "/v1/realtime/calls",
        data=offer,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
    )
    answer = await response.text()
    assert response.status == 201, answer
    call = state_of(gateway).calls.get(response.headers["Location"].rsplit("/", 1)[1])
    upstream = emulator.calls[call.upstream_call_id or ""]
    return LiveCall(gateway, peer, call, upstream, answer)


# -- off-path: raw UDP from other hosts ----------------------------------------------------------


class UdpAttacker:
    """Non-blocking UDP sockets on :data:`OTHER_HOSTS`, used in turn as sources.

    What comes back is never read (the kernel drops it once a socket's buffer is full). A send
    that would block is counted in ``refused`` and skipped: the rate is bounded, not guaranteed.
    """

    def __init__(self, hosts: Sequence[str] = OTHER_HOSTS, sockets_per_host: int = 2) -> None:
        self._sockets: list[socket.socket] = []
        try:
            for host in hosts:
                for _ in range(sockets_per_host):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    self._sockets.append(sock)
                    sock.setblocking(False)
                    sock.bind((host, 0))
        except BaseException:
            self.close()
            raise
        self._turn: Iterator[socket.socket] = itertools.cycle(self._sockets)
        self.sent = 0
        self.refused = 0

    def send(self, data: bytes, target: Address) -> None:
        """One datagram from the next source."""
        try:
            next(self._turn).sendto(data, target)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ENOBUFS, errno.ECONNREFUSED):
                raise
            self.refused += 1
        else:
            self.sent += 1

    @contextlib.asynccontextmanager
    async def flooding(
        self,
        targets: Sequence[Address],
        datagrams: Iterator[bytes],
        *,
        interval: float = 0.002,
        limit: float = 60.0,
    ) -> AsyncIterator[None]:
        """While the block runs (at most ``limit`` seconds), one datagram to each target every
        ``interval``. ``targets`` is read on each round: the caller may add to it."""

        async def flood() -> None:
            async with asyncio.timeout(limit):
                while True:
                    for target in list(targets):
                        self.send(next(datagrams), target)
                    await asyncio.sleep(interval)

        task = asyncio.create_task(flood(), name="attacker:flood")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await task

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> UdpAttacker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- what the off-path datagrams look like --------------------------------------------------------

# DTLS content types (RFC 6347 §4.1).
CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA = 20, 21, 22, 23
DTLS_1_2, DTLS_1_0 = 0xFEFD, 0xFEFF


def dtls_record(
    content_type: int,
    payload: bytes,
    *,
    epoch: int = 0,
    sequence: int = 0,
    version: int = DTLS_1_2,
    length: int | None = None,
) -> bytes:
    """One DTLS record: type, version, epoch, 48-bit sequence number, length, payload."""
    size = len(payload) if length is None else length
    header = struct.pack("!BHH", content_type, version, epoch) + sequence.to_bytes(6, "big")
    return header + struct.pack("!H", size) + payload


def dtls_alert(description: int = 40, *, level: int = 2, sequence: int = 0) -> bytes:
    """A plaintext (epoch 0) alert record; fatal ``handshake_failure`` by default."""
    return dtls_record(ALERT, bytes([level, description]), sequence=sequence)


def dtls_handshake(
    msg_type: int, body: bytes, *, message_seq: int = 0, offset: int = 0, total: int | None = None
) -> bytes:
    """A handshake record carrying one fragment of a handshake message."""
    length = len(body) if total is None else total
    header = bytes([msg_type]) + length.to_bytes(3, "big") + struct.pack("!H", message_seq)
    header += offset.to_bytes(3, "big") + len(body).to_bytes(3, "big")
    return dtls_record(HANDSHAKE, header + body, sequence=message_seq)


def setup_disruptors() -> Iterator[bytes]:
    """What an off-path host sprays at a port to break a DTLS handshake it is not part of:
    fatal alerts of several kinds, a close_notify, a change-cipher-spec, handshake messages
    out of nowhere, and encrypted-looking records of later epochs, in turn, forever."""
    records = [
        dtls_alert(40),  # handshake_failure
        dtls_alert(10),  # unexpected_message
        dtls_alert(20),  # bad_record_mac
        dtls_alert(0, level=1),  # close_notify
        dtls_alert(47, sequence=7),  # illegal_parameter
        dtls_record(CHANGE_CIPHER_SPEC, b"\x01"),
        dtls_handshake(2, b"\xfe\xfd" + bytes(32) + b"\x00\xc0\x2b\x00"),  # a ServerHello
        dtls_handshake(1, b"\xfe\xfd" + bytes(40), message_seq=0, total=4000),  # a ClientHello
        dtls_handshake(20, bytes(12), message_seq=5),  # a Finished
        dtls_record(ALERT, bytes(26), epoch=1, sequence=3),  # an encrypted alert
        dtls_record(APPLICATION_DATA, bytes(64), epoch=1, sequence=9),
        dtls_record(ALERT, b"\x02", version=DTLS_1_0),  # truncated
    ]
    return itertools.cycle(records)


def rtp_shaped(size: int, *, first_byte: int = 0x80, payload_type: int = 96) -> bytes:
    """``size`` bytes that look like RTP (or RTCP, with ``payload_type`` 200-204)."""
    header = bytes([first_byte, payload_type]) + struct.pack("!HII", 1, 160, 0x5EC0DE)
    return (header + bytes(size))[:size]


def rtcp_shaped(size: int) -> bytes:
    """``size`` bytes that look like an RTCP sender report."""
    return rtp_shaped(size, first_byte=0x81, payload_type=200)


# -- on-path: a connected browser's own SCTP and SRTP ---------------------------------------------

PPID_DCEP, PPID_STRING = 50, 51  # RFC 8831 §8
DCEP_ACK, DCEP_OPEN = 2, 3


def dcep_open(label: bytes, protocol: bytes = b"", *, label_length: int | None = None) -> bytes:
    """A DATA_CHANNEL_OPEN (RFC 8832 §5.1), reliable and ordered; ``label_length`` may lie."""
    length = len(label) if label_length is None else label_length
    return struct.pack("!BBHLHH", DCEP_OPEN, 0, 0, 0, length, len(protocol)) + label + protocol


DCEP_ACK_MESSAGE = bytes([DCEP_ACK])


async def send_sctp(peer: TestPeer, stream_id: int, ppid: int, data: bytes) -> None:
    """One user message on ``stream_id`` with payload protocol ``ppid``, straight into the
    browser's SCTP association (no data channel, no checks)."""
    assert peer.pc is not None and peer.pc.sctp is not None, "connect() first"
    await peer.pc.sctp._send(stream_id, ppid, data)


def lift_message_limit(peer: TestPeer) -> None:
    """Let the browser send messages over the gateway's ``a=max-message-size``, as a browser
    that ignores it would (aiortc refuses to, by default)."""
    assert peer.pc is not None and peer.pc.sctp is not None, "connect() first"
    peer.pc.sctp._remote_max_message_size = 0


async def send_rtp(peer: TestPeer, packet: bytes) -> None:
    """Raw RTP or RTCP bytes, protected with the browser's own SRTP context and sent on its
    audio transport: authenticated, whatever they say."""
    assert peer.pc is not None, "connect() first"
    (transceiver,) = [t for t in peer.pc.getTransceivers() if t.kind == "audio"]
    await transceiver.sender.transport._send_rtp(packet)


def audio_ssrc(peer: TestPeer) -> int:
    """The SSRC the browser's microphone is sent with."""
    assert peer.pc is not None, "connect() first"
    (transceiver,) = [t for t in peer.pc.getTransceivers() if t.kind == "audio"]
    return int(transceiver.sender._ssrc)


class RtpMangler:
    """Rewrites the browser's next outgoing RTP packets, one per variant, before its own SRTP
    protects them: a hostile stack that keeps the stream (sequence numbers, timestamps, SSRC,
    hence SRTP's replay window) but not the format.

    A variant its own libsrtp refuses to protect never leaves; it is in ``refused``, with why.
    """

    def __init__(
        self, peer: TestPeer, variants: Sequence[tuple[str, Callable[[bytes], bytes]]]
    ) -> None:
        assert peer.pc is not None, "connect() first"
        (transceiver,) = [t for t in peer.pc.getTransceivers() if t.kind == "audio"]
        self._transport = transceiver.sender.transport
        self._variants = list(variants)
        self.sent: list[str] = []
        self.refused: list[tuple[str, str]] = []
        self.done = asyncio.Event()

    def __enter__(self) -> RtpMangler:
        original = self._transport._send_rtp

        async def send(data: bytes) -> None:
            if is_rtcp(data) or not self._variants:
                await original(data)
                return
            name, mangle = self._variants.pop(0)
            try:
                await original(mangle(data))
            except (pylibsrtp.Error, ValueError) as exc:
                self.refused.append((name, str(exc)))
            else:
                self.sent.append(name)
            if not self._variants:
                self.done.set()

        self._transport._send_rtp = send  # type: ignore[method-assign]  # a hostile stack
        return self

    def __exit__(self, *exc: object) -> None:
        del self._transport._send_rtp  # the class's method again
