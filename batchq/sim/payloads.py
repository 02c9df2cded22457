"""The fake OpenAI side of the simulator: request validation, token estimates and response bodies.

Everything here is a pure function of the request, so answers are deterministic: the chat content echoes the
last user message, embeddings are unit vectors derived from a hash of the input.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from typing import Any

JSONDict = dict[str, Any]

#: Length of the fake embedding vectors unless ``embedding_dims`` says otherwise.
EMBEDDING_DIM = 8
#: Longest vector one SHA-256 digest fills (two bytes a float); longer ones are drawn from SHAKE-256.
SHA256_DIMS = 16
#: Characters of the last user message (or prompt) echoed back.
ECHO_CHARS = 60


class Reply(Exception):
    """Raised while handling a request to answer at once with ``status`` (0 = drop the connection)."""

    def __init__(self, status: int, body: JSONDict | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> JSONDict:
    """Build OpenAI's error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def default_error(status: int) -> JSONDict:
    """The error body a chosen status gets when a fail rule does not give one."""
    if status == 429:
        return error_body("Rate limit reached (injected).", "requests", "rate_limit_exceeded")
    if status >= 500:
        return error_body(f"The server had an error while processing your request ({status}).", "server_error")
    return error_body(f"Request failed with status {status} (injected).", "invalid_request_error")


def retry_headers(wait_s: float) -> dict[str, str]:
    """``Retry-After`` (whole seconds) and ``retry-after-ms``, both at least 1."""
    return {"Retry-After": str(max(1, math.ceil(wait_s))), "retry-after-ms": str(max(1, math.ceil(wait_s * 1000)))}


def rate_limited(type_: str, what: str, wait_s: float) -> Reply:
    """A 429 in OpenAI's words: ``type_`` is ``requests`` or ``tokens``."""
    message = f"Rate limit reached on {what}. Please try again in {wait_s:.3f}s."
    return Reply(429, error_body(message, type_, "rate_limit_exceeded"), retry_headers(wait_s))


def content_text(content: Any) -> str:
    """Text of a message ``content``: a string, or a list of parts whose ``text`` fields are joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def estimate_tokens(texts: list[str]) -> int:
    """Rough prompt token count: total characters / 4, at least 1."""
    return max(1, sum(len(t) for t in texts) // 4)


def embedding_inputs(raw: Any) -> list[Any]:
    """Split ``input`` into items: a string, a token array, or a list of either."""
    if isinstance(raw, list) and raw and not all(isinstance(i, int) for i in raw):
        return raw
    return [raw]


def embed(item: Any, dims: int = EMBEDDING_DIM) -> list[float]:
    """Deterministic unit vector of ``dims`` floats from a hash of one input item.

    Short vectors keep 6 decimals (their values never changed); long ones keep the full float, so 1,536 of them make
    an answer of about 30 KB, the size of a real ``text-embedding-3-small`` answer.
    """
    raw = (item if isinstance(item, str) else json.dumps(item)).encode()
    digest = hashlib.sha256(raw).digest() if dims <= SHA256_DIMS else hashlib.shake_256(raw).digest(2 * dims)
    vec = [int.from_bytes(digest[i : i + 2], "big") / 32768.0 - 1.0 for i in range(0, 2 * dims, 2)]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    if dims <= SHA256_DIMS:
        return [round(v / norm, 6) for v in vec]
    return [v / norm for v in vec]


def _bad(message: str, param: str | None, code: str | None, status: int = 400) -> Reply:
    return Reply(status, error_body(message, "invalid_request_error", code, param))


def validate(kind: str, body: Any, models: frozenset[str], completion_tokens: int) -> tuple[int, int]:
    """Check a request body for endpoint ``kind`` (``chat``, ``embeddings`` or ``completions``).

    Args:
        kind: which endpoint received the body.
        body: the parsed JSON body.
        models: the served models; empty serves any model.
        completion_tokens: tokens a completion uses unless the request caps them lower.

    Returns:
        The prompt token estimate and the completion tokens the answer will report.

    Raises:
        Reply: a 400 (malformed, streaming) or 404 (unknown model) answer.
    """
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", None, "invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("you must provide a model parameter", "model", "missing_required_parameter")
    if models and model not in models:
        raise _bad(f"The model `{model}` does not exist.", "model", "model_not_found", 404)
    if body.get("stream"):
        raise _bad("Streaming is not supported by this upstream.", "stream", "unsupported_value")
    if kind == "embeddings":
        items = embedding_inputs(body.get("input"))
        if any(i is None or i == "" for i in items):
            raise _bad("'input' is required", "input", "missing_required_parameter")
        return estimate_tokens([i if isinstance(i, str) else json.dumps(i) for i in items]), 0
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise _bad("'messages' must be a non-empty list of objects", "messages", "missing_required_parameter")
        prompt = estimate_tokens([content_text(m.get("content")) for m in messages])
    else:
        text = body.get("prompt")
        if not isinstance(text, str | list):
            raise _bad("'prompt' is required", "prompt", "missing_required_parameter")
        prompt = estimate_tokens([text] if isinstance(text, str) else [str(p) for p in text])
    completion = completion_tokens
    for cap_name in ("max_completion_tokens", "max_tokens"):
        cap = body.get(cap_name)
        if isinstance(cap, int) and not isinstance(cap, bool) and cap >= 0:
            completion = min(completion, cap)
    return prompt, completion


def build_response(
    kind: str, body: JSONDict, prompt: int, completion: int, embedding_dims: int = EMBEDDING_DIM
) -> JSONDict:
    """The success body for a request ``validate`` accepted."""
    created, model = int(time.time()), body["model"]
    if kind == "embeddings":
        items = embedding_inputs(body["input"])
        vectors = [embed(item, embedding_dims) for item in items]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        usage = {"prompt_tokens": prompt, "total_tokens": prompt}
        return {"object": "list", "data": data, "model": model, "usage": usage}
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if kind == "chat":
        messages = body["messages"]
        last = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
        message = {"role": "assistant", "content": "Echo: " + content_text(last.get("content"))[:ECHO_CHARS]}
        choice = {"index": 0, "message": {**message, "refusal": None}, "logprobs": None, "finish_reason": "stop"}
        return {
            "id": "chatcmpl-" + secrets.token_hex(12), "object": "chat.completion", "created": created,
            "model": model, "choices": [choice], "usage": usage, "system_fingerprint": "batchq-sim",
        }  # fmt: skip
    prompt_text = body["prompt"] if isinstance(body["prompt"], str) else " ".join(map(str, body["prompt"]))
    choice = {"text": "Echo: " + prompt_text[:ECHO_CHARS], "index": 0, "logprobs": None, "finish_reason": "stop"}
    return {
        "id": "cmpl-" + secrets.token_hex(12), "object": "text_completion", "created": created,
        "model": model, "choices": [choice], "usage": usage,
    }  # fmt: skip
