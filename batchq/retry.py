"""The one retry policy, of upstream calls and of the Python client (modelled on openai-python's ``_base_client``).

What to retry (:func:`is_retryable_status`), how long the server asked us to wait (:func:`parse_retry_after`), and
how long to wait otherwise (:func:`backoff_delay`, capped exponential with jitter); :func:`next_delay` puts the
last two together. The defaults are the server's; the client passes its own statuses, jitter and Retry-After rule
(:mod:`batchq.client.retrying`). A pure module: it imports nothing of batchq.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping
from typing import Literal

#: Statuses worth retrying: timeout, conflict (a lock), rate limited, and every server error.
RETRYABLE_STATUS: frozenset[int] = frozenset({408, 409, 429, *range(500, 600)})
#: Statuses that a retry cannot fix, whatever ``x-should-retry`` says.
NEVER_RETRY_STATUS: frozenset[int] = frozenset({400, 401, 403, 404, 422})
#: Longest server-requested wait honoured by default (longer ones are capped to it).
DEFAULT_MAX_RETRY_AFTER_S = 3600.0
#: Largest exponent of the backoff (2**62 already dwarfs any max_s; this keeps the float finite).
MAX_BACKOFF_EXPONENT = 62


def _lower(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Headers with lower-cased names: works the same for ``httpx.Headers`` and a plain dict."""
    if not headers:
        return {}
    return {str(name).lower(): str(value) for name, value in headers.items()}


def is_retryable_status(
    status: int,
    headers: Mapping[str, str] | None = None,
    *,
    retryable: frozenset[int] = RETRYABLE_STATUS,
    never: frozenset[int] = NEVER_RETRY_STATUS,
) -> bool:
    """Whether an answer with this status (and these headers) is worth another attempt.

    Order, as in openai-python: ``never`` statuses never; then the server's ``x-should-retry: true|false``; then
    ``retryable``.

    Args:
        status: The HTTP status code.
        headers: The response headers (any case), if any.
        retryable: Statuses retried when the server does not say (default :data:`RETRYABLE_STATUS`).
        never: Statuses never retried, whatever the server says (default :data:`NEVER_RETRY_STATUS`).

    Returns:
        True to retry.
    """
    if status in never:
        return False
    should = _lower(headers).get("x-should-retry", "").strip().lower()
    if should == "true":
        return True
    if should == "false":
        return False
    return status in retryable


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait.

    ``retry-after-ms`` first (milliseconds), then ``retry-after`` as seconds (a float is fine) or as an HTTP-date.

    Args:
        headers: The response headers (any case).
        now: Unix time to measure an HTTP-date against (default: now).

    Returns:
        Seconds (>= 0), or None when no header is present, or it is invalid or negative.
    """
    lowered = _lower(headers)
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        seconds = _non_negative(raw_ms)
        if seconds is not None:
            return seconds / 1000
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    seconds = _non_negative(raw)
    if seconds is not None:
        return seconds
    try:
        parsed = email.utils.parsedate_tz(raw.strip())
        if parsed is None:
            return None
        delta = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError):  # odd dates have tripped the stdlib parser
        return None
    return float(delta) if delta >= 0 else None


def _non_negative(raw: str) -> float | None:
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def backoff_delay(
    attempt: int, *, base_s: float, max_s: float, rng: random.Random | None = None, jitter: float = 1.0
) -> float:
    """Capped exponential backoff with jitter: ``uniform(cap * (1 - jitter), cap)``, ``cap = min(max_s, base_s *
    2**(attempt-1))``; the default ``jitter=1`` is full jitter, ``uniform(0, cap)``.

    Args:
        attempt: The attempt that just failed, from 1 (values below 1 count as 1).
        base_s: The cap of the first wait.
        max_s: The cap of every wait.
        rng: Source of randomness (tests pass a seeded one).
        jitter: The share of the cap that may be taken off, from 0 (none) to 1 (all).

    Returns:
        Seconds to wait.
    """
    exponent = min(max(attempt, 1) - 1, MAX_BACKOFF_EXPONENT)
    cap = max(min(max_s, base_s * 2**exponent), 0.0)
    return (rng or random).uniform(cap * (1.0 - jitter), cap)


def next_delay(
    attempt: int,
    headers: Mapping[str, str] | None,
    *,
    base_s: float,
    max_s: float,
    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
    too_long: Literal["cap", "ignore"] = "cap",
    jitter: float = 1.0,
) -> float:
    """Seconds to wait before the next attempt: the server's ``Retry-After`` if any, else backoff.

    Args:
        attempt: The attempt that just failed, from 1.
        headers: The failed response's headers, or None (no response: connection error, timeout).
        base_s: Backoff base, as for :func:`backoff_delay`.
        max_s: Backoff cap, as for :func:`backoff_delay`.
        max_retry_after_s: Longest server-requested wait.
        too_long: What a longer one gets: ``"cap"`` waits ``max_retry_after_s``, ``"ignore"`` the backoff.
        jitter: As for :func:`backoff_delay`.

    Returns:
        Seconds to wait.
    """
    retry_after = parse_retry_after(headers) if headers else None
    if retry_after is not None and (too_long == "cap" or retry_after <= max_retry_after_s):
        return min(retry_after, max_retry_after_s)
    return backoff_delay(attempt, base_s=base_s, max_s=max_s, jitter=jitter)
