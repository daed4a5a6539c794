"""One emulated Realtime call: the peer connection, the ``oai-events`` channel and the audio.

All conversation logic lives in :class:`~gateway.emulator.conversation.Conversation`; this
module feeds it (client events, decoded microphone audio, playback progress) and carries out
its :class:`~gateway.emulator.conversation.Effects`. Every task the call starts is owned here
and cancelled and awaited when the call ends.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import av
import structlog
from aiortc import RTCConfiguration, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel
from aiortc.sdp import SessionDescription

from gateway.emulator import events
from gateway.emulator.audio import PlaybackTrack, decode_frame
from gateway.emulator.conversation import Conversation, Effects
from gateway.emulator.errors import InvalidRequest, OpenAIError
from gateway.emulator.responses import Response
from gateway.emulator.turns import InputTurns
from gateway.emulator.vad import InputAudioStats, Samples, VadConfig
from gateway.rtc import ice
from gateway.rtc.compat import OwnedPeerConnection
from gateway.types import Event

log = structlog.get_logger(__name__)

# Streaming a text or a function call takes this long per delta, as a model's tokens would.
_TEXT_DELTA_S = 0.02


@dataclass(frozen=True)
class CallOptions:
    """What a call needs from :class:`~gateway.emulator.EmulatorSettings`."""

    model: str
    ice_addresses: tuple[str, ...]
    vad: VadConfig
    response_pace: float
    connect_timeout: float
    max_call_seconds: float
    max_echo_seconds: float
    record_events: bool = False


# Events kept per direction when recording (the latest ones).
RECORDED_EVENTS = 10_000


def new_call_id() -> str:
    return "rtc_" + secrets.token_hex(16)


def _closed_reason(reason: str) -> str:
    """Live's ``session.closed`` reason for why the emulator ends a call."""
    return {"hangup": "close_requested", "max_duration": "expired"}.get(reason, "connection_lost")


def _sends_opus(answer_sdp: str) -> bool:
    """Whether the answer's audio codec (aiortc sends with the first one) is Opus."""
    for media in SessionDescription.parse(answer_sdp).media:
        if media.kind == "audio" and media.rtp.codecs:
            return str(media.rtp.codecs[0].mimeType).lower() == "audio/opus"
    return False


class Dialogue(Protocol):
    """What a call feeds and asks: a Realtime :class:`Conversation` or a Live session."""

    session: dict[str, Any]
    turns: InputTurns

    def created_events(self) -> list[Event]: ...
    def closed_events(self, reason: str, *, limit_s: float | None = None) -> list[Event]: ...
    def handle(self, client_event: Event) -> Effects: ...
    def push_audio(self, samples: Samples, duration_ms: float, level: float) -> Effects | None: ...
    def complete(self, response: Response) -> Effects: ...
    def playback_finished(self, response_id: str) -> list[Event]: ...
    def error_event(self, error: OpenAIError, client_event_id: str | None = None) -> Event: ...


# Time the data channel gets to carry a session's last events before the peer closes.
CLOSING_GRACE_S = 0.3


