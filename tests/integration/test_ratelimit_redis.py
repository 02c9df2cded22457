"""The global limiter against a real redis-server: pacing, the sliding cap, tokens, in-flight, cooldown.

Several workers are simulated by threads, each with its own Redis client and RateLimiter, as separate processes
would have. Short windows keep every scenario to a few seconds.
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Any

import pytest
import redis as redis_lib
from hypothesis import given, settings
from hypothesis import strategies as st

from batchq import keys
from batchq.ratelimit import (
    DEFAULT_COMPLETION_TOKENS,
    MEDIA_PART_TOKENS,
    Denied,
    Grant,
    RateLimiter,
    RouteLimits,
    estimate_tokens,
)

ROUTE = "127.0.0.1:9000/test-model"


def hammer(
    redis_url: str, limits: RouteLimits, seconds: float, *, workers: int = 4, tokens: int = 0, **kwargs: Any
) -> list[Grant]:
    """Every worker calls try_acquire in a tight loop (0-2 ms apart) for ``seconds``; returns all grants, in order."""
    grants: list[Grant] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def work() -> None:
        client = redis_lib.Redis.from_url(redis_url)
        limiter = RateLimiter(client, ROUTE, limits, **kwargs)
        try:
            while time.monotonic() < deadline:
                answer = limiter.try_acquire(tokens)
                if isinstance(answer, Grant):
                    with lock:
                        grants.append(answer)
                time.sleep(random.uniform(0, 0.002))
        finally:
            client.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(grants, key=lambda g: g.granted_at_ms)


def max_in_any_window(times_ms: list[int], window_ms: int) -> int:
    """The most grants an upstream counting over any sliding window of ``window_ms`` would see."""
    best, start = 0, 0
    for end, t in enumerate(times_ms):
        while t - times_ms[start] >= window_ms:
            start += 1
        best = max(best, end - start + 1)
    return best


# --- requests per minute ------------------------------------------------------------------------------------------


def test_rpm_grants_are_evenly_paced_across_workers(redis: redis_lib.Redis, redis_url: str) -> None:
    # Given a route limited to 600 rpm with the production window (60 s + 1 s guard)
    limits = RouteLimits(rpm=600)
    probe = RateLimiter(redis, ROUTE, limits)
    interval_ms = probe.window_ms / limits.rpm  # 101.7 ms: 600 per 61 s
    burst = 1 + math.floor(probe.burst_ms / interval_ms)

    # When 4 workers hammer try_acquire for 3 s
    grants = hammer(redis_url, limits, 3.0)

    # Then the grants after the initial burst are evenly spaced at the emission interval: none runs ahead of the
    # schedule, the typical gap is the interval, and there are no silences (a late grant lets the next one catch up)
    times = [g.granted_at_ms for g in grants]
    assert times[burst - 1] - times[0] < interval_ms, "the burst goes at once"
    assert all(t >= times[0] + i * interval_ms - probe.burst_ms - 1 for i, t in enumerate(times))
    steady = [b - a for a, b in zip(times[burst:], times[burst + 1 :], strict=False)]
    assert len(steady) >= 15
    assert sorted(steady)[len(steady) // 2] == pytest.approx(interval_ms, abs=3)
    assert sum(steady) / len(steady) == pytest.approx(interval_ms, rel=0.03)
    assert max(steady) <= 3 * interval_ms
    # And the number granted is what the rate allows: the burst plus one per interval (>= 95 % utilization)
    elapsed_ms = times[-1] - times[burst - 1]
    assert len(grants) - burst >= 0.95 * elapsed_ms / interval_ms
    assert len(grants) <= burst + 3000 / interval_ms + 1
    # And an upstream counting any 61 s window sees no more than rpm (trivially, but the numbers are checked)
    assert max_in_any_window(times, probe.window_ms) <= limits.rpm


def test_acquire_keeps_the_limit_busy(redis: redis_lib.Redis, redis_url: str) -> None:
    # Given a route limited to 1200 rpm (one request per 50.8 ms after a burst of 21), and a batch of 70 requests
    limits = RouteLimits(rpm=1200)
    probe = RateLimiter(redis, ROUTE, limits)
    interval_ms = probe.window_ms / limits.rpm
    burst = 1 + math.floor(probe.burst_ms / interval_ms)
    total, taken = 70, []
    claimed = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal claimed
        client = redis_lib.Redis.from_url(redis_url)
        limiter = RateLimiter(client, ROUTE, limits)
        try:
            while True:
                with lock:
                    if claimed >= total:
                        return
                    claimed += 1
                answer = limiter.acquire(max_wait_s=10)
                assert isinstance(answer, Grant)
                with lock:
                    taken.append(answer.granted_at_ms)
        finally:
            client.close()

    # When 4 workers take them with acquire(), which sleeps (with jitter) as the limiter tells it
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then the batch takes about (N - burst) intervals: never less, and no more than 1 / 0.95 of that
    times = sorted(taken)
    assert len(times) == total
    span_ms = times[-1] - times[0]
    ideal_ms = (total - burst) * interval_ms
    assert span_ms >= (total - 1) * interval_ms - probe.burst_ms - 1
    assert ideal_ms / span_ms >= 0.95


def test_sliding_cap_holds_exactly(redis: redis_lib.Redis, redis_url: str) -> None:
    # Given a 2 s window with no guard, 10 requests per window, and a burst tolerance so large that only the
    # sliding-window log limits
    limits = RouteLimits(rpm=10)
    kwargs: dict[str, Any] = {"window_s": 2.0, "guard_s": 0.0, "burst_s": 10.0}
    limiter = RateLimiter(redis, ROUTE, limits, **kwargs)
    first = [limiter.try_acquire() for _ in range(10)]
    assert all(isinstance(g, Grant) for g in first)

    # When one more is asked for at once
    denied = limiter.try_acquire()

    # Then it is denied for rpm until the oldest grant leaves the window
    assert isinstance(denied, Denied) and denied.reason == "rpm"
    assert 1.9 <= denied.retry_after_s <= 2.0

    # When 4 workers hammer it for the next 4.5 s
    later = hammer(redis_url, limits, 4.5, **kwargs)

    # Then no 2 s window ever holds more than 10 grants, and each window is used in full (30 in 3 windows)
    times = sorted([g.granted_at_ms for g in first if isinstance(g, Grant)] + [g.granted_at_ms for g in later])
    assert all(b - a >= 2000 for a, b in zip(times, times[10:], strict=False))
    assert max_in_any_window(times, 2000) == 10
    assert len(times) == 30


def test_pacing_and_cap_together_with_a_guard(redis: redis_lib.Redis, redis_url: str) -> None:
    # Given 20 requests per 1.5 s window plus a 0.5 s guard, paced every 100 ms with a burst of 11
    limits = RouteLimits(rpm=20)

    # When 4 workers hammer it for 3 s
    grants = hammer(redis_url, limits, 3.0, window_s=1.5, guard_s=0.5, burst_s=1.0)

    # Then no window of window + guard holds more than 20 (so an upstream up to 0.5 s late still sees <= 20 in any
    # 1.5 s), although the burst plus the pace would have allowed more; and every window is used in full
    times = [g.granted_at_ms for g in grants]
    assert max_in_any_window(times, 2000) == 20
    assert all(b - a >= 2000 for a, b in zip(times, times[20:], strict=False))
    assert len(times) >= 38


# --- tokens per minute ---------------------------------------------------------------------------------------------


def test_tokens_are_reserved_and_reconciled(redis: redis_lib.Redis) -> None:
    # Given 1000 tokens per 2 s window, limited by the window log only (large burst tolerance)
    limiter = RateLimiter(redis, ROUTE, RouteLimits(tpm=1000), window_s=2.0, guard_s=0.0, burst_s=10.0)

    # When 600 tokens are reserved
    first = limiter.try_acquire(600)
    assert isinstance(first, Grant) and first.tokens == 600

    # Then 500 more do not fit, until the reservation leaves the window
    denied = limiter.try_acquire(500)
    assert isinstance(denied, Denied) and denied.reason == "tpm"
    assert 1.9 <= denied.retry_after_s <= 2.0
    assert limiter.stats()["tokens_in_window"] == 600

    # When the call turns out to have used 100 tokens
    limiter.release(first, actual_tokens=100)

    # Then the 500 unused tokens are refunded, and the 500 fit now
    assert limiter.stats()["tokens_in_window"] == 100
    second = limiter.try_acquire(500)
    assert isinstance(second, Grant)

    # When a call used more than was reserved
    limiter.release(second, actual_tokens=900)

    # Then the difference is charged, and even a small request waits
    assert limiter.stats()["tokens_in_window"] == 1000
    small = limiter.try_acquire(1)
    assert isinstance(small, Denied) and small.reason == "tpm"

    # When a grant is released again, or released without usage
    limiter.release(second, actual_tokens=0)
    limiter.release(first, actual_tokens=None)

    # Then nothing changes: a release is idempotent
    assert limiter.stats()["tokens_in_window"] == 1000
    assert limiter.stats()["in_flight"] == 0


def test_token_pacing_follows_refunds(redis: redis_lib.Redis) -> None:
    # Given 1000 tokens per 2 s window, paced with the default burst (about 17 tokens)
    limiter = RateLimiter(redis, ROUTE, RouteLimits(tpm=1000), window_s=2.0, guard_s=0.0)

    # When 500 tokens are granted
    grant = limiter.try_acquire(500)
    assert isinstance(grant, Grant)

    # Then the next 100 wait for the pace (500 tokens = 1 s of the rate), though the window has room
    denied = limiter.try_acquire(100)
    assert isinstance(denied, Denied) and denied.reason == "tpm"
    assert 0.9 <= denied.retry_after_s <= 1.0

    # When the call used none of them
    limiter.release(grant, actual_tokens=0)

    # Then the pace is refunded too and the next request goes at once
    assert isinstance(limiter.try_acquire(100), Grant)


def test_oversized_request_is_granted_on_an_empty_window_and_not_starved(redis: redis_lib.Redis) -> None:
    # Given 1000 tokens per 2 s window (window log only) with a small request in the window
    limiter = RateLimiter(redis, ROUTE, RouteLimits(tpm=1000), window_s=2.0, guard_s=0.0, burst_s=10.0)
    assert isinstance(limiter.try_acquire(100), Grant)

    # When a request estimated at more than the whole limit asks
    big = limiter.try_acquire(1500)

    # Then it waits for the window to empty
    assert isinstance(big, Denied) and big.reason == "too_large"
    assert 1.9 <= big.retry_after_s <= 2.0

    # And meanwhile small requests, which would fit, are held back so they cannot starve it
    small = limiter.try_acquire(100)
    assert isinstance(small, Denied) and small.reason == "tpm"

    # When it waits
    start = time.monotonic()
    granted = limiter.acquire(1500, max_wait_s=3.0)

    # Then it is granted once the window is empty (never a deadlock), and counts in full
    assert isinstance(granted, Grant) and granted.tokens == 1500
    assert 1.7 <= time.monotonic() - start <= 2.5
    assert limiter.stats()["tokens_in_window"] == 1500


def test_oversized_request_on_an_idle_route_goes_at_once(redis: redis_lib.Redis) -> None:
    # Given an idle route with 1000 tpm
    limiter = RateLimiter(redis, ROUTE, RouteLimits(tpm=1000), window_s=2.0, guard_s=0.0)

    # When a 5000-token request asks
    grant = limiter.try_acquire(5000)

    # Then it is granted, and the next request waits for it to leave the window
    assert isinstance(grant, Grant)
    after = limiter.try_acquire(10)
    assert isinstance(after, Denied) and after.reason == "tpm"


# --- in flight -----------------------------------------------------------------------------------------------------


def test_in_flight_cap_and_lease_expiry(redis: redis_lib.Redis) -> None:
    # Given at most 2 requests in flight, with a 0.5 s lease
    limiter = RateLimiter(redis, ROUTE, RouteLimits(max_in_flight=2), lease_s=0.5)
    first, second = limiter.try_acquire(), limiter.try_acquire()
    assert isinstance(first, Grant) and isinstance(second, Grant)

    # When a third asks
    third = limiter.try_acquire()

    # Then it is denied for in_flight, with a short poll interval
    assert isinstance(third, Denied) and third.reason == "in_flight"
    assert 0 < third.retry_after_s <= 0.05
    assert limiter.stats()["in_flight"] == 2

    # When one call ends
    limiter.release(first)

    # Then its slot is free
    third = limiter.try_acquire()
    assert isinstance(third, Grant)

    # When the two holders die without releasing
    assert isinstance(limiter.try_acquire(), Denied)
    time.sleep(0.6)

    # Then their leases run out and both slots are free again
    assert limiter.stats()["in_flight"] == 0
    assert isinstance(limiter.try_acquire(), Grant) and isinstance(limiter.try_acquire(), Grant)


def test_unlimited_route_grants_everything_and_tracks_in_flight(redis: redis_lib.Redis) -> None:
    # Given a route with no limits
    limiter = RateLimiter(redis, ROUTE, RouteLimits())

    # When 100 requests ask
    grants = [limiter.try_acquire(10_000) for _ in range(100)]

    # Then all are granted, reserve no tokens, and are counted in flight until released
    assert all(isinstance(g, Grant) and g.tokens == 0 for g in grants)
    assert limiter.stats()["in_flight"] == 100
    for g in grants:
        assert isinstance(g, Grant)
        limiter.release(g, actual_tokens=123)
    assert limiter.stats() == {
        "in_flight": 0,
        "requests_in_window": 0,
        "tokens_in_window": 0,
        "cooldown_remaining_s": 0,
    }


# --- cooldown ------------------------------------------------------------------------------------------------------


def test_cooldown_blocks_every_worker_and_never_shortens(redis: redis_lib.Redis, redis_url: str) -> None:
    # Given two workers on one route, and a worker on another route
    other_client = redis_lib.Redis.from_url(redis_url)
    try:
        worker_a = RateLimiter(redis, ROUTE, RouteLimits(rpm=1000))
        worker_b = RateLimiter(other_client, ROUTE, RouteLimits(rpm=1000))
        elsewhere = RateLimiter(redis, "127.0.0.1:9001/other", RouteLimits(rpm=1000))

        # When worker A sees a 429 and cools the route down for 1 s
        worker_a.cooldown(1.0)

        # Then both workers of the route are held back, and the other route is not
        for worker in (worker_a, worker_b):
            answer = worker.try_acquire()
            assert isinstance(answer, Denied) and answer.reason == "cooldown"
            assert 0.9 <= answer.retry_after_s <= 1.0
        assert isinstance(elsewhere.try_acquire(), Grant)

        # When worker B asks for a shorter cooldown, then for a longer one
        worker_b.cooldown(0.2)
        assert worker_a.stats()["cooldown_remaining_s"] > 0.8
        worker_b.cooldown(1.5)

        # Then the shorter one changed nothing, and the longer one extended it
        assert 1.4 <= worker_a.stats()["cooldown_remaining_s"] <= 1.5

        # When a worker will wait at most 0.1 s
        start = time.monotonic()
        gave_up = worker_a.acquire(max_wait_s=0.1)

        # Then it gives up at once (no pointless sleep) and says how long is left
        assert isinstance(gave_up, Denied) and gave_up.reason == "cooldown"
        assert gave_up.retry_after_s > 1.3
        assert time.monotonic() - start < 0.05

        # When a worker may wait long enough
        granted = worker_b.acquire(max_wait_s=3.0)

        # Then it is granted right after the cooldown
        assert isinstance(granted, Grant)
        assert 1.3 <= time.monotonic() - start <= 1.8
    finally:
        other_client.close()


def test_every_key_lives_under_the_route_prefix_and_expires(redis: redis_lib.Redis) -> None:
    # Given a limited route that has been used
    limiter = RateLimiter(redis, ROUTE, RouteLimits(rpm=100, tpm=1000, max_in_flight=5), window_s=2.0, guard_s=0.0)
    grant = limiter.try_acquire(100)
    assert isinstance(grant, Grant)
    limiter.cooldown(0.5)

    # Then every key sits under keys.rate_limit(route) and has a TTL (an idle route leaves nothing behind)
    prefix = keys.rate_limit(ROUTE).encode()
    names = redis.keys("*")
    assert names and all(name.startswith(prefix + b":") for name in names)
    assert all(redis.pttl(name) > 0 for name in names)


def test_works_with_decoded_responses(redis_url: str, redis: redis_lib.Redis) -> None:
    # Given a client that decodes responses to str
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    try:
        limiter = RateLimiter(client, ROUTE, RouteLimits(rpm=1), window_s=2.0, guard_s=0.0)

        # When two requests ask
        first, second = limiter.try_acquire(), limiter.try_acquire()

        # Then the answers are the same as with bytes
        assert isinstance(first, Grant)
        assert isinstance(second, Denied) and second.reason == "rpm"
    finally:
        client.close()


def test_rejects_nonsense_settings(redis: redis_lib.Redis) -> None:
    with pytest.raises(ValueError):
        RateLimiter(redis, ROUTE, RouteLimits(rpm=-1))
    with pytest.raises(ValueError):
        RateLimiter(redis, ROUTE, RouteLimits(), window_s=0)


# --- estimate_tokens (pure) ----------------------------------------------------------------------------------------


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
