from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Any

import pytest
from aiortc.mediastreams import MediaStreamError

from gateway.rtc import compat
from gateway.rtc.media import (
    MediaPath,
    PacketForwarder,
    RelayTrack,
    choose_codec,
    pump_audio,
)


class FiniteSource:
    kind = "audio"

    def __init__(self, items: list[int]) -> None:
        self.items = list(items)

    async def recv(self) -> int:
        if not self.items:
            raise MediaStreamError
        await asyncio.sleep(0)
        return self.items.pop(0)


class TestRelayTrack:
    async def test_in_order(self) -> None:
        """Frames come out in the order they went in."""
        track = RelayTrack()
        for i in range(5):
            track.push(i)
        assert [await track.recv() for _ in range(5)] == [0, 1, 2, 3, 4]

    async def test_bounded_drops_oldest(self) -> None:
        """When nobody reads, the oldest audio goes first and is counted."""
        track = RelayTrack(maxlen=3)
        for i in range(10):
            track.push(i)
        assert track.frames_dropped == 7
        assert [await track.recv() for _ in range(3)] == [7, 8, 9]

    async def test_waits_for_audio(self) -> None:
        """recv() waits until a frame arrives."""
        track = RelayTrack()
        waiter = asyncio.ensure_future(track.recv())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        track.push("frame")
        assert await asyncio.wait_for(waiter, 1) == "frame"

    async def test_finish_ends_the_track(self) -> None:
        """After finish(), queued audio drains and then recv() ends the track."""
        track = RelayTrack()
        track.push(1)
        track.finish()
        assert await track.recv() == 1
        with pytest.raises(MediaStreamError):
            await track.recv()
        track.push(2)  # ignored once finished
        with pytest.raises(MediaStreamError):
            await track.recv()

    async def test_pump_copies_until_the_source_ends(self) -> None:
        """pump_audio moves every frame and finishes the sink when the source ends."""
        sink = RelayTrack()
        await pump_audio(FiniteSource([1, 2, 3]), sink)  # type: ignore[arg-type]
        assert [await sink.recv() for _ in range(3)] == [1, 2, 3]
        with pytest.raises(MediaStreamError):
            await sink.recv()


class FakeRtp:
    """The two fields aiortc's receiver hands a jitter buffer that the forwarder reads."""

    def __init__(self, timestamp: int, data: bytes = b"\xfc\x01") -> None:
        self.timestamp = timestamp
        self.sequence_number = 0
        self._data = data


class TestPacketForwarder:
    def forward(self, timestamps: list[int]) -> tuple[PacketForwarder, list[int]]:
        sink = RelayTrack(maxlen=100)
        forwarder = PacketForwarder(sink, 48000)
        for ts in timestamps:
            assert forwarder.add(FakeRtp(ts)) == (False, None)
        return forwarder, [int(p.pts) for p in sink._frames]

    def test_steady_stream(self) -> None:
        """pts counts 48 kHz samples from zero."""
        _, pts = self.forward([1000, 1960, 2920])
        assert pts == [0, 960, 1920]

    def test_gap_keeps_the_timeline(self) -> None:
        """A lost packet or DTX becomes the same jump in pts."""
        _, pts = self.forward([1000, 1960, 4840])
        assert pts == [0, 960, 3840]

    def test_late_and_duplicate_packets_are_dropped(self) -> None:
        """Reordered (late) and duplicate packets never make time run backwards."""
        forwarder, pts = self.forward([1000, 2920, 1960, 2920, 3880])
        assert pts == [0, 1920, 2880]
        assert forwarder.dropped_late == 2

    def test_rtp_timestamp_wraps(self) -> None:
        """The 32-bit RTP timestamp wrapping around is not a reorder."""
        _, pts = self.forward([0xFFFFFC40, 0x00000000, 0x000003C0])
        assert pts == [0, 960, 1920]

    def test_payload_and_timebase(self) -> None:
        """The payload is forwarded byte-exact with a 1/clock-rate time base."""
        sink = RelayTrack()
        PacketForwarder(sink, 8000).add(FakeRtp(5, b"\x11\x22\x33"))
        packet = sink._frames[0]
        assert bytes(packet) == b"\x11\x22\x33"
        assert packet.time_base == Fraction(1, 8000)

    def test_empty_payloads_are_not_forwarded(self) -> None:
        """A packet with no payload (a bare header, or padding only) is dropped: a decoder may
        take an empty frame for the end of the stream."""
        sink = RelayTrack()
        forwarder = PacketForwarder(sink, 48000)
        forwarder.add(FakeRtp(0))
        forwarder.add(FakeRtp(960, b""))
        forwarder.add(FakeRtp(1920))
        assert [p.pts for p in sink._frames] == [0, 1920]
        assert forwarder.dropped_empty == 1

    def test_aiortc_still_has_the_hook(self) -> None:
        """Fails loudly if aiortc's receiver loses the attribute passthrough replaces."""
        compat.check()


