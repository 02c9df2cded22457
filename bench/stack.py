"""The stack one measurement runs on: redis-server, ``batchq sim``, ``batchq api``, N Celery workers, and on demand
the raw Celery reference worker.

batchq's workers run the default worker command (``celery -A workers worker -Q intake,requests,finalize``, no
``-P``/``-c``) unless a pool or concurrency is asked for; then it is passed both as BATCHQ_WORKER_POOL /
BATCHQ_WORKER_CONCURRENCY (read by batchq's Celery config) and, unless ``pool_flags`` is off, as ``-P``/``-c``.
Each worker reports the pool and concurrency it really runs (``bench.worker``'s ready file).

All of them listen on free loopback ports and are children of the bench (``ProcGroup`` stops them). Redis runs
without persistence (``--save '' --appendonly no``) so that disk writes do not blur the figures.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.procs import Proc, ProcGroup, free_port, wait_until
from bench.rawcelery import QUEUE as RAW_QUEUE
from bench.rawcelery import REDIS_URL_ENV as RAW_REDIS_URL_ENV
from bench.worker import PROBE_DIR_ENV, READY_FILE_ENV, UPSTREAM_ENV

#: Pools the bench can ask for.
POOLS = ("threads", "gevent", "prefork", "solo")
#: Seconds a server or worker may take to come up.
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class StackSpec:
    """What to start."""

    workers: int
    pool: str | None
    """None = the default worker command's pool (batchq's choice)."""
    concurrency: int | None
    """None = the default worker command's concurrency."""
    latency_ms: float
    rpm: int
    tpm: int = 0
    max_in_flight: int | None = None
    """BATCHQ_MAX_IN_FLIGHT; None keeps batchq's default."""
    max_requests: int = 10_000
    pool_flags: bool = True
    """Also pass a requested pool / concurrency as -P / -c (not only as BATCHQ_WORKER_* variables)."""


@dataclass
class Stack:
    """A started stack: URLs, the processes, and helpers to read the simulator and Redis."""

    spec: StackSpec
    run_dir: Path
    group: ProcGroup
    redis_url: str = ""
    sim_root: str = ""
    api_url: str = ""
    workers: list[Proc] = field(default_factory=list)
    worker_info: list[dict[str, Any]] = field(default_factory=list)
    """What each worker reported when ready: pool, concurrency, pid."""
    api: Proc | None = None
    redis_proc: Proc | None = None

    @property
    def probe_dir(self) -> Path:
        return self.run_dir / "probe"

    @property
    def raw_redis_url(self) -> str:
        """The raw Celery reference's own database on the same server."""
        return self.redis_url.rsplit("/", 1)[0] + "/1"

    def pool_label(self) -> str:
        """``threads -c 64 x 2``, from what the workers reported."""
        kinds = sorted({f"{w['pool']} -c {w['concurrency']}" for w in self.worker_info})
        return f"{'/'.join(kinds) or '?'} x {len(self.worker_info)}"

    def sim_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.sim_root}/sim/stats", timeout=10).json()
        return stats

    def sim_reset(self) -> None:
        httpx.post(f"{self.sim_root}/sim/reset", timeout=10).raise_for_status()

    def redis_memory_peak(self) -> int:
        client = redis.Redis.from_url(self.redis_url)
        try:
            info = client.info("memory")
            return int(info["used_memory_peak"])
        finally:
            client.close()

    def redis_commands(self) -> dict[str, int]:
        """Calls per Redis command since the server started (INFO commandstats)."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            stats = client.info("commandstats")
            return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        finally:
            client.close()

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"----- {p.name} ({p.log_path})\n{p.log_tail(lines)}" for p in self.group.procs)


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def start_stack(spec: StackSpec, run_dir: Path, group: ProcGroup) -> Stack:
    """Start every process of ``spec`` into ``group`` (the caller's ``with`` block stops them).

    Raises:
        RuntimeError: a process did not come up; the message holds its log tail.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(spec, run_dir, group)
    stack.probe_dir.mkdir(exist_ok=True)
    _start_redis(stack)
    _start_sim(stack)
    env = {
        "BATCHQ_REDIS_URL": stack.redis_url,
        "BATCHQ_LOCAL_MODE": "true",  # no API keys: loopback clients only (the API refuses to start otherwise)
        "BATCHQ_STORAGE_URL": f"file://{run_dir / 'store'}",
        "BATCHQ_UPSTREAM_URL": f"{stack.sim_root}/v1",
        "BATCHQ_RATE_LIMIT_RPM": str(spec.rpm),
        "BATCHQ_RATE_LIMIT_TPM": str(spec.tpm),
        "BATCHQ_MAX_REQUESTS_PER_BATCH": str(max(spec.max_requests, 10_000)),
    }
    if spec.max_in_flight is not None:
        env["BATCHQ_MAX_IN_FLIGHT"] = str(spec.max_in_flight)
    if spec.pool is not None:
        env["BATCHQ_WORKER_POOL"] = spec.pool
    if spec.concurrency is not None:
        env["BATCHQ_WORKER_CONCURRENCY"] = str(spec.concurrency)
    _start_api(stack, env)
    _start_workers(stack, env)
    return stack


def _start_redis(stack: Stack) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (make install installs it)")
    port = free_port()
    data = stack.run_dir / "redis"
    data.mkdir(exist_ok=True)
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data),
        "--daemonize",
        "no",
    ]
    stack.redis_proc = stack.group.start(f"redis-{port}", argv)
    stack.redis_url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        _wait(stack.redis_proc, lambda: bool(client.ping()), "redis-server")
    finally:
        client.close()


