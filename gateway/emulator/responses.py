"""What the emulator answers, and the GA events that carry one response.

Pure: no I/O, no clocks. :func:`plan` decides the answer (an echo of the user's audio, a few
tones, or a function call) and :class:`Response` builds its events stage by stage; the call
decides when each stage goes out.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.emulator.audio import spoken_tones
from gateway.emulator.items import (
    Context,
    Input,
    ToolOutput,
    UserAudio,
    UserText,
    event,
    text_tokens,
)
from gateway.emulator.session import Session, dig, function_tools, new_id
from gateway.emulator.vad import SAMPLE_RATE, Samples
from gateway.types import Event


def find_json_object(text: str) -> str | None:
    """The first JSON object literal in ``text``, re-encoded compactly."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return json.dumps(value, separators=(",", ":"))
    return None


def _chunks(text: str, words: int = 3) -> list[str]:
    pieces = re.findall(r"\S+\s*", text)
    return ["".join(pieces[i : i + words]) for i in range(0, len(pieces), words)] or [text]


def _pick_tool(request: dict[str, Any], session: Session, text: str) -> str | None:
    tools = function_tools(request.get("tools", session.get("tools")))
    choice = request.get("tool_choice", session.get("tool_choice", "auto"))
    if not tools or choice == "none":
        return None
    names = [str(t["name"]) for t in tools]
    if isinstance(choice, dict) and choice.get("name") in names:
        return str(choice["name"])
    # Longest first, so "get_weather_forecast" wins over "get_weather" when both are named.
    for name in sorted(names, key=len, reverse=True):
        if name in text:
            return name
    return names[0] if choice == "required" else None


@dataclass
class Response:
    id: str
    kind: Literal["audio", "text", "function_call"]
    text: str
    """The transcript, the text, or the function call's arguments."""
    modalities: list[str]
    voice: Any
    metadata: Any
    conversation_id: str | None
    item: dict[str, Any]
    clip: Samples | None = None
    name: str = ""
    call_id: str = ""
    chunks: list[str] = field(default_factory=list)
    sent: int = 0
    drained: bool = False
    """Its audio finished playing before the response itself was done."""

    @property
    def audio_ms(self) -> float:
        return 0.0 if self.clip is None else 1000.0 * len(self.clip) / SAMPLE_RATE

    def _where(self) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": self.item["id"], "output_index": 0}

    def _object(self, status: str, details: Any, usage: Any) -> dict[str, Any]:
        output = [] if status == "in_progress" else [self.item]
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": details,
            "output": output,
            "conversation_id": self.conversation_id,
            "output_modalities": self.modalities,
            "max_output_tokens": "inf",
            "audio": {
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": self.voice}
            },
            "usage": usage,
            "metadata": self.metadata,
        }

    def _part(self, text: str) -> dict[str, Any]:
        if self.kind == "text":
            return {"type": "text", "text": text}
        return {"type": "audio", "transcript": text}

    def _item_events(self, stage: str, previous_item_id: str | None) -> list[Event]:
        """``response.output_item.<stage>``, and ``conversation.item.<stage>`` when the
        response belongs to the conversation (not ``conversation: "none"``)."""
        events = [
            event(
                f"response.output_item.{stage}",
                response_id=self.id,
                output_index=0,
                item=dict(self.item),
            )
        ]
        if self.conversation_id is not None:
            events.append(
                event(
                    f"conversation.item.{stage}",
                    previous_item_id=previous_item_id,
                    item=dict(self.item),
                )
            )
        return events

    def start_events(self, previous_item_id: str | None) -> list[Event]:
        events = [event("response.created", response=self._object("in_progress", None, None))]
        events += self._item_events("added", previous_item_id)
        if self.kind != "function_call":
            events.append(
                event(
                    "response.content_part.added",
                    **self._where(),
                    content_index=0,
                    part=self._part(""),
                )
            )
        if self.kind == "audio":
            events.append(event("output_audio_buffer.started", response_id=self.id))
        return events

    def delta_event(self) -> Event | None:
        """The next piece of transcript, text or arguments; ``None`` when all were sent."""
        if self.sent >= len(self.chunks):
            return None
        delta = self.chunks[self.sent]
        self.sent += 1
        if self.kind == "function_call":
            return event(
                "response.function_call_arguments.delta",
                **self._where(),
                call_id=self.call_id,
                delta=delta,
            )
        kind = (
            "response.output_text.delta"
            if self.kind == "text"
            else ("response.output_audio_transcript.delta")
        )
        return event(kind, **self._where(), content_index=0, delta=delta)

    def finish_events(
        self,
        context: Context,
        *,
        status: str,
        reason: str | None,
        previous_item_id: str | None,
        base_text_tokens: int,
    ) -> list[Event]:
        complete = status == "completed"
        text = self.text if complete else "".join(self.chunks[: self.sent])
        where = self._where()
        events: list[Event] = []
        if self.kind == "function_call":
            self.item.update(status="completed" if complete else "incomplete", arguments=text)
            if complete:
                events.append(
                    event(
                        "response.function_call_arguments.done",
                        **where,
                        call_id=self.call_id,
                        name=self.name,
                        arguments=text,
                    )
                )
        else:
            if self.kind == "audio":
                events.append(event("response.output_audio.done", **where, content_index=0))
                events.append(
                    event(
                        "response.output_audio_transcript.done",
                        **where,
                        content_index=0,
                        transcript=text,
                    )
                )
                content = {"type": "output_audio", "transcript": text}
            else:
                events.append(
                    event("response.output_text.done", **where, content_index=0, text=text)
                )
                content = {"type": "output_text", "text": text}
            events.append(
                event("response.content_part.done", **where, content_index=0, part=self._part(text))
            )
            self.item.update(status="completed" if complete else "incomplete", content=[content])
        events += self._item_events("done", previous_item_id)
        share = 1.0 if complete else self.sent / max(1, len(self.chunks))
        audio_tokens = math.ceil(self.audio_ms * share / 50)
        usage = context.bill(base_text_tokens, text_tokens(text), audio_tokens)
        details = None if complete else {"type": status, "reason": reason}
        events.append(event("response.done", response=self._object(status, details, usage)))
        return events


