"""Smoke test of the bench harness: a tiny run end to end, as `make bench` runs it (marked `bench` by folder).

Given a 200-request batch at 200 ms upstream latency and 1200 RPM, one worker, one repeat,
when `python -m batchq.bench` runs it,
then it prints the table, every request completed on both sides, utilization is sane, and no process it
started is left running.

1200 RPM, not scenario 2's 6000: both limiters let about a second's worth go at once, and with 6000 RPM that burst
is half of a 200-request batch, which would make utilization legitimately exceed 1.2. At 1200 RPM it is 20 requests
(ideal 10 s, best case about 9.4 s, utilization <= 1.07).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

N = 200


def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [
        sys.executable,
        "-m",
        "batchq.bench",
        "--scenario",
        "2",
        "--requests",
        str(N),
        "--rpm",
        "1200",
        "--workers",
        "1",
        "--repeat",
        "1",
        "--log-dir",
        str(tmp_path / "logs"),
        "--json",
        str(out),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    # the table
    assert "Scenario 2 (ratelimit)" in proc.stdout
    for row in (
        "time to complete (s)",
        "requests/s",
        "rate-limit utilization",
        "upstream 429s",
        "upstream call p99 (ms)",
        "peak RSS (MB)",
        "Redis used_memory_peak (MB)",
        "batchq/baseline",
    ):
        assert row in proc.stdout, row
    assert f"{N}/{N}" in proc.stdout

    # sane numbers
    report = json.loads(out.read_text())
    (result,) = report["results"]
    batchq, baseline = result["batchq"], result["baseline"]
    assert batchq["ok"] and baseline["ok"], (batchq["error"], baseline["error"])
    assert batchq["completed"] == N and batchq["failed"] == 0
    assert baseline["completed"] == N and baseline["failed"] == 0
    assert 0 < batchq["utilization"] <= 1.2
    assert 0 < batchq["wall_s"] < 60
    assert batchq["ideal_s"] == N / 20
    assert batchq["latency_p50_ms"] >= 200  # the simulator's latency, measured in the worker
    assert batchq["peak_rss_mb"] > 10 and batchq["redis_peak_mb"] > 0
    assert baseline["peak_rss_mb"] > 10 and baseline["latency_p50_ms"] >= 200

    # every process it started is gone
    assert report["pids"]
    left = [pid for pid in report["pids"] if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert not left, left
