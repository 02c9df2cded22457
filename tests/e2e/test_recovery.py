"""Nothing wedges: lost Redis keys are repaired, absurd upstream values end a line once, tasks are sent once."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from batchq import keys
from batchq.broker import make_producer
from batchq.broker.lines import RequestLines
from batchq.config import Settings
from batchq.pipeline.context import build_context
from batchq.pipeline.sweep import SweepActions, sweep
from batchq.state import pack_index
from tests.e2e.conftest import StackFactory
from tests.e2e.test_chaos import assert_exactly_once, configure_sim, submit, wait_progress
from tests.stack import chat_lines, wait_final

pytestmark = [pytest.mark.e2e]


def test_an_outcome_hash_deleted_mid_batch_is_run_again(make_stack: StackFactory, sim: str, redis: Any) -> None:
    # Given: 600 lines running at 20 ms
    configure_sim(sim, latency_ms=20)
    stack = make_stack(requeue_after_s="3")
    api = stack.start_api()
    stack.start_worker("w")
    lines = chat_lines(600)
    batch_id = submit(api, lines)
    wait_progress(api, batch_id, 200)
    # When: someone deletes the outcomes by hand (or an eviction does)
    redis.delete(keys.batch_outcomes(batch_id))
    # Then: the lost lines run again and the batch completes with every line exactly once
    batch = wait_final(api, batch_id, timeout=120, stack=stack)
    assert batch["status"] == "completed", stack.logs()
    assert_exactly_once(api, batch, lines)


@pytest.mark.parametrize("value", [float("inf"), -5, 2**70])
def test_absurd_usage_from_the_upstream_ends_the_line_once(
    make_stack: StackFactory, sim: str, redis: Any, redis_url: str, value: Any
) -> None:
    # Given: an upstream that answers line req-3 with usage of 1e400 (JSON Infinity), -5 or 2**70
    usage = {"prompt_tokens": value, "completion_tokens": value, "total_tokens": value}
    body = {"id": "x", "object": "chat.completion", "choices": [], "usage": usage}
    raw = json.dumps({"fail_rules": [{"match": "^req-3$", "status": 200, "body": body}]})  # inf -> Infinity
    httpx.post(sim.removesuffix("/v1") + "/sim/config", content=raw).raise_for_status()
    stack = make_stack(rate_limit_tpm="1000000")
    api = stack.start_api()
    stack.start_worker("w")
    lines = chat_lines(10)
    batch_id = submit(api, lines)
    batch = wait_final(api, batch_id, timeout=60, stack=stack)
    # Then: the line ends once in the output, the upstream was called once for it, the limiter slot is free
    assert batch["status"] == "completed", stack.logs()
    output, errors = assert_exactly_once(api, batch, lines)
    assert not errors
    per_key = httpx.get(sim.removesuffix("/v1") + "/sim/stats", params={"detail": 1}).json()["per_key"]
    assert per_key[f"{batch_id}/req-3"] == 1
    assert 0 <= batch["usage"]["total_tokens"] < 10_000
    time.sleep(0.5)
    assert all(r.limiter_in_flight == 0 for r in [_Stats(redis)])


class _Stats:
    """Every route limiter's in-flight count, read from its keys (no limiter instance needed)."""

    def __init__(self, redis: Any) -> None:
        found = [k for k in redis.scan_iter(f"{keys.PREFIX}:rl:*") if b"inflight" in k or b"holders" in k]
        self.limiter_in_flight = sum(int(redis.zcard(k)) for k in found if redis.type(k) == b"zset")


def test_sweeper_rounds_send_one_intake_and_one_finalize(redis: Any, redis_url: str, tmp_path: Any) -> None:
    # Given: a batch validating for long (its intake lost) and one whose lines are all done (its chord lost)
    settings = Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}", requeue_after_s=1)
    ctx = build_context(settings)
    now = int(time.time())
    for batch_id, status in (("batch_slow", "validating"), ("batch_done", "in_progress")):
        redis.hset(
            keys.batch_record(batch_id),
            mapping={"id": batch_id, "account": "a", "status": status, "created_at": now - 60, "total": 1},
        )
        redis.sadd(keys.active_batches(), batch_id)
    redis.hset(keys.batch_counts("batch_done"), "completed", 1)
    redis.hset(keys.batch_outcomes("batch_done"), "0", '{"error":null}')
    redis.set(keys.batch_index("batch_done"), pack_index([(1, 0, 10)]))
    sent: list[tuple[str, str]] = []
    actions = SweepActions(
        send_intake=lambda b: sent.append(("intake", b)),
        send_finalize=lambda b: sent.append(("finalize", b)),
        send_lines=lambda lines: sent.extend(("line", f"{b}:{n}") for b, n in lines),
        queued_lines=lambda: set(),
    )
    # When: five sweeper rounds pass while those tasks are queued or running
    for _ in range(5):
        sweep(ctx, actions)
    # Then: one intake and one finalize were sent, not five of each
    assert sorted(sent) == [("finalize", "batch_done"), ("intake", "batch_slow")]


def test_a_line_whose_message_a_dead_worker_took_is_sent_again_without_waiting_for_a_stall(
    redis: Any, redis_url: str, tmp_path: Any
) -> None:
    # Given: a running batch that progresses, with four lines sent over a minute ago: line 1's message still on the
    # queue, line 3 claimed by a live worker, lines 0 and 2 neither (a worker took them and was killed before its
    # claim: prefetched request messages live in the worker's memory only)
    settings = Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}")
    ctx = build_context(settings)
    now = time.time()
    batch_id = "batch_taken"
    redis.hset(
        keys.batch_record(batch_id),
        mapping={
            "id": batch_id,
            "account": "a",
            "status": "in_progress",
            "created_at": int(now) - 120,
            "in_progress_at": int(now) - 110,
            "last_progress_ms": int(now * 1000),
            "total": 10,
        },
    )
    redis.sadd(keys.active_batches(), batch_id)
    redis.set(keys.batch_index(batch_id), pack_index([(n + 1, n * 10, 10) for n in range(10)]))
    sent_at = int(now * 1000) - 61_000 + int(settings.requeue_after_s * 1000)  # due back a second ago
    redis.zadd(keys.batch_open(batch_id), {str(n): sent_at for n in range(4)})
    redis.hset(keys.batch_leases(batch_id), "3", f"{int(now * 1000) + 30_000}:live-worker")
    queue = RequestLines(make_producer(settings), redis, fast=True)
    queue.push([(batch_id, 1)])
    sent: list[tuple[str, int]] = []
    actions = SweepActions(
        send_intake=lambda b: None, send_finalize=lambda b: None, send_lines=sent.extend, queued_lines=queue.queued
    )
    # When: the sweeper runs (the batch is not stalled: it progressed just now)
    sweep(ctx, actions)
    # Then: only the lines that are neither queued nor claimed are sent again, at once
    assert sorted(sent) == [(batch_id, 0), (batch_id, 2)]
    assert redis.llen("requests") == 1
