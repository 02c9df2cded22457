"""Never lose a request: kill -9 workers and a prefork child, restart Redis, stall S3, force duplicate
deliveries, cancel and expire mid-batch. Each time every custom_id ends exactly once in the output or the
error file, the counters equal the files, and the batch reaches a final status by itself.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis as redis_lib

from batchq.broker import make_producer
from batchq.broker.lines import RequestLines
from batchq.config import Settings
from tests.e2e.conftest import StackFactory
from tests.servers import free_port, start_moto, start_redis
from tests.stack import chat_lines, parse_jsonl, to_jsonl, wait_final

#: Settings that make recovery fast enough to test: a short visibility timeout and sweeper horizon.
FAST_RECOVERY = {
    "visibility_timeout_s": "20",
    "unacked_restore_interval_s": "1",
    "requeue_after_s": "6",
    "upstream_read_timeout_s": "10",
    "upstream_connect_timeout_s": "2",
    "lease_s": "3",
    "max_inline_wait_s": "1",
    "max_countdown_s": "3",
}


def configure_sim(sim: str, **config: Any) -> None:
    httpx.post(sim.removesuffix("/v1") + "/sim/config", json=config).raise_for_status()


def submit(api: str, lines: list[dict[str, Any]], headers: dict[str, str] | None = None, **extra: Any) -> str:
    file_id = httpx.post(
        f"{api}/v1/files", files={"file": ("in.jsonl", to_jsonl(lines))}, data={"purpose": "batch"}, headers=headers
    ).json()["id"]
    r = httpx.post(
        f"{api}/v1/batches",
        json={"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h", **extra},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def wait_progress(
    api: str, batch_id: str, at_least: int, timeout: float = 120, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = httpx.get(f"{api}/v1/batches/{batch_id}", headers=headers).json()
        counts = batch["request_counts"]
        if counts["completed"] + counts["failed"] >= at_least or batch["status"] not in ("validating", "in_progress"):
            return dict(batch)
        time.sleep(0.05)
    raise TimeoutError(f"batch {batch_id} did not reach {at_least} outcomes")


def assert_exactly_once(
    api: str, batch: dict[str, Any], lines: list[dict[str, Any]], headers: dict[str, str] | None = None
) -> tuple[list[Any], list[Any]]:
    """Every input custom_id exactly once across the two files; counters equal to the files."""

    def content(file_id: str | None) -> list[Any]:
        return parse_jsonl(httpx.get(f"{api}/v1/files/{file_id}/content", headers=headers).content) if file_id else []

    output, errors = content(batch["output_file_id"]), content(batch["error_file_id"])
    seen = Counter(r["custom_id"] for r in output + errors)
    expected = {line["custom_id"] for line in lines}
    assert set(seen) == expected, f"missing {len(expected - set(seen))}, unexpected {len(set(seen) - expected)}"
    assert max(seen.values()) == 1, [k for k, v in seen.items() if v > 1][:10]
    counts = batch["request_counts"]
    assert (counts["total"], counts["completed"], counts["failed"]) == (len(lines), len(output), len(errors))
    assert all(r["error"] is None for r in output) and all(r["error"] is not None for r in errors)
    return output, errors


def sim_per_key(sim: str) -> Counter[str]:
    per_key = httpx.get(sim.removesuffix("/v1") + "/sim/stats", params={"detail": 1}).json()["per_key"]
    return Counter({k.split("/", 1)[-1]: v for k, v in per_key.items()})


def test_kill_9_one_of_two_workers_mid_batch(make_stack: StackFactory, sim: str) -> None:
    # Given: two worker processes working through 2,000 lines at 100 ms upstream latency
    configure_sim(sim, latency_ms=100)
    stack = make_stack(**FAST_RECOVERY)
    api = stack.start_api()
    victim = stack.start_worker("victim", concurrency=16)
    stack.start_worker("survivor", concurrency=16)
    lines = chat_lines(2000)
    batch_id = submit(api, lines)
    # When: one worker is killed with SIGKILL in the middle, its 16 tasks in flight
    wait_progress(api, batch_id, 500)
    victim.kill9()
    # Then: the batch completes on the survivor, each line exactly once
    batch = wait_final(api, batch_id, timeout=180, stack=stack)
    assert batch["status"] == "completed", stack.logs()
    output, errors = assert_exactly_once(api, batch, lines)
    assert not errors


def test_kill_9_prefork_child_mid_task(make_stack: StackFactory, sim: str) -> None:
    # Given: a prefork worker with 6 children, 2,000 lines at 20 ms latency
    configure_sim(sim, latency_ms=20)
    stack = make_stack(**FAST_RECOVERY)
    api = stack.start_api()
    worker = stack.start_worker("prefork", pool="prefork", concurrency=6)
    lines = chat_lines(2000)
    batch_id = submit(api, lines)
    wait_progress(api, batch_id, 400)
    # When: two children are killed with SIGKILL while they run request tasks
    children = psutil.Process(worker.pid).children()
    assert len(children) >= 2
    for child in children[:2]:
        os.kill(child.pid, signal.SIGKILL)
    # Then: their tasks are re-run (reject_on_worker_lost), no ChordError, the batch completes
    batch = wait_final(api, batch_id, timeout=180, stack=stack)
    assert batch["status"] == "completed", stack.logs()
    output, errors = assert_exactly_once(api, batch, lines)
    assert not errors
    assert worker.alive()


def test_redis_restart_mid_batch(make_stack: StackFactory, sim: str, tmp_path: Path, log_dir: Path) -> None:
    # Given: a Redis of our own with AOF (appendfsync everysec), and a batch running on it
    port = free_port()
    redis_dir = tmp_path / "redis-aof"
    redis_proc = start_redis(redis_dir, port, log_dir, appendonly=True)
    try:
        configure_sim(sim, latency_ms=50)
        stack = make_stack(redis_url=f"redis://127.0.0.1:{port}/0", **FAST_RECOVERY)
        api = stack.start_api()
        stack.start_worker("w1", concurrency=16)
        stack.start_worker("w2", concurrency=16)
        lines = chat_lines(2000)
        batch_id = submit(api, lines)
        wait_progress(api, batch_id, 600)
        # When: redis-server dies (SIGKILL, so up to a second of writes is lost) and comes back from its AOF
        redis_proc.kill9()
        time.sleep(2)
        redis_proc = start_redis(redis_dir, port, log_dir, appendonly=True)
        # Then: workers reconnect and consume again; the sweeper repairs lines whose messages were lost
        batch = wait_final(api, batch_id, timeout=240, stack=stack)
        assert batch["status"] == "completed", stack.logs()
        output, errors = assert_exactly_once(api, batch, lines)
        assert not errors
    finally:
        redis_proc.stop()


def test_s3_outage_mid_batch_and_finalize(make_stack: StackFactory, sim: str, log_dir: Path) -> None:
    # Given: storage on an S3 server of our own, a batch near its end
    import boto3

    port = free_port()
    moto = start_moto(port, log_dir)
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="outage")
    try:
        configure_sim(sim, latency_ms=20)
        stack = make_stack(
            storage="s3", s3_bucket="outage", s3_endpoint_url=endpoint, s3_timeout_s="1", **FAST_RECOVERY
        )
        api = stack.start_api()
        stack.start_worker("w1", concurrency=8)
        lines = chat_lines(600)
        batch_id = submit(api, lines)
        wait_progress(api, batch_id, 560)
        # When: the S3 server stops answering for 12 s while the last lines run and the batch finalizes
        os.kill(moto.pid, signal.SIGSTOP)
        try:
            time.sleep(12)
            during = httpx.get(f"{api}/v1/batches/{batch_id}").json()
            assert during["status"] in ("in_progress", "finalizing"), during  # delayed, not failed
        finally:
            os.kill(moto.pid, signal.SIGCONT)
        # Then: once S3 is back the batch completes with every line
        batch = wait_final(api, batch_id, timeout=180, stack=stack)
        assert batch["status"] == "completed", stack.logs()
        assert_exactly_once(api, batch, lines)
    finally:
        moto.stop()


def test_forced_duplicate_deliveries_still_exactly_once(make_stack: StackFactory, sim: str) -> None:
    # Given: every line's request message on the queue a second time while first deliveries are still running
    # (5 s upstream calls): what a redelivery, or the sweeper's resend of a line whose holder is alive, puts there
    configure_sim(sim, latency_ms=5000)
    stack = make_stack(**{**FAST_RECOVERY, "upstream_read_timeout_s": "30"})
    api = stack.start_api()
    stack.start_worker("w1", concurrency=16)
    stack.start_worker("w2", concurrency=16)
    lines = chat_lines(40)
    batch_id = submit(api, lines)
    wait_progress_started(api, batch_id, sim)
    producer = make_producer(
        Settings(redis_url=stack.env["BATCHQ_REDIS_URL"], storage_url=stack.env["BATCHQ_STORAGE_URL"], local_mode=True)
    )
    client = redis_lib.Redis.from_url(stack.env["BATCHQ_REDIS_URL"])
    RequestLines(producer, client, fast=True).push([(batch_id, line) for line in range(len(lines))])
    batch = wait_final(api, batch_id, timeout=180, stack=stack)
    # Then: exactly once in the files, and the lease kept the upstream from seeing a line twice
    assert batch["status"] == "completed", stack.logs()
    assert_exactly_once(api, batch, lines)
    per_key = sim_per_key(sim)
    print(f"\nupstream deliveries per custom_id: {sorted(Counter(per_key.values()).items())} (count: lines)")
    assert set(per_key) == {line["custom_id"] for line in lines}
    assert max(per_key.values()) == 1, per_key.most_common(5)
    # and the copies really were delivered while their lines were held: the workers turned them away
    worker_logs = "\n".join(p.log_path.read_text() for p in stack.procs if p.name.startswith("worker"))
    duplicates = worker_logs.count("leased by another worker")
    print(f"duplicate deliveries turned away by the lease: {duplicates}")
    assert duplicates > 0


def wait_progress_started(api: str, batch_id: str, sim: str, timeout: float = 60) -> None:
    """Until the upstream has received calls of this batch (its lines are held by workers)."""
    deadline = time.monotonic() + timeout
    while not sim_per_key(sim):
        assert time.monotonic() < deadline, httpx.get(f"{api}/v1/batches/{batch_id}").json()
        time.sleep(0.1)


def test_cancel_mid_batch(make_stack: StackFactory, sim: str) -> None:
    configure_sim(sim, latency_ms=100)
    stack = make_stack(**FAST_RECOVERY)
    api = stack.start_api()
    stack.start_worker("w1", concurrency=16)
    lines = chat_lines(2000)
    batch_id = submit(api, lines)
    wait_progress(api, batch_id, 200)
    # When: cancelled mid-batch
    r = httpx.post(f"{api}/v1/batches/{batch_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelling" and r.json()["cancelling_at"]
    # Then: cancelled, partial results in the output, every other line batch_cancelled
    batch = wait_final(api, batch_id, timeout=120, stack=stack)
    assert batch["status"] == "cancelled" and batch["cancelled_at"], batch
    output, errors = assert_exactly_once(api, batch, lines)
    assert 200 <= len(output) < 2000
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert batch["request_counts"]["cancelled"] == len(errors)
    received = sum(sim_per_key(sim).values())
    assert received == len(output)  # nothing was sent upstream for the cancelled lines


def test_expiry_mid_batch(make_stack: StackFactory, sim: str) -> None:
    # Given: a completion window of 6 s for a batch that needs ~25 s
    configure_sim(sim, latency_ms=100)
    stack = make_stack(**FAST_RECOVERY)
    api = stack.start_api()
    stack.start_worker("w1", concurrency=8)
    lines = chat_lines(2000)
    batch_id = submit(api, lines, timeout_minutes=0.1)
    # Then: it ends expired by itself; what completed is delivered; the rest is batch_expired
    batch = wait_final(api, batch_id, timeout=120, stack=stack)
    assert batch["status"] == "expired" and batch["expired_at"], batch
    output, errors = assert_exactly_once(api, batch, lines)
    assert output, "lines completed before the window closed must be delivered"
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}
    assert batch["expired_at"] - batch["created_at"] < 30


@pytest.fixture(autouse=True)
def _reset_sim(sim: str) -> None:
    """Each chaos test configures the simulator itself; start from defaults."""
    httpx.post(sim.removesuffix("/v1") + "/sim/reset").raise_for_status()
