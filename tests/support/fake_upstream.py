"""A fake upstream session: implements :class:`gateway.upstream.base.Upstream` with no network.

It records what the gateway sends, emits what a test scripts, pushes audio into the call's media
path on demand, and can be told to refuse, stall, vanish or fail, so call-level behaviour
(outcomes, farewells, tools, policy, liveness) is tested with one WebRTC leg instead of two.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av

from gateway.errors import GatewayError
from gateway.rtc.media import MediaPath
from gateway.types import Event, Message

# One 20 ms Opus frame of silence (TOC byte 0xF8: CELT fullband 20 ms, mono, one frame).
OPUS_SILENCE = b"\xf8\xff\xfe"


@dataclass
class Script:
    """How the fake behaves; change it before the call is made."""

    refuse: GatewayError | None = None
    """``connect`` raises this."""
    connect_delay: float = 0.0
    """``connect`` takes this long (a slow upstream)."""
    audio: bool = True
    """Send 20 ms of silence every 20 ms while connected, as OpenAI does between responses."""
    greet: bool = True
    """Emit ``session.created`` once connected."""
    send_raises: BaseException | None = None
    """``send`` raises this (a fault inside the gateway's own pipeline)."""
    jitter: float = 0.0
    """What ``receive_quality`` reports, in RTP clock units."""
    lost: int = 0
    messages_dropped: int = 0


class FakeUpstream:
    def __init__(self, media: MediaPath, script: Script) -> None:
        self.media = media
        self.script = script
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.channel_open = asyncio.Event()
        self.ended = asyncio.Event()
        self.exchange_seconds = 0.0
        self.session: dict[str, Any] | None = None
        self.sent: list[Event] = []
        self.hung_up = False
        self.closed = False
        self._session_id: str | None = None
        self._end_reason: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._received = asyncio.Event()

    # -- the Upstream interface ----------------------------------------------------------

    @property
    def session_id(self) -> str | None:
        return self._session_id

    @property
    def end_reason(self) -> str | None:
        return self._end_reason

    @property
    def state(self) -> str:
        return "closed" if self.closed else ("connected" if self.connected.is_set() else "new")

    @property
    def messages_dropped(self) -> int:
        return self.script.messages_dropped

    async def connect(self, session: Mapping[str, Any]) -> None:
        if self.script.connect_delay:
            await asyncio.sleep(self.script.connect_delay)
        if self.script.refuse is not None:
            raise self.script.refuse
        self.session = dict(session)
        self._session_id = f"rtc_fake_{id(self):x}"
        self.connected.set()
        self.channel_open.set()
        if self.script.greet:
            self.emit({"type": "session.created", "session": dict(session)})
        if self.script.audio:
            self._spawn(self._silence())

    def send(self, message: Message) -> None:
        if self.script.send_raises is not None:
            raise self.script.send_raises
        self.sent.append(json.loads(message))
        self._received.set()

    async def receive_quality(self) -> tuple[int, float]:
        return self.script.lost, self.script.jitter

    async def hangup(self) -> None:
        self.hung_up = True

    async def close(self) -> None:
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._end("closed")

    # -- what a test does with it --------------------------------------------------------

    def emit(self, event: Event) -> None:
        """The upstream sends ``event``."""
        self.inbox.put_nowait(json.dumps(event))

    def vanish(self, why: str = "connection_failed") -> None:
        """The upstream's transport fails, as a dead OpenAI edge would."""
        self._end(why)

    async def next_sent(self, kind: str, timeout: float = 5.0) -> Event:  # noqa: ASYNC109
        """The first event of type ``kind`` the gateway sent (waiting for it if need be)."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.sent:
                    if event.get("type") == kind:
                        return event
                self._received.clear()
                await self._received.wait()

    # -- inside ------------------------------------------------------------------------------

    def _end(self, why: str) -> None:
        if not self.ended.is_set():
            self._end_reason = why
            self.ended.set()

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _silence(self) -> None:
        pts = 0
        sink = self.media.outgoing("browser")
        while not self.ended.is_set():
            packet = av.Packet(OPUS_SILENCE)
            packet.pts, packet.time_base = pts, Fraction(1, 48000)
            sink.push(packet)
            pts += 960
            await asyncio.sleep(0.02)


@dataclass
class FakeUpstreams:
    """An upstream factory for ``create_app(upstreams=...)``: every session it made, in order."""

    script: Script = field(default_factory=Script)
    made: list[FakeUpstream] = field(default_factory=list)

    def __call__(self, media: MediaPath) -> FakeUpstream:
        fake = FakeUpstream(media, self.script)
        self.made.append(fake)
        return fake

    @property
    def last(self) -> FakeUpstream:
        return self.made[-1]
