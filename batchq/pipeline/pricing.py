"""Estimated cost of a batch from a configurable price table, with the batch discount applied."""

from __future__ import annotations

from typing import Any

from batchq.config import Settings


def parse_prices(spec: str | None) -> dict[str, tuple[float, float]]:
    """``model=input_per_1M:output_per_1M[,...]`` -> {model: (input, output)} in USD per million tokens."""
    prices: dict[str, tuple[float, float]] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        model, sep, rates = item.rpartition("=")
        inp, sep2, out = rates.partition(":")
        if not sep or not sep2 or not model:
            raise ValueError(f"BATCHQ_PRICES entry {item!r} is not model=input_per_1M:output_per_1M")
        prices[model.strip()] = (float(inp), float(out))
    return prices


def estimate_cost(settings: Settings, model: str | None, counts: dict[str, int]) -> dict[str, Any] | None:
    """The batch's cost at the configured prices less the batch discount; None when the model has no price."""
    prices = parse_prices(settings.prices)
    rate = prices.get(model or "") or prices.get("*")
    if rate is None:
        return None
    regular = (counts.get("input_tokens", 0) * rate[0] + counts.get("output_tokens", 0) * rate[1]) / 1_000_000
    return {
        "currency": "USD",
        "regular_amount": round(regular, 6),
        "discount": settings.batch_discount,
        "amount": round(regular * (1 - settings.batch_discount), 6),
    }
