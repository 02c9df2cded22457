"""The retry policy: what is retried, how Retry-After is read, and how backoff grows."""

from __future__ import annotations

import email.utils
import random

import httpx
import pytest

from batchq.retry import (
    NEVER_RETRY_STATUS,
    RETRYABLE_STATUS,
    backoff_delay,
    is_retryable_status,
    next_delay,
    parse_retry_after,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 520, 599])
def test_transient_statuses_are_retried(status: int) -> None:
    assert status in RETRYABLE_STATUS
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 413, 422])
def test_other_statuses_are_not(status: int) -> None:
    assert not is_retryable_status(status)


def test_x_should_retry_overrides_the_status() -> None:
    # Given a server that says what it wants, in any header case
    assert is_retryable_status(413, {"X-Should-Retry": "true"})
    assert not is_retryable_status(503, {"x-should-retry": "false"})
    assert not is_retryable_status(429, httpx.Headers({"X-SHOULD-RETRY": "FALSE"}))
    # And a value that is neither true nor false is ignored
    assert is_retryable_status(503, {"x-should-retry": "maybe"})


@pytest.mark.parametrize("status", sorted(NEVER_RETRY_STATUS))
def test_client_errors_are_never_retried_even_when_asked(status: int) -> None:
    assert not is_retryable_status(status, {"x-should-retry": "true"})


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After-Ms": "250.5", "Retry-After": "9"}, 0.2505),  # milliseconds win
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),  # an invalid ms header falls back
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "0.75"}, 0.75),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({}, None),
        ({"retry-after": "tomorrow"}, None),
        ({"retry-after": "-1"}, None),
        ({"retry-after-ms": "-5"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, None),  # a date in the past
        ({"retry-after": "Mon, 99 Foo 2024 99:99:99 GMT"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == (pytest.approx(expected) if expected is not None else None)


def test_parse_retry_after_takes_httpx_headers() -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": "4"})) == 4.0


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap() -> None:
    # Given a seeded source of randomness
    rng = random.Random(7)

    # When many delays are drawn per attempt
    draws = {
        attempt: [backoff_delay(attempt, base_s=0.5, max_s=4.0, rng=rng) for _ in range(2000)]
        for attempt in (1, 2, 3, 5, 50)
    }

    # Then each is uniform over [0, min(max, base * 2**(attempt - 1))]: full jitter, capped
    for attempt, cap in ((1, 0.5), (2, 1.0), (3, 2.0), (5, 4.0), (50, 4.0)):
        values = draws[attempt]
        assert all(0 <= v <= cap for v in values)
        assert max(values) > 0.95 * cap and min(values) < 0.05 * cap
        assert sum(values) / len(values) == pytest.approx(cap / 2, rel=0.1)


def test_backoff_survives_absurd_attempts() -> None:
    assert 0 <= backoff_delay(10**9, base_s=1, max_s=30) <= 30
    assert 0 <= backoff_delay(0, base_s=1, max_s=30) <= 1
    assert backoff_delay(3, base_s=1, max_s=0) == 0


def test_next_delay_prefers_retry_after_capped() -> None:
    assert next_delay(1, {"retry-after": "7"}, base_s=0.5, max_s=30) == 7.0
    assert next_delay(1, {"retry-after": "99999"}, base_s=0.5, max_s=30) == 3600
    assert next_delay(1, {"retry-after": "100"}, base_s=0.5, max_s=30, max_retry_after_s=60) == 60


def test_next_delay_falls_back_to_backoff() -> None:
    for headers in (None, {}, {"retry-after": "junk"}):
        assert 0 <= next_delay(4, headers, base_s=0.5, max_s=30) <= 4.0


def test_callers_may_choose_their_statuses() -> None:
    # Given the client's choice: no status is beyond x-should-retry, and 409 is not retried by default
    client = {"retryable": frozenset({408, 429, 500, 503}), "never": frozenset[int]()}
    assert is_retryable_status(400, {"x-should-retry": "true"}, **client)
    assert not is_retryable_status(400, {"x-should-retry": "true"})
    assert not is_retryable_status(409, **client) and is_retryable_status(409)
    assert is_retryable_status(503, **client) and not is_retryable_status(503, {"x-should-retry": "false"}, **client)


def test_partial_jitter_keeps_the_top_of_the_range() -> None:
    rng = random.Random(7)
    values = [backoff_delay(2, base_s=0.5, max_s=8, rng=rng, jitter=0.25) for _ in range(2000)]
    assert all(0.75 <= v <= 1.0 for v in values)
    assert min(values) < 0.76 and max(values) > 0.99
    assert [backoff_delay(3, base_s=1, max_s=8, jitter=0.0) for _ in range(3)] == [4.0, 4.0, 4.0]


def test_next_delay_can_ignore_a_too_long_retry_after() -> None:
    def delay(attempt: int, headers: dict[str, str] | None) -> float:
        return next_delay(
            attempt, headers, base_s=0.5, max_s=8.0, max_retry_after_s=60.0, too_long="ignore", jitter=0.25
        )

    assert delay(1, {"retry-after": "60"}) == 60.0
    assert 0.375 <= delay(1, {"retry-after": "3600"}) <= 0.5
    assert 0.75 <= delay(2, None) <= 1.0
