"""Batch state on a real Redis: transitions, the first-write-wins outcome script, claims, leases, heartbeats."""

from __future__ import annotations

import threading
import time

import pytest
import redis as redis_lib

from batchq import keys, lua
from batchq.state import BatchState, LineState, Usage, pack_index
from batchq.state.records import stop_code


def record(lines: LineState, line: int, outcome: dict, *, success: bool, usage: Usage | None = None):
    reply = lines.record_on(None, "batch_t", "acct", line, outcome, success=success, metric="m", usage=usage)
    return lines.recorded(reply)


def start(state: BatchState, redis: redis_lib.Redis, batch_id: str = "batch_t", total: int = 3) -> None:
    """The batch as intake leaves it: validated, indexed, in progress."""
    redis.set(keys.batch_index(batch_id), pack_index((n + 1, n * 10, 10) for n in range(total)))
    assert state.start(batch_id, total, "m")
    assert state.transition(batch_id, ["validating"], "in_progress") == "validating"


def new_batch(state: BatchState, batch_id: str = "batch_t", total: int = 3, account: str = "acct") -> None:
    assert state.create(
        {
            "id": batch_id,
            "account": account,
            "endpoint": "/v1/chat/completions",
            "input_file_id": "file-x",
            "completion_window": "24h",
            "status": "validating",
            "created_at": int(time.time()),
            "expires_at": int(time.time()) + 60,
        },
        max_active=10,
    )


