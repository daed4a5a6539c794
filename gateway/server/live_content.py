"""GPT-Live's recording download, ``GET /v1/live/sessions/{session_id}/content``.

OpenAI answers with the session's recording as WAV: stereo, the input (the user) on the left,
the output (the model) on the right (``../shared/live-protocol.md`` §5, §8). The gateway keeps
every call's recording as stereo Ogg Opus, browser left and model right
(:mod:`gateway.server.recordings`), so a Live session's is decoded while it is sent
(:mod:`gateway.recording.wav`): 16-bit PCM at 24 kHz, its ``Content-Length`` known from the
Ogg file's last page before any decoding. ``HEAD`` decodes nothing.

- ``Range`` is not honoured: the answer is ``200`` with the whole file (``Accept-Ranges: none``;
  RFC 9110 §14.2 allows it). Each byte of the WAV depends on decoding all the audio before it,
  so a range would cost the whole file up to its end, and a player seeking about an hour-long
  recording would decode it again and again.
- Decoding costs about 0.11 s of CPU a minute of call, taken from the calls running beside it:
  at most :data:`MAX_DECODING` downloads decode at once in a process, each at most
  :data:`MAX_SPEED` times faster than real time. Another waits up to :data:`QUEUE_WAIT` for a
  place, then gets ``503`` with ``Retry-After``.
- Chunks are decoded in worker threads, one ahead of the socket: a slow reader holds the
  decoder still (two chunks in memory), a reader that goes away stops it, and one that reads
  nothing for :data:`WRITE_STALL` is cut off, so it cannot keep a place for ever.
- Only ``live_…`` ids: a Realtime call's recording is at ``/v1/realtime/calls/{id}/content``,
  as it was recorded.
- With several processes, a download that reaches one not holding the file is forwarded to the
  holder, as the Realtime download is.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Generator
from pathlib import Path
from typing import Final

import structlog
from aiohttp import hdrs, web

from gateway.errors import GatewayError, NotFound, Unavailable
from gateway.recording import wav
from gateway.server.auth import require_server
from gateway.server.recordings import from_holder
from gateway.server.state import STATE, GatewayState

log = structlog.get_logger(__name__)

MAX_DECODING: Final = 2
QUEUE_WAIT: Final = 2.0
"""Seconds a download waits for a place before it is turned away."""
RETRY_AFTER: Final = 5
MAX_SPEED: Final = 100.0
"""Times faster than real time a download is decoded at most: an hour's WAV in 36 s, about a
quarter of a core, where unpaced it takes a whole core for 8 s, from the calls beside it."""
WRITE_STALL: Final = 60.0
"""Seconds a chunk may wait for the client to take it."""
_BYTES_PER_SECOND: Final = wav.RATE * wav.FRAME_BYTES
_LIVE_ID: Final = re.compile(r"live_[A-Za-z0-9_-]{1,123}")
_SHOWN_ID: Final = 128


class Downloads:
    """The WAV downloads this process is decoding: at most ``limit`` at once."""

    def __init__(self, limit: int = MAX_DECODING) -> None:
        self.limit = limit
        self.decoding = 0
        """Downloads holding a decoder (a worker thread may be running it)."""
        self._changed = asyncio.Condition()
        self._closing: set[asyncio.Task[None]] = set()

    async def _enter(self) -> bool:
        async with self._changed:
            try:
                async with asyncio.timeout(QUEUE_WAIT):
                    await self._changed.wait_for(lambda: self.decoding < self.limit)
            except TimeoutError:
                return False
            self.decoding += 1
            return True

    async def _leave(self) -> None:
        async with self._changed:
            self.decoding -= 1
            self._changed.notify()

    async def send(
        self,
        request: web.Request,
        session_id: str,
        path: Path,
        frames: int,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        """Decode the recording at ``path`` into the answer, ``frames`` long."""
        if not await self._enter():
            log.info("live_content.busy", session_id=session_id, decoding=self.decoding)
            raise Unavailable(
                "Too many recordings are being downloaded from this gateway process; "
                "retry shortly.",
                retry_after=RETRY_AFTER,
            )
        loop = asyncio.get_running_loop()
        chunks = wav.pcm(path, frames)
        ahead = loop.run_in_executor(None, next, chunks, None)
        started = time.monotonic()
        sent = 0
        outcome = "complete"
        response = web.StreamResponse(headers=headers)
        response.content_length = wav.HEADER_BYTES + frames * wav.FRAME_BYTES
        try:
            try:
                chunk = await ahead
            except wav.Unreadable as exc:
                log.warning("live_content.unreadable", session_id=session_id, reason=str(exc))
                raise _unreadable(session_id) from None
            await response.prepare(request)
            await _write(response, wav.header(frames))
            while chunk is not None:
                ahead = loop.run_in_executor(None, next, chunks, None)
                await _write(response, chunk)
                sent += len(chunk)
                early = sent / _BYTES_PER_SECOND / MAX_SPEED - (time.monotonic() - started)
                if early > 0:
                    await asyncio.sleep(early)
                chunk = await ahead
            await response.write_eof()
        except ConnectionError:
            outcome = "client_gone"
        except asyncio.CancelledError:
            outcome = "cancelled"  # the client went away (where aiohttp cancels), or shutdown
            raise
        except TimeoutError:
            outcome = "stalled"
            _abort(request)
        except GatewayError:
            outcome = "unreadable"
            raise
        except Exception:
            outcome = "failed"
            if not response.prepared:
                raise  # answered as any handler's failure is: logged, a 500 in OpenAI's shape
            # Past the headers there is no error to answer with: the client sees the body cut.
            log.exception("live_content.failed", session_id=session_id)
            _abort(request)
        finally:
            closing = asyncio.ensure_future(self._close(chunks, ahead))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            log.info(
                "live_content.sent",
                session_id=session_id,
                outcome=outcome,
                bytes=sent,
                seconds=round(time.monotonic() - started, 3),
            )
            # Shielded: a cancelled handler (shutdown) still frees its place and its decoder.
            await asyncio.shield(closing)
        return response

    async def _close(
        self, chunks: Generator[bytes, None, None], ahead: asyncio.Future[bytes | None]
    ) -> None:
        """Close the decoder once the chunk under way is done (a generator cannot be closed
        while a thread runs it), then free the place."""
        try:
            await asyncio.wait([ahead])
            if not ahead.cancelled():
                ahead.exception()  # seen here, whatever it was: the client has gone
            await asyncio.get_running_loop().run_in_executor(None, chunks.close)
        except Exception:
            log.warning("live_content.close_failed", exc_info=True)
        finally:
            await self._leave()

    async def aclose(self) -> None:
        if self._closing:
            await asyncio.wait(list(self._closing))


async def _write(response: web.StreamResponse, data: bytes) -> None:
    async with asyncio.timeout(WRITE_STALL):
        await response.write(data)


def _abort(request: web.Request) -> None:
    # abort, not close: a close waits to flush what the client is not reading.
    transport = request.transport
    if transport is not None:
        transport.abort()


DOWNLOADS: Final = web.AppKey("live_content_downloads", Downloads)


def _no_recording(session_id: str) -> NotFound:
    return NotFound(
        f"No recording found for session '{session_id[:_SHOWN_ID]}'.", param="session_id"
    )


def _unreadable(session_id: str) -> GatewayError:
    return GatewayError(
        f"The recording of session '{session_id}' could not be read.",
        code="recording_unreadable",
    )


async def content(request: web.Request) -> web.StreamResponse:
    state: GatewayState = request.app[STATE]
    require_server(request, state)
    session_id = request.match_info["session_id"]
    recordings = state.services.recordings
    if recordings is None:
        raise NotFound(
            "This gateway does not record sessions (GATEWAY_RECORDINGS_DIR is not set).",
            param="session_id",
        )
    if not _LIVE_ID.fullmatch(session_id):
        raise _no_recording(session_id)
    path = await asyncio.to_thread(recordings.path_of, session_id)
    if path is None:
        missing = _no_recording(session_id)
        return await from_holder(request, state, session_id, missing, f"session '{session_id}'")
    try:
        frames = await asyncio.to_thread(wav.frames_of, path)
    except wav.Unreadable as exc:
        log.warning("live_content.unreadable", session_id=session_id, reason=str(exc))
        raise _unreadable(session_id) from None
    headers: dict[str, str] = {
        hdrs.CONTENT_TYPE: "audio/wav",
        hdrs.CACHE_CONTROL: "private, no-store",
        hdrs.ACCEPT_RANGES: "none",
    }
    if request.method == hdrs.METH_HEAD:
        response = web.StreamResponse(headers=headers)
        response.content_length = wav.HEADER_BYTES + frames * wav.FRAME_BYTES
        return response
    return await request.app[DOWNLOADS].send(request, session_id, path, frames, headers)


async def _close_downloads(app: web.Application) -> None:
    await app[DOWNLOADS].aclose()


def add_routes(app: web.Application) -> None:
    app[DOWNLOADS] = Downloads()
    app.on_cleanup.append(_close_downloads)
    app.router.add_get("/v1/live/sessions/{session_id}/content", content)
