"""Token counts for the token limit: an up-front estimate of a request, and the upstream's (untrusted) usage."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: Largest reservation or charge (Lua prints larger numbers in exponent form, which would break the token-log members).
MAX_RESERVED_TOKENS = 10**12
#: Tokens in one chat message besides its text (role and separators), as in OpenAI's cookbook counting.
MESSAGE_OVERHEAD_TOKENS = 4
#: Tokens that prime every chat reply.
REPLY_PRIMING_TOKENS = 3
#: Characters per token of the rough estimate (English prose averages about four).
CHARS_PER_TOKEN = 4
#: Tokens counted for a non-text content part (image, audio, file): OpenAI's price of a 1024x1024 high-detail image.
MEDIA_PART_TOKENS = 765
#: Completion tokens assumed when a body sets neither ``max_completion_tokens`` nor ``max_tokens``.
DEFAULT_COMPLETION_TOKENS = 256
#: Content-part types counted as :data:`MEDIA_PART_TOKENS` instead of by their (base64) text.
MEDIA_PART_TYPES = frozenset({"image_url", "input_image", "image", "input_audio", "audio", "file", "input_file"})


def clamp_tokens(value: object) -> int | None:
    """A token count from an untrusted source as an int in [0, MAX_RESERVED_TOKENS]; None when it says nothing.

    An upstream may answer ``usage`` values such as ``Infinity``, ``NaN``, ``-5``, ``1e400`` or ``2**70``, or strings.
    Numbers (and numeric strings) are clamped; NaN, booleans and anything else count as unknown, so the
    reservation stands as it was. Never raises.

    Args:
        value: Whatever the upstream sent (or the caller passed).

    Returns:
        The clamped count, or None for "unknown".
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int):
        return min(max(value, 0), MAX_RESERVED_TOKENS)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value <= 0:
            return 0
        return MAX_RESERVED_TOKENS if value >= MAX_RESERVED_TOKENS else int(value)
    return None


def estimate_tokens(body: Mapping[str, Any]) -> int:
    """Rough upper-side estimate of the tokens a request will consume, for the token limit. Never raises.

    Prompt: about ``chars / 4`` over every text (chat message contents as strings or content-part lists, names,
    tool calls, ``tools`` / ``functions`` / ``response_format``, completions ``prompt``, embeddings ``input``;
    token-id arrays count one token an id), a fixed :data:`MEDIA_PART_TOKENS` a media part, and
    :data:`MESSAGE_OVERHEAD_TOKENS` a chat message. Completion: ``max_completion_tokens`` or ``max_tokens``
    (:data:`DEFAULT_COMPLETION_TOKENS` when absent), times ``n`` (or ``best_of``); none for embeddings.

    Args:
        body: The request body as sent upstream (anything at all is tolerated).

    Returns:
        Estimated prompt + completion tokens, >= 0.
    """
    if not isinstance(body, Mapping):
        return DEFAULT_COMPLETION_TOKENS
    chars, tokens = 0, 0
    messages = body.get("messages")
    if isinstance(messages, list):
        tokens += REPLY_PRIMING_TOKENS + MESSAGE_OVERHEAD_TOKENS * len(messages)
        for message in messages:
            if isinstance(message, Mapping):
                parts = [message.get(k) for k in ("content", "name", "tool_calls", "function_call", "refusal")]
                c, t = _walk(parts)
                chars, tokens = chars + c, tokens + t
    for key in ("tools", "functions", "response_format", "prompt", "input"):
        c, t = _walk(body.get(key))
        chars, tokens = chars + c, tokens + t
    prompt = tokens + math.ceil(chars / CHARS_PER_TOKEN)
    if "input" in body and "messages" not in body and "prompt" not in body:
        return prompt  # embeddings: no completion
    completion = (
        _positive_int(body.get("max_completion_tokens"))
        or _positive_int(body.get("max_tokens"))
        or DEFAULT_COMPLETION_TOKENS
    )
    choices = max(_positive_int(body.get("n")) or 1, _positive_int(body.get("best_of")) or 1)
    return prompt + completion * choices


def _walk(value: Any) -> tuple[int, int]:
    """(characters of text, tokens counted directly) in a JSON-like value; iterative, so depth and cycles are safe."""
    chars, tokens = 0, 0
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int | float):
            tokens += 1  # a token id, or a number in a schema
        elif isinstance(item, Mapping | list | tuple):
            if id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, Mapping):
                kind = item.get("type")
                if isinstance(kind, str) and kind in MEDIA_PART_TYPES:
                    tokens += MEDIA_PART_TOKENS
                    continue
                stack.extend(item.values())
            else:
                stack.extend(item)
    return chars, tokens


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if value > 0 else None