class EmulatorCall:
    def __init__(
        self,
        options: CallOptions,
        *,
        request_headers: Mapping[str, str],
        request_kind: str,
        initial_session: dict[str, Any] | None,
        call_id: str | None = None,
        dialogue: Callable[[str, Callable[[], float]], Dialogue] | None = None,
    ) -> None:
        """``dialogue(call_id, playback_position)`` makes what answers the call (a Realtime
        conversation when left out)."""
        self.call_id = call_id or new_call_id()
        self.request_headers = request_headers
        self.request_kind = request_kind
        self.initial_session = initial_session
        # What went each way: kept only when recording is on, and then only the latest.
        self.received_events: deque[Event] = deque(maxlen=RECORDED_EVENTS)
        self.sent_events: deque[Event] = deque(maxlen=RECORDED_EVENTS)
        self.events_in = 0
        self.events_out = 0
        self.on_ended: Callable[[EmulatorCall], None] | None = None
        self.hung_up = False
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self._options = options
        self._track = PlaybackTrack(self._on_clip_finished)
        self._conversation: Dialogue
        if dialogue is not None:
            self._conversation = dialogue(self.call_id, lambda: self._track.position_ms)
        else:
            self._conversation = Conversation(
                model=options.model,
                vad=options.vad,
                initial_session=initial_session,
                playback_position=lambda: self._track.position_ms,
                max_echo_ms=options.max_echo_seconds * 1000,
                lifetime_s=options.max_call_seconds,
            )
        self._pc: OwnedPeerConnection | None = None
        self._channel: RTCDataChannel | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stream: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._end_requested = asyncio.Event()
        self._requested_reason = "unknown"
        self._received = asyncio.Event()
        self._started_at = time.monotonic()
        self._log = log.bind(call_id=self.call_id)

    @property
    def session(self) -> dict[str, Any]:
        return self._conversation.session

    @property
    def input_audio(self) -> InputAudioStats:
        return self._conversation.turns.stats

    # A timeout argument (not the caller's asyncio.timeout) keeps every test wait bounded.
    async def wait_for_event(self, type: str, timeout: float = 5.0) -> Event:  # noqa: ASYNC109
        """The first client event of ``type``, waiting for it if it has not come yet (needs
        ``record_events``)."""
        if not self._options.record_events:
            raise RuntimeError("This emulator does not record events (EmulatorSettings).")
        async with asyncio.timeout(timeout):
            while True:
                for received in self.received_events:
                    if received["type"] == type:
                        return received
                await self._received.wait()

    # --- lifecycle ---------------------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """Accept the offer; returns the SDP answer with every candidate in it."""
        # Owned: closing a call at any moment of ICE setup must leave no aioice task behind.
        pc = OwnedPeerConnection(RTCConfiguration(iceServers=[]))
        self._pc = pc
        pc.on("datachannel", self._on_datachannel)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            pc.addTrack(self._track)
            answer = await pc.createAnswer()
            with ice.host_addresses(self._options.ice_addresses):
                await pc.setLocalDescription(answer)
        except Exception as exc:
            await self._teardown("rejected")
            raise InvalidRequest(
                f"The SDP offer could not be used: {exc}", code="invalid_offer"
            ) from exc
        self._track.opus = _sends_opus(str(pc.localDescription.sdp))
        self._supervisor = asyncio.create_task(self._supervise(), name=f"{self.call_id}:supervise")
        self._log.info("emulator.call_started", kind=self.request_kind, opus=self._track.opus)
        return str(pc.localDescription.sdp)

    async def end(self, reason: str) -> None:
        """End the call (idempotent); returns once everything it started has stopped."""
        closing = self._conversation.closed_events(_closed_reason(reason))
        if closing and self._channel is not None and self._channel.readyState == "open":
            self._send_all(closing)
            await asyncio.sleep(CLOSING_GRACE_S)
        self._request_end(reason)
        if self._supervisor is not None:
            await asyncio.shield(self._supervisor)
        elif not self.ended.is_set():
            await self._teardown(reason)

    def _request_end(self, reason: str) -> None:
        if not self._end_requested.is_set():
            self._requested_reason = reason
            self._end_requested.set()

    async def _supervise(self) -> None:
        reason: str | None = None
        try:
            async with asyncio.timeout(
                min(self._options.connect_timeout, self._options.max_call_seconds)
            ):
                await self._end_requested.wait()
        except TimeoutError:
            reason = "connect_timeout" if self._channel is None else None
        if reason is None:
            remaining = self._options.max_call_seconds - (time.monotonic() - self._started_at)
            try:
                async with asyncio.timeout(max(0.0, remaining)):
                    await self._end_requested.wait()
            except TimeoutError:
                reason = "max_duration"
                closing = self._conversation.closed_events(
                    "expired", limit_s=self._options.max_call_seconds
                )
                if closing:
                    self._send_all(closing)
                    await asyncio.sleep(CLOSING_GRACE_S)
        await self._teardown(reason or self._requested_reason)

    async def _teardown(self, reason: str) -> None:
        if self.end_reason is not None:  # already ending: wait for that instead
            await self.ended.wait()
            return
        self.end_reason = reason
        tasks = [*self._tasks, *([self._stream] if self._stream else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._track.stop()
        if self._pc is not None:
            await self._pc.close()
        self.ended.set()
        self._log.info(
            "emulator.call_ended",
            reason=reason,
            seconds=round(time.monotonic() - self._started_at, 3),
            frames_in=self.input_audio.frames,
            events_in=self.events_in,
            events_out=self.events_out,
        )
        if self.on_ended is not None:
            self.on_ended(self)

    def _on_connection_state(self) -> None:
        assert self._pc is not None
        state = self._pc.connectionState
        if state in ("failed", "closed"):
            self._request_end("peer_failed" if state == "failed" else "peer_closed")

    # --- data channel ------------------------------------------------------------------------

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        # OpenAI honours only the newest channel; so does the emulator.
        self._channel = channel
        channel.on("message", self._on_message)
        channel.on("close", lambda: self._on_channel_close(channel))
        self._send_all(self._conversation.created_events())

    def _on_channel_close(self, channel: RTCDataChannel) -> None:
        if channel is self._channel:
            self._request_end("peer_closed")

    def _send(self, event: Event) -> None:
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return
        channel.send(events.encode(event))
        self.events_out += 1
        if self._options.record_events:
            self.sent_events.append(event)

    def _send_all(self, batch: list[Event]) -> None:
        for event in batch:
            self._send(event)

    def _on_message(self, raw: str | bytes) -> None:
        try:
            event = events.parse(raw)
        except OpenAIError as exc:
            self._log.info("emulator.client_error", type=None, code=exc.code)
            self._send(self._conversation.error_event(exc))
            return
        self.events_in += 1
        if self._options.record_events:
            self.received_events.append(event)
        self._received.set()
        self._received = asyncio.Event()
        try:
            effects = self._conversation.handle(event)
        except OpenAIError as exc:
            self._log.info("emulator.client_error", type=event["type"], code=exc.code)
            self._send(self._conversation.error_event(exc, events.client_event_id(event)))
            return
        except Exception:
            # A bug here must not reach aiortc's SCTP loop, which would drop the connection.
            self._log.exception("emulator.event_failed", type=event["type"])
            error = OpenAIError("The emulator failed to handle this event.")
            self._send(self._conversation.error_event(error, events.client_event_id(event)))
            return
        self._apply(effects)

    # --- effects, streaming and audio --------------------------------------------------------

    def _apply(self, effects: Effects) -> None:
        if effects.cancelled is not None and self._stream is not None:
            self._stream.cancel()
        if effects.stop_playback:
            self._track.stop_playback()
        self._send_all(effects.events)
        if effects.end is not None:
            reason = effects.end
            asyncio.get_running_loop().call_later(CLOSING_GRACE_S, self._request_end, reason)
            return
        if effects.play is not None and effects.play.clip is not None:
            self._track.play(effects.play.clip, effects.play.id)
        if effects.start is not None:
            self._stream = asyncio.create_task(
                self._stream_response(effects.start), name=f"{self.call_id}:response"
            )

    async def _stream_response(self, response: Response) -> None:
        """Send the deltas as a model would generate them, then ``response.done``.

        With audio, generation takes the clip's length divided by ``response_pace``, so the
        response stays active (and cancellable) for a while, as a real one does.
        """
        count = max(1, len(response.chunks))
        if response.clip is not None:
            step = response.audio_ms / 1000 / self._options.response_pace / count
        else:
            step = _TEXT_DELTA_S
        try:
            for _ in range(len(response.chunks)):
                await asyncio.sleep(step)
                delta = response.delta_event()
                if delta is not None:
                    self._send(delta)
            self._apply(self._conversation.complete(response))
        except Exception:
            self._log.exception("emulator.response_failed", response_id=response.id)

    def _on_clip_finished(self, token: str) -> None:
        self._send_all(self._conversation.playback_finished(token))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio":
            return
        task = asyncio.create_task(self._consume(track), name=f"{self.call_id}:audio-in")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.AudioFrame):
                continue
            try:
                samples, duration_ms, level = decode_frame(frame)
                effects = self._conversation.push_audio(samples, duration_ms, level)
            except Exception:
                self._log.exception("emulator.audio_failed")
                return
            if effects is not None:
                self._apply(effects)
