"""What a call cost: ``response.done`` usage × a price per model, in US dollars.

Pure: no I/O, stdlib only, so the settings can parse price overrides with it and any layer may
use it. Prices are USD per 1M tokens, as OpenAI publishes them. A model the table does not know
has no cost (``None``), never an error: its tokens are still counted.

Realtime's ``usage`` counts cached input inside the text and audio input counts
(``input_token_details.cached_tokens_details`` splits the cached part by modality), so the
uncached part is billed at the input price and the cached part at the cached price.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

PER_TOKENS: Final = 1_000_000
"""Prices are per this many tokens."""

OTHER_MODEL: Final = "other"
"""The metric label of a model the price table does not know (labels stay a bounded set)."""

# A dated snapshot (gpt-realtime-2025-08-28) is priced as its model.
_SNAPSHOT = re.compile(r"^(?P<model>.+)-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens of each kind."""

    input_text: float
    cached_input_text: float
    output_text: float
    input_audio: float
    cached_input_audio: float
    output_audio: float

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"'{f.name}' must be a price of 0 or more (got {value!r})")
            object.__setattr__(self, f.name, float(value))


PRICE_FIELDS: Final = tuple(f.name for f in fields(Price))


@dataclass(frozen=True)
class Usage:
    """The tokens of one response, by kind; cached input is a part of input, as OpenAI has it."""

    input_text: int = 0
    cached_text: int = 0
    input_audio: int = 0
    cached_audio: int = 0
    output_text: int = 0
    output_audio: int = 0

    @classmethod
    def from_realtime(cls, usage: Mapping[str, Any]) -> Usage:
        """``response.done.response.usage`` (protocol.md §4.5); missing or odd values are 0."""
        inp = _mapping(usage.get("input_token_details"))
        out = _mapping(usage.get("output_token_details"))
        text, audio = _count(inp.get("text_tokens")), _count(inp.get("audio_tokens"))
        cached = _count(inp.get("cached_tokens"))
        split = inp.get("cached_tokens_details")
        if isinstance(split, Mapping):
            cached_text = _count(split.get("text_tokens"))
            cached_audio = _count(split.get("audio_tokens"))
        else:
            # No split given: cached tokens are taken from text first, so audio is billed at
            # the full audio price: the estimate errs high, never low.
            cached_text = min(cached, text)
            cached_audio = cached - cached_text
        return cls(
            input_text=text,
            cached_text=min(cached_text, text),
            input_audio=audio,
            cached_audio=min(cached_audio, audio),
            output_text=_count(out.get("text_tokens")),
            output_audio=_count(out.get("audio_tokens")),
        )


def cost(price: Price, usage: Usage) -> float:
    """USD for ``usage`` at ``price``."""
    total = (
        (usage.input_text - usage.cached_text) * price.input_text
        + usage.cached_text * price.cached_input_text
        + (usage.input_audio - usage.cached_audio) * price.input_audio
        + usage.cached_audio * price.cached_input_audio
        + usage.output_text * price.output_text
        + usage.output_audio * price.output_audio
    )
    return total / PER_TOKENS


def _price(
    text: tuple[float, float, float], audio: tuple[float, float, float]
) -> Price:  # (input, cached input, output) per modality, as OpenAI's pages list them
    return Price(text[0], text[1], text[2], audio[0], audio[1], audio[2])


PUBLISHED: Final[Mapping[str, Price]] = {
    # OpenAI's published prices (USD per 1M tokens), December 2026.
    "gpt-realtime": _price((4.0, 0.4, 16.0), (32.0, 0.4, 64.0)),
    "gpt-realtime-1.5": _price((4.0, 0.4, 16.0), (32.0, 0.4, 64.0)),
    "gpt-realtime-2": _price((4.0, 0.4, 24.0), (32.0, 0.4, 64.0)),
    "gpt-realtime-mini": _price((0.6, 0.06, 2.4), (10.0, 0.3, 20.0)),
    "gpt-realtime-2.1-mini": _price((0.6, 0.06, 2.4), (10.0, 0.3, 20.0)),
    "gpt-4o-realtime-preview": _price((5.0, 2.5, 20.0), (40.0, 2.5, 80.0)),
    "gpt-4o-mini-realtime-preview": _price((0.6, 0.3, 2.4), (10.0, 0.3, 20.0)),
}
"""The prices the gateway ships with; ``[prices.<model>]`` in the apps file overrides them."""


class PriceTable:
    """Prices by model: the published ones with the operator's overrides on top."""

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self._prices: dict[str, Price] = {**PUBLISHED, **(overrides or {})}

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self._resolve(model) is not None

    def price_of(self, model: str | None) -> Price | None:
        name = self._resolve(model) if model else None
        return self._prices[name] if name is not None else None

    def cost(self, model: str | None, usage: Usage) -> float | None:
        """USD for ``usage`` on ``model``; ``None`` when the model has no price."""
        price = self.price_of(model)
        return cost(price, usage) if price is not None else None

    def label(self, model: str | None) -> str:
        """``model`` as a metric label: a priced model's name, else :data:`OTHER_MODEL` (a
        client may name any model; labels must stay a bounded set)."""
        name = self._resolve(model) if model else None
        return name if name is not None else OTHER_MODEL

    def _resolve(self, model: str) -> str | None:
        if model in self._prices:
            return model
        snapshot = _SNAPSHOT.match(model)
        if snapshot is not None and snapshot["model"] in self._prices:
            return snapshot["model"]
        return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
