"""The reference sides of a run: the raw Celery chord and the asyncio baselines, on the same stack as batchq."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.measure import BenchFailure, clear_probe, memory_figures, read_probe, sim_figures
from bench.procs import TreeSampler
from bench.report import MB, Measurement, percentile
from bench.scenarios import Scenario
from bench.stack import Stack, start_raw_worker

#: Baseline sides and the HTTP client each one runs.
BASELINE_CLIENTS = {"asyncio": "httpx", "cookbook": "aiohttp"}


#: The raw Celery worker's pool where batchq's differs. Stock Celery under gevent stalls: kombu's Redis poller waits
#: out Celery's 2 s drain timeout whenever the prefetch limit is reached (31 req/s at 200 ms and 64 slots; batchq's
#: transport wakes on the ack, docs/bench.md). So against batchq on gevent the reference is Celery's threads pool.
RAW_POOL = {"gevent": "threads"}


def raw_concurrency(stack: Stack, s: Scenario, asked: int | None = None) -> tuple[str, int]:
    """The raw Celery worker's pool and concurrency: what batchq's first worker reported (its pool through
    :data:`RAW_POOL`). When the scenario sets BATCHQ_MAX_IN_FLIGHT, capped at its share per worker, so that raw
    Celery has no more requests in flight than batchq is allowed (issue 10: "at 200 ms with 64 in flight").
    ``asked`` (--celery-concurrency) overrides."""
    info = stack.worker_info[0]
    concurrency = int(info["concurrency"])
    if s.max_in_flight:
        concurrency = min(concurrency, max(s.max_in_flight // max(len(stack.worker_info), 1), 1))
    pool = str(info["pool"])
    return RAW_POOL.get(pool, pool), asked or concurrency


def _run_child(stack: Stack, name: str, argv: list[str], timeout_s: float) -> tuple[TreeSampler, int | None]:
    proc = stack.group.start(name, argv)
    sampler = TreeSampler([proc.pid]).start()
    try:
        code = proc.wait(timeout_s)
    finally:
        sampler.stop()
    if code is None:
        proc.stop()
    return sampler, code


def measure_celery(
    stack: Stack, s: Scenario, timeout_s: float, run: int, concurrency: int | None = None
) -> Measurement:
    """Start the raw Celery worker, apply a chord of N one-POST tasks from a driver process, stop the worker.

    Raises:
        BenchFailure: the worker did not start or the driver crashed.
    """
    pool, concurrency = raw_concurrency(stack, s, concurrency)
    stack.sim_reset()
    try:
        worker, info = start_raw_worker(stack, pool, concurrency, f"{run}")
    except RuntimeError as exc:
        raise BenchFailure(str(exc)) from None
    probe = stack.run_dir / "probe-celery"
    clear_probe(probe)
    result = stack.run_dir / "celery.json"
    result.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "bench.rawcelery",
        "--redis-url",
        stack.raw_redis_url,
        "--url",
        f"{stack.sim_root}/v1/chat/completions",
        "--requests",
        str(s.requests),
        "--timeout",
        str(timeout_s),
        "--result",
        str(result),
    ]
    commands_before = sum(stack.redis_commands().values())
    workers = TreeSampler([worker.pid]).start()
    redis_cpu = TreeSampler([stack.redis_proc.pid] if stack.redis_proc else []).start()
    try:
        driver, code = _run_child(stack, f"celery-driver-{run}", argv, timeout_s + 30)
    finally:
        workers.stop()
        redis_cpu.stop()
        worker.stop()
    if code != 0 or not result.exists():
        raise BenchFailure(f"raw Celery driver exited {code}:\n{worker.log_tail()}")
    figures: dict[str, Any] = json.loads(result.read_text())
    commands = sum(stack.redis_commands().values()) - commands_before
    sim = sim_figures(stack.sim_stats(), s.requests)
    latencies, requeues = read_probe(probe)
    wall, completed = float(figures["wall_s"]), int(figures["completed"])
    if figures["timed_out"]:
        completed = min(int(stack.sim_stats().get("received", 0)), s.requests)  # answered calls, as an estimate
    ideal = s.ideal_s(concurrency)
    return Measurement(
        system="celery",
        requests=s.requests,
        completed=completed,
        failed=int(figures["n"]) - int(figures["completed"]),
        wall_s=wall,
        in_flight=concurrency,
        ideal_s=ideal,
        efficiency=ideal * completed / s.requests / wall if ideal else None,
        rps=completed / wall,
        utilization=(completed / wall) / (s.rpm / 60) if s.rpm else None,
        requeues=requeues,
        latency_p50_ms=percentile(latencies, 50) if latencies else None,
        latency_p99_ms=percentile(latencies, 99) if latencies else None,
        cpu_s=workers.cpu_s + redis_cpu.cpu_s + driver.cpu_s,
        worker_cpu_s=workers.cpu_s,
        redis_peak_mb=stack.redis_memory_peak() / MB,
        redis_commands_per_request=commands / max(completed, 1),
        publish_s=float(figures["apply_s"]),
        pool=f"{info['pool']} -c {info['concurrency']} x 1",
        timed_out=bool(figures["timed_out"]),
        ok=not figures["timed_out"] and completed == s.requests,
        error=f"callback not seen in {timeout_s:.0f} s" if figures["timed_out"] else "",
        **memory_figures(workers, sim["peak_in_flight"]),
        **sim,
    )


def measure_baseline(stack: Stack, s: Scenario, payload: bytes, side: str, timeout_s: float, run: int) -> Measurement:
    """Run an asyncio baseline as a child process against the stack's simulator (reset first).

    Raises:
        BenchFailure: it crashed or did not finish within ``timeout_s``.
    """
    stack.sim_reset()
    run_dir = stack.run_dir
    requests, output = run_dir / "requests.jsonl", run_dir / f"{side}-output.jsonl"
    result = run_dir / f"{side}.json"
    requests.write_bytes(payload)
    result.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "bench.baseline",
        "--base-url",
        f"{stack.sim_root}/v1",
        "--input",
        str(requests),
        "--output",
        str(output),
        "--result",
        str(result),
        "--rpm",
        str(s.rpm),
        "--concurrency",
        str(s.baseline_concurrency),
        "--client",
        BASELINE_CLIENTS[side],
    ]
    sampler, code = _run_child(stack, f"{side}-{run}", argv, timeout_s)
    if code is None:
        raise BenchFailure(f"{side} baseline not done in {timeout_s:.0f}s")
    if code != 0 or not result.exists():
        raise BenchFailure(f"{side} baseline exited {code}:\n{_tail(run_dir / f'{side}-{run}.log')}")
    figures = json.loads(result.read_text())
    output.unlink(missing_ok=True)
    wall, completed = float(figures["wall_s"]), int(figures["completed"])
    sim = sim_figures(stack.sim_stats(), s.requests)
    sim["retries"] = max(sim["retries"], int(figures["retries"]))
    ideal = s.ideal_s(s.baseline_concurrency)
    return Measurement(
        system=side,
        requests=s.requests,
        completed=completed,
        failed=int(figures["failed"]),
        wall_s=wall,
        in_flight=s.baseline_concurrency,
        ideal_s=ideal,
        efficiency=ideal * completed / s.requests / wall if ideal else None,
        rps=completed / wall,
        utilization=(completed / wall) / (s.rpm / 60) if s.rpm else None,
        latency_p50_ms=float(figures["latency_p50_ms"]),
        latency_p99_ms=float(figures["latency_p99_ms"]),
        peak_rss_mb=sampler.peak_rss_bytes / MB,
        cpu_s=float(figures["cpu_s"]),
        pool=f"{BASELINE_CLIENTS[side]} x {s.baseline_concurrency}",
        ok=completed == s.requests,
        error="" if completed == s.requests else f"{s.requests - completed} requests not answered 200",
        **sim,
    )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
