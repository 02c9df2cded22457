"""Simulator bodies for ``/v1/responses`` and ``/v1/moderations``, and the dispatch over every endpoint.

A responses answer echoes the input text in a Response object whose usage uses the Responses API names
(``input_tokens`` / ``output_tokens``); a moderations answer flags nothing unless the text contains the
word ``flagme``, so tests can see both outcomes.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from batchq.sim import payloads
from batchq.sim.payloads import ECHO_CHARS, JSONDict, Reply, content_text, error_body, estimate_tokens

#: Endpoint kinds served here (``payloads`` serves chat, embeddings, completions).
KINDS = ("responses", "moderations")
#: The model a moderations request without one is answered by, as OpenAI's default.
DEFAULT_MODERATION_MODEL = "omni-moderation-latest"
#: OpenAI's moderation categories (all scores are deterministic).
CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)  # fmt: skip
#: A word that makes the moderation result flagged.
FLAG_WORD = "flagme"


def _bad(message: str, param: str | None, code: str | None, status: int = 400) -> Reply:
    return Reply(status, error_body(message, "invalid_request_error", code, param))


def input_texts(raw: Any) -> list[str]:
    """Texts of a responses / moderations ``input``: a string, a list of strings, items or content parts."""
    if isinstance(raw, str):
        return [raw]
    texts: list[str] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict):
            if isinstance(item.get("text"), str):
                texts.append(item["text"])
            elif "content" in item:
                texts.append(content_text(item["content"]))
    return texts


def validate(kind: str, body: Any, models: frozenset[str], completion_tokens: int) -> tuple[int, int]:
    """Check a body for any endpoint (the server calls this); responses and moderations are checked here."""
    if kind not in KINDS or not isinstance(body, dict):
        return payloads.validate(kind, body, models, completion_tokens)
    model = body.get("model")
    if kind == "moderations" and model is None:
        model = DEFAULT_MODERATION_MODEL
    if not isinstance(model, str) or not model:
        raise _bad("you must provide a model parameter", "model", "missing_required_parameter")
    if models and model not in models and not (kind == "moderations" and "model" not in body):
        raise _bad(f"The model `{model}` does not exist.", "model", "model_not_found", 404)
    if body.get("stream"):
        raise _bad("Streaming is not supported by this upstream.", "stream", "unsupported_value")
    raw = body.get("input")
    if raw is None or raw == "" or raw == [] or not isinstance(raw, str | list):
        raise _bad("'input' is required", "input", "missing_required_parameter")
    prompt = estimate_tokens(input_texts(raw))
    if kind == "moderations":
        return prompt, 0
    output = completion_tokens
    cap = body.get("max_output_tokens")
    if isinstance(cap, int) and not isinstance(cap, bool) and cap >= 0:
        output = min(output, cap)
    return prompt, output


def build_response(
    kind: str, body: JSONDict, prompt: int, completion: int, embedding_dims: int = payloads.EMBEDDING_DIM
) -> JSONDict:
    """The success body for a request ``validate`` accepted (any endpoint)."""
    if kind not in KINDS:
        return payloads.build_response(kind, body, prompt, completion, embedding_dims)
    texts = input_texts(body["input"])
    if kind == "moderations":
        model = body.get("model") or DEFAULT_MODERATION_MODEL
        items = (
            texts
            if isinstance(body["input"], list) and all(isinstance(i, str) for i in body["input"])
            else [" ".join(texts)]
        )
        return {"id": "modr-" + secrets.token_hex(12), "model": model, "results": [_moderate(t) for t in items]}
    text = "Echo: " + (texts[-1] if texts else "")[:ECHO_CHARS]
    message = {
        "type": "message", "id": "msg_" + secrets.token_hex(12), "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }  # fmt: skip
    usage = {
        "input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }  # fmt: skip
    return {
        "id": "resp_" + secrets.token_hex(12), "object": "response", "created_at": int(time.time()),
        "status": "completed", "model": body["model"], "output": [message], "usage": usage,
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "error": None, "incomplete_details": None,
    }  # fmt: skip


def _moderate(text: str) -> JSONDict:
    flagged = FLAG_WORD in text.lower()
    score = 0.99 if flagged else 0.001
    return {
        "flagged": flagged,
        "categories": {c: flagged and c == "harassment" for c in CATEGORIES},
        "category_scores": {c: score if c == "harassment" else 0.001 for c in CATEGORIES},
        "category_applied_input_types": {c: ["text"] for c in CATEGORIES},
    }
