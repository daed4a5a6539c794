"""A Realtime conversation as the gateway saw it, and how to seed a new session with it.

Pure: no I/O. When a call's upstream session is replaced (it expired, or failed), the new
session starts empty. :class:`Conversation` keeps what was said, from the server's own events
(so it holds what the model held: items the browser created, the user's transcribed speech,
the assistant's answers, function calls and their outputs), and :meth:`Conversation.replay`
turns it into ``conversation.item.create`` events for the new session, under a token budget.
:class:`Concealer` then keeps the seams of the replacement from the browser: the new session's
``session.created``, the echoes of replayed items, and errors about them.

Audio cannot be re-created: a user's spoken turn is replayed as its transcript (so input
transcription must be on for spoken turns to be kept), an assistant's spoken answer as the
transcript of what it said. Items the server truncated (the user interrupted the answer) have
no transcript at OpenAI either, and are left out. Oldest items go first when the budget is
short; a note in their place tells the model that earlier turns are omitted.
"""

from __future__ import annotations

import math
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from gateway.types import Event

# Items and characters kept (oldest go first): more than any replay budget takes, and bounded
# against a browser that floods the conversation.
MAX_ITEMS = 2000
MAX_CHARS = 1_000_000
# The text kept of one item part.
MAX_ITEM_CHARS = 32_000
# Replayed events carry this event_id prefix: errors about them are the gateway's own.
REPLAY_EVENT_PREFIX = "gw_replay_"
# The note that stands for dropped turns; an id of the gateway's (at most 32 characters).
OMITTED_NOTE_ID = "gw_replay_omitted"
# Fields of a session object that describe the session rather than configure one.
READ_ONLY_SESSION_FIELDS = frozenset({"id", "object", "expires_at", "client_secret"})

_ITEM_EVENTS = frozenset(
    {
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.created",
        "conversation.item.retrieved",
        "response.output_item.added",
        "response.output_item.done",
    }
)
# Events that only echo an item the client created: hidden for replayed items.
_ECHOES = frozenset(
    {"conversation.item.added", "conversation.item.done", "conversation.item.created"}
)


@dataclass
class _Entry:
    kind: str  # "message", "function_call", "function_call_output"
    role: str = "user"
    texts: dict[int, str] = field(default_factory=dict)
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    output: str = ""
    truncated: bool = False

    def text(self) -> str:
        return " ".join(t for _, t in sorted(self.texts.items()) if t)

    def size(self) -> int:
        if self.kind == "message":
            return len(self.text())
        if self.kind == "function_call":
            return len(self.name) + len(self.arguments)
        return len(self.output)


def _clip(value: Any) -> str:
    return value[:MAX_ITEM_CHARS] if isinstance(value, str) else ""


@dataclass(frozen=True)
class Replay:
    events: list[Event]
    """``conversation.item.create`` events, oldest first."""
    item_ids: frozenset[str]
    kept: int
    omitted: int
    tokens: int


