"""The retry policy of upstream calls, in one place (modelled on openai-python's ``_base_client``).

What to retry (:func:`is_retryable_status`), how long the server asked us to wait (:func:`parse_retry_after`), and
how long to wait otherwise (:func:`backoff_delay`, capped exponential with full jitter); :func:`next_delay` puts the
last two together.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping

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


def is_retryable_status(status: int, headers: Mapping[str, str] | None = None) -> bool:
    """Whether an upstream answer with this status (and these headers) is worth another attempt.

    Order, as in openai-python: 400/401/403/404/422 never; then the server's ``x-should-retry: true|false``; then
    :data:`RETRYABLE_STATUS`.

    Args:
        status: The HTTP status code.
        headers: The response headers (any case), if any.

    Returns:
        True to retry.
    """
    if status in NEVER_RETRY_STATUS:
        return False
    should = _lower(headers).get("x-should-retry", "").strip().lower()
    if should == "true":
        return True
    if should == "false":
        return False
    return status in RETRYABLE_STATUS


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


def backoff_delay(attempt: int, *, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Capped exponential backoff with full jitter: ``uniform(0, min(max_s, base_s * 2**(attempt-1)))``.

    Args:
        attempt: The attempt that just failed, from 1 (values below 1 count as 1).
        base_s: The cap of the first wait.
        max_s: The cap of every wait.
        rng: Source of randomness (tests pass a seeded one).

    Returns:
        Seconds to wait.
    """
    exponent = min(max(attempt, 1) - 1, MAX_BACKOFF_EXPONENT)
    cap = max(min(max_s, base_s * 2**exponent), 0.0)
    return (rng or random).uniform(0, cap)


def next_delay(
    attempt: int,
    headers: Mapping[str, str] | None,
    *,
    base_s: float,
    max_s: float,
    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
) -> float:
    """Seconds to wait before the next attempt: the server's ``Retry-After`` (capped) if any, else backoff.

    Args:
        attempt: The attempt that just failed, from 1.
        headers: The failed response's headers, or None (no response: connection error, timeout).
        base_s: Backoff base, as for :func:`backoff_delay`.
        max_s: Backoff cap, as for :func:`backoff_delay`.
        max_retry_after_s: Cap of a server-requested wait.

    Returns:
        Seconds to wait.
    """
    retry_after = parse_retry_after(headers) if headers else None
    if retry_after is not None:
        return min(retry_after, max_retry_after_s)
    return backoff_delay(attempt, base_s=base_s, max_s=max_s)