def _start_sim(stack: Stack) -> None:
    port = free_port()
    argv = [
        _bin("batchq"),
        "sim",
        "--port",
        str(port),
        "--latency-ms",
        str(stack.spec.latency_ms),
        "--rpm",
        str(stack.spec.rpm),
        "--log-level",
        "WARNING",
    ]
    proc = stack.group.start(f"sim-{port}", argv)
    stack.sim_root = f"http://127.0.0.1:{port}"
    _wait(proc, lambda: httpx.get(f"{stack.sim_root}/healthz", timeout=2).status_code == 200, "simulator")


def _start_api(stack: Stack, env: dict[str, str]) -> None:
    port = free_port()
    stack.api = stack.group.start(
        f"api-{port}", [_bin("batchq"), "api", "--host", "127.0.0.1", "--port", str(port)], env
    )
    stack.api_url = f"http://127.0.0.1:{port}"
    _wait(stack.api, lambda: httpx.get(f"{stack.api_url}/healthz", timeout=2).status_code == 200, "api")


def _worker_argv(app: str, queues: str, name: str, pool: str | None, concurrency: int | None) -> list[str]:
    argv = [sys.executable, "-m", "bench.worker", "-A", app, "worker", "-Q", queues]
    if pool is not None:
        argv += ["-P", pool]
    if concurrency is not None:
        argv += ["-c", str(concurrency)]
    return argv + ["-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "WARNING"]


def _start_workers(stack: Stack, env: dict[str, str]) -> None:
    spec = stack.spec
    flags = spec.pool_flags
    ready_files = []
    for i in range(spec.workers):
        ready = stack.run_dir / f"worker-{i}.ready"
        ready.unlink(missing_ok=True)
        argv = _worker_argv(
            "workers",
            "intake,requests,finalize",
            f"bench{i}",
            spec.pool if flags else None,
            spec.concurrency if flags else None,
        )
        worker_env = {
            **env,
            PROBE_DIR_ENV: str(stack.probe_dir),
            READY_FILE_ENV: str(ready),
            UPSTREAM_ENV: stack.sim_root,
        }
        stack.workers.append(stack.group.start(f"worker-{i}", argv, worker_env))
        ready_files.append(ready)
    for proc, ready in zip(stack.workers, ready_files, strict=True):
        _wait(proc, ready.exists, f"worker {proc.name}", interval_s=0.1)
        stack.worker_info.append(json.loads(ready.read_text()))


def start_raw_worker(stack: Stack, pool: str, concurrency: int, tag: str) -> tuple[Proc, dict[str, Any]]:
    """Start the raw Celery reference worker (``-P pool -c concurrency``) into the stack's group.

    Raises:
        RuntimeError: it did not come up.
    """
    probe = stack.run_dir / "probe-celery"
    probe.mkdir(exist_ok=True)
    ready = stack.run_dir / f"celery-{tag}.ready"
    ready.unlink(missing_ok=True)
    env = {
        RAW_REDIS_URL_ENV: stack.raw_redis_url,
        PROBE_DIR_ENV: str(probe),
        READY_FILE_ENV: str(ready),
        UPSTREAM_ENV: stack.sim_root,
    }
    argv = _worker_argv("bench.rawcelery", RAW_QUEUE, f"raw-{tag}", pool, concurrency)
    proc = stack.group.start(f"celery-{tag}", argv, env)
    _wait(proc, ready.exists, f"raw Celery worker {proc.name}", interval_s=0.1)
    info: dict[str, Any] = json.loads(ready.read_text())
    return proc, info


def _wait(proc: Proc, predicate: Callable[[], bool], what: str, interval_s: float = 0.05) -> None:
    def up() -> bool:
        return not proc.alive() or predicate()  # a process that died stops the wait at once

    try:
        wait_until(up, START_TIMEOUT_S, what, interval_s)
    except TimeoutError as exc:
        raise RuntimeError(f"{what} did not start: {exc}\n{proc.log_tail()}") from None
    if not proc.alive():
        raise RuntimeError(f"{what} exited at start:\n{proc.log_tail()}")