def plan(
    *,
    session: Session,
    request: dict[str, Any],
    last_input: Input | None,
    conversation_id: str | None,
) -> Response:
    """Decide the answer to ``last_input`` (the newest input since the previous response)."""
    modalities = request.get("output_modalities", session.get("output_modalities", ["audio"]))
    if not isinstance(modalities, list) or not modalities:
        modalities = ["audio"]
    voice = dig(request, "audio", "output", "voice") or dig(session, "audio", "output", "voice")
    common: dict[str, Any] = {
        "id": new_id("resp_"),
        "modalities": modalities,
        "voice": voice,
        "metadata": request.get("metadata"),
        "conversation_id": conversation_id,
    }
    item_id = new_id("item_")
    tool = (
        _pick_tool(request, session, last_input.text) if isinstance(last_input, UserText) else None
    )
    if tool is not None:
        assert isinstance(last_input, UserText)
        arguments = find_json_object(last_input.text) or "{}"
        call_id = new_id("call_", 16)
        call: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "name": tool,
            "call_id": call_id,
            "arguments": "",
        }
        return Response(
            kind="function_call",
            text=arguments,
            item=call,
            name=tool,
            call_id=call_id,
            chunks=_chunks(arguments, 4),
            **common,
        )

    clip: Samples | None = None
    if isinstance(last_input, UserAudio) and last_input.speech_ms > 0:
        transcript = (
            f"(emulator) You spoke for {last_input.speech_ms / 1000:.1f} seconds; here it is back."
        )
        clip = last_input.samples
    elif isinstance(last_input, UserAudio):
        transcript = (
            f"(emulator) I got {last_input.duration_ms / 1000:.1f} seconds of audio "
            "with no speech in it."
        )
    elif isinstance(last_input, UserText):
        transcript = f"(emulator) You said: {last_input.text}"
    elif isinstance(last_input, ToolOutput):
        transcript = f"(emulator) The tool returned: {last_input.output}"
    elif isinstance(request.get("instructions"), str):
        transcript = f"(emulator) You asked me to say: {request['instructions'][:200]}"
    else:
        transcript = "(emulator) Hello! This is the Realtime emulator; there is no model here."
    audio = "audio" in modalities
    if audio and clip is None:
        clip = spoken_tones(transcript)
    item: dict[str, Any] = {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    return Response(
        kind="audio" if audio else "text",
        text=transcript,
        item=item,
        clip=clip if audio else None,
        chunks=_chunks(transcript),
        **common,
    )
