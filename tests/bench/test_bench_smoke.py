"""Smoke test of the bench harness: a tiny run end to end, as `make bench` runs it (marked `bench` by folder).

Given a 200-request batch at 0 ms upstream latency, one worker started with the plain worker command, one repeat,
when `python -m bench --scenario zero` runs it,
then it prints the table and the summary, every request completed on batchq, the raw Celery chord and the
asyncio baseline, the raw Celery worker ran the pool and concurrency the batchq worker reported, every figure
the issue asks for is there, and no process it started is left running.

0 ms, so that it stays short whatever pool the plain worker command picks.
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
        "bench",
        "--scenario",
        "zero",
        "--requests",
        str(N),
        "--repeat",
        "1",
        "--log-dir",
        str(tmp_path / "logs"),
        "--json",
        str(out),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    # the table and the summary
    assert "Scenario zero" in proc.stdout
    for row in (
        "time to complete (s)",
        "requests/s",
        "upstream call p99 (ms)",
        "peak RSS per worker process (MB)",
        "RSS per in-flight request (KB)",
        "CPU per request (ms)",
        "Redis commands per request",
        "bq/celery",
        "bq/asyncio",
        "batchq/celery >= 0.6",
    ):
        assert row in proc.stdout, row

    report = json.loads(out.read_text())
    (result,) = report["results"]
    sides = result["medians"]
    assert set(sides) == {"batchq", "celery", "asyncio"}
    for name, m in sides.items():
        assert m["ok"], (name, m["error"])
        assert m["completed"] == N and m["failed"] == 0, name
        assert 0 < m["wall_s"] < 60 and m["rps"] > 0, name
        assert m["peak_rss_mb"] > 10 and m["cpu_ms_per_request"] > 0, name
        assert m["latency_p50_ms"] is not None and m["latency_p99_ms"] >= m["latency_p50_ms"], name
    batchq, celery = sides["batchq"], sides["celery"]
    for m in (batchq, celery):
        assert m["redis_commands_per_request"] > 1 and m["peak_rss_per_worker_mb"] > 10
        assert m["peak_in_flight"] >= 1
    assert batchq["requeues"] == 0 and batchq["in_flight"] == 64

    # the raw Celery reference ran what the batchq worker reported (e.g. "threads -c 64 x 1")
    assert celery["pool"] == batchq["pool"]

    headline = result["headline"]
    assert headline["x_celery"] == batchq["rps"] / celery["rps"]
    assert headline["x_asyncio"] == batchq["rps"] / sides["asyncio"]["rps"]
    assert [t["label"] for t in result["targets"]] == ["batchq/celery >= 0.6", "batchq/asyncio >= 0.3"]

    # every process it started is gone
    assert report["pids"]
    left = [pid for pid in report["pids"] if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert not left, left
