"""Tests for batchq.validation: line forms, error codes, tolerated input, streaming, memory."""

from __future__ import annotations

import json
import random
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchq.validation import (
    FileValidator,
    LineError,
    RequestLine,
    ValidationLimits,
    ValidationResult,
    normalize_line,
    parse_line,
)

CHAT = "/v1/chat/completions"
EMB = "/v1/embeddings"
COMP = "/v1/completions"
LIMITS = ValidationLimits()
MSGS = [{"role": "user", "content": "hi"}]


def dumps(obj: Any) -> bytes:
    """Compact-ish JSON with real multibyte UTF-8 (lone surrogates end up as \\u escapes)."""
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "backslashreplace")


def openai(custom_id: Any = "r1", model: Any = "m", **body_extra: Any) -> dict[str, Any]:
    body = {"model": model, "messages": MSGS, **body_extra}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def line(**kw: Any) -> bytes:
    return dumps(openai(**kw))


def without(obj: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != key}


def with_body(**changes: Any) -> bytes:
    """An OpenAI-form line whose body has ``changes`` applied (a value of ... deletes the key)."""
    obj = openai()
    for key, value in changes.items():
        if value is ...:
            del obj["body"][key]
        else:
            obj["body"][key] = value
    return dumps(obj)


def validate(
    data: bytes, endpoint: str = CHAT, limits: ValidationLimits = LIMITS, chunks: list[int] | None = None
) -> ValidationResult:
    """Feed ``data`` whole, or cut at the given split points."""
    validator = FileValidator(endpoint, limits)
    cuts = [0, *(chunks or []), len(data)]
    for start, stop in zip(cuts, cuts[1:], strict=False):
        validator.feed(data[start:stop])
    return validator.finish()


def triples(result: ValidationResult) -> list[tuple[str, int | None, str | None]]:
    return [(e.code, e.line, e.param) for e in result.errors]


GOOD = line()
GOOD2 = line(custom_id="r2")
SERVED = ValidationLimits(served_models=frozenset({"m"}))

