"""Estimated cost: the configured price per million tokens, less the batch discount."""

from __future__ import annotations

import pytest

from batchq.config import Settings
from batchq.pipeline.pricing import estimate_cost, parse_prices


def test_cost_applies_the_batch_discount() -> None:
    settings = Settings(prices="m=2:8,*=1:1", batch_discount=0.1)
    cost = estimate_cost(settings, "m", {"input_tokens": 1_000_000, "output_tokens": 500_000})
    assert cost == {"currency": "USD", "regular_amount": 6.0, "discount": 0.1, "amount": 5.4}
    # a model without its own price takes the "*" price; none at all gives no estimate
    assert estimate_cost(settings, "other", {"input_tokens": 2_000_000})["amount"] == pytest.approx(1.8)  # type: ignore[index]
    assert estimate_cost(Settings(prices=None), "m", {"input_tokens": 5}) is None


def test_bad_price_table_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="model=input_per_1M:output_per_1M"):
        parse_prices("m=2")
