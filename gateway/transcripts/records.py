"""The record format on both sides of the file: encoding one line, reading a transcript back.

Pure helpers; what each record ``kind`` holds is described in :mod:`gateway.transcripts`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

Record = dict[str, Any]


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One record as one complete JSON line (strings escape their newlines)."""
    text = json.dumps(
        record, ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False
    )
    return (text + "\n").encode("utf-8")


def spoken_text(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Assistant item id → the text the user heard, corrections applied."""
    heard: dict[str, str] = {}
    for record in records:
        if record.get("kind") in ("assistant", "assistant_truncated"):
            heard[record["item_id"]] = record["text"]
    return heard


def conversation(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The turns of a transcript in conversation order, each ``{role, item_id, text}``.

    Assistant text is what was heard (truncations applied); the items' ``order`` decides the
    sequence, file position breaks ties for items the server never placed.
    """
    turns: dict[str, dict[str, Any]] = {}
    position: dict[str, tuple[float, int]] = {}
    for index, record in enumerate(records):
        kind = record.get("kind")
        item_id = record.get("item_id")
        if kind not in ("user", "assistant", "assistant_truncated") or not item_id:
            continue
        if kind == "assistant_truncated":
            if item_id in turns:
                turns[item_id]["text"] = record.get("text")
                turns[item_id]["interrupted"] = True
            continue
        order = record.get("order")
        position[item_id] = (order if isinstance(order, int) else math.inf, index)
        turns[item_id] = {
            "role": "user" if kind == "user" else "assistant",
            "item_id": item_id,
            "text": record.get("text"),
        }
    return [turns[i] for i in sorted(turns, key=lambda i: position[i])]
