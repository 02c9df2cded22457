"""Token counts for the token limit: an up-front estimate of a request, and the upstream's (untrusted) usage."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
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


#: Tokens in one item of a responses ``input`` list besides its text, like a chat message's overhead.
INPUT_ITEM_OVERHEAD_TOKENS = MESSAGE_OVERHEAD_TOKENS
#: Body fields that carry JSON schemas or function definitions: their keys (property names) are text too.
SCHEMA_FIELDS = ("tools", "functions", "response_format", "text")

ENDPOINT_CHAT = "/v1/chat/completions"
ENDPOINT_COMPLETIONS = "/v1/completions"
ENDPOINT_EMBEDDINGS = "/v1/embeddings"
ENDPOINT_MODERATIONS = "/v1/moderations"
ENDPOINT_RESPONSES = "/v1/responses"
#: Body fields only a responses request has (used to tell it from embeddings when no endpoint is given).
_RESPONSES_ONLY = ("max_output_tokens", "instructions", "previous_response_id", "reasoning", "text", "conversation")


class _Tally:
    """Text and direct token counts of a request. Non-ASCII characters count one token each: CJK text runs at about
    one token a character (o200k, cl100k a bit more per rare ideogram), four times what characters / 4 gives."""

    __slots__ = ("ascii_chars", "other_chars", "tokens")

    def __init__(self) -> None:
        self.ascii_chars = 0
        self.other_chars = 0
        self.tokens = 0

    def text(self, value: str) -> None:
        if value.isascii():  # O(1) in CPython: the common case costs nothing more than len()
            self.ascii_chars += len(value)
            return
        ascii_part = len(value.encode("ascii", "ignore"))
        self.ascii_chars += ascii_part
        self.other_chars += len(value) - ascii_part

    def walk(self, value: Any, *, with_keys: bool = False) -> None:
        """Count every string (and, ``with_keys``, every object key) in a JSON-like value; iterative, so neither
        depth nor cycles can hurt. Numbers count one token each (token ids); media parts a fixed price."""
        stack, seen = [value], set()
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                self.text(item)
            elif isinstance(item, bool) or item is None:
                continue
            elif isinstance(item, int | float):
                self.tokens += 1
            elif isinstance(item, Mapping | list | tuple):
                if id(item) in seen:
                    continue
                seen.add(id(item))
                if isinstance(item, Mapping):
                    kind = item.get("type")
                    if isinstance(kind, str) and kind in MEDIA_PART_TYPES:
                        self.tokens += MEDIA_PART_TOKENS
                        continue
                    if with_keys:
                        stack.extend(k for k in item if isinstance(k, str))
                    stack.extend(item.values())
                else:
                    stack.extend(item)

    def total(self) -> int:
        return self.tokens + math.ceil(self.ascii_chars / CHARS_PER_TOKEN) + self.other_chars


def estimate_tokens(body: Mapping[str, Any], endpoint: str | None = None) -> int:
    """Upper-side estimate of the tokens a request will consume, for the token limit. Never raises; cheap (one
    pass over the body's strings) and safe on hostile bodies (no recursion, cycles skipped).

    Prompt, per ``endpoint``: chat ``messages`` (+ :data:`MESSAGE_OVERHEAD_TOKENS` each), completions ``prompt``
    and ``suffix``, embeddings and moderations ``input``, responses ``input`` (a string or a list of items, +
    :data:`INPUT_ITEM_OVERHEAD_TOKENS` each), ``instructions`` and a stored ``prompt``'s variables; and everywhere
    ``tools`` / ``functions`` / ``response_format`` / ``text`` (schemas: keys counted too). Text is ASCII
    characters / 4 plus one token per other character; token-id arrays count one token an id; a media part
    :data:`MEDIA_PART_TOKENS`.
    Completion: chat ``max_completion_tokens`` or ``max_tokens`` times ``n``; completions ``max_tokens`` times
    ``max(n, best_of)``; responses ``max_output_tokens``; :data:`DEFAULT_COMPLETION_TOKENS` when absent; none for
    embeddings and moderations.

    Args:
        body: The request body as sent upstream (anything at all is tolerated).
        endpoint: The batch's endpoint (``/v1/responses`` ...); None or unknown: guessed from the body's fields.

    Returns:
        Estimated prompt + completion tokens, in [0, MAX_RESERVED_TOKENS].
    """
    if not isinstance(body, Mapping):
        return DEFAULT_COMPLETION_TOKENS
    kind = endpoint if endpoint in _ESTIMATORS else _guess_endpoint(body)
    tally = _Tally()
    for name in SCHEMA_FIELDS:
        if name in body:
            tally.walk(body[name], with_keys=True)
    completion = _ESTIMATORS[kind](body, tally)
    return min(tally.total() + completion, MAX_RESERVED_TOKENS)


def _guess_endpoint(body: Mapping[str, Any]) -> str:
    if "messages" in body:
        return ENDPOINT_CHAT
    if "prompt" in body and "input" not in body:
        return ENDPOINT_COMPLETIONS
    if any(name in body for name in _RESPONSES_ONLY):
        return ENDPOINT_RESPONSES
    return ENDPOINT_EMBEDDINGS


def _chat(body: Mapping[str, Any], tally: _Tally) -> int:
    messages = body.get("messages")
    if isinstance(messages, list):
        tally.tokens += REPLY_PRIMING_TOKENS + MESSAGE_OVERHEAD_TOKENS * len(messages)
        for message in messages:
            if isinstance(message, Mapping):
                tally.walk([message.get(k) for k in ("content", "name", "tool_calls", "function_call", "refusal")])
    completion = _positive_int(body.get("max_completion_tokens")) or _positive_int(body.get("max_tokens"))
    return (completion or DEFAULT_COMPLETION_TOKENS) * (_positive_int(body.get("n")) or 1)


def _completions(body: Mapping[str, Any], tally: _Tally) -> int:
    tally.walk([body.get("prompt"), body.get("suffix")])
    choices = max(_positive_int(body.get("n")) or 1, _positive_int(body.get("best_of")) or 1)
    return (_positive_int(body.get("max_tokens")) or DEFAULT_COMPLETION_TOKENS) * choices


def _input_only(body: Mapping[str, Any], tally: _Tally) -> int:
    """Embeddings and moderations: the input is all there is; nothing is generated."""
    tally.walk(body.get("input"))
    return 0


def _responses(body: Mapping[str, Any], tally: _Tally) -> int:
    items = body.get("input")
    if isinstance(items, list):  # structured input: messages, function call outputs, ... each with its overhead
        tally.tokens += INPUT_ITEM_OVERHEAD_TOKENS * len(items)
    tally.tokens += REPLY_PRIMING_TOKENS
    tally.walk([items, body.get("instructions"), body.get("prompt")])  # prompt: a stored prompt's variables
    return _positive_int(body.get("max_output_tokens")) or DEFAULT_COMPLETION_TOKENS


_ESTIMATORS: dict[str, Callable[[Mapping[str, Any], _Tally], int]] = {
    ENDPOINT_CHAT: _chat,
    ENDPOINT_COMPLETIONS: _completions,
    ENDPOINT_EMBEDDINGS: _input_only,
    ENDPOINT_MODERATIONS: _input_only,
    ENDPOINT_RESPONSES: _responses,
}


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if value > 0 else None
