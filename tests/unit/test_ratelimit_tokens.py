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


# --- per endpoint (issue 24, finding 7) ------------------------------------------------------------------------------

RESPONSES = "/v1/responses"


@pytest.mark.parametrize("endpoint", [RESPONSES, None])
def test_a_responses_line_reserves_its_max_output_tokens(endpoint: str | None) -> None:
    body = {"model": "m", "input": "Say blue.", "max_output_tokens": 32000}
    assert estimate_tokens(body, endpoint) >= 32000
    # without a maximum, the default completion is reserved (never the embeddings' zero)
    assert estimate_tokens({"model": "m", "input": "Say blue."}, RESPONSES) >= DEFAULT_COMPLETION_TOKENS


def test_responses_instructions_and_structured_input_are_counted() -> None:
    bare = {"model": "m", "input": "hi", "max_output_tokens": 1}
    instructed = {**bare, "instructions": "x" * 400}
    assert estimate_tokens(instructed, RESPONSES) >= estimate_tokens(bare, RESPONSES) + 100
    items = [
        {"role": "system", "content": "y" * 400},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "z" * 400}]},
        {"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "data:" + "A" * 9999}]},
        {"type": "function_call_output", "call_id": "c1", "output": "w" * 400},
    ]
    structured = {"model": "m", "input": items, "max_output_tokens": 1}
    assert estimate_tokens(structured, RESPONSES) >= 300 + MEDIA_PART_TOKENS + 4 * 4
    schema = {"format": {"type": "json_schema", "schema": {"properties": {"p" * 400: {"type": "string"}}}}}
    assert estimate_tokens({**bare, "text": schema}, RESPONSES) >= estimate_tokens(bare, RESPONSES) + 100


def test_chat_counts_messages_and_its_own_maximum() -> None:
    body = {"messages": [{"role": "user", "content": "abcdefgh"}], "max_completion_tokens": 50, "max_tokens": 9, "n": 2}
    assert estimate_tokens(body, "/v1/chat/completions") == 3 + 4 + 2 + 100
    # a chat body's stray max_output_tokens is not its maximum
    assert estimate_tokens({"messages": [], "max_output_tokens": 10**6}, "/v1/chat/completions") < 10**6


def test_completions_count_prompt_suffix_and_best_of() -> None:
    body = {"prompt": "abcdefgh", "suffix": "abcd", "max_tokens": 10, "n": 2, "best_of": 3}
    assert estimate_tokens(body, "/v1/completions") == 3 + 30


@pytest.mark.parametrize("endpoint", ["/v1/embeddings", "/v1/moderations"])
def test_embeddings_and_moderations_generate_nothing(endpoint: str) -> None:
    assert estimate_tokens({"model": "m", "input": "abcdefgh", "max_output_tokens": 999}, endpoint) == 2
    parts = [{"type": "text", "text": "abcd"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    assert estimate_tokens({"input": parts}, endpoint) == math.ceil(len("text" + "abcd") / 4) + MEDIA_PART_TOKENS


def test_non_ascii_text_counts_a_token_a_character() -> None:
    cjk = "批处理请求的令牌估计" * 10  # 100 characters: about 100 tokens, not 25
    assert estimate_tokens({"input": cjk}, "/v1/embeddings") >= 100
    chat = {"messages": [{"role": "user", "content": cjk}], "max_tokens": 1}
    assert estimate_tokens(chat, "/v1/chat/completions") >= 100 + 1
    # mixed text: the ASCII part still at four characters a token
    assert estimate_tokens({"input": "abcd" * 25 + "é" * 10}, "/v1/embeddings") == 25 + 10


def test_hostile_bodies_stay_cheap_and_bounded() -> None:
    deep: Any = "x"
    for _ in range(100_000):
        deep = [{"content": deep}]
    assert estimate_tokens({"input": deep, "max_output_tokens": 5}, RESPONSES) > 0
    huge = "文" * (4 * 1024 * 1024)
    assert estimate_tokens({"input": huge}, RESPONSES) >= 4 * 1024 * 1024
    assert estimate_tokens({"input": "x", "max_output_tokens": 10**30}, RESPONSES) <= MAX_RESERVED_TOKENS
    assert estimate_tokens({"input": [None, True, 1.5, {"type": 3}], "instructions": ["x"]}, RESPONSES) > 0
