"""`make run`: the whole stack on this machine and a demo batch; Ctrl-C stops all of it.

Starts (each only if not already given): redis-server with AOF (appendfsync everysec, noeviction), the upstream
simulator (unless BATCHQ_UPSTREAM_URL is set), the API (with the batches' dashboard at /dashboard), one Celery
worker and Flower. Then it submits
examples/requests.jsonl (1,000 lines), shows progress, prints where the output is and a few results.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STATE = ROOT / ".batchq"
LOGS = STATE / "logs"


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port(preferred: int) -> int:
    if not port_open(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, what: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise SystemExit(f"{what} did not start; see {LOGS}/{what}.log")


class Stack:
    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.env = dict(os.environ)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT, start_new_session=True
        )
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in reversed(self.procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            print(f"stopped {name}")


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # Ctrl-C and a plain `kill` both stop the whole stack (a background shell would otherwise ignore SIGINT).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    LOGS.mkdir(parents=True, exist_ok=True)
    stack = Stack()
    env = stack.env
    try:
        if "BATCHQ_REDIS_URL" not in env:
            port = free_port(6379)
            if shutil.which("redis-server") is None:
                raise SystemExit("redis-server is missing: run `make install`")
            (STATE / "redis").mkdir(parents=True, exist_ok=True)
            proc = stack.start(
                "redis",
                [
                    "redis-server",
                    str(ROOT / "deploy" / "redis.conf"),
                    "--port",
                    str(port),
                    "--dir",
                    str(STATE / "redis"),
                ],
            )
            wait_port(port, "redis", proc)
            env["BATCHQ_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        if "BATCHQ_UPSTREAM_URL" not in env:
            port = free_port(9000)
            proc = stack.start(
                "sim",
                [str(BIN / "batchq"), "sim", "--port", str(port), "--latency-ms", "100", "--latency-jitter-ms", "50"],
            )
            wait_port(port, "sim", proc)
            env["BATCHQ_UPSTREAM_URL"] = f"http://127.0.0.1:{port}/v1"
        env.setdefault("BATCHQ_STORAGE_URL", f"file://{STATE / 'data'}")
        env.setdefault("BATCHQ_PRICES", "Llama-3.3-70B-Instruct=0.6:0.6")
        if "BATCHQ_API_KEYS" not in env:
            env["BATCHQ_LOCAL_MODE"] = "true"  # the demo runs keyless, loopback only (the API says so loudly)
        api_port = free_port(8000)
        proc = stack.start("api", [str(BIN / "batchq"), "api", "--port", str(api_port)])
        wait_port(api_port, "api", proc)
        stack.start(
            "worker",
            [
                str(BIN / "celery"),
                "-A",
                "workers",
                "worker",
                "-Q",
                "intake,requests,finalize",
                "-l",
                "INFO",
                "-n",
                "demo@%h",
            ],
        )
        flower_port = free_port(5555)
        # Loopback only; without FLOWER_BASIC_AUTH its API is off, so the dashboard is read-only.
        stack.start(
            "flower",
            [
                str(BIN / "celery"),
                "-A",
                "workers",
                "flower",
                f"--port={flower_port}",
                "--address=127.0.0.1",
                "--max_tasks=20000",
            ],
        )
        api_url = f"http://127.0.0.1:{api_port}"
        os.environ["BATCHQ_URL"] = api_url
        print(f"API      {api_url}   (OpenAI base_url: {api_url}/v1)")
        flower_mode = (
            "basic auth" if env.get("FLOWER_BASIC_AUTH") else "read-only; FLOWER_BASIC_AUTH=user:pass for actions"
        )
        print(f"Flower   http://127.0.0.1:{flower_port}   ({flower_mode})")
        dashboard_mode = "sign in with an API key" if env.get("BATCHQ_API_KEYS") else "local mode: no key needed"
        print(f"Batches  {api_url}/dashboard   ({dashboard_mode})")
        print(f"Upstream {env['BATCHQ_UPSTREAM_URL']}")
        print(f"Logs     {LOGS}")
        demo(api_url)
        print("\nThe stack keeps running; press Ctrl-C to stop it.")
        while all(p.poll() is None for _, p in stack.procs):
            time.sleep(1)
        dead = [n for n, p in stack.procs if p.poll() is not None]
        print(f"a process exited: {dead}; see {LOGS}")
    except KeyboardInterrupt:
        print("\nstopping…")
    finally:
        stack.stop()


def demo(api_url: str) -> None:
    import batchq

    client = batchq.Client(base_url=api_url)
    requests_path = ROOT / "examples" / "requests.jsonl"
    print(f"\nSubmitting {requests_path.relative_to(ROOT)} …")
    batch = batchq.submit_batch(requests=requests_path.read_text())
    print(f"Batch ID: {batch.id}\nStatus: {batch.status}")
    batch = batchq.wait(batch.id, progress=True)
    print(
        f"Status: {batch.status}  completed={batch.request_counts.completed} failed={batch.request_counts.failed}"
        f" total={batch.request_counts.total}"
    )
    if batch.usage:
        print(f"Tokens: {batch.usage.total_tokens}   estimated cost: {getattr(batch, 'estimated_cost', None)}")
    out = ROOT / ".batchq" / f"{batch.id}_output.jsonl"
    with out.open("wb") as f:
        for result in client.batches.results(batch.id):
            f.write((json.dumps(result) + "\n").encode())
    print(f"Output file id: {batch.output_file_id}  (GET {api_url}/v1/files/{batch.output_file_id}/content)")
    print(f"Results written to {out}")
    for result in list(batchq.get_batch_results(batch.id))[:3]:
        if result["error"] is None:
            content = result["response"]["body"]["choices"][0]["message"]["content"]
            print(f"  {result['custom_id']}: {content}")
        else:
            print(f"  {result['custom_id']}: Error - {result['error']}")


if __name__ == "__main__":
    main()