class TestChooseCodec:
    @pytest.mark.parametrize(
        ("offered", "expected"),
        [
            (["opus", "pcmu", "pcma"], "audio/opus"),
            (["PCMU", "PCMA"], "audio/PCMU"),
            (["g722", "pcma"], "audio/PCMA"),
            (["g722"], None),
        ],
    )
    def test_preference(self, offered: list[str], expected: str | None) -> None:
        """Opus first, then G.711; nothing we cannot forward."""
        codec = choose_codec(offered)
        assert (codec.mimeType if codec else None) == expected


class TestTaps:
    def packet(self, timestamp: int, sequence: int, payload: bytes = b"\xfc\x01") -> Any:
        from aiortc.rtp import RtpPacket

        packet = RtpPacket(payload_type=111, sequence_number=sequence, timestamp=timestamp)
        packet._data = payload  # type: ignore[attr-defined]  # set by aiortc's receiver
        return packet

    def test_a_tap_sees_each_packet_with_its_rtp_timing(self) -> None:
        """Taps get the encoded payload, RTP timestamp and sequence, and the leg it came on."""
        from gateway.rtc.media import TappedPacket

        seen: list[TappedPacket] = []
        taps = [seen.append]
        forwarder = PacketForwarder(RelayTrack(), 48000, leg="upstream", taps=taps)
        forwarder.add(self.packet(960, 7))
        forwarder.add(self.packet(1920, 8, b""))  # empty: not a frame, not tapped
        assert [(p.leg, p.payload, p.timestamp, p.sequence) for p in seen] == [
            ("upstream", b"\xfc\x01", 960, 7)
        ]

    def test_transcode_taps_see_packets_before_aiortcs_jitter_buffer(self) -> None:
        """In transcode mode the taps wrap aiortc's own buffer, which still gets every packet."""
        from aiortc.jitterbuffer import JitterBuffer

        from gateway.rtc.media import _TappingBuffer

        inner = JitterBuffer(capacity=16, prefetch=4)
        seen: list[Any] = []
        buffer = _TappingBuffer(inner, "browser", [seen.append], 48000)
        buffer.add(self.packet(0, 1))
        assert len(seen) == 1 and buffer.capacity == 16
        assert inner._origin == 1  # the inner buffer took the packet too


class TestTakingOver:
    """A replacement upstream session's forwarder continues the one it replaces."""

    def test_the_far_end_hears_one_stream_with_the_pause_in_it(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        now = [100.0]
        monkeypatch.setattr("gateway.rtc.media.time.monotonic", lambda: now[0])
        tapped: list[int] = []
        sink = RelayTrack(maxlen=100)
        old = PacketForwarder(
            sink, 48000, leg="upstream", taps=[lambda p: tapped.append(p.timestamp)]
        )
        for ts in (5000, 5960, 6920):
            old.add(FakeRtp(ts))
        new = PacketForwarder(RelayTrack(maxlen=100), 48000, leg="upstream")
        new.add(FakeRtp(777_000))  # before the cut: goes nowhere the browser hears
        new.take_over(old, sink, old._taps)
        now[0] += 0.25  # a quarter second without audio
        new.add(FakeRtp(900_000))
        new.add(FakeRtp(900_960))
        old.add(FakeRtp(7880))  # the old session, cut off, forwards nothing more
        pts = [int(p.pts) for p in sink._frames]
        assert pts == [0, 960, 1920, 1920 + 12000, 1920 + 12960]
        # The taps (a recording) see the same timeline, in the old stream's timestamps.
        assert tapped == [5000, 5960, 6920, 6920 + 12000, 6920 + 12960]

    def test_a_pause_shorter_than_a_frame_still_moves_time_on(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("gateway.rtc.media.time.monotonic", lambda: 50.0)
        sink = RelayTrack(maxlen=100)
        old = PacketForwarder(sink, 48000)
        old.add(FakeRtp(0))
        new = PacketForwarder(RelayTrack(), 48000)
        new.take_over(old, sink, [])
        new.add(FakeRtp(123))
        assert [int(p.pts) for p in sink._frames] == [0, 960]


class TestMediaPathAdopt:
    def test_the_browser_feeds_the_new_session_and_counts_span_the_call(self) -> None:
        codec = choose_codec(["opus"])
        assert codec is not None
        media = MediaPath("passthrough", codec)
        browser = PacketForwarder(media.to_upstream, 48000, leg="browser")
        media.forwarders["browser"] = browser
        browser.add(FakeRtp(0))
        browser.add(FakeRtp(960))
        old_track = media.to_upstream
        standby = media.standby()
        media.adopt(standby)
        assert media.to_upstream is standby.to_upstream
        assert old_track._ended
        browser.add(FakeRtp(1920))
        assert standby.to_upstream.frames_in == 1
        assert media.counts()[("browser", "in")] == 3

    def test_only_passthrough_can_change_its_upstream(self) -> None:
        codec = choose_codec(["opus"])
        assert codec is not None
        with pytest.raises(RuntimeError):
            MediaPath("transcode", codec).standby()
