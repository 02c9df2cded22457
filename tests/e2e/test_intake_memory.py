"""A 10,000-line, ~200 MB input is uploaded and validated with flat memory: no process holds the file."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import psutil
import redis as redis_lib

from tests.e2e.conftest import StackFactory
from tests.servers import Proc

LINES = 10_000
LINE_BYTES = 20_000  # 10,000 x 20 kB = 200 MB


def peak_rss_mb(proc: Proc, stop: threading.Event, out: list[float]) -> None:
    """Sample the RSS of a process and its children every 50 ms; keep the largest sum seen."""
    root = psutil.Process(proc.pid)
    while not stop.is_set():
        try:
            total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            out.append(total / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.05)


def write_big_file(path: Path) -> int:
    filler = "x" * (LINE_BYTES - 200)
    with path.open("w") as f:
        for i in range(LINES):
            f.write(
                json.dumps(
                    {
                        "custom_id": f"r{i}",
                        "params": {"model": "test-model", "messages": [{"role": "user", "content": f"{i} {filler}"}]},
                    }
                )
                + "\n"
            )
    return path.stat().st_size


def test_200mb_upload_and_validation_keep_memory_flat(
    make_stack: StackFactory, tmp_path: Path, redis: redis_lib.Redis
) -> None:
    # Given: a ~200 MB file of 10,000 lines, an API and a worker that only takes intake tasks
    path = tmp_path / "big.jsonl"
    size = write_big_file(path)
    assert size > 190_000_000
    stack = make_stack(max_file_bytes=str(300 * 2**20))
    api = stack.start_api()
    api_proc = stack.procs[-1]
    intake = stack.start_worker("intake", queues="intake", concurrency=2)
    stop = threading.Event()
    api_samples: list[float] = []
    intake_samples: list[float] = []
    samplers = [
        threading.Thread(target=peak_rss_mb, args=(api_proc, stop, api_samples)),
        threading.Thread(target=peak_rss_mb, args=(intake, stop, intake_samples)),
    ]
    for t in samplers:
        t.start()
    try:
        # When: the file is uploaded (streamed from disk) and a batch validates it and fans out its lines
        with path.open("rb") as f:
            r = httpx.post(f"{api}/v1/files", files={"file": ("big.jsonl", f)}, data={"purpose": "batch"}, timeout=300)
        assert r.status_code == 200, r.text
        assert r.json()["bytes"] == size
        batch = httpx.post(
            f"{api}/v1/batches",
            json={"input_file_id": r.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        ).json()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and "validated: 10000 requests" not in intake.log_tail(50):
            time.sleep(0.2)
        assert "validated: 10000 requests" in intake.log_tail(50), intake.log_tail()
        time.sleep(1)
    finally:
        stop.set()
        for t in samplers:
            t.join()
    status = httpx.get(f"{api}/v1/batches/{batch['id']}").json()
    # Then: validated (in progress, 10,000 lines), with peak RSS well under 150 MB in both processes
    assert status["status"] == "in_progress" and status["request_counts"]["total"] == LINES
    api_peak, intake_peak = max(api_samples), max(intake_samples)
    print(
        f"\npeak RSS while handling a {size / 1e6:.0f} MB, {LINES}-line file: API {api_peak:.0f} MB, "
        f"intake worker {intake_peak:.0f} MB (baseline at start {intake_samples[0]:.0f} MB)"
    )
    assert intake_peak < 150
    assert api_peak < 150
    # and the broker holds only the feeding window (twice the default 64 in flight), not 10,000 messages
    queued = int(redis.llen("requests"))
    print(f"request messages in the broker: {queued}")
    assert 0 < queued <= 128
    httpx.post(f"{api}/v1/batches/{batch['id']}/cancel")
