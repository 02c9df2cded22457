"""Token counting for the token limit (pure): the up-front estimate and the clamping of untrusted usage."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchq.ratelimit import (
    DEFAULT_COMPLETION_TOKENS,
    MAX_RESERVED_TOKENS,
    MEDIA_PART_TOKENS,
    clamp_tokens,
    estimate_tokens,
)

# --- clamp_tokens: usage values from the upstream are untrusted ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (123, 123),
        (0, 0),
        (-5, 0),
        (2**70, MAX_RESERVED_TOKENS),
        (float("inf"), MAX_RESERVED_TOKENS),
        (float("-inf"), 0),
        (float("1e400"), MAX_RESERVED_TOKENS),
        (1e300, MAX_RESERVED_TOKENS),
        (12.7, 12),
        (-0.5, 0),
        ("42", 42),
        (" 1e400 ", MAX_RESERVED_TOKENS),
        ("Infinity", MAX_RESERVED_TOKENS),
        ("-5", 0),
        (float("nan"), None),
        ("NaN", None),
        ("lots", None),
        ("", None),
        (None, None),
        (True, None),
        ([1], None),
        ({"total": 1}, None),
    ],
)
def test_clamp_tokens(value: object, expected: int | None) -> None:
    assert clamp_tokens(value) == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.none()))
def test_clamp_tokens_never_raises_and_stays_in_range(value: object) -> None:
    result = clamp_tokens(value)
    assert result is None or (isinstance(result, int) and 0 <= result <= MAX_RESERVED_TOKENS)


# --- estimate_tokens ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # 2 messages: 3 priming + 2 * 4 overhead + ceil(16 chars / 4) prompt, + max_tokens
        (
            {
                "messages": [{"role": "system", "content": "12345678"}, {"role": "user", "content": "abcdefgh"}],
                "max_tokens": 100,
            },
            3 + 8 + 4 + 100,
        ),
        # content parts: text counted by chars, an image as a fixed price; n multiplies the completion
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "abcdefgh"},
                            {"type": "image_url", "image_url": {"url": "data:" + "A" * 9999}},
                        ],
                    }
                ],
                "max_completion_tokens": 10,
                "n": 3,
            },
            3 + 4 + math.ceil(len("text" + "abcdefgh") / 4) + MEDIA_PART_TOKENS + 30,
        ),
        # null content, no max tokens: the default completion
        ({"messages": [{"role": "assistant", "content": None}]}, 3 + 4 + DEFAULT_COMPLETION_TOKENS),
        # embeddings: input only, no completion
        ({"model": "e", "input": "abcdefgh"}, 2),
        ({"model": "e", "input": ["abcd", "abcd"]}, 2),
        ({"model": "e", "input": [[1, 2, 3], [4, 5]]}, 5),
        # completions: prompt and max_tokens
        ({"prompt": "abcdefgh", "max_tokens": 7}, 2 + 7),
        ({"prompt": [1, 2, 3], "max_tokens": 7, "best_of": 2}, 3 + 14),
        # nonsense max_tokens falls back to the default
        ({"prompt": "", "max_tokens": "lots"}, DEFAULT_COMPLETION_TOKENS),
        ({"prompt": "", "max_tokens": True}, DEFAULT_COMPLETION_TOKENS),
    ],
)
def test_estimate_tokens(body: dict[str, Any], expected: int) -> None:
    assert estimate_tokens(body) == expected


def test_estimate_tokens_counts_tools_and_tool_calls() -> None:
    bare: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    with_tools = {**bare, "tools": [{"type": "function", "function": {"name": "f", "description": "x" * 400}}]}
    assert estimate_tokens(with_tools) >= estimate_tokens(bare) + 100
    call = {"role": "assistant", "content": None, "tool_calls": [{"function": {"arguments": "y" * 400}}]}
    assert estimate_tokens({**bare, "messages": [*bare["messages"], call]}) >= estimate_tokens(bare) + 100


def test_estimate_tokens_survives_cycles_and_junk() -> None:
    cyclic: dict[str, Any] = {"type": "text"}
    cyclic["self"] = cyclic
    assert estimate_tokens({"messages": [{"content": [cyclic]}]}) > 0
    assert estimate_tokens({"messages": "nope", "n": -1, "max_tokens": 1e300}) >= 0
    assert estimate_tokens({"messages": [{"content": [{"type": ["unhashable"]}]}]}) > 0
    assert estimate_tokens([1, 2, 3]) == DEFAULT_COMPLETION_TOKENS  # type: ignore[arg-type]
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    assert estimate_tokens({"input": deep}) == 1


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
_keys = st.sampled_from(
    [
        "messages",
        "content",
        "input",
        "prompt",
        "tools",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "best_of",
        "type",
        "text",
        "response_format",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys | st.text(max_size=8), _json, max_size=6))
def test_estimate_tokens_never_raises(body: dict[str, Any]) -> None:
    result = estimate_tokens(body)
    assert isinstance(result, int) and result >= 0
