"""The conversation's items, what they mean as input, and what they cost in tokens.

Pure: no I/O.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from gateway.emulator.errors import InvalidRequest
from gateway.emulator.events import new_event_id
from gateway.emulator.session import new_id
from gateway.emulator.vad import Samples
from gateway.types import Event

Item = dict[str, Any]


def event(kind: str, **fields: Any) -> Event:
    """A server event: its type, a fresh ``event_id``, then its fields."""
    return {"type": kind, "event_id": new_event_id(), **fields}


def text_tokens(text: str) -> int:
    """About four characters per token, as OpenAI's rule of thumb has it."""
    return math.ceil(len(text) / 4)


@dataclass(frozen=True)
class UserAudio:
    samples: Samples
    """What is played back: from the speech onset (minus padding) to just after it ended."""
    speech_ms: float
    duration_ms: float
    """All the audio committed for the turn, silence included: what is billed."""


@dataclass(frozen=True)
class UserText:
    text: str


@dataclass(frozen=True)
class ToolOutput:
    call_id: str
    output: str


Input = UserAudio | UserText | ToolOutput


def input_from_item(item: Item) -> Input | None:
    """What a client-created item asks the next response to answer, if anything."""
    kind = item.get("type", "message")
    if kind == "function_call_output":
        return ToolOutput(str(item.get("call_id", "")), str(item.get("output", "")))
    if kind != "message" or item.get("role", "user") != "user":
        return None
    texts = [
        str(part.get("text", ""))
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") in ("input_text", "text")
    ]
    return UserText(" ".join(texts)) if texts else None


@dataclass
class Context:
    """What the conversation holds so far, in tokens, for the ``usage`` of each response."""

    text_tokens: int = 0
    audio_tokens: int = 0
    last_input: tuple[int, int] = (0, 0)

    def bill(self, base_text: int, out_text: int, out_audio: int) -> dict[str, Any]:
        """The ``usage`` of a response; its output then becomes part of the conversation.

        ``base_text`` is what every response reads besides the conversation (instructions, tools).
        """
        # Each response re-reads the whole conversation; the prefix that the previous response
        # already read is cached once it is long enough (1024 tokens), as OpenAI's caching is.
        cached_text, cached_audio = self.last_input
        if cached_text + cached_audio < 1024:
            cached_text = cached_audio = 0
        in_text = base_text + self.text_tokens
        in_total = in_text + self.audio_tokens
        usage = {
            "total_tokens": in_total + out_text + out_audio,
            "input_tokens": in_total,
            "output_tokens": out_text + out_audio,
            "input_token_details": {
                "text_tokens": in_text,
                "audio_tokens": self.audio_tokens,
                "image_tokens": 0,
                "cached_tokens": cached_text + cached_audio,
                "cached_tokens_details": {
                    "text_tokens": cached_text,
                    "audio_tokens": cached_audio,
                    "image_tokens": 0,
                },
            },
            "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
        }
        self.last_input = (in_text, self.audio_tokens)
        self.text_tokens += out_text
        self.audio_tokens += out_audio
        return usage


class Items:
    """The conversation's items in order, each with the id of the item before it."""

    def __init__(self, context: Context) -> None:
        self._items: dict[str, Item] = {}
        self._previous: dict[str, str | None] = {}
        self._context = context

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    @property
    def last_id(self) -> str | None:
        return next(reversed(self._items), None)

    def previous_of(self, item_id: str) -> str | None:
        return self._previous.get(item_id)

    def add(self, item: Item, previous: str | None) -> None:
        self._items[item["id"]] = item
        self._previous[item["id"]] = previous
        if item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict):
                    text = part.get("text") or part.get("transcript") or ""
                    self._context.text_tokens += text_tokens(str(text))
        elif item.get("type") == "function_call_output":
            self._context.text_tokens += text_tokens(str(item.get("output", "")))

    def added_events(self, item: Item) -> list[Event]:
        previous = self.previous_of(item["id"])
        return [
            event(kind, previous_item_id=previous, item=copy.deepcopy(item))
            for kind in ("conversation.item.added", "conversation.item.done")
        ]

    def create(self, client_event: Event) -> tuple[list[Event], Input | None]:
        """``conversation.item.create``: the events to send and the new input, if any."""
        raw = client_event.get("item")
        if not isinstance(raw, dict):
            raise InvalidRequest(
                "Missing required parameter: 'item'.",
                code="missing_required_parameter",
                param="item",
            )
        kind = raw.get("type", "message")
        if kind not in ("message", "function_call", "function_call_output"):
            raise InvalidRequest(
                f"Invalid value: {kind!r}. Supported values are: 'message', 'function_call', "
                "and 'function_call_output'.",
                code="invalid_value",
                param="item.type",
            )
        item = copy.deepcopy(raw)
        item.setdefault("id", new_id("item_"))
        item.update(object="realtime.item", type=kind, status="completed")
        given = client_event.get("previous_item_id")
        self.add(item, given if isinstance(given, str) else self.last_id)
        return self.added_events(item), input_from_item(item)

    def _find(self, client_event: Event) -> tuple[str, Item]:
        item_id = client_event.get("item_id")
        if not isinstance(item_id, str) or item_id not in self._items:
            raise InvalidRequest(
                f"Item with item_id not found: {item_id}.", code="item_not_found", param="item_id"
            )
        return item_id, self._items[item_id]

    def retrieve(self, client_event: Event) -> list[Event]:
        _, item = self._find(client_event)
        return [event("conversation.item.retrieved", item=copy.deepcopy(item))]

    def delete(self, client_event: Event) -> list[Event]:
        item_id, _ = self._find(client_event)
        del self._items[item_id]
        return [event("conversation.item.deleted", item_id=item_id)]

    def truncate(self, client_event: Event) -> list[Event]:
        item_id, _ = self._find(client_event)
        end = client_event.get("audio_end_ms", 0)
        return [
            event(
                "conversation.item.truncated",
                item_id=item_id,
                content_index=client_event.get("content_index", 0),
                audio_end_ms=end if isinstance(end, int) else 0,
            )
        ]