# (id, file content, endpoint, limits, expected [(code, line, param)])
BAD_CASES: list[tuple[str, bytes, str, ValidationLimits, list[tuple[str, int | None, str | None]]]] = [
    ("not-json", b"not json\n", CHAT, LIMITS, [("invalid_json_line", 1, None)]),
    ("truncated-last-line", GOOD + b'\n{"custom_id": "r2", "body": {', CHAT, LIMITS, [("invalid_json_line", 2, None)]),
    ("json-array", b"[1, 2]\n", CHAT, LIMITS, [("invalid_json_line", 1, None)]),
    ("json-string", b'"x"\n', CHAT, LIMITS, [("invalid_json_line", 1, None)]),
    ("json-number", GOOD + b"\n42\n", CHAT, LIMITS, [("invalid_json_line", 2, None)]),
    ("json-null", b"null", CHAT, LIMITS, [("invalid_json_line", 1, None)]),
    ("nan", with_body(temperature=float("nan")), CHAT, LIMITS, [("invalid_json_line", 1, None)]),
    ("infinity", with_body(temperature=float("inf")), CHAT, LIMITS, [("invalid_json_line", 1, None)]),
    (
        "float-overflow",
        GOOD.replace(b'"m"', b'"m", "temperature": 1e999'),
        CHAT,
        LIMITS,
        [("invalid_json_line", 1, None)],
    ),
    ("huge-int", GOOD.replace(b'"m"', b'"m", "seed": ' + b"9" * 5000), CHAT, LIMITS, [("invalid_json_line", 1, None)]),
    ("deep-nesting", b"[" * 100_000 + b"]" * 100_000, CHAT, LIMITS, [("invalid_json_line", 1, None)]),
    ("two-objects", GOOD + b" " + GOOD, CHAT, LIMITS, [("invalid_json_line", 1, None)]),
    ("bom-on-line-2", GOOD + b"\n\xef\xbb\xbf" + GOOD2, CHAT, LIMITS, [("invalid_json_line", 2, None)]),
    ("invalid-utf8", b'{"custom_id": "\xff"}\n', CHAT, LIMITS, [("invalid_encoding", 1, None)]),
    ("utf8-surrogate-bytes", GOOD.replace(b'"r1"', b'"\xed\xa0\x80"'), CHAT, LIMITS, [("invalid_encoding", 1, None)]),
    ("utf8-overlong", GOOD.replace(b'"r1"', b'"\xc0\xaf"'), CHAT, LIMITS, [("invalid_encoding", 1, None)]),
    ("nul-byte", GOOD.replace(b"hi", b"h\x00i"), CHAT, LIMITS, [("invalid_encoding", 1, None)]),
    (
        "missing-custom-id",
        dumps(without(openai(), "custom_id")),
        CHAT,
        LIMITS,
        [("missing_required_parameter", 1, "custom_id")],
    ),
    ("missing-method", dumps(without(openai(), "method")), CHAT, LIMITS, [("missing_required_parameter", 1, "method")]),
    ("missing-url", dumps(without(openai(), "url")), CHAT, LIMITS, [("missing_required_parameter", 1, "url")]),
    ("missing-body", dumps(without(openai(), "body")), CHAT, LIMITS, [("missing_required_parameter", 1, "body")]),
    ("null-body", dumps({**openai(), "body": None}), CHAT, LIMITS, [("missing_required_parameter", 1, "body")]),
    (
        "only-url",
        dumps({"url": CHAT}),
        CHAT,
        LIMITS,
        [
            ("missing_required_parameter", 1, "custom_id"),
            ("missing_required_parameter", 1, "method"),
            ("missing_required_parameter", 1, "body"),
        ],
    ),
    ("custom-id-int", line(custom_id=7), CHAT, LIMITS, [("invalid_request", 1, "custom_id")]),
    ("custom-id-empty", line(custom_id=""), CHAT, LIMITS, [("invalid_custom_id", 1, "custom_id")]),
    ("custom-id-too-long", line(custom_id="x" * 513), CHAT, LIMITS, [("invalid_custom_id", 1, "custom_id")]),
    ("custom-id-surrogate", GOOD.replace(b'"r1"', b'"\\ud800"'), CHAT, LIMITS, [("invalid_custom_id", 1, "custom_id")]),
    ("method-get", dumps({**openai(), "method": "GET"}), CHAT, LIMITS, [("invalid_method", 1, "method")]),
    ("method-int", dumps({**openai(), "method": 1}), CHAT, LIMITS, [("invalid_request", 1, "method")]),
    ("url-other-endpoint", dumps({**openai(), "url": EMB}), CHAT, LIMITS, [("invalid_url", 1, "url")]),
    ("url-no-slash", dumps({**openai(), "url": "v1/chat/completions"}), CHAT, LIMITS, [("invalid_url", 1, "url")]),
    ("url-no-v1", dumps({**openai(), "url": "/chat/completions"}), CHAT, LIMITS, [("invalid_url", 1, "url")]),
    (
        "url-absolute",
        dumps({**openai(), "url": "https://api.openai.com/v1/chat/completions"}),
        CHAT,
        LIMITS,
        [("invalid_url", 1, "url")],
    ),
    ("url-int", dumps({**openai(), "url": 5}), CHAT, LIMITS, [("invalid_request", 1, "url")]),
    ("body-list", dumps({**openai(), "body": [1]}), CHAT, LIMITS, [("invalid_request", 1, "body")]),
    ("stream-true", with_body(stream=True), CHAT, LIMITS, [("streaming_unsupported", 1, "body.stream")]),
    ("stream-string", with_body(stream="yes"), CHAT, LIMITS, [("invalid_request", 1, "body.stream")]),
    ("no-model", with_body(model=...), CHAT, LIMITS, [("invalid_request", 1, "body.model")]),
    ("model-null", with_body(model=None), CHAT, LIMITS, [("invalid_request", 1, "body.model")]),
    ("model-empty", with_body(model=""), CHAT, LIMITS, [("invalid_request", 1, "body.model")]),
    ("model-int", with_body(model=3), CHAT, LIMITS, [("invalid_request", 1, "body.model")]),
    ("no-messages", with_body(messages=...), CHAT, LIMITS, [("invalid_request", 1, "body.messages")]),
    ("messages-empty", with_body(messages=[]), CHAT, LIMITS, [("invalid_request", 1, "body.messages")]),
    ("messages-string", with_body(messages="hi"), CHAT, LIMITS, [("invalid_request", 1, "body.messages")]),
    ("messages-of-ints", with_body(messages=[1]), CHAT, LIMITS, [("invalid_request", 1, "body.messages")]),
    ("model-not-served", line(model="other"), CHAT, SERVED, [("model_not_found", 1, "body.model")]),
    (
        "model-mismatch",
        GOOD + b"\n" + line(custom_id="r2", model="other"),
        CHAT,
        LIMITS,
        [("model_mismatch", 2, "body.model")],
    ),
    ("duplicate-custom-id", GOOD + b"\n\n" + GOOD, CHAT, LIMITS, [("duplicate_custom_id", 3, "custom_id")]),
    (
        "params-null",
        dumps({"custom_id": "r1", "params": None}),
        CHAT,
        LIMITS,
        [("missing_required_parameter", 1, "params")],
    ),
    ("params-list", dumps({"custom_id": "r1", "params": []}), CHAT, LIMITS, [("invalid_request", 1, "params")]),
    (
        "params-no-model",
        dumps({"custom_id": "r1", "params": {"messages": MSGS}}),
        CHAT,
        LIMITS,
        [("invalid_request", 1, "body.model")],
    ),
    (
        "params-stream",
        dumps({"custom_id": "r1", "params": {"model": "m", "messages": MSGS, "stream": True}}),
        CHAT,
        LIMITS,
        [("streaming_unsupported", 1, "body.stream")],
    ),
    ("bare-no-messages", dumps({"model": "m"}), CHAT, LIMITS, [("invalid_request", 1, "body.messages")]),
    (
        "bare-custom-id-int",
        dumps({"custom_id": 7, "model": "m", "messages": MSGS}),
        CHAT,
        LIMITS,
        [("invalid_request", 1, "custom_id")],
    ),
    (
        "bare-duplicates-default-id",
        dumps({"model": "m", "messages": MSGS})
        + b"\n"
        + dumps({"custom_id": "request-1", "model": "m", "messages": MSGS}),
        CHAT,
        LIMITS,
        [("duplicate_custom_id", 2, "custom_id")],
    ),
    (
        "too-many-requests",
        b"\n".join([GOOD, GOOD2, line(custom_id="r3")]),
        CHAT,
        ValidationLimits(max_requests=2),
        [("too_many_requests", 3, None)],
    ),
    (
        "line-too-long",
        GOOD + b"\n" + line(custom_id="r2", x="y" * 200),
        CHAT,
        ValidationLimits(max_line_bytes=150),
        [("line_too_long", 2, None)],
    ),
    ("empty-file", b"", CHAT, LIMITS, [("empty_file", None, None)]),
    ("blank-lines-only", b"\n \r\n\t\n\r\n", CHAT, LIMITS, [("empty_file", None, None)]),
    ("bom-only", b"\xef\xbb\xbf", CHAT, LIMITS, [("empty_file", None, None)]),
    (
        "embeddings-no-input",
        dumps({"custom_id": "e1", "method": "POST", "url": EMB, "body": {"model": "m"}}),
        EMB,
        LIMITS,
        [("invalid_request", 1, "body.input")],
    ),
    (
        "embeddings-input-object",
        dumps({"custom_id": "e1", "method": "POST", "url": EMB, "body": {"model": "m", "input": {}}}),
        EMB,
        LIMITS,
        [("invalid_request", 1, "body.input")],
    ),
    (
        "completions-no-prompt",
        dumps({"custom_id": "c1", "params": {"model": "m"}}),
        COMP,
        LIMITS,
        [("invalid_request", 1, "body.prompt")],
    ),
    (
        "several-bad-lines",
        b"\n".join([b"{", GOOD, with_body(stream=True), b"", dumps({"url": CHAT, "custom_id": "x", "method": "POST"})]),
        CHAT,
        LIMITS,
        [
            ("invalid_json_line", 1, None),
            ("streaming_unsupported", 3, "body.stream"),
            ("missing_required_parameter", 5, "body"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("data", "endpoint", "limits", "expected"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_input(
    data: bytes, endpoint: str, limits: ValidationLimits, expected: list[tuple[str, int | None, str | None]]
) -> None:
    result = validate(data, endpoint, limits)
    assert triples(result) == expected
    assert result.error_count == len(expected)
    assert not result.ok
    for error in result.errors:
        assert error.message
        error.message.encode("utf-8")  # storable as-is


def test_bad_case_table_is_large_and_distinct() -> None:
    assert len(BAD_CASES) >= 30
    assert len({c[0] for c in BAD_CASES}) == len(BAD_CASES)
    assert len({(c[1], c[2], c[3]) for c in BAD_CASES}) == len(BAD_CASES)


def test_parse_line_agrees_with_file_validator_on_single_lines() -> None:
    for name, data, endpoint, limits, expected in BAD_CASES:
        if b"\n" in data.rstrip(b"\n") or expected[0][1] is None or name == "too-many-requests":
            continue
        result = parse_line(data, 1, endpoint, limits)
        assert isinstance(result, list), name
        assert [(e.code, e.line, e.param) for e in result] == expected, name


# --- messages ---------------------------------------------------------------------------------------


def test_messages_follow_openai_wording() -> None:
    def only(data: bytes, limits: ValidationLimits = LIMITS) -> LineError:
        errors = validate(data, CHAT, limits).errors
        assert len(errors) == 1
        return errors[0]

    assert only(b"{").message == "This line is not parseable as valid JSON."
    assert only(dumps(without(openai(), "custom_id"))).message == "Missing required parameter: 'custom_id'."
    url_error = only(dumps({**openai(), "url": EMB})).message
    assert url_error == "The URL provided for this request does not match the batch endpoint."
    assert only(with_body(model=...)).message == "Model parameter is required."
    assert only(with_body(messages=...)).message == "Messages parameter is required."
    assert only(with_body(stream=True)).message == "Chat Completions: Streaming is not supported in the Batch API."
    assert "'gpt-x'" in only(line(model="gpt-x"), SERVED).message
    assert "NUL byte" in only(GOOD.replace(b"hi", b"\x00")).message

    dup = only(b"\n".join([GOOD, GOOD2, b"", GOOD]))
    assert dup.line == 4 and "'r1'" in dup.message and "line 4" in dup.message and "line 1" in dup.message
    mismatch = only(b"\n".join([GOOD, line(custom_id="r2", model="other")]))
    assert "'other'" in mismatch.message and "'m'" in mismatch.message and "line 1" in mismatch.message

    too_many = only(b"\n".join(line(custom_id=f"r{i}") for i in range(7)), ValidationLimits(max_requests=5))
    assert too_many.line == 6 and "5" in too_many.message and "7" in too_many.message
    too_long = only(line(x="y" * 500), ValidationLimits(max_line_bytes=100))
    assert "100" in too_long.message


def test_error_messages_quote_long_values_briefly() -> None:
    huge = "m" * 100_000
    [error] = validate(line(model=huge), CHAT, SERVED).errors
    assert error.code == "model_not_found" and len(error.message) < 300
    [error] = validate(dumps({**openai(), "method": "\ud800" * 10}), CHAT).errors
    assert error.code == "invalid_method"
    error.message.encode("utf-8")


def test_as_dict() -> None:
    error = LineError("invalid_url", "msg", 3, "url")
    assert error.as_dict() == {"code": "invalid_url", "message": "msg", "param": "url", "line": 3}
    assert LineError("empty_file", "m", None).as_dict() == {
        "code": "empty_file",
        "message": "m",
        "param": None,
        "line": None,
    }


# --- forms and tolerated input -----------------------------------------------------------------------


def test_three_forms_normalize_to_the_same_request() -> None:
    body = {"model": "m", "messages": MSGS, "max_tokens": 100, "temperature": 0.2, "tools": [{"type": "function"}]}
    forms = [
        dumps({"custom_id": "r1", "method": "POST", "url": CHAT, "body": body}),
        dumps({"custom_id": "r1", "params": body}),
        dumps({"custom_id": "r1", **body}),
    ]
    for raw in forms:
        result = parse_line(raw, 1, CHAT, LIMITS)
        assert result == RequestLine(custom_id="r1", url=CHAT, body=body, model="m")


def test_bare_form_gets_custom_id_from_physical_line() -> None:
    bare = dumps({"messages": MSGS, "model": "m"})
    result = validate(b"\n".join([bare, b"", b"  ", bare]))
    assert result.ok and result.total == 2
    assert [normalize_line(bare, n, CHAT).custom_id for n, _, _ in result.index] == ["request-1", "request-4"]
    assert normalize_line(bare, 4, CHAT).body == {"messages": MSGS, "model": "m"}


def test_params_form_without_custom_id_gets_line_number() -> None:
    result = parse_line(dumps({"params": {"model": "m", "messages": MSGS}}), 3, CHAT, LIMITS)
    assert isinstance(result, RequestLine) and result.custom_id == "request-3"


def test_openai_form_ignores_extra_top_level_keys_and_keeps_body_untouched() -> None:
    obj = {**openai(max_tokens=5, stream=False, n=2, metadata={"a": [1, None]}), "extra": 1}
    result = parse_line(dumps(obj), 1, CHAT, LIMITS)
    assert isinstance(result, RequestLine)
    assert result.body == obj["body"]


@pytest.mark.parametrize("method", ["POST", "post", "Post"])
def test_method_is_case_insensitive(method: str) -> None:
    assert isinstance(parse_line(dumps({**openai(), "method": method}), 1, CHAT, LIMITS), RequestLine)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(GOOD + b"\r\n" + GOOD2 + b"\r\n", id="crlf"),
        pytest.param(GOOD + b"\r\n" + GOOD2, id="crlf-no-trailing-newline"),
        pytest.param(b"\xef\xbb\xbf" + GOOD + b"\n" + GOOD2 + b"\n", id="bom"),
        pytest.param(b"\xef\xbb\xbf\r\n" + GOOD + b"\n" + GOOD2, id="bom-then-blank-line"),
        pytest.param(b"\n\n" + GOOD + b"\n   \n\t\r\n" + GOOD2 + b"\n\n\n", id="blank-lines"),
        pytest.param(GOOD + b"\n" + GOOD2, id="no-trailing-newline"),
        pytest.param(GOOD + b"\n" + GOOD2 + b"\n", id="trailing-newline"),
        pytest.param(b"  " + GOOD + b"\t \n" + GOOD2 + b" \r\n", id="surrounding-whitespace"),
    ],
)
def test_tolerated_input(data: bytes) -> None:
    result = validate(data)
    assert result.ok, result.errors
    assert result.errors == [] and result.error_count == 0
    assert result.total == 2 and result.model == "m"
    for line_no, offset, length in result.index:
        chunk = data[offset : offset + length]
        assert normalize_line(chunk, line_no, CHAT).custom_id in {"r1", "r2"}


def test_blank_lines_still_count_as_physical_lines() -> None:
    result = validate(b"\n\r\n" + GOOD + b"\n \n{bad\n")
    assert triples(result) == [("invalid_json_line", 5, None)]
    assert result.total == 2
    assert [entry[0] for entry in result.index] == [3, 5]


def test_parse_line_strips_endings_and_first_line_bom() -> None:
    for raw in (GOOD + b"\n", GOOD + b"\r\n", b"\xef\xbb\xbf" + GOOD + b"\r\n"):
        assert isinstance(parse_line(raw, 1, CHAT, LIMITS), RequestLine)
    assert isinstance(parse_line(b"\xef\xbb\xbf" + GOOD, 2, CHAT, LIMITS), list)


def test_served_models_none_means_any_and_set_accepts_members() -> None:
    assert validate(line(model="anything")).ok
    assert validate(line(model="m"), CHAT, SERVED).ok


def test_each_endpoint_requires_its_own_field() -> None:
    def req(url: str, **body: Any) -> bytes:
        return dumps({"custom_id": "a", "method": "POST", "url": url, "body": {"model": "m", **body}})

    assert validate(req(EMB, input="text"), EMB).ok
    assert validate(req(EMB, input=["a", "b"]), EMB).ok
    assert validate(req(COMP, prompt="once upon"), COMP).ok
    assert validate(req("/v1/responses", input="hi"), "/v1/responses").ok  # only model is checked there


def test_wrong_url_does_not_add_field_noise() -> None:
    data = dumps({"custom_id": "a", "method": "POST", "url": EMB, "body": {"model": "m", "input": "x"}})
    assert triples(validate(data, CHAT)) == [("invalid_url", 1, "url")]


def test_first_valid_model_sets_the_file_model() -> None:
    data = b"\n".join([with_body(model=...), line(custom_id="r2", model="b"), line(custom_id="r3", model="a")])
    result = validate(data)
    assert result.model == "b"
    assert triples(result) == [("invalid_request", 1, "body.model"), ("model_mismatch", 3, "body.model")]


def test_excess_lines_are_counted_and_still_checked_but_not_indexed() -> None:
    lines = [line(custom_id=f"r{i}") for i in range(5)] + [b"{", b"", line(custom_id="r0")]
    result = validate(b"\n".join(lines), CHAT, ValidationLimits(max_requests=3))
    assert result.total == 7
    assert len(result.index) == 3
    assert triples(result) == [
        ("too_many_requests", 4, None),
        ("invalid_json_line", 6, None),
        ("duplicate_custom_id", 8, "custom_id"),
    ]
    assert "7" in result.errors[0].message and "3" in result.errors[0].message


# --- error cap ---------------------------------------------------------------------------------------


def test_error_cap_and_summary() -> None:
    data = b"\n".join(b"{bad" for _ in range(150))
    result = validate(data)
    assert result.error_count == 150
    assert len(result.errors) == 101
    assert [e.line for e in result.errors[:100]] == list(range(1, 101))
    summary = result.errors[-1]
    assert (summary.code, summary.line, summary.param) == ("too_many_errors", None, None)
    assert summary.message == "50 more errors not shown (150 in all)"


def test_error_cap_exactly_reached_has_no_summary() -> None:
    result = validate(b"\n".join(b"{bad" for _ in range(4)), CHAT, ValidationLimits(max_reported_errors=4))
    assert len(result.errors) == 4 and result.error_count == 4
    assert all(e.code == "invalid_json_line" for e in result.errors)


def test_too_many_requests_is_shown_even_past_the_cap() -> None:
    limits = ValidationLimits(max_requests=5, max_reported_errors=3)
    result = validate(b"\n".join(b"{bad" for _ in range(10)), CHAT, limits)
    assert result.error_count == 11
    assert triples(result) == [
        ("invalid_json_line", 1, None),
        ("invalid_json_line", 2, None),
        ("too_many_requests", 6, None),
        ("too_many_errors", None, None),
    ]
    assert result.errors[-1].message == "8 more errors not shown (11 in all)"


def test_zero_cap_reports_only_the_summary() -> None:
    result = validate(b"{bad\n{bad", CHAT, ValidationLimits(max_reported_errors=0))
    assert triples(result) == [("too_many_errors", None, None)]
    assert result.error_count == 2


# --- index and normalize_line ------------------------------------------------------------------------


def test_index_offsets_slice_the_lines() -> None:
    lines = [
        b"\xef\xbb\xbf" + line(custom_id="caf\u00e9 \u65e5\u672c"),
        b"",
        b"  \t",
        dumps({"custom_id": "p", "params": {"model": "m", "messages": MSGS}}) + b"\r",
        dumps({"model": "m", "messages": [{"role": "user", "content": "\U0001f389 multi\u00e9"}]}),
        b"",
    ]
    data = b"\n".join(lines)
    result = validate(data)
    assert result.ok, result.errors
    assert [entry[0] for entry in result.index] == [1, 4, 5]
    expected = {1: lines[0][3:], 4: lines[3][:-1], 5: lines[4]}
    for line_no, offset, length in result.index:
        assert data[offset : offset + length] == expected[line_no]
    assert result.index[0][1] == 3  # line 1 starts after the BOM


def test_index_covers_invalid_and_over_long_lines() -> None:
    data = b"{bad\r\n" + b"x" * 300 + b"\r\n" + GOOD
    result = validate(data, CHAT, ValidationLimits(max_line_bytes=len(GOOD)))
    assert [(n, o, ln) for n, o, ln in result.index] == [(1, 0, 4), (2, 6, 300), (3, 308, len(GOOD))]
    assert triples(result) == [("invalid_json_line", 1, None), ("line_too_long", 2, None)]


def test_normalize_line_round_trips() -> None:
    body = {"model": "m", "messages": MSGS, "max_tokens": 7}
    data = b"\r\n".join(
        [
            b"\xef\xbb\xbf" + dumps({"custom_id": "a", "method": "post", "url": CHAT, "body": body}),
            dumps({"custom_id": "b", "params": body}),
            dumps(body),
            dumps({**body, "custom_id": "d"}),
        ]
    )
    result = validate(data)
    assert result.ok
    requests = [normalize_line(data[o : o + n], line_no, CHAT) for line_no, o, n in result.index]
    assert [r.custom_id for r in requests] == ["a", "b", "request-3", "d"]
    for request in requests:
        assert request.body == body and request.url == CHAT and request.model == "m"
    for line_no, offset, length in result.index:
        raw = data[offset : offset + length]
        assert normalize_line(raw, line_no, CHAT) == parse_line(raw, line_no, CHAT, LIMITS)
        assert normalize_line(raw + b"\r\n", line_no, CHAT) == normalize_line(raw, line_no, CHAT)


def test_normalize_line_raises_value_error_on_bad_input() -> None:
    for raw in (b"{", b"\xff", with_body(stream=True), dumps({"url": CHAT})):
        with pytest.raises(ValueError):
            normalize_line(raw, 1, CHAT)
    with pytest.raises(ValueError):
        normalize_line(GOOD, 1, EMB)


def test_normalize_line_ignores_file_limits() -> None:
    long_id = "x" * 2000
    assert normalize_line(line(custom_id=long_id), 1, CHAT).custom_id == long_id


# --- streaming ---------------------------------------------------------------------------------------

# A small file that touches every path: BOM, CRLF, blank lines, multibyte characters, a line exactly at
# the limit, over-long lines (at the limit + 1 and far past it), an invalid line, a duplicate, a mismatch,
# a NUL byte, invalid UTF-8, and a last line without a newline.
_LIMIT = 200


def _pad(obj: dict[str, Any], size: int) -> bytes:
    """An OpenAI-form ``obj`` as JSON, padded through a filler body field to exactly ``size`` bytes."""
    obj = {**obj, "body": {**obj["body"], "pad": ""}}
    obj["body"]["pad"] = "p" * (size - len(dumps(obj)))
    raw = dumps(obj)
    assert len(raw) == size
    return raw


STREAM_FILE = b"".join(
    [
        b"\xef\xbb\xbf" + _pad(openai(custom_id="\u00e9\u00e9"), _LIMIT) + b"\r\n",
        b"\r\n",
        line(custom_id="\U0001f389") + b"\r\n",
        _pad(openai(custom_id="at-limit+1"), _LIMIT + 1) + b"\r\n",
        b"  \t \n",
        dumps(
            {"custom_id": "\u65e5\u672c", "params": {"model": "m", "messages": [{"role": "user", "content": "\u00e9"}]}}
        )
        + b"\n",
        b"x" * (_LIMIT * 3) + b"\n",
        b'{"model": "m", "messages": [{"role": "user", "content": "\xc3\xa9\xe2\x82\xac"}]}\r\n',
        b"{not json}\n",
        line(custom_id="\u00e9\u00e9") + b"\n",
        line(custom_id="r9", model="z") + b"\n",
        GOOD.replace(b"hi", b"h\x00") + b"\n",
        b'{"a": "\xe2\x82"}\n',
        b"\r\n",
        dumps({"params": {"model": "m", "messages": MSGS}}),
    ]
)
STREAM_LIMITS = ValidationLimits(max_line_bytes=_LIMIT, max_requests=10)


def test_stream_file_exercises_everything() -> None:
    result = validate(STREAM_FILE, CHAT, STREAM_LIMITS)
    codes = {e.code for e in result.errors}
    assert {
        "line_too_long",
        "invalid_json_line",
        "duplicate_custom_id",
        "model_mismatch",
        "invalid_encoding",
        "too_many_requests",
    } <= codes
    assert result.index[0][1] == 3 and result.index[0][2] == _LIMIT  # exactly at the limit, after the BOM
    for _, offset, length in result.index:
        assert b"\n" not in STREAM_FILE[offset : offset + length]
        assert not STREAM_FILE[offset : offset + length].endswith(b"\r")
    assert ("line_too_long", 4, None) in triples(result)


def test_every_two_way_split_gives_the_same_result() -> None:
    whole = validate(STREAM_FILE, CHAT, STREAM_LIMITS)
    for cut in range(len(STREAM_FILE) + 1):
        assert validate(STREAM_FILE, CHAT, STREAM_LIMITS, [cut]) == whole, cut


def test_byte_at_a_time_and_random_splits_give_the_same_result() -> None:
    whole = validate(STREAM_FILE, CHAT, STREAM_LIMITS)
    assert validate(STREAM_FILE, CHAT, STREAM_LIMITS, list(range(1, len(STREAM_FILE)))) == whole
    rng = random.Random(7)
    for _ in range(300):
        cuts = sorted(rng.sample(range(len(STREAM_FILE) + 1), rng.randint(1, 12)))
        assert validate(STREAM_FILE, CHAT, STREAM_LIMITS, cuts) == whole, cuts


def test_splits_inside_crlf_bom_and_multibyte_chars() -> None:
    whole = validate(STREAM_FILE, CHAT, STREAM_LIMITS)
    interesting = [1, 2]  # inside the BOM
    interesting += [i + 1 for i in range(len(STREAM_FILE)) if STREAM_FILE[i : i + 2] == b"\r\n"]
    interesting += [i for i, byte in enumerate(STREAM_FILE) if 0x80 <= byte < 0xC0]  # continuation bytes
    assert len(interesting) > 20
    for cut in interesting:
        assert validate(STREAM_FILE, CHAT, STREAM_LIMITS, [cut]) == whole, cut


def test_over_long_whitespace_line_is_too_long_however_it_is_fed() -> None:
    data = GOOD + b"\n" + b" " * 300 + b"\r\n" + GOOD2
    limits = ValidationLimits(max_line_bytes=200)
    whole = validate(data, CHAT, limits)
    assert triples(whole) == [("line_too_long", 2, None)]
    for cut in range(len(data) + 1):
        assert validate(data, CHAT, limits, [cut]) == whole, cut


def test_empty_chunks_and_finish_twice() -> None:
    validator = FileValidator(CHAT, LIMITS)
    for piece in (b"", GOOD[:10], b"", GOOD[10:], b"\n", b""):
        validator.feed(piece)
    first = validator.finish()
    assert first.ok and first.total == 1
    assert validator.finish() is first
    with pytest.raises(RuntimeError):
        validator.feed(GOOD)


def test_over_long_line_split_across_chunks_keeps_line_numbers() -> None:
    data = GOOD + b"\n" + b"z" * 5000 + b"\n" + GOOD2 + b"\n{bad"
    limits = ValidationLimits(max_line_bytes=200)
    cuts = list(range(50, len(data), 97))
    result = validate(data, CHAT, limits, cuts)
    assert triples(result) == [("line_too_long", 2, None), ("invalid_json_line", 4, None)]
    assert result == validate(data, CHAT, limits)
    assert result.index[1] == (2, len(GOOD) + 1, 5000)


# --- properties --------------------------------------------------------------------------------------

KEYS = ["custom_id", "method", "url", "body", "params", "model", "messages", "stream", "input", "prompt"]
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | st.sampled_from(["POST", "post", CHAT, "m", ""]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
line_objects = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6)


def _check_line_result(result: object) -> None:
    if isinstance(result, RequestLine):
        assert isinstance(result.custom_id, str) and result.custom_id
        assert result.url == CHAT and isinstance(result.body, dict)
        assert result.model is None or isinstance(result.model, str)
    else:
        assert isinstance(result, list) and result
        assert all(isinstance(e, LineError) and e.line == 1 and e.message for e in result)


def _check_file_result(result: object, data: bytes) -> None:
    assert isinstance(result, ValidationResult)
    assert all(isinstance(e, LineError) for e in result.errors)
    assert result.ok == (result.error_count == 0)
    assert len(result.errors) <= LIMITS.max_reported_errors + 1
    for line_no, offset, length in result.index:
        assert isinstance(line_no, int) and 0 <= offset and offset + length <= len(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=200))
def test_parse_line_never_raises_on_bytes(raw: bytes) -> None:
    _check_line_result(parse_line(raw, 1, CHAT, LIMITS))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values | line_objects)
def test_parse_line_never_raises_on_json_values(value: Any) -> None:
    raw = json.dumps(value).encode()
    _check_line_result(parse_line(raw, 1, CHAT, LIMITS))
    _check_line_result(parse_line(raw, 1, CHAT, SERVED))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(
        st.binary(max_size=40) | st.sampled_from([b"\n", b"\r\n", b"\xef\xbb\xbf", b"\xc3", b"\xa9", GOOD]), max_size=12
    ),
    data=st.data(),
)
def test_file_validator_never_raises_on_bytes(pieces: list[bytes], data: st.DataObject) -> None:
    content = b"".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(content)), max_size=6)))
    result = validate(content, CHAT, ValidationLimits(max_line_bytes=60, max_requests=5), cuts)
    _check_file_result(result, content)
    assert result == validate(content, CHAT, ValidationLimits(max_line_bytes=60, max_requests=5))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(json_values | line_objects, max_size=8), sep=st.sampled_from([b"\n", b"\r\n", b"\n\n"]))
