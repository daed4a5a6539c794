from __future__ import annotations

import asyncio

import pytest
from aiortc.mediastreams import MediaStreamError

from gateway.rtc.media import RelayTrack, pump_audio


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