def test_outcome_is_recorded_once_and_counters_move_with_it(redis: redis_lib.Redis) -> None:
    state, lines = BatchState(redis), LineState(redis)
    new_batch(state)
    start(state, redis)
    first = record(lines, 0, {"custom_id": "a", "error": None}, success=True, usage=Usage(10, 5, 15))
    again = record(lines, 0, {"custom_id": "a", "error": {"code": "x"}}, success=False, usage=Usage(99, 99, 198))
    assert first.recorded and not again.recorded
    assert state.counts("batch_t") == {"completed": 1, "input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    assert (again.done, again.total) == (1, 3)


def test_concurrent_duplicates_count_once(redis: redis_lib.Redis) -> None:
    # Given: 20 threads recording outcomes for the same 3 lines at once (redeliveries racing)
    state, lines = BatchState(redis), LineState(redis)
    new_batch(state)
    start(state, redis)
    results = []

    def worker(n: int) -> None:
        for line in range(3):
            results.append(record(lines, line, {"n": n}, success=n % 2 == 0))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then: exactly one write per line stands, the counters say 3, exactly one call saw the batch done first
    assert sum(r.recorded for r in results) == 3
    counts = state.counts("batch_t")
    assert counts.get("completed", 0) + counts.get("failed", 0) == 3
    assert redis.hlen(keys.batch_outcomes("batch_t")) == 3


def test_transitions_follow_allowed_edges(redis: redis_lib.Redis) -> None:
    state = BatchState(redis)
    new_batch(state)
    assert state.transition("batch_t", ["validating"], "in_progress") == "validating"
    assert state.transition("batch_t", ["validating"], "failed") is None  # not allowed from in_progress
    assert state.transition("batch_t", ["in_progress"], "cancelling") == "in_progress"
    assert state.transition("batch_t", ["cancelling"], "cancelled") == "cancelling"
    stored = state.get_record("batch_t")
    assert stored is not None and stored.status == "cancelled"
    assert stored.in_progress_at and stored.cancelling_at and stored.cancelled_at
    assert "batch_t" not in state.active_ids()  # a final batch leaves the active sets
    assert not redis.sismember(keys.account_active("acct"), "batch_t")


def test_active_batch_limit(redis: redis_lib.Redis) -> None:
    state = BatchState(redis)
    for i in range(2):
        assert state.create({"id": f"b{i}", "account": "a", "status": "validating"}, max_active=2)
    assert not state.create({"id": "b2", "account": "a", "status": "validating"}, max_active=2)
    assert state.create({"id": "b3", "account": "other", "status": "validating"}, max_active=2)


def test_claim_excludes_a_second_worker_until_its_lease_lapses(redis: redis_lib.Redis) -> None:
    state, lines = BatchState(redis), LineState(redis)
    new_batch(state)
    start(state, redis)
    first = lines.claim("batch_t", 1, "w1", lease_s=0.3)
    assert first.verdict == "claimed" and first.attempt == 1 and first.account == "acct"
    assert first.entry is not None and (first.entry.offset, first.entry.line_no) == (10, 2)
    assert lines.claim("batch_t", 1, "w2", lease_s=0.3).verdict == "held"
    time.sleep(0.35)
    second = lines.claim("batch_t", 1, "w2", lease_s=5)  # the first holder died: its lease lapsed
    assert second.verdict == "claimed" and second.attempt == 2
    record(lines, 1, {"x": 1}, success=True)
    assert lines.claim("batch_t", 1, "w3", lease_s=5).verdict == "done"  # done lines are never claimed again
    assert lines.missing_lines("batch_t", 3) == [0, 2]


def test_heartbeat_keeps_a_lease_alive_and_only_its_owners(redis: redis_lib.Redis) -> None:
    state, lines = BatchState(redis), LineState(redis)
    lines.load_scripts()  # pipelines run scripts by sha (the Heartbeat loads them on NoScriptError)
    new_batch(state)
    start(state, redis)
    assert lines.claim("batch_t", 0, "w1", lease_s=0.4).verdict == "claimed"
    assert lines.claim("batch_t", 2, "w2", lease_s=0.4).verdict == "claimed"
    for _ in range(4):  # renewed by w1 for 0.8 s, twice its lease
        time.sleep(0.2)
        with redis.pipeline(transaction=False) as pipe:
            lines.renew_on(pipe, "batch_t", "w1", [0, 2], lease_s=0.4)
            assert pipe.execute() == [1]  # w1's own lease only; w2's line is not w1's to renew
    assert lines.claim("batch_t", 0, "w3", lease_s=1).verdict == "held"
    assert lines.claim("batch_t", 2, "w3", lease_s=1).verdict == "claimed"  # w2 never beat: it lapsed


def test_a_claim_of_a_stopped_batch_counts_no_attempt(redis: redis_lib.Redis) -> None:
    state, lines = BatchState(redis), LineState(redis)
    new_batch(state)
    start(state, redis)
    assert state.transition("batch_t", ["in_progress"], "cancelling") == "in_progress"
    claim = lines.claim("batch_t", 0, "w1", lease_s=5)
    assert claim.verdict == "claimed" and claim.stop_code == "batch_cancelled" and claim.attempt == 0


def test_absurd_usage_from_an_upstream_is_clamped() -> None:
    for value in (float("inf"), float("nan"), -5, 2**70, 1e300, "12", True, None):
        usage = Usage.from_body({"usage": {"prompt_tokens": value, "completion_tokens": 3, "total_tokens": value}})
        assert usage.input_tokens == 0 and usage.total_tokens == 3


def test_a_real_redis_with_an_evicting_policy_is_refused(redis: redis_lib.Redis) -> None:
    from batchq.state.health import UnsafeRedisError, check_eviction_policy

    assert check_eviction_policy(redis, allow=False) == ""  # the suite's redis-server: no limit, noeviction
    old = redis.config_get("maxmemory")["maxmemory"], redis.config_get("maxmemory-policy")["maxmemory-policy"]
    redis.config_set("maxmemory", "1gb")
    redis.config_set("maxmemory-policy", "volatile-lru")
    try:
        with pytest.raises(UnsafeRedisError):
            check_eviction_policy(redis, allow=False)
    finally:
        redis.config_set("maxmemory", old[0])
        redis.config_set("maxmemory-policy", old[1])


@pytest.mark.parametrize(
    ("status", "cancelling_at", "expires_at", "now"),
    [
        ("in_progress", None, 2_000, 1_999.5),
        ("in_progress", None, 2_000, 2_000.0),
        ("in_progress", None, None, 5_000.0),
        ("in_progress", 1_500, 2_000, 1_600.0),
        ("cancelling", None, 2_000, 1_000.0),
        ("cancelled", None, 2_000, 3_000.0),
        ("finalizing", None, 2_000, 2_500.0),
        ("validating", None, 2_000, 1_000.0),
    ],
)
def test_the_stop_rule_is_the_same_in_lua_and_in_python(
    redis: redis_lib.Redis, status: str, cancelling_at: int | None, expires_at: int | None, now: float
) -> None:
    code = lua.read("batchq.state.scripts", "lib") + "\nreturn stop_code(ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]))"
    in_lua = redis.eval(code, 0, status, cancelling_at or "", expires_at or "", int(now * 1000))
    assert in_lua.decode() == stop_code(status, cancelling_at, expires_at, now)
