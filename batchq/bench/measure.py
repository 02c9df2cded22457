"""One measurement of batchq (through the HTTP API, as a user would) and one of the baseline, on one stack."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from batchq.bench.procs import TreeSampler
from batchq.bench.report import MB, Measurement, percentile
from batchq.bench.stack import Stack

#: Seconds between two GET /v1/batches/{id} while waiting.
POLL_INTERVAL_S = 0.1
#: Model named in the generated requests (the simulator serves any model).
MODEL = "bench-model"
#: Statuses that end a batch.
FINAL = frozenset({"completed", "failed", "expired", "cancelled"})


class BenchFailure(Exception):
    """A measurement that did not finish as it should (timeout, a batch not ``completed``, a crashed process)."""


def make_requests(n: int) -> bytes:
    """N chat requests in OpenAI batch form, about 200 bytes each."""
    lines = []
    for i in range(n):
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}],
            "max_tokens": 16,
        }
        lines.append(
            json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body})
        )
    return ("\n".join(lines) + "\n").encode()


def _sim_figures(stats: dict[str, Any], n: int) -> dict[str, Any]:
    received = int(stats.get("received", 0))
    first, last = stats.get("first_at"), stats.get("last_at")
    span = (last - first) if first is not None and last is not None else 0.0
    return {
        "retries": max(received - n, 0),
        "http_429": int(stats.get("by_status", {}).get("429", 0)),
        "upstream_rps": (received - 1) / span if span > 0 else None,
        "max_in_window": int(stats.get("max_in_window", 0)),
    }


def _read_probe(probe_dir: Path) -> tuple[list[float], int]:
    """Upstream call latencies (ms) and the number of re-queues the workers' probes wrote."""
    latencies: list[float] = []
    requeues = 0
    for path in probe_dir.glob("*.probe"):
        for raw in path.read_text().splitlines():
            parts = raw.split()
            if parts and parts[0] == "u" and len(parts) >= 2:
                latencies.append(float(parts[1]))
            elif parts and parts[0] == "q":
                requeues += 1
    return latencies, requeues


def measure_batchq(stack: Stack, payload: bytes, n: int, rpm: int, timeout_s: float) -> Measurement:
    """Upload, create, poll until ``completed``; time from the create's answer to the first ``completed`` seen.

    Raises:
        BenchFailure: the batch ended otherwise, or was not done within ``timeout_s``.
    """
    stack.sim_reset()
    for old in stack.probe_dir.glob("*.probe"):
        old.unlink()
    commands_before = sum(stack.redis_commands().values())
    workers = TreeSampler([w.pid for w in stack.workers]).start()
    others = TreeSampler([p.pid for p in (stack.api, stack.redis_proc) if p is not None]).start()
    try:
        with httpx.Client(base_url=stack.api_url, timeout=60) as client:
            upload = client.post(
                "/v1/files", files={"file": ("bench.jsonl", payload, "application/jsonl")}, data={"purpose": "batch"}
            )
            upload.raise_for_status()
            created = client.post(
                "/v1/batches",
                json={
                    "input_file_id": upload.json()["id"],
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                },
            )
            created.raise_for_status()
            started = time.perf_counter()
            batch = _wait_completed(client, created.json()["id"], started + timeout_s)
            wall = time.perf_counter() - started
    finally:
        workers.stop()
        others.stop()
    counts = batch.get("request_counts") or {}
    latencies, requeues = _read_probe(stack.probe_dir)
    limit_rps = rpm / 60
    return Measurement(
        system="batchq",
        requests=n,
        completed=int(counts.get("completed", 0)),
        failed=int(counts.get("failed", 0)),
        wall_s=wall,
        ideal_s=n / limit_rps if rpm else None,
        rps=int(counts.get("completed", 0)) / wall,
        utilization=(n / wall) / limit_rps if rpm else None,
        requeues=requeues,
        latency_p50_ms=percentile(latencies, 50) if latencies else None,
        latency_p99_ms=percentile(latencies, 99) if latencies else None,
        peak_rss_mb=workers.peak_rss_bytes / MB,
        cpu_s=workers.cpu_s + others.cpu_s,
        worker_cpu_s=workers.cpu_s,
        redis_peak_mb=stack.redis_memory_peak() / MB,
        redis_commands_per_request=(sum(stack.redis_commands().values()) - commands_before) / n,
        **_sim_figures(stack.sim_stats(), n),
    )


def _wait_completed(client: httpx.Client, batch_id: str, deadline: float) -> dict[str, Any]:
    batch: dict[str, Any] = {}
    while True:
        polled = time.perf_counter()
        batch = client.get(f"/v1/batches/{batch_id}").json()
        status = batch.get("status")
        if status == "completed":
            return batch
        if status in FINAL:
            raise BenchFailure(f"batch {batch_id} ended {status}: {json.dumps(batch)[:600]}")
        if polled >= deadline:
            raise BenchFailure(
                f"batch {batch_id} not completed in time; last seen: status={status} "
                f"request_counts={batch.get('request_counts')}"
            )
        time.sleep(max(POLL_INTERVAL_S - (time.perf_counter() - polled), 0.0))


def measure_baseline(
    stack: Stack, payload: bytes, n: int, *, rpm: int, tpm: int, concurrency: int, timeout_s: float, name: str
) -> Measurement:
    """Run the baseline client as a child process against the stack's simulator (reset first).

    Raises:
        BenchFailure: it crashed or did not finish within ``timeout_s``.
    """
    stack.sim_reset()
    run_dir = stack.run_dir
    requests, output, result = run_dir / "requests.jsonl", run_dir / "baseline-output.jsonl", run_dir / "baseline.json"
    requests.write_bytes(payload)
    result.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "batchq.bench.baseline",
        "--base-url",
        f"{stack.sim_root}/v1",
        "--input",
        str(requests),
        "--output",
        str(output),
        "--result",
        str(result),
        "--rpm",
        str(rpm),
        "--tpm",
        str(tpm),
        "--concurrency",
        str(concurrency),
    ]
    proc = stack.group.start(name, argv)
    sampler = TreeSampler([proc.pid]).start()
    try:
        code = proc.wait(timeout_s)
    finally:
        sampler.stop()
    if code is None:
        proc.stop()
        raise BenchFailure(f"baseline not done in {timeout_s:.0f}s:\n{proc.log_tail()}")
    if code != 0 or not result.exists():
        raise BenchFailure(f"baseline exited {code}:\n{proc.log_tail()}")
    figures = json.loads(result.read_text())
    output.unlink(missing_ok=True)
    wall = float(figures["wall_s"])
    limit_rps = rpm / 60
    sim = _sim_figures(stack.sim_stats(), n)
    sim["retries"] = max(sim["retries"], int(figures["retries"]))
    return Measurement(
        system="baseline",
        requests=n,
        completed=int(figures["completed"]),
        failed=int(figures["failed"]),
        wall_s=wall,
        ideal_s=n / limit_rps if rpm else None,
        rps=int(figures["completed"]) / wall,
        utilization=(n / wall) / limit_rps if rpm else None,
        latency_p50_ms=float(figures["latency_p50_ms"]),
        latency_p99_ms=float(figures["latency_p99_ms"]),
        peak_rss_mb=sampler.peak_rss_bytes / MB,
        cpu_s=float(figures["cpu_s"]),
        **sim,
    )
