"""Per-call measurement state, shared by the call's client peer and its bench-upstream peer.

A call is tied to its upstream side by a key in ``session.instructions``: the client puts it
in its client secret (or, direct, in the multipart ``session`` part), the gateway passes the
session on to the upstream, and the bench upstream looks the probe up by it. Data-channel
events are timed like audio packets: the sender logs when each event (``event_id`` =
``bench_<seq>``) left, and the other end, in the same process, logs when it arrived.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCDataChannel

from gateway_bench.audio import MarkerLoop
from gateway_bench.stream import AudioStream

KEY_PREFIX = "bench:"
EVENT_ID_PREFIX = "bench_"
_NAN = float("nan")
# Documented Realtime event types, so the gateway relays them as it relays real traffic (it
# refuses client event types outside OpenAI's catalogue). Up: a small client request the
# upstream may ignore. Down: a transcript delta of typical size (~250 B), which the gateway
# may inspect, as it would a real one.
_DELTA = "The quick brown fox jumps over the lazy dog; " * 3


def client_event(seq: int) -> dict[str, Any]:
    return {
        "type": "conversation.item.retrieve",
        "event_id": f"{EVENT_ID_PREFIX}{seq}",
        "item_id": f"item_bench_{seq}",
    }


def server_event(seq: int) -> dict[str, Any]:
    return {
        "type": "response.output_audio_transcript.delta",
        "event_id": f"{EVENT_ID_PREFIX}{seq}",
        "response_id": "resp_bench",
        "item_id": "item_bench",
        "output_index": 0,
        "content_index": 0,
        "delta": _DELTA,
    }


def event_seq(message: str | bytes) -> int | None:
    """The sequence number of one of our events, else None."""
    try:
        event = json.loads(message)
        event_id = event.get("event_id")
    except (ValueError, TypeError, AttributeError):
        return None
    if not isinstance(event_id, str) or not event_id.startswith(EVENT_ID_PREFIX):
        return None
    digits = event_id[len(EVENT_ID_PREFIX) :]
    return int(digits) if digits.isdigit() else None


class EventStream:
    """One direction of one call's timed data-channel events."""

    def __init__(self, make: Callable[[int], dict[str, Any]]) -> None:
        self._make = make
        self.sent_at = array("d")
        self.latency = array("d")
        self.other = 0  # messages that were not ours: e.g. the gateway's ``error`` events
        self.errors: list[str] = []

    def next_message(self, now: float) -> str:
        seq = len(self.sent_at)
        self.sent_at.append(now)
        self.latency.append(_NAN)
        return json.dumps(self._make(seq), separators=(",", ":"))

    def receive(self, message: str | bytes, now: float) -> bool:
        """Log an event's arrival; False (and counted) if ``message`` is not one of ours."""
        seq = event_seq(message)
        if seq is None or seq >= len(self.sent_at):
            self.other += 1
            if len(self.errors) < 5:
                self.errors.append(_error_text(message))
            return False
        if math.isnan(self.latency[seq]):
            self.latency[seq] = now - self.sent_at[seq]
        return True

    def window(self, start: float, end: float) -> tuple[int, list[float]]:
        """(events sent in ``[start, end]``, latencies in ms of those that arrived)."""
        chosen = [i for i, at in enumerate(self.sent_at) if start <= at <= end]
        values = [self.latency[i] * 1000.0 for i in chosen if not math.isnan(self.latency[i])]
        return len(chosen), values


def _error_text(message: str | bytes) -> str:
    try:
        event = json.loads(message)
        error = event.get("error") or {}
        return f"{event.get('type')}: {error.get('code') or ''} {error.get('message') or ''}"[:160]
    except (ValueError, TypeError, AttributeError):
        return repr(message[:80])


class Pinger:
    """Sends timed events on a channel at a fixed rate until stopped."""

    def __init__(self, stream: EventStream, rate: float) -> None:
        self._stream = stream
        self._rate = rate
        self._task: asyncio.Task[None] | None = None

    def start(self, channel: RTCDataChannel) -> None:
        if self._task is None and self._rate > 0:
            self._task = asyncio.get_running_loop().create_task(
                self._run(channel), name="bench-pinger"
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self, channel: RTCDataChannel) -> None:
        interval = 1.0 / self._rate
        # Start at a random phase, so many calls do not ping in lockstep.
        await asyncio.sleep(interval * secrets.randbelow(1000) / 1000.0)
        origin, count = time.monotonic(), 0
        while channel.readyState == "open":
            channel.send(self._stream.next_message(time.monotonic()))
            count += 1
            delay = origin + count * interval - time.monotonic()
            await asyncio.sleep(max(0.0, delay))


@dataclass
class CallProbe:
    """Everything measured about one call. "up" is client → upstream, "down" the reverse."""

    key: str
    up: AudioStream
    down: AudioStream
    up_events: EventStream = field(default_factory=lambda: EventStream(client_event))
    down_events: EventStream = field(default_factory=lambda: EventStream(server_event))
    offer_sent: float | None = None
    answer_received: float | None = None
    channel_open: float | None = None
    upstream_answer_s: float | None = None  # the upstream's own handling of the SDP POST
    error: str | None = None

    @property
    def offer_to_answer(self) -> float | None:
        if self.offer_sent is None or self.answer_received is None:
            return None
        return self.answer_received - self.offer_sent

    @property
    def offer_to_first_audio(self) -> float | None:
        if self.offer_sent is None or self.down.first_arrival is None:
            return None
        return self.down.first_arrival - self.offer_sent

    @property
    def flowing(self) -> bool:
        """Audio has arrived both ways and the event channel is open."""
        return (
            self.up.first_arrival is not None
            and self.down.first_arrival is not None
            and self.channel_open is not None
        )


class ProbeRegistry:
    """The load process's calls, by key; the bench upstream finds its side of a call here."""

    def __init__(self, loop: MarkerLoop) -> None:
        self.loop = loop
        self._probes: dict[str, CallProbe] = {}

    def new(self) -> CallProbe:
        key = KEY_PREFIX + secrets.token_hex(8)
        probe = CallProbe(key, AudioStream(self.loop), AudioStream(self.loop))
        self._probes[key] = probe
        return probe

    def find(self, session: dict[str, Any] | None) -> CallProbe | None:
        instructions = (session or {}).get("instructions")
        if not isinstance(instructions, str):
            return None
        return self._probes.get(instructions.strip())

    def forget(self, probe: CallProbe) -> None:
        self._probes.pop(probe.key, None)
