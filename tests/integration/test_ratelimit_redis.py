"""The limiter's reservations against a real redis-server: FIFO, pacing, the window caps, tokens, cooldown.

Several workers are simulated by threads, each with its own Redis client and RateLimiter, as separate processes
would have. Most checks read the reserved send times (``sleep=False``), so a schedule of many seconds is checked
in well under a second; the few that sleep keep to a few seconds. In-flight slots are in test_ratelimit_inflight.py.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pytest
import redis as redis_lib

from batchq.ratelimit import MAX_RESERVED_TOKENS, Denied, Grant, RateLimiter, RouteLimits

ROUTE = "127.0.0.1:9000/test-model"


def reserve_from_threads(
    redis_url: str, limits: RouteLimits, total: int, *, workers: int = 8, tokens: int = 0, **kwargs: Any
) -> list[Grant]:
    """``total`` reservations (no sleeping) made by ``workers`` threads at once; returns them by send time."""
    grants: list[Grant] = []
    lock = threading.Lock()
    todo = iter(range(total))

    def work() -> None:
        client = redis_lib.Redis.from_url(redis_url)
        limiter = RateLimiter(client, ROUTE, limits, **kwargs)
        try:
            while True:
                with lock:
                    if next(todo, None) is None:
                        return
                answer = limiter.acquire(tokens, max_wait_s=600, sleep=False)
                assert isinstance(answer, Grant), answer
                with lock:
                    grants.append(answer)
        finally:
            client.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(grants, key=lambda g: (g.send_at_ms, g.granted_at_ms))


def max_in_any_window(times_ms: list[float], window_ms: float) -> int:
    """The most sends an upstream counting over any sliding window of ``window_ms`` would see."""
    times_ms = sorted(times_ms)
    best, start = 0, 0
    for end, t in enumerate(times_ms):
        while t - times_ms[start] >= window_ms:
            start += 1
        best = max(best, end - start + 1)
    return best


# --- requests per minute ------------------------------------------------------------------------------------------


def test_reservations_are_fifo_and_evenly_paced_with_the_defaults(redis: redis_lib.Redis, redis_url: str) -> None:
    # Given a route limited to 1,200 rpm with every default (61 s window, burst 1)
    limits = RouteLimits(rpm=1200)
    probe = RateLimiter(redis, ROUTE, limits)
    interval_ms = probe.window_ms / limits.rpm  # 50.8 ms: 1,200 per 61 s
    assert probe.per_second == 21  # 1200 / 60 + 1

    # When 8 workers reserve 400 requests at once (20 s of schedule)
    grants = reserve_from_threads(redis_url, limits, 400)
    sends = [g.send_at_ms for g in grants]

    # Then they are served in arrival order: a later reservation never goes before an earlier one
    made = [g.granted_at_ms for g in grants]
    assert made == sorted(made)
    # And they are evenly spaced at the emission interval after a burst of 2 (the GCRA tolerance of 1 request)
    assert sends[1] - sends[0] < 5
    gaps = [b - a for a, b in zip(sends[2:], sends[3:], strict=False)]
    assert min(gaps) == pytest.approx(interval_ms, abs=0.01)
    assert max(gaps) == pytest.approx(interval_ms, abs=0.01)
    # And no one-second window holds more than rpm/60 + burst, no 61 s window more than rpm
    assert max_in_any_window(sends, 1000) <= 21
    assert max_in_any_window(sends, probe.window_ms) <= limits.rpm
    # And the schedule is as short as the pace allows (>= 98 % of 1,200 per 61 s)
    assert sends[-1] - sends[0] == pytest.approx((400 - 2) * interval_ms, abs=1)


@pytest.mark.parametrize("burst", [0, 1, 3])
def test_no_second_over_the_per_second_share_plus_burst(redis: redis_lib.Redis, redis_url: str, burst: int) -> None:
    # Given 1,190 rpm (19.8 a second, not a whole number), a 60 s window and a burst of 0, 1 or 3
    limits = RouteLimits(rpm=1190)
    limiter = RateLimiter(redis, ROUTE, limits, burst=burst)
    cap = math.floor(1190 / 60 + burst)
    assert limiter.per_second == cap

    # When 300 requests are reserved by 8 workers
    sends = [g.send_at_ms for g in reserve_from_threads(redis_url, limits, 300, burst=burst)]

    # Then no one-second window holds more than floor(rpm/60 + burst), whatever the alignment
    assert max_in_any_window(sends, 1000) <= cap
    # And with a burst of at least 1 that cap never slows the 61 s pace (the schedule is the GCRA's alone)
    if burst >= 1:
        interval_ms = limiter.window_ms / limits.rpm
        assert sends[-1] - sends[0] <= (300 - 1) * interval_ms + 1


def test_sliding_cap_holds_exactly(redis: redis_lib.Redis, redis_url: str) -> None:
    # Given a 2 s window with no guard, 10 requests per window, and a burst so large that only the window log limits
    limits = RouteLimits(rpm=10)
    kwargs: dict[str, Any] = {"window_s": 2.0, "guard_s": 0.0, "burst": 20}
    limiter = RateLimiter(redis, ROUTE, limits, **kwargs)
    first = [limiter.try_acquire() for _ in range(10)]
    assert all(isinstance(g, Grant) for g in first)

    # When one more asks for a send right now
    denied = limiter.try_acquire()

    # Then it is denied for rpm until the oldest leaves the window, and nothing was reserved for it
    assert isinstance(denied, Denied) and denied.reason == "rpm"
    assert 1.9 <= denied.retry_after_s <= 2.0
    assert limiter.stats()["requests_in_window"] == 10

    # When 4 workers reserve 20 more
    later = reserve_from_threads(redis_url, limits, 20, workers=4, **kwargs)

    # Then no 2 s window ever holds more than 10, and each window is used in full (30 in 3 windows)
    times = sorted([g.send_at_ms for g in first if isinstance(g, Grant)] + [g.send_at_ms for g in later])
    assert all(b - a >= 2000 for a, b in zip(times, times[10:], strict=False))
    assert max_in_any_window(times, 2000) == 10
    assert times[-1] - times[0] < 4000 + 50


def test_acquire_sleeps_until_its_slot_and_keeps_the_limit_busy(redis: redis_lib.Redis, redis_url: str) -> None:
    # Given a route limited to 1,200 rpm and a batch of 60 requests taken by 6 workers that each send at once
    limits = RouteLimits(rpm=1200)
    probe = RateLimiter(redis, ROUTE, limits)
    interval_ms = probe.window_ms / limits.rpm
    sent: list[tuple[float, float]] = []  # (reserved send time on the Redis clock, when acquire returned)
    lock = threading.Lock()
    todo = iter(range(60))

    def work() -> None:
        client = redis_lib.Redis.from_url(redis_url)
        limiter = RateLimiter(client, ROUTE, limits)
        try:
            while True:
                with lock:
                    if next(todo, None) is None:
                        return
                answer = limiter.acquire(max_wait_s=10)
                assert isinstance(answer, Grant)
                returned = time.monotonic()
                with lock:
                    sent.append((answer.send_at_ms, returned - answer.send_at))
        finally:
            client.close()

    # When the workers run
    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then each acquire returned at its reserved time (never early, rarely more than a few ms late)
    lateness = sorted(late for _, late in sent)
    assert lateness[0] >= 0
    assert lateness[len(lateness) // 2] < 0.02
    # And the batch took (N - burst) intervals, the whole of the limit
    times = sorted(t for t, _ in sent)
    assert times[-1] - times[0] == pytest.approx((60 - 2) * interval_ms, abs=1)


# --- tokens per minute ---------------------------------------------------------------------------------------------


def test_tokens_are_reserved_and_reconciled(redis: redis_lib.Redis) -> None:
    # Given 1000 tokens per 2 s window
    limiter = RateLimiter(redis, ROUTE, RouteLimits(tpm=1000), window_s=2.0, guard_s=0.0)

    # When 600 tokens are reserved
    first = limiter.try_acquire(600)
    assert isinstance(first, Grant) and first.tokens == 600

    # Then 500 more do not fit until the reservation leaves the window: a reservation waits 2 s
    denied = limiter.try_acquire(500)
    assert isinstance(denied, Denied) and denied.reason == "tpm"
    assert 1.9 <= denied.retry_after_s <= 2.0
    assert limiter.stats()["tokens_in_window"] == 600

    # When the call turns out to have used 100 tokens
    limiter.release(first, actual_tokens=100)

    # Then the 500 unused tokens are refunded, in the window and in the pace: 400 more may go 0.2 s from now
    assert limiter.stats()["tokens_in_window"] == 100
    second = limiter.acquire(400, max_wait_s=1, sleep=False)
    assert isinstance(second, Grant)
    assert 0.1 <= (second.send_at_ms - second.granted_at_ms) / 1000 <= 0.21

    # When a call used more than was reserved
    limiter.release(second, actual_tokens=900)

    # Then the difference is charged, and even a small request waits for the window
    assert limiter.stats()["tokens_in_window"] == 1000
    small = limiter.try_acquire(1)
    assert isinstance(small, Denied) and small.reason == "tpm"

    # When a grant is released again, or released without usage
    limiter.release(second, actual_tokens=0)
    limiter.release(first, actual_tokens=None)

    # Then nothing changes: a release is idempotent
    assert limiter.stats()["tokens_in_window"] == 1000
    assert limiter.stats()["in_flight"] == 0


def test_tokens_are_paced_strictly(redis: redis_lib.Redis) -> None:
    # Given 1000 tokens per 2 s window (500 a second)
    limiter = RateLimiter(redis, ROUTE, RouteLimits(tpm=1000), window_s=2.0, guard_s=0.0)

    # When 5 requests of 250 tokens are reserved in a row
    grants = [limiter.acquire(250, max_wait_s=5, sleep=False) for _ in range(5)]

    # Then each goes 0.5 s (250 tokens of the pace) after the one before: no second holds more than its share
    # plus one request
    assert all(isinstance(g, Grant) for g in grants)
    sends = [g.send_at_ms for g in grants if isinstance(g, Grant)]
    assert [round(b - a) for a, b in zip(sends, sends[1:], strict=False)] == [500, 500, 500, 500]


@pytest.mark.parametrize("usage", [float("inf"), float("nan"), -5, float("1e400"), 2**70, "2e9", "lots", [1], None])
def test_absurd_usage_is_clamped_and_blocks_at_most_one_window(redis: redis_lib.Redis, usage: object) -> None:
    # Given 1000 tokens per 1 s window and one call in progress
    limiter = RateLimiter(redis, ROUTE, RouteLimits(tpm=1000, max_in_flight=1), window_s=1.0, guard_s=0.0)
    grant = limiter.acquire(10, max_wait_s=5, sleep=False)
    assert isinstance(grant, Grant)

    # When the upstream reports an absurd usage (Infinity, NaN, -5, 1e400, 2**70, strings, junk)
    freed = limiter.release(grant, actual_tokens=usage)

    # Then the release neither raises nor leaks the slot, the charge is clamped, and the route is blocked for at
    # most one window (the pace moves by one window's worth at most)
    assert freed is True
    stats = limiter.stats()
    assert stats["in_flight"] == 0
    assert 0 <= stats["tokens_in_window"] <= MAX_RESERVED_TOKENS
    after = limiter.acquire(10, max_wait_s=5, sleep=False)
    assert isinstance(after, Grant)
    assert (after.send_at_ms - after.granted_at_ms) / 1000 <= 1.05


def test_oversized_request_is_reserved_on_an_empty_window_and_not_starved(redis: redis_lib.Redis) -> None:
    # Given 1000 tokens per 2 s window with a small request in the window
    limiter = RateLimiter(redis, ROUTE, RouteLimits(tpm=1000), window_s=2.0, guard_s=0.0)
    assert isinstance(limiter.try_acquire(100), Grant)

    # When a request estimated at more than the whole limit may wait only 1 s
    big = limiter.acquire(1500, max_wait_s=1, sleep=False)

    # Then it is denied until the window empties
    assert isinstance(big, Denied) and big.reason == "too_large"
    assert 1.9 <= big.retry_after_s <= 2.0

    # And meanwhile small requests, which would fit, are held back so they cannot starve it
    small = limiter.try_acquire(50)
    assert isinstance(small, Denied) and small.reason == "too_large"

    # When it may wait long enough
    granted = limiter.acquire(1500, max_wait_s=3.0, sleep=False)

    # Then it is reserved for when the window is empty (never a deadlock), and counts in full
    assert isinstance(granted, Grant) and granted.tokens == 1500
    assert 1.9 <= (granted.send_at_ms - granted.granted_at_ms) / 1000 <= 2.0
    assert limiter.stats()["tokens_in_window"] == 1600


def test_oversized_request_on_an_idle_route_goes_at_once(redis: redis_lib.Redis) -> None:
    # Given an idle route with 1000 tpm
    limiter = RateLimiter(redis, ROUTE, RouteLimits(tpm=1000), window_s=2.0, guard_s=0.0)

    # When a 5000-token request asks
    grant = limiter.try_acquire(5000)

    # Then it is granted, and the next request waits for it to leave the window
    assert isinstance(grant, Grant)
    after = limiter.try_acquire(10)
    assert isinstance(after, Denied) and after.reason == "tpm"


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

        # Then it is granted right after the cooldown (acquire returns at the reserved time)
        assert isinstance(granted, Grant)
        assert 1.3 <= time.monotonic() - start <= 1.8
        assert granted.send_at_ms >= granted.granted_at_ms + 1300
    finally:
        other_client.close()


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
    with pytest.raises(ValueError):
        RateLimiter(redis, ROUTE, RouteLimits(), burst=-1)
    with pytest.raises(ValueError):
        RateLimiter(redis, ROUTE, RouteLimits(), lease_s=0)


def test_a_sender_that_wakes_late_takes_a_new_reservation(redis: redis_lib.Redis) -> None:
    # Given a 1,200 rpm / 1000 tpm route and a reservation whose holder then oversleeps by 0.2 s (a starved thread)
    limiter = RateLimiter(redis, ROUTE, RouteLimits(rpm=1200, tpm=100_000, max_in_flight=4))
    first = limiter.acquire(50, max_wait_s=5, sleep=False)
    others = [limiter.acquire(50, max_wait_s=5, sleep=False) for _ in range(3)]
    assert isinstance(first, Grant) and all(isinstance(g, Grant) for g in others)
    time.sleep(first.delay_s + 0.2)

    # When it goes through sleep_until_send (what acquire does by default)
    again = limiter.sleep_until_send(first, deadline=time.monotonic() + 5)

    # Then it did not send 0.2 s late on top of the others: it took the next free time, after everyone reserved,
    # keeping its slot and its single entry in each log
    assert isinstance(again, Grant) and again.grant_id == first.grant_id
    assert again.send_at_ms > max(g.send_at_ms for g in others if isinstance(g, Grant))
    assert time.monotonic() - again.send_at <= 0.05
    stats = limiter.stats()
    assert stats["in_flight"] == 4 and stats["requests_in_window"] == 4 and stats["tokens_in_window"] == 200

    # And a sender on an unpaced route just goes, however late
    free = RateLimiter(redis, "127.0.0.1:9000/free", RouteLimits(max_in_flight=4))
    grant = free.acquire(max_wait_s=1, sleep=False)
    assert isinstance(grant, Grant)
    time.sleep(0.1)
    assert free.sleep_until_send(grant, deadline=time.monotonic() + 1) is grant
