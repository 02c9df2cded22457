"""The stack one measurement runs on: redis-server, ``batchq sim``, ``batchq api`` and N Celery workers.

All of them listen on free loopback ports and are children of the bench (``ProcGroup`` stops them). Redis runs
without persistence (``--save '' --appendonly no``) so that disk writes do not blur the figures.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from batchq.bench.procs import Proc, ProcGroup, free_port, wait_until
from batchq.bench.worker import PROBE_DIR_ENV, READY_FILE_ENV

#: Worker concurrency (``-c``) per pool when ``--concurrency`` is not given.
DEFAULT_CONCURRENCY = {"threads": 64, "gevent": 256, "prefork": 8}
#: Seconds a server or worker may take to come up.
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class StackSpec:
    """What to start."""

    workers: int
    pool: str
    concurrency: int
    latency_ms: float
    rpm: int
    tpm: int = 0
    max_in_flight: int | None = None
    """BATCHQ_MAX_IN_FLIGHT; None keeps batchq's default."""
    max_requests: int = 10_000


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
    api: Proc | None = None
    redis_proc: Proc | None = None

    @property
    def probe_dir(self) -> Path:
        return self.run_dir / "probe"

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


def _start_workers(stack: Stack, env: dict[str, str]) -> None:
    spec = stack.spec
    ready_files = []
    for i in range(spec.workers):
        ready = stack.run_dir / f"worker-{i}.ready"
        ready.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "batchq.bench.worker",
            "-A",
            "workers",
            "worker",
            "-Q",
            "intake,requests,finalize",
            "-P",
            spec.pool,
            "-c",
            str(spec.concurrency),
            "-n",
            f"bench{i}@%h",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "WARNING",
        ]
        worker_env = {**env, PROBE_DIR_ENV: str(stack.probe_dir), READY_FILE_ENV: str(ready)}
        stack.workers.append(stack.group.start(f"worker-{i}-{spec.pool}", argv, worker_env))
        ready_files.append(ready)
    for proc, ready in zip(stack.workers, ready_files, strict=True):
        _wait(proc, ready.exists, f"worker {proc.name}", interval_s=0.1)


def _wait(proc: Proc, predicate: Callable[[], bool], what: str, interval_s: float = 0.05) -> None:
    def up() -> bool:
        return not proc.alive() or predicate()  # a process that died stops the wait at once

    try:
        wait_until(up, START_TIMEOUT_S, what, interval_s)
    except TimeoutError as exc:
        raise RuntimeError(f"{what} did not start: {exc}\n{proc.log_tail()}") from None
    if not proc.alive():
        raise RuntimeError(f"{what} exited at start:\n{proc.log_tail()}")
