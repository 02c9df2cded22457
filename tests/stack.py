"""The whole batchq stack as real processes, for e2e and chaos tests: API, Celery workers, simulator."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from tests.servers import Proc, batchq_cmd, celery_worker_cmd, free_port, wait_for

FINAL = {"completed", "failed", "expired", "cancelled"}


class Stack:
    """Processes sharing one environment (BATCHQ_* settings); stopped together by ``close``."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.procs: list[Proc] = []
        self.api_url = ""

    def start_api(self) -> str:
        port = free_port()
        proc = Proc(f"api-{port}", batchq_cmd("api", "--port", str(port)), self.log_dir, self.env).start()
        self.procs.append(proc)
        self.api_url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: httpx.get(f"{self.api_url}/healthz").status_code == 200, 30, "api")
        except TimeoutError:
            raise RuntimeError(f"API did not start:\n{proc.log_tail()}") from None
        return self.api_url

    def start_worker(
        self,
        name: str,
        *,
        pool: str | None = "gevent",
        concurrency: int | None = 16,
        queues: str = "intake,requests,finalize",
    ) -> Proc:
        if pool == "gevent" and self.env.get("BATCHQ_FAST_PATH") == "false":
            pool = "threads"  # the stock path's pool: Celery's own (stock kombu under gevent waits 2 s a round)
        proc = Proc(
            f"worker-{name}",
            celery_worker_cmd(name, queues=queues, pool=pool, concurrency=concurrency),
            self.log_dir,
            self.env,
        ).start()
        self.procs.append(proc)
        try:
            wait_for(lambda: "ready." in proc.log_tail(200) or not proc.alive(), 60, f"worker {name}", 0.2)
        except TimeoutError:
            raise RuntimeError(f"worker {name} did not start:\n{proc.log_tail()}") from None
        if not proc.alive():
            raise RuntimeError(f"worker {name} exited:\n{proc.log_tail()}")
        return proc

    def start_sim(self, *args: str) -> str:
        port = free_port()
        proc = Proc(f"sim-{port}", batchq_cmd("sim", "--port", str(port), *args), self.log_dir, self.env).start()
        self.procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{base}/sim/stats").status_code == 200, 30, "simulator")
        return f"{base}/v1"

    def logs(self) -> str:
        return "\n\n".join(f"===== {p.name}\n{p.log_tail(80)}" for p in self.procs)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def wait_final(
    api_url: str, batch_id: str, headers: dict[str, str] | None = None, timeout: float = 180, stack: Stack | None = None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    batch: dict[str, Any] = {}
    while time.monotonic() < deadline:
        batch = httpx.get(f"{api_url}/v1/batches/{batch_id}", headers=headers).json()
        if batch.get("status") in FINAL:
            return batch
        time.sleep(0.3)
    logs = stack.logs() if stack else ""
    raise TimeoutError(f"batch {batch_id} not final after {timeout}s: {json.dumps(batch)[:2000]}\n{logs}")


def chat_lines(n: int, model: str = "test-model", prefix: str = "req") -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"{prefix}-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": f"Question {i}"}], "max_tokens": 20},
        }
        for i in range(n)
    ]


def to_jsonl(lines: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def parse_jsonl(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def python_cmd(*args: str) -> list[str]:
    return [sys.executable, *args]
