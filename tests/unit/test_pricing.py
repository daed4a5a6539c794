"""What a response cost: usage × the price of its model."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.pricing import OTHER_MODEL, PUBLISHED, Price, PriceTable, Usage, cost

USAGE: dict[str, Any] = {
    "total_tokens": 2300,
    "input_tokens": 2000,
    "output_tokens": 300,
    "input_token_details": {
        "text_tokens": 1500,
        "audio_tokens": 500,
        "image_tokens": 0,
        "cached_tokens": 1200,
        "cached_tokens_details": {"text_tokens": 1100, "audio_tokens": 100, "image_tokens": 0},
    },
    "output_token_details": {"text_tokens": 100, "audio_tokens": 200},
}


class TestUsage:
    def test_from_realtime(self) -> None:
        """Cached input is a part of input, split by modality."""
        assert Usage.from_realtime(USAGE) == Usage(
            input_text=1500,
            cached_text=1100,
            input_audio=500,
            cached_audio=100,
            output_text=100,
            output_audio=200,
        )

    def test_without_a_split_cached_tokens_are_text_first(self) -> None:
        """No cached_tokens_details: text takes the cached tokens first, so the estimate errs
        high (audio at the full audio price)."""
        usage = {
            "input_token_details": {"text_tokens": 30, "audio_tokens": 50, "cached_tokens": 40}
        }
        got = Usage.from_realtime(usage)
        assert (got.cached_text, got.cached_audio) == (30, 10)

    def test_odd_values_count_as_nothing(self) -> None:
        """A usage object the gateway cannot read costs nothing rather than failing the call."""
        odd = {
            "input_token_details": {"text_tokens": "9", "audio_tokens": -5, "cached_tokens": True},
            "output_token_details": None,
        }
        assert Usage.from_realtime(odd) == Usage()
        assert Usage.from_realtime({}) == Usage()

    def test_cached_never_exceeds_input(self) -> None:
        usage = {
            "input_token_details": {
                "text_tokens": 10,
                "audio_tokens": 0,
                "cached_tokens_details": {"text_tokens": 99, "audio_tokens": 7},
            }
        }
        got = Usage.from_realtime(usage)
        assert (got.cached_text, got.cached_audio) == (10, 0)


class TestCost:
    def test_each_kind_at_its_price(self) -> None:
        """(uncached text, cached text, uncached audio, cached audio, out text, out audio)."""
        price = Price(1.0, 0.5, 2.0, 10.0, 0.25, 20.0)
        got = cost(price, Usage.from_realtime(USAGE))
        expected = (400 * 1.0 + 1100 * 0.5 + 400 * 10.0 + 100 * 0.25 + 100 * 2.0 + 200 * 20.0) / 1e6
        assert got == pytest.approx(expected, rel=1e-12)

    def test_gpt_realtime_published(self) -> None:
        """gpt-realtime: text $4 / $0.40 / $16, audio $32 / $0.40 / $64 per 1M tokens."""
        usage = Usage(input_audio=1_000_000, output_audio=1_000_000)
        assert PriceTable().cost("gpt-realtime", usage) == pytest.approx(96.0)


class TestPriceTable:
    def test_unknown_model_has_no_cost_and_a_bounded_label(self) -> None:
        table = PriceTable()
        assert table.cost("my-model", Usage(input_text=5)) is None
        assert table.label("my-model") == OTHER_MODEL
        assert table.label(None) == OTHER_MODEL
        assert "my-model" not in table

    def test_dated_snapshots_are_priced_as_their_model(self) -> None:
        table = PriceTable()
        assert table.price_of("gpt-realtime-2025-08-28") == PUBLISHED["gpt-realtime"]
        assert table.label("gpt-realtime-mini-2025-10-06") == "gpt-realtime-mini"

    def test_overrides_win_and_add(self) -> None:
        mine = Price(1, 1, 1, 1, 1, 1)
        table = PriceTable({"gpt-realtime": mine, "my-model": mine})
        assert table.price_of("gpt-realtime") == mine
        assert table.label("my-model") == "my-model"
        assert table.price_of("gpt-realtime-mini") == PUBLISHED["gpt-realtime-mini"]

    def test_prices_validate_themselves(self) -> None:
        with pytest.raises(ValueError, match="'output_audio'"):
            Price(1, 1, 1, 1, 1, float("nan"))
        with pytest.raises(ValueError, match="'input_text'"):
            Price(-1, 1, 1, 1, 1, 1)