class Conversation:
    """The items of a call's conversation so far, across its upstream sessions."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, _Entry] = OrderedDict()
        self._chars = 0
        self.dropped = 0
        """Items forgotten because more than :data:`MAX_ITEMS` were kept."""

    def __len__(self) -> int:
        return len(self._items)

    def feed(self, event: Event) -> None:
        """Learn from one server event (GA shape); anything else is ignored."""
        kind = event.get("type")
        if kind in _ITEM_EVENTS:
            item = event.get("item")
            if isinstance(item, dict):
                self._upsert(item)
                self._bound()
            return
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            return
        entry = self._items.get(item_id)
        if entry is None:
            return
        if kind == "conversation.item.deleted":
            del self._items[item_id]
            self._chars -= entry.size()
            return
        before = entry.size()
        self._update(entry, kind, event)
        self._chars += entry.size() - before
        self._bound()

    def _bound(self) -> None:
        while len(self._items) > MAX_ITEMS or self._chars > MAX_CHARS:
            _, entry = self._items.popitem(last=False)
            self._chars -= entry.size()
            self.dropped += 1

    def _update(self, entry: _Entry, kind: Any, event: Event) -> None:
        if kind == "conversation.item.truncated":
            entry.truncated = True
        elif kind in (
            "conversation.item.input_audio_transcription.completed",
            "response.output_audio_transcript.done",
        ):
            self._set_text(entry, event.get("content_index"), event.get("transcript"))
        elif kind == "response.output_text.done":
            self._set_text(entry, event.get("content_index"), event.get("text"))

    @staticmethod
    def _set_text(entry: _Entry, index: Any, text: Any) -> None:
        if isinstance(text, str) and isinstance(index, int) and not isinstance(index, bool):
            if 0 <= index < 64:
                entry.texts[index] = _clip(text)

    def _upsert(self, item: dict[str, Any]) -> None:
        item_id = item.get("id")
        kind = item.get("type")
        if not isinstance(item_id, str) or not item_id or len(item_id) > 64:
            return
        if kind not in ("message", "function_call", "function_call_output"):
            return
        entry = self._items.get(item_id)
        if entry is not None and entry.kind != kind:
            # An id reused for another kind of item: the new one replaces it, at the end.
            del self._items[item_id]
            self._chars -= entry.size()
            entry = None
        if entry is None:
            entry = self._items[item_id] = _Entry(kind=kind)
        before = entry.size()
        self._fill(entry, kind, item)
        self._chars += entry.size() - before

    @staticmethod
    def _fill(entry: _Entry, kind: str, item: dict[str, Any]) -> None:
        if kind == "message":
            role = item.get("role")
            entry.role = role if role in ("user", "assistant", "system") else "user"
            content = item.get("content")
            for index, part in enumerate(content if isinstance(content, list) else []):
                if index >= 64 or not isinstance(part, dict):
                    break
                text = part.get("text")
                if not isinstance(text, str):
                    text = part.get("transcript")
                if isinstance(text, str) and text:
                    entry.texts[index] = _clip(text)
        elif kind == "function_call":
            entry.call_id = _clip(item.get("call_id")) or entry.call_id
            entry.name = _clip(item.get("name")) or entry.name
            arguments = item.get("arguments")
            if isinstance(arguments, str) and arguments:
                entry.arguments = _clip(arguments)
        else:
            entry.call_id = _clip(item.get("call_id")) or entry.call_id
            output = item.get("output")
            if isinstance(output, str):
                entry.output = _clip(output)

    def replay(self, budget_tokens: int) -> Replay:
        """The events that seed a new session with the newest items fitting ``budget_tokens``
        (an estimate), in order, with their original ids."""
        chosen: list[tuple[str, _Entry]] = []
        spent = 0
        usable = [(i, e) for i, e in self._items.items() if _replayable(e)]
        for item_id, entry in reversed(usable):
            cost = math.ceil(entry.size() / 4) + 4  # OpenAI's rule of thumb, plus framing
            if spent + cost > budget_tokens:
                break
            chosen.append((item_id, entry))
            spent += cost
        chosen.reverse()
        # An output whose call was left out would be refused: the pair goes together.
        calls = {e.call_id for _, e in chosen if e.kind == "function_call"}
        chosen = [
            (i, e) for i, e in chosen if e.kind != "function_call_output" or e.call_id in calls
        ]
        omitted = len(usable) - len(chosen)
        items: list[dict[str, Any]] = []
        if omitted:
            items.append(
                {
                    "id": OMITTED_NOTE_ID,
                    "type": "message",
                    "role": "system",
                    "content": [
                        {
                            "type": "input_text",
                            "text": f"The conversation began earlier; its first {omitted} "
                            "turns are omitted here.",
                        }
                    ],
                }
            )
        items += [_as_item(item_id, entry) for item_id, entry in chosen]
        # Unguessable, so a browser's own event ids can never be taken for the gateway's.
        nonce = secrets.token_hex(6)
        events = [
            {
                "type": "conversation.item.create",
                "event_id": f"{REPLAY_EVENT_PREFIX}{nonce}_{n}",
                "item": item,
            }
            for n, item in enumerate(items)
        ]
        return Replay(
            events=events,
            item_ids=frozenset(str(item["id"]) for item in items),
            kept=len(chosen),
            omitted=omitted,
            tokens=spent,
        )


def _replayable(entry: _Entry) -> bool:
    if entry.kind == "message":
        return bool(entry.text()) and not entry.truncated
    if entry.kind == "function_call":
        return bool(entry.call_id and entry.name)
    return bool(entry.call_id)


def _as_item(item_id: str, entry: _Entry) -> dict[str, Any]:
    if entry.kind == "function_call":
        return {
            "id": item_id,
            "type": "function_call",
            "call_id": entry.call_id,
            "name": entry.name,
            "arguments": entry.arguments or "{}",
        }
    if entry.kind == "function_call_output":
        return {
            "id": item_id,
            "type": "function_call_output",
            "call_id": entry.call_id,
            "output": entry.output,
        }
    part = "output_text" if entry.role == "assistant" else "input_text"
    return {
        "id": item_id,
        "type": "message",
        "role": entry.role,
        "content": [{"type": part, "text": entry.text()}],
    }


def session_for_replacement(session: dict[str, Any]) -> dict[str, Any]:
    """A session object as the upstream reported it, as a creation request: without the
    fields that describe one session (its id, expiry) and without nulls (unset)."""
    return {
        key: value
        for key, value in session.items()
        if key not in READ_ONLY_SESSION_FIELDS and value is not None
    }


class Concealer:
    """Decides which events of a replacement session the browser must not see: its
    ``session.created``, and the one echo of each kind for each replayed item, and errors
    about the replay's own events. Nothing else, so the browser's own items and errors, even
    with the same ids, stay its to see."""

    def __init__(self) -> None:
        self._sessions = 0
        self._echoes: set[tuple[str, str]] = set()
        self._event_ids: frozenset[str] = frozenset()

    def replaying(self, replay: Replay) -> None:
        """The items of ``replay`` are being sent to a new session: hide their echoes."""
        self._echoes = {(kind, i) for i in replay.item_ids for kind in _ECHOES}
        self._event_ids = frozenset(str(event["event_id"]) for event in replay.events)

    def conceals(self, event: Event) -> bool:
        kind = event.get("type")
        if kind == "session.created":
            self._sessions += 1
            return self._sessions > 1
        if kind in _ECHOES:
            item = event.get("item")
            key = (str(kind), str(item.get("id"))) if isinstance(item, dict) else None
            if key in self._echoes:
                self._echoes.discard(key)
                return True
            return False
        if kind == "error":
            error = event.get("error")
            event_id = error.get("event_id") if isinstance(error, dict) else None
            return event_id in self._event_ids
        return False
