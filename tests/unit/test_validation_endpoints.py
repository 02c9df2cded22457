"""Batch lines for /v1/responses and /v1/moderations (issue 14): validated like the other endpoints."""

from __future__ import annotations

import json
from typing import Any

from batchq.config import SUPPORTED_ENDPOINTS
from batchq.validation import FileValidator, LineError, RequestLine, ValidationLimits, parse_line

RESP = "/v1/responses"
MOD = "/v1/moderations"
LIMITS = ValidationLimits()


def line(url: str, body: dict[str, Any], custom_id: str = "r1") -> bytes:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body}).encode()


def codes(result: RequestLine | list[LineError]) -> list[tuple[str, str | None]]:
    assert isinstance(result, list), result
    return [(e.code, e.param) for e in result]


def test_both_endpoints_are_supported() -> None:
    assert RESP in SUPPORTED_ENDPOINTS and MOD in SUPPORTED_ENDPOINTS


def test_responses_line_needs_model_and_input() -> None:
    ok = parse_line(line(RESP, {"model": "m", "input": "Say blue.", "max_output_tokens": 64}), 1, RESP, LIMITS)
    assert isinstance(ok, RequestLine) and ok.model == "m" and ok.body["input"] == "Say blue."
    items = [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    assert isinstance(parse_line(line(RESP, {"model": "m", "input": items}), 1, RESP, LIMITS), RequestLine)
    assert codes(parse_line(line(RESP, {"model": "m"}), 1, RESP, LIMITS)) == [("invalid_request", "body.input")]
    assert codes(parse_line(line(RESP, {"input": "x"}), 1, RESP, LIMITS)) == [("invalid_request", "body.model")]
    assert codes(parse_line(line(RESP, {"model": "m", "input": 3}), 1, RESP, LIMITS)) == [
        ("invalid_request", "body.input")
    ]


def test_responses_line_refuses_stream_and_background() -> None:
    result = parse_line(line(RESP, {"model": "m", "input": "x", "stream": True, "background": True}), 1, RESP, LIMITS)
    assert codes(result) == [("streaming_unsupported", "body.stream"), ("invalid_request", "body.background")]


def test_moderation_line_model_is_optional_but_input_is_not() -> None:
    ok = parse_line(line(MOD, {"input": "some text"}), 1, MOD, LIMITS)
    assert isinstance(ok, RequestLine) and ok.model is None
    parts = [{"type": "text", "text": "t"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    ok = parse_line(line(MOD, {"model": "omni-moderation-latest", "input": parts}), 1, MOD, LIMITS)
    assert isinstance(ok, RequestLine) and ok.model == "omni-moderation-latest"
    assert codes(parse_line(line(MOD, {"model": "x"}), 1, MOD, LIMITS)) == [("invalid_request", "body.input")]
    assert codes(parse_line(line(MOD, {"model": "", "input": "t"}), 1, MOD, LIMITS)) == [
        ("invalid_request", "body.model")
    ]


def test_a_line_for_another_endpoint_is_invalid_url() -> None:
    chat = line("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert codes(parse_line(chat, 1, RESP, LIMITS)) == [("invalid_url", "url")]


def test_moderation_file_mixes_lines_with_and_without_model() -> None:
    # Given a moderations file where one line names the model and one leaves it to the upstream's default
    data = line(MOD, {"input": "a"}, "a") + b"\n" + line(MOD, {"model": "mod-1", "input": "b"}, "b") + b"\n"
    validator = FileValidator(MOD, LIMITS)
    validator.feed(data)
    result = validator.finish()
    # Then the file is valid, its model is the one named, and a second named model is still refused
    assert result.ok and result.total == 2 and result.model == "mod-1"
    validator = FileValidator(MOD, LIMITS)
    validator.feed(data + line(MOD, {"model": "mod-2", "input": "c"}, "c") + b"\n")
    assert [e.code for e in validator.finish().errors] == ["model_mismatch"]
