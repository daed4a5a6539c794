"""The media path: audio from one leg's receiver to the other leg's sender.

Each direction is a :class:`RelayTrack` fed by :func:`pump_audio` from the far leg's remote
track. The track queue is bounded and drops the oldest audio when the sending leg is not
consuming yet (it is still connecting), so a late-connecting leg starts with fresh audio
instead of a burst of stale frames.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

# 25 frames of 20 ms: half a second of slack before the oldest audio is dropped.
QUEUE_FRAMES = 25


class RelayTrack(MediaStreamTrack):
    """An outgoing audio track fed by :meth:`push`; what the sending leg's RTCRtpSender reads."""

    kind = "audio"

    def __init__(self, maxlen: int = QUEUE_FRAMES) -> None:
        super().__init__()
        self._frames: deque[Any] = deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self._ended = False
        self.frames_in = 0
        self.frames_dropped = 0

    def push(self, frame: Any) -> None:
        if self._ended:
            return
        if len(self._frames) == self._frames.maxlen:
            self.frames_dropped += 1
        self._frames.append(frame)
        self.frames_in += 1
        self._ready.set()

    def finish(self) -> None:
        """No more audio will come: the sender's next ``recv()`` ends the track."""
        self._ended = True
        self._ready.set()

    async def recv(self) -> Any:
        while not self._frames:
            if self._ended or self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()

    def stop(self) -> None:
        self.finish()
        super().stop()


async def pump_audio(source: MediaStreamTrack, sink: RelayTrack) -> None:
    """Copy audio from ``source`` into ``sink`` until the source ends."""
    try:
        while True:
            sink.push(await source.recv())
    except MediaStreamError:
        pass
    finally:
        sink.finish()