def test_file_validator_never_raises_on_json_lines(values: list[Any], sep: bytes) -> None:
    content = sep.join(json.dumps(v).encode() for v in values)
    result = validate(content)
    _check_file_result(result, content)
    assert result.total == len(values)


# --- memory and speed --------------------------------------------------------------------------------


def _big_file(kinds: str) -> Iterator[bytes]:
    """Yield a JSONL file in 1 MiB chunks, made on the fly: per letter, "v" is a valid 2 MiB line and "L" an
    11 MiB line (over the 10 MiB limit). The building blocks are made before the caller starts tracing."""
    block = b"a" * (1 << 20)
    for i, kind in enumerate(kinds):
        if kind == "L":
            yield from [block] * 11
        else:
            yield b'{"custom_id": "r%d", "method": "POST", "url": "/v1/chat/completions", ' % i
            yield b'"body": {"model": "m", "messages": [{"role": "user", "content": "'
            yield from [block] * 2
            yield b'"}]}}'
        yield b"\n"


def test_fifty_megabytes_stream_in_flat_memory() -> None:
    chunks = _big_file("vvLvvvLvvvLvv")  # 10 valid lines of 2 MiB, 3 lines of 11 MiB skipped unread
    validator = FileValidator(CHAT, LIMITS)
    next(chunks)  # builds the 1 MiB block outside the traced region
    tracemalloc.start()
    try:
        fed = 0
        validator.feed(b'{"custom_id": "r0", "method": "POST", "url": "/v1/chat/completions", ')
        for piece in chunks:
            fed += len(piece)
            validator.feed(piece)
        result = validator.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fed > 50 << 20
    assert triples(result) == [("line_too_long", 3, None), ("line_too_long", 7, None), ("line_too_long", 11, None)]
    assert result.total == 13 and len(result.index) == 13
    assert result.index[2][2] == 11 << 20
    assert peak < 30 << 20, f"peak {peak / 2**20:.1f} MiB"


def test_ten_thousand_lines_validate_quickly() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 1000}], "max_tokens": 10}
    data = b"\n".join(dumps({"custom_id": f"r{i}", "method": "POST", "url": CHAT, "body": body}) for i in range(10_000))
    started = time.perf_counter()
    result = validate(data, CHAT, LIMITS, list(range(65536, len(data), 65536)))
    elapsed = time.perf_counter() - started
    assert result.ok and result.total == 10_000 and len(result.index) == 10_000
    assert elapsed < 5, elapsed
