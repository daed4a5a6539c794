"""The conversation a replacement upstream session is seeded with, and the seams it hides."""

from __future__ import annotations

from typing import Any

from gateway.protocol.conversation import (
    MAX_CHARS,
    MAX_ITEM_CHARS,
    MAX_ITEMS,
    OMITTED_NOTE_ID,
    Concealer,
    Conversation,
    session_for_replacement,
)


def message(item_id: str, role: str, kind: str, text: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": kind}
    if kind in ("input_text", "output_text"):
        part["text"] = text
    else:
        part["transcript"] = text
    return {"id": item_id, "type": "message", "role": role, "content": [part]}


def done(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "conversation.item.done", "item": item}


def items(conversation: Conversation, budget: int = 10_000) -> list[dict[str, Any]]:
    return [event["item"] for event in conversation.replay(budget).events]


def spoken_call() -> Conversation:
    c = Conversation()
    # A user's spoken turn: its transcript arrives after the item.
    c.feed(done(message("item_u1", "user", "input_audio")))
    c.feed(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "item_u1",
            "content_index": 0,
            "transcript": "What's the weather in Oslo?",
        }
    )
    c.feed(
        {
            "type": "response.output_item.added",
            "item": message("item_a1", "assistant", "output_audio"),
        }
    )
    c.feed(
        {
            "type": "response.output_audio_transcript.done",
            "item_id": "item_a1",
            "content_index": 0,
            "transcript": "Let me look.",
        }
    )
    c.feed(
        {
            "type": "response.output_item.done",
            "item": {
                "id": "item_f1",
                "type": "function_call",
                "call_id": "call_1",
                "name": "weather",
                "arguments": '{"city": "Oslo"}',
            },
        }
    )
    c.feed(
        done(
            {
                "id": "item_o1",
                "type": "function_call_output",
                "call_id": "call_1",
                "output": '{"temp": 3}',
            }
        )
    )
    return c


def test_spoken_turns_come_back_as_text_with_their_ids_and_in_order() -> None:
    replayed = items(spoken_call())
    assert replayed == [
        {
            "id": "item_u1",
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "What's the weather in Oslo?"}],
        },
        {
            "id": "item_a1",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Let me look."}],
        },
        {
            "id": "item_f1",
            "type": "function_call",
            "call_id": "call_1",
            "name": "weather",
            "arguments": '{"city": "Oslo"}',
        },
        {
            "id": "item_o1",
            "type": "function_call_output",
            "call_id": "call_1",
            "output": '{"temp": 3}',
        },
    ]


def test_replay_events_are_the_gateways_own() -> None:
    replay = spoken_call().replay(10_000)
    assert all(e["type"] == "conversation.item.create" for e in replay.events)
    assert all(e["event_id"].startswith("gw_replay_") for e in replay.events)
    assert replay.item_ids == {"item_u1", "item_a1", "item_f1", "item_o1"}
    assert (replay.kept, replay.omitted) == (4, 0)


def test_what_cannot_be_replayed_is_left_out() -> None:
    c = Conversation()
    c.feed(done(message("item_silent", "user", "input_audio")))  # transcription off
    c.feed(done(message("item_cut", "assistant", "output_audio", "A long answer the user")))
    c.feed({"type": "conversation.item.truncated", "item_id": "item_cut", "audio_end_ms": 300})
    c.feed(done(message("item_gone", "user", "input_text", "forget this")))
    c.feed({"type": "conversation.item.deleted", "item_id": "item_gone"})
    c.feed(done({"id": "item_mcp", "type": "mcp_call", "name": "x"}))
    c.feed(done(message("item_kept", "user", "input_text", "keep this")))
    assert [i["id"] for i in items(c)] == ["item_kept"]


def test_the_newest_turns_fit_the_budget_and_a_note_stands_for_the_rest() -> None:
    c = Conversation()
    for n in range(10):
        c.feed(done(message(f"item_{n}", "user", "input_text", "x" * 400)))  # ~100 tokens each
    replayed = items(c, budget=330)
    assert [i["id"] for i in replayed] == [OMITTED_NOTE_ID, "item_7", "item_8", "item_9"]
    assert "7 turns" in replayed[0]["content"][0]["text"]
    assert items(c, budget=0) == [
        {
            "id": OMITTED_NOTE_ID,
            "type": "message",
            "role": "system",
            "content": [
                {
                    "type": "input_text",
                    "text": "The conversation began earlier; its first 10 turns are omitted here.",
                }
            ],
        }
    ]


