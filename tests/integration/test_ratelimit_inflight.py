"""The limiter's in-flight slots against a real redis-server: the cap under many threads, FIFO handoff, leases that
lapse and renewals that keep them, cap changes between deployments, pipelines, and Redis commands per request.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis as redis_lib

from batchq import keys, lua
from batchq.pipeline.leases import Heartbeat
from batchq.ratelimit import Denied, Grant, RateLimiter, RouteLimits
from batchq.state import LineState
from tests.servers import wait_for

ROUTE = "127.0.0.1:9000/test-model"


def command_calls(client: redis_lib.Redis) -> int:
    """Every command Redis ran so far (those inside Lua scripts included), from INFO commandstats."""
    stats: dict[str, Any] = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config"))


def run_holders(
    redis_url: str, limits: RouteLimits, *, threads: int, requests: int, hold_s: float, **kwargs: Any
) -> dict[str, Any]:
    """``threads`` workers take ``requests`` grants in all (acquire, hold ``hold_s``, release); returns what
    happened: the most held at once, the grants and denials, and the order slots were handed out in."""
    lock = threading.Lock()
    state: dict[str, Any] = {"held": 0, "max_held": 0, "granted": 0, "denied": [], "order": []}
    todo = iter(range(requests))
    clients = [redis_lib.Redis.from_url(redis_url) for _ in range(threads)]

    def work(client: redis_lib.Redis) -> None:
        limiter = RateLimiter(client, ROUTE, limits, **kwargs)
        while True:
            with lock:
                if next(todo, None) is None:
                    return
            answer = limiter.acquire(max_wait_s=60)
            if isinstance(answer, Denied):
                with lock:
                    state["denied"].append(answer)
                continue
            with lock:
                state["held"] += 1
                state["granted"] += 1
                state["max_held"] = max(state["max_held"], state["held"])
            time.sleep(hold_s)
            with lock:
                state["held"] -= 1
            limiter.release(answer)

    workers = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    for c in clients:
        c.close()
    return state


def test_in_flight_never_exceeds_the_cap_under_200_threads(redis: redis_lib.Redis, redis_url: str) -> None:
    # Given a cap of 16 in flight and 200 threads, each with its own connection, taking 600 grants of 20 ms
    limits = RouteLimits(max_in_flight=16)
    before = command_calls(redis)

    # When they all run at once (most of them wait in the queue the whole time)
    started = time.monotonic()
    state = run_holders(redis_url, limits, threads=200, requests=600, hold_s=0.02)
    elapsed = time.monotonic() - started

    # Then never more than 16 were held at once, all 600 were granted, and the cap was used (ideal 0.75 s)
    per_request = (command_calls(redis) - before) / 600
    print(f"\n200 threads, cap 16: {elapsed:.2f}s, max held {state['max_held']}, {per_request:.1f} commands/request")
    assert state["max_held"] <= 16
    assert state["granted"] == 600 and not state["denied"]
    assert state["max_held"] == 16
    assert elapsed < 20, "a stall (the ideal is 0.75 s; a loaded machine takes a few seconds)"
    # And waiting cost no polling: the Redis commands per request stay bounded whatever the number of waiters
    assert per_request <= 30
    assert RateLimiter(redis, ROUTE, limits).stats()["in_flight"] == 0


def test_waiters_are_served_in_arrival_order(redis: redis_lib.Redis, redis_url: str) -> None:
    # Given a cap of 1, held
    limits = RouteLimits(max_in_flight=1)
    limiter = RateLimiter(redis, ROUTE, limits)
    holder = limiter.acquire(max_wait_s=1)
    assert isinstance(holder, Grant)
    order: list[int] = []
    clients = [redis_lib.Redis.from_url(redis_url) for _ in range(5)]

    def wait_in_line(i: int) -> None:
        mine = RateLimiter(clients[i], ROUTE, limits)
        grant = mine.acquire(max_wait_s=10)
        assert isinstance(grant, Grant)
        order.append(i)
        time.sleep(0.02)
        mine.release(grant)

    # When five waiters queue up one after the other, then the holder releases
    threads = []
    for i in range(5):
        threads.append(threading.Thread(target=wait_in_line, args=(i,)))
        threads[-1].start()
        deadline = time.monotonic() + 5
        while limiter.stats()["waiters"] < i + 1 and time.monotonic() < deadline:
            time.sleep(0.005)
    assert limiter.stats()["waiters"] == 5
    limiter.release(holder)
    for t in threads:
        t.join()
    for c in clients:
        c.close()

    # Then they got the slot in the order they arrived
    assert order == [0, 1, 2, 3, 4]


def test_a_dead_holders_slot_comes_back_after_its_lease(redis: redis_lib.Redis) -> None:
    # Given a cap of 1 with a 0.5 s lease, held by a worker that dies without releasing
    limiter = RateLimiter(redis, ROUTE, RouteLimits(max_in_flight=1), lease_s=0.5)
    dead = limiter.acquire(max_wait_s=1)
    assert isinstance(dead, Grant)

    # When another worker waits for a slot
    started = time.monotonic()
    grant = limiter.acquire(max_wait_s=3)

    # Then it gets the slot once the lease lapses, without anyone releasing or reaping
    assert isinstance(grant, Grant)
    assert 0.4 <= time.monotonic() - started <= 1.0

    # And the dead holder's late release (or renewal) is harmless: the new holder keeps its slot
    assert limiter.release(dead) is False
    assert limiter.renew([dead, grant]) == [False, True]
    assert limiter.stats()["in_flight"] == 1
    assert isinstance(limiter.try_acquire(), Denied)


def test_renew_keeps_a_slot_and_reap_returns_a_lapsed_one(redis: redis_lib.Redis) -> None:
    # Given a cap of 1 with a 0.5 s lease, held by a worker whose heartbeat renews it every 0.15 s
    limiter = RateLimiter(redis, ROUTE, RouteLimits(max_in_flight=1), lease_s=0.5)
    grant = limiter.acquire(max_wait_s=1)
    assert isinstance(grant, Grant)
    stop = threading.Event()
    renewed: list[list[bool]] = []

    def heartbeat() -> None:
        while not stop.wait(0.15):
            renewed.append(limiter.renew([grant]))

    beat = threading.Thread(target=heartbeat)
    beat.start()
    try:
        # When another worker waits 1.2 s, more than twice the lease
        started = time.monotonic()
        answer = limiter.acquire(max_wait_s=1.2)

        # Then it is denied after its whole wait: the renewed slot never lapsed
        assert isinstance(answer, Denied) and answer.reason == "in_flight"
        assert time.monotonic() - started >= 1.15
        assert renewed and all(flags == [True] for flags in renewed)
    finally:
        stop.set()
        beat.join()

    # When the heartbeat stops (the worker died) and the lease runs out
    time.sleep(0.6)

    # Then reap() (the sweeper's call) reclaims the slot
    assert limiter.reap() == 1
    assert limiter.stats()["in_flight"] == 0
    assert limiter.renew([grant]) == [False]


def test_changing_max_in_flight_between_deployments_neither_leaks_nor_mints(redis: redis_lib.Redis) -> None:
    # Given an old deployment (cap 4) holding 4 slots
    old = RateLimiter(redis, ROUTE, RouteLimits(max_in_flight=4))
    held = [old.acquire(max_wait_s=1) for _ in range(4)]
    assert all(isinstance(g, Grant) for g in held)

    # When a new deployment with cap 2 asks
    new = RateLimiter(redis, ROUTE, RouteLimits(max_in_flight=2))
    assert isinstance(new.try_acquire(), Denied)

    # Then it gets a slot only once fewer than 2 are in flight
    for g in held[:2]:
        assert isinstance(g, Grant)
        old.release(g)
    assert isinstance(new.try_acquire(), Denied)
    assert isinstance(held[2], Grant)
    old.release(held[2])
    mine = new.try_acquire()
    assert isinstance(mine, Grant)

    # And a deployment with a higher cap (6) uses the room at once
    bigger = RateLimiter(redis, ROUTE, RouteLimits(max_in_flight=6))
    more = [bigger.try_acquire() for _ in range(4)]
    assert all(isinstance(g, Grant) for g in more)
    assert isinstance(bigger.try_acquire(), Denied)

    # And once everything is released nothing is left counted
    for g in [held[3], mine, *more]:
        assert isinstance(g, Grant)
        bigger.release(g)
    assert bigger.stats()["in_flight"] == 0


def test_release_and_renew_ride_on_a_pipeline(redis: redis_lib.Redis) -> None:
    # Given two grants of a tpm- and in-flight-limited route
    limiter = RateLimiter(redis, ROUTE, RouteLimits(tpm=1000, max_in_flight=2), window_s=2.0, guard_s=0.0)
    first, second = limiter.acquire(300, max_wait_s=1), limiter.acquire(200, max_wait_s=1)
    assert isinstance(first, Grant) and isinstance(second, Grant)

    # When the outcome of the first is recorded in the same round trip as its release and the other's renewal
    pipe = redis.pipeline(transaction=False)
    pipe.hset("outcome", "line-1", "ok")
    limiter.release_on(pipe, first, actual_tokens=100)
    limiter.renew_on(pipe, [second])
    replies = pipe.execute()

    # Then all three ran: the slot is free, the tokens reconciled, the other lease renewed
    assert replies == [1, 1, [1]]
    assert limiter.stats()["in_flight"] == 1 and limiter.stats()["tokens_in_window"] == 300

    # And a second release on a pipeline is harmless
    pipe = redis.pipeline(transaction=False)
    limiter.release_on(pipe, first, actual_tokens=float("inf"))
    assert pipe.execute() == [0]
    assert limiter.stats()["tokens_in_window"] == 300


def test_every_key_lives_under_the_route_prefix_and_expires(redis: redis_lib.Redis, redis_url: str) -> None:
    # Given a fully limited route with a holder and a waiter that gave up
    limiter = RateLimiter(redis, ROUTE, RouteLimits(rpm=100, tpm=1000, max_in_flight=1), window_s=2.0, guard_s=0.0)
    grant = limiter.try_acquire(100)
    assert isinstance(grant, Grant)
    assert isinstance(limiter.acquire(10, max_wait_s=0.1), Denied)
    limiter.cooldown(0.5)

    # Then every key sits under keys.rate_limit(route) and has a TTL (an idle route leaves nothing behind)
    prefix = keys.rate_limit(ROUTE).encode()
    names = redis.keys("*")
    assert names and all(name.startswith(prefix + b":") for name in names)
    assert all(redis.pttl(name) > 0 for name in names)
    assert limiter.stats()["waiters"] == 0


def test_unlimited_route_grants_everything_and_tracks_in_flight(redis: redis_lib.Redis) -> None:
    # Given a route with no limits
    limiter = RateLimiter(redis, ROUTE, RouteLimits())

    # When 100 requests ask
    grants = [limiter.try_acquire(10_000) for _ in range(100)]

    # Then all are granted at once, reserve no tokens, and are counted in flight until released
    assert all(isinstance(g, Grant) and g.tokens == 0 and g.send_at_ms == g.granted_at_ms for g in grants)
    assert limiter.stats()["in_flight"] == 100
    for g in grants:
        assert isinstance(g, Grant)
        limiter.release(g, actual_tokens=123)
    assert limiter.stats() == {
        "in_flight": 0,
        "requests_in_window": 0,
        "tokens_in_window": 0,
        "cooldown_remaining_s": 0,
        "waiters": 0,
        "reserved_ahead_s": 0,
    }


def test_the_heartbeat_renews_a_grant_while_held_and_lets_go_after(redis: redis_lib.Redis) -> None:
    # Given a cap of 1 with a 0.5 s lease, and a process heartbeat beating every 0.15 s
    limiter = RateLimiter(redis, ROUTE, RouteLimits(max_in_flight=1), lease_s=0.5)
    keeper = Heartbeat(redis, LineState(redis), 0.5, interval_s=0.15)

    grant = limiter.acquire(max_wait_s=1)
    assert isinstance(grant, Grant)

    # When the call runs for 1.2 s under the keeper while another worker waits 1 s
    with keeper.holding_grant(limiter, grant):
        answer = limiter.acquire(max_wait_s=1.0)

        # Then the slot was never lost
        assert isinstance(answer, Denied) and answer.reason == "in_flight"

    # When the block has ended without a release (the holder is gone)
    started = time.monotonic()
    taken = limiter.acquire(max_wait_s=2)

    # Then renewals have stopped and the slot comes back within one lease
    assert isinstance(taken, Grant)
    assert time.monotonic() - started <= 0.8


def test_a_waiter_that_died_in_the_queue_holds_its_handed_over_slot_only_briefly(
    redis: redis_lib.Redis, redis_url: str
) -> None:
    # Given a cap of 1 with the default 30 s lease, held, and a waiter that queues and then dies (its BLPOP is
    # cut short: here a second client joins the queue and never comes back)
    limiter = RateLimiter(redis, ROUTE, RouteLimits(max_in_flight=1))
    holder = limiter.acquire(max_wait_s=1)
    assert isinstance(holder, Grant)
    ghost_client = redis_lib.Redis.from_url(redis_url)
    ghost = RateLimiter(ghost_client, ROUTE, RouteLimits(max_in_flight=1))
    reply = ghost._call(ghost._acquire, "ghost", 0, 30_000, *ghost._acquire_extra(False))
    assert lua.fields(reply)["verdict"] == b"queued"
    ghost_client.close()

    # When the holder releases, the slot is handed to the dead waiter
    limiter.release(holder)
    assert limiter.stats()["in_flight"] == 1

    # Then the next worker gets it once the short handoff lease (5 s) lapses, not after the whole 30 s lease
    started = time.monotonic()
    grant = limiter.acquire(max_wait_s=10)
    assert isinstance(grant, Grant)
    assert 3 <= time.monotonic() - started <= 6.5


@pytest.mark.parametrize("threads", [64, 256])
def test_commands_per_request_stay_bounded_under_an_rpm_limit(
    redis: redis_lib.Redis, redis_url: str, threads: int
) -> None:
    # Given 6,000 rpm (98 a second over the 61 s window) and 16 in flight, and 64 or 256 threads taking 400 grants
    # of 20 ms (4 s of pace)
    limits = RouteLimits(rpm=6000, max_in_flight=16)
    before = command_calls(redis)

    # When they run (almost all of them wait: in the queue for a slot, then for their reserved time)
    state = run_holders(redis_url, limits, threads=threads, requests=400, hold_s=0.02)

    # Then every grant was taken, and waiting cost the same few commands whatever the number of waiters (the
    # polling limiter this replaced ran 154 and 181 a request in this scenario)
    per_request = (command_calls(redis) - before) / 400
    print(f"\n{threads} threads, 6,000 rpm, cap 16: {per_request:.1f} commands/request")
    assert state["granted"] == 400 and state["max_held"] <= 16
    assert per_request <= 45


def test_a_waiter_whose_handed_over_slot_lapsed_before_it_came_takes_a_slot_again(redis: redis_lib.Redis) -> None:
    # Given a cap of 1 with a 0.5 s lease (so the handoff lease is 0.5 s too), held, and a queued waiter
    limiter = RateLimiter(redis, ROUTE, RouteLimits(max_in_flight=1), lease_s=0.5)
    holder = limiter.acquire(max_wait_s=1)
    assert isinstance(holder, Grant)
    queued = limiter._call(limiter._acquire, "slow", 0, 10_000, *limiter._acquire_extra(False))
    assert lua.fields(queued)["verdict"] == b"queued"

    # When the slot is handed over but the waiter is too slow to take it (a starved thread)
    limiter.release(holder)
    time.sleep(0.6)

    # Then its late claim does not count a lapsed slot as held: it takes a free one the normal way (here at once)
    claim = limiter._call(limiter._acquire, "slow", 0, 5_000, *limiter._acquire_extra(True))
    answer = limiter._settle("slow", 0, claim, time.monotonic() + 5)
    assert isinstance(answer, Grant) and answer.grant_id == "slow"
    assert limiter.stats()["in_flight"] == 1 and limiter.stats()["waiters"] == 0


def test_a_waiter_interrupted_while_blocked_leaves_the_queue(
    redis: redis_lib.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a cap of 1, held, and a waiter whose blocking read fails (connection cut, shutdown, time limit)
    limiter = RateLimiter(redis, ROUTE, RouteLimits(max_in_flight=1))
    holder = limiter.acquire(max_wait_s=1)
    assert isinstance(holder, Grant)
    client = redis_lib.Redis.from_url(redis_url)
    waiter = RateLimiter(client, ROUTE, RouteLimits(max_in_flight=1))

    def cut(*args: Any, **kwargs: Any) -> None:
        raise redis_lib.ConnectionError("connection cut")

    monkeypatch.setattr(client, "blpop", cut)

    # When it waits
    with pytest.raises(redis_lib.ConnectionError):
        waiter.acquire(max_wait_s=5)

    # Then the error reaches the caller, and the waiter left the queue: a release does not hand it the slot
    assert limiter.stats()["waiters"] == 0
    limiter.release(holder)
    assert limiter.stats()["in_flight"] == 0
    client.close()


def test_a_dead_holders_slot_comes_back_within_the_default_lease(redis: redis_lib.Redis) -> None:
    # Given a cap of 1 with every default (30 s lease), held by a worker that dies without releasing or renewing
    limiter = RateLimiter(redis, ROUTE, RouteLimits(max_in_flight=1))
    dead = limiter.acquire(max_wait_s=1)
    assert isinstance(dead, Grant)

    # When another worker may wait up to 40 s
    started = time.monotonic()
    grant = limiter.acquire(max_wait_s=40)

    # Then it gets the slot when the 30 s lease lapses, well within a minute, with nobody releasing or reaping
    assert isinstance(grant, Grant)
    assert 29 <= time.monotonic() - started <= 34


def test_a_process_holding_the_whole_cap_keeps_its_next_caller_out_of_redis(redis: redis_lib.Redis) -> None:
    # Given: one process (one limiter) holding both slots of a cap of 2
    limiter = RateLimiter(redis, ROUTE, RouteLimits(max_in_flight=2))
    first, second = limiter.acquire(max_wait_s=1), limiter.acquire(max_wait_s=1)
    assert isinstance(first, Grant) and isinstance(second, Grant)
    got: list[Grant | Denied] = []
    waiter = threading.Thread(target=lambda: got.append(limiter.acquire(max_wait_s=5)))
    # When: a third caller of the same process asks, and one of the two calls ends
    before = command_calls(redis)
    waiter.start()
    time.sleep(0.3)
    # Then: it waited in the process, not in Redis's queue (no command while it waited)...
    assert command_calls(redis) == before and not got
    assert limiter.stats()["waiters"] == 0
    limiter.release(first)
    waiter.join(5)
    # ...and took the freed slot at once with one acquire
    assert len(got) == 1 and isinstance(got[0], Grant)
    assert limiter.stats()["in_flight"] == 2
    for grant in (second, got[0]):
        assert isinstance(grant, Grant)
        limiter.release(grant)


def end_call(limiter: RateLimiter, client: redis_lib.Redis, grant: Grant) -> None:
    """What a recorded outcome does: the grant's end queued on the outcome's pipeline, then handed its reply."""
    with client.pipeline(transaction=False) as pipe:
        pipe.ping()
        limiter.release_on(pipe, grant, 0)
        replies = pipe.execute()
    limiter.released(grant, replies[-1])


def test_a_finished_call_passes_its_slot_to_a_caller_of_the_same_process(redis: redis_lib.Redis) -> None:
    # Given: a process holding the whole cap of 1, and a second caller of that process waiting for a slot
    limiter = RateLimiter(redis, ROUTE, RouteLimits(max_in_flight=1))
    held = limiter.acquire(max_wait_s=1)
    assert isinstance(held, Grant)
    got: list[Grant | Denied] = []
    waiter = threading.Thread(target=lambda: got.append(limiter.acquire(max_wait_s=5)))
    waiter.start()
    time.sleep(0.2)
    # When: the first call ends through the outcome's pipeline
    end_call(limiter, redis, held)
    waiter.join(5)
    # Then: the waiting caller has the same slot, due now, and the slot never left this process
    assert len(got) == 1 and isinstance(got[0], Grant)
    assert got[0].grant_id == held.grant_id and got[0].delay_s == 0
    assert limiter.stats()["in_flight"] == 1
    # ...and once nobody of this process waits, the end of a call frees the slot in Redis
    end_call(limiter, redis, got[0])
    assert limiter.stats()["in_flight"] == 0


@pytest.mark.parametrize("through_pipeline", [False, True], ids=["release", "outcome-pipeline"])
def test_a_slot_is_not_passed_on_while_another_process_waits_in_redis_or_a_cooldown_runs(
    redis: redis_lib.Redis, redis_url: str, through_pipeline: bool
) -> None:
    def end(limiter: RateLimiter, client: redis_lib.Redis, grant: Grant) -> None:
        if through_pipeline:
            end_call(limiter, client, grant)
        else:
            limiter.release(grant)

    # Given: process A holds the cap of 1 and has a caller waiting; process B queued in Redis first
    a = RateLimiter(redis, ROUTE, RouteLimits(max_in_flight=1))
    b = RateLimiter(redis_lib.Redis.from_url(redis_url), ROUTE, RouteLimits(max_in_flight=1))
    held = a.acquire(max_wait_s=1)
    assert isinstance(held, Grant)
    order: list[str] = []

    def ask(name: str, limiter: RateLimiter, client: redis_lib.Redis) -> None:
        grant = limiter.acquire(max_wait_s=5)
        assert isinstance(grant, Grant)
        order.append(name)
        time.sleep(0.2)
        end(limiter, client, grant)

    in_b = threading.Thread(target=ask, args=("b", b, b.redis))
    in_b.start()
    wait_for(lambda: a.stats()["waiters"] == 1, 5, "B queued in Redis")
    in_a = threading.Thread(target=ask, args=("a", a, redis))
    in_a.start()
    time.sleep(0.1)
    # When: A's call ends
    end(a, redis, held)
    in_b.join(5)
    in_a.join(5)
    # Then: the slot went to B, first in Redis's queue, and only then to A's caller
    assert order == ["b", "a"]
    # Given: a cooldown after a 429, A holding the slot and a caller of A waiting
    held = a.acquire(max_wait_s=1)
    assert isinstance(held, Grant)
    got: list[Grant | Denied] = []
    waiter = threading.Thread(target=lambda: got.append(a.acquire(max_wait_s=5)))
    waiter.start()
    time.sleep(0.1)
    a.cooldown(0.5)
    # When: the call ends
    end(a, redis, held)
    waiter.join(5)
    # Then: the caller got a new grant through Redis, timed after the cooldown
    assert len(got) == 1 and isinstance(got[0], Grant)
    assert got[0].grant_id != held.grant_id
    end_call(a, redis, got[0])
