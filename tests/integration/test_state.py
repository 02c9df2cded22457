"""Batch state on a real Redis: transitions, the first-write-wins outcome script, leases."""

from __future__ import annotations

import threading
import time

import redis as redis_lib

from batchq import keys
from batchq.state import BatchState, Usage


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
            "total": total,
        },
        max_active=10,
    )


def test_outcome_is_recorded_once_and_counters_move_with_it(redis: redis_lib.Redis) -> None:
    state = BatchState(redis)
    new_batch(state)
    first = state.record_outcome("batch_t", 0, {"custom_id": "a", "error": None}, success=True, usage=Usage(10, 5, 15))
    again = state.record_outcome(
        "batch_t", 0, {"custom_id": "a", "error": {"code": "x"}}, success=False, usage=Usage(99, 99, 198)
    )
    assert first.recorded and not again.recorded
    assert state.counts("batch_t") == {"completed": 1, "input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    assert (again.done, again.total) == (1, 3)


def test_concurrent_duplicates_count_once(redis: redis_lib.Redis) -> None:
    # Given: 20 threads recording outcomes for the same 3 lines at once (redeliveries racing)
    state = BatchState(redis)
    new_batch(state)
    results = []

    def worker(n: int) -> None:
        for line in range(3):
            results.append(state.record_outcome("batch_t", line, {"n": n}, success=n % 2 == 0))

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
    record = state.get_record("batch_t")
    assert record is not None and record["status"] == "cancelled"
    assert record["in_progress_at"] and record["cancelling_at"] and record["cancelled_at"]
    assert "batch_t" not in state.active_ids()  # a final batch leaves the active sets
    assert not redis.sismember(keys.account_active("acct"), "batch_t")


def test_active_batch_limit(redis: redis_lib.Redis) -> None:
    state = BatchState(redis)
    for i in range(2):
        assert state.create({"id": f"b{i}", "account": "a", "status": "validating"}, max_active=2)
    assert not state.create({"id": "b2", "account": "a", "status": "validating"}, max_active=2)
    assert state.create({"id": "b3", "account": "other", "status": "validating"}, max_active=2)


def test_lease_excludes_a_second_worker_until_it_expires(redis: redis_lib.Redis) -> None:
    state = BatchState(redis)
    new_batch(state)
    assert state.take_lease("batch_t", 1, lease_s=0.3).acquired
    second = state.take_lease("batch_t", 1, lease_s=0.3)
    assert not second.acquired and not second.done and 0 < second.held_for_s <= 0.3
    time.sleep(0.35)
    assert state.take_lease("batch_t", 1, lease_s=5).acquired  # the first holder died: its lease lapsed
    state.record_outcome("batch_t", 1, {"x": 1}, success=True)
    done = state.take_lease("batch_t", 1, lease_s=5)
    assert done.done and not done.acquired  # done lines are never leased again
    assert state.missing_lines("batch_t", 3) == [0, 2]
