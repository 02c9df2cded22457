"""One measurement of batchq on one stack, through the HTTP API as a user would; helpers the other sides share."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from bench.procs import TreeSampler
from bench.report import MB, Measurement, percentile
from bench.scenarios import Scenario
from bench.stack import Stack

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


def sim_figures(stats: dict[str, Any], n: int) -> dict[str, Any]:
    """The simulator's view of one run: retries, 429s, sending rate, peak in flight."""
    received = int(stats.get("received", 0))
    first, last = stats.get("first_at"), stats.get("last_at")
    span = (last - first) if first is not None and last is not None else 0.0
    return {
        "retries": max(received - n, 0),
        "http_429": int(stats.get("by_status", {}).get("429", 0)),
        "upstream_rps": (received - 1) / span if span > 0 else None,
        "max_in_window": int(stats.get("max_in_window", 0)),
        "peak_in_flight": int(stats.get("max_in_flight", 0)),
    }


def read_probe(probe_dir: Path) -> tuple[list[float], int]:
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


def clear_probe(probe_dir: Path) -> None:
    for old in probe_dir.glob("*.probe"):
        old.unlink()


def memory_figures(workers: TreeSampler, peak_in_flight: int) -> dict[str, Any]:
    """Peak RSS in all, per worker process, idle, and per request in flight."""
    grown = max(workers.peak_rss_bytes - workers.start_rss_bytes, 0)
    return {
        "peak_rss_mb": workers.peak_rss_bytes / MB,
        "peak_rss_per_worker_mb": max(workers.peak_rss_by_root.values(), default=0) / MB,
        "idle_rss_mb": workers.start_rss_bytes / MB,
        "rss_per_in_flight_kb": grown / 1024 / peak_in_flight if peak_in_flight else None,
    }


def measure_batchq(stack: Stack, s: Scenario, payload: bytes, timeout_s: float) -> Measurement:
    """Upload, create, poll until ``completed``; time from the create's answer to the first ``completed`` seen.

    After ``timeout_s`` the figures so far are kept (``timed_out``), the batch is cancelled and the workers are
    stopped, so that they do not go on loading the machine while the other sides are measured.

    Raises:
        BenchFailure: the batch ended otherwise than ``completed``, or the API refused it.
    """
    n = s.requests
    stack.sim_reset()
    clear_probe(stack.probe_dir)
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
            batch_id = created.json()["id"]
            started = time.perf_counter()
            batch, timed_out = _wait_completed(client, batch_id, started + timeout_s)
            wall = time.perf_counter() - started
            if timed_out:
                client.post(f"/v1/batches/{batch_id}/cancel")
    finally:
        workers.stop()
        others.stop()
    commands = sum(stack.redis_commands().values()) - commands_before
    sim = sim_figures(stack.sim_stats(), n)
    if timed_out:
        for proc in stack.workers:
            proc.stop()
    counts = batch.get("request_counts") or {}
    completed = int(counts.get("completed", 0))
    latencies, requeues = read_probe(stack.probe_dir)
    ideal = s.ideal_s(s.in_flight)
    return Measurement(
        system="batchq",
        requests=n,
        completed=completed,
        failed=int(counts.get("failed", 0)),
        wall_s=wall,
        in_flight=s.in_flight,
        ideal_s=ideal,
        efficiency=ideal * completed / n / wall if ideal else None,
        rps=completed / wall,
        utilization=(completed / wall) / (s.rpm / 60) if s.rpm else None,
        requeues=requeues,
        latency_p50_ms=percentile(latencies, 50) if latencies else None,
        latency_p99_ms=percentile(latencies, 99) if latencies else None,
        cpu_s=workers.cpu_s + others.cpu_s,
        worker_cpu_s=workers.cpu_s,
        redis_peak_mb=stack.redis_memory_peak() / MB,
        redis_commands_per_request=commands / max(completed + int(counts.get("failed", 0)) if timed_out else n, 1),
        pool=stack.pool_label(),
        timed_out=timed_out,
        ok=not timed_out,
        error=f"not completed in {timeout_s:.0f} s: {completed}/{n} done" if timed_out else "",
        **memory_figures(workers, sim["peak_in_flight"]),
        **sim,
    )


def _wait_completed(client: httpx.Client, batch_id: str, deadline: float) -> tuple[dict[str, Any], bool]:
    """The batch once ``completed`` (False), or as last seen at the deadline (True)."""
    batch: dict[str, Any] = {}
    while True:
        polled = time.perf_counter()
        batch = client.get(f"/v1/batches/{batch_id}").json()
        status = batch.get("status")
        if status == "completed":
            return batch, False
        if status in FINAL:
            raise BenchFailure(f"batch {batch_id} ended {status}: {json.dumps(batch)[:600]}")
        if polled >= deadline:
            return batch, True
        time.sleep(max(POLL_INTERVAL_S - (time.perf_counter() - polled), 0.0))