def test_an_output_whose_call_did_not_fit_goes_with_it() -> None:
    c = spoken_call()
    c.feed(done(message("item_last", "user", "input_text", "y" * 40)))
    # Room for the output and the last message, not for the call before them.
    replayed = [i["id"] for i in items(c, budget=28)]
    assert "item_o1" not in replayed and "item_f1" not in replayed
    assert replayed[-1] == "item_last"


def test_hostile_items_are_bounded() -> None:
    c = Conversation()
    c.feed(done(message("i" * 65, "user", "input_text", "long id")))
    c.feed(done(message("item_big", "user", "input_text", "z" * (MAX_ITEM_CHARS * 3))))
    c.feed({"type": "conversation.item.done", "item": "not an object"})
    c.feed(
        {
            "type": "response.output_audio_transcript.done",
            "item_id": "item_big",
            "content_index": 10**9,
            "transcript": "x",
        }
    )
    c.feed(
        {
            "type": "response.output_audio_transcript.done",
            "item_id": "item_big",
            "content_index": True,
            "transcript": "x",
        }
    )
    (big,) = items(c, budget=10**6)
    assert len(big["content"][0]["text"]) == MAX_ITEM_CHARS
    for n in range(MAX_ITEMS + 5):
        c.feed(done(message(f"item_{n}", "user", "input_text", "hi")))
    assert len(c) == MAX_ITEMS
    assert c.dropped == 6


def test_a_session_object_becomes_a_creation_request() -> None:
    reported = {
        "type": "realtime",
        "object": "realtime.session",
        "id": "sess_1",
        "expires_at": 1,
        "model": "gpt-realtime",
        "instructions": "Be brief.",
        "tracing": None,
        "audio": {"output": {"voice": "marin"}},
    }
    assert session_for_replacement(reported) == {
        "type": "realtime",
        "model": "gpt-realtime",
        "instructions": "Be brief.",
        "audio": {"output": {"voice": "marin"}},
    }


def test_the_concealer_hides_only_the_seams() -> None:
    c = spoken_call()
    concealer = Concealer()
    assert not concealer.conceals({"type": "session.created", "session": {}})
    replay = c.replay(10_000)
    concealer.replaying(replay)
    assert concealer.conceals({"type": "session.created", "session": {}})
    assert concealer.conceals(done(message("item_u1", "user", "input_text", "x")))
    assert concealer.conceals({"type": "conversation.item.added", "item": {"id": "item_o1"}})
    # One echo of each kind per replayed item: later events with that id are the browser's.
    assert not concealer.conceals(done(message("item_u1", "user", "input_text", "x")))
    assert not concealer.conceals(
        {"type": "error", "error": {"code": "x", "event_id": "gw_replay_0"}}
    )
    assert concealer.conceals(
        {"type": "error", "error": {"code": "x", "event_id": replay.events[0]["event_id"]}}
    )
    # The browser's own items and errors are its to see.
    assert not concealer.conceals(done(message("item_new", "user", "input_text", "hi")))
    assert not concealer.conceals({"type": "error", "error": {"code": "x", "event_id": "evt_mine"}})
    assert not concealer.conceals({"type": "response.output_item.done", "item": {"id": "item_a1"}})


def test_a_flood_of_large_items_is_held_to_a_bound() -> None:
    c = Conversation()
    for n in range(200):
        c.feed(done(message(f"item_{n}", "user", "input_text", "w" * MAX_ITEM_CHARS)))
    assert c._chars <= MAX_CHARS
    assert c.dropped == 200 - MAX_CHARS // MAX_ITEM_CHARS
    # An id reused for another kind of item is counted once.
    c.feed(done({"id": "item_199", "type": "function_call", "call_id": "c", "name": "n"}))
    assert c._chars == sum(e.size() for e in c._items.values())
    c.feed({"type": "conversation.item.deleted", "item_id": "item_198"})
    assert c._chars == sum(e.size() for e in c._items.values())


def test_replay_events_are_valid_in_openais_own_types() -> None:
    """Every replayed event is a conversation.item.create as OpenAI's SDK defines it."""
    from openai.types.realtime import ConversationItemCreateEvent

    c = spoken_call()
    for n in range(3):
        c.feed(done(message(f"item_x{n}", "user", "input_text", "z" * 400)))
    for event in c.replay(150).events:
        parsed = ConversationItemCreateEvent.model_validate(event, strict=True)
        assert parsed.model_dump(exclude_none=True, exclude_unset=True) == event
