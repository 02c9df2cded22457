"""Start and stop the real servers the suite talks to: redis-server, moto's S3 server, batchq processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import redis

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last!r})")


class Proc:
    """A child process whose output goes to a log file; stopped (and its group killed) on close."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.popen = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            assert self.popen is not None
            self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server is not installed (make test installs it: apt-get install -y redis-server)")
    return path


def start_redis(workdir: Path, port: int, log_dir: Path, appendonly: bool = False) -> Proc:
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(workdir),
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--appendfsync",
        "everysec",
        "--maxmemory-policy",
        "noeviction",
        "--daemonize",
        "no",
    ]
    proc = Proc(f"redis-{port}", argv, log_dir).start()
    client = redis.Redis(port=port)
    wait_for(lambda: client.ping(), 15, "redis-server")
    client.close()
    return proc


def start_moto(port: int, log_dir: Path) -> Proc:
    proc = Proc(f"moto-{port}", [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log_dir).start()
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/moto-api/").status_code < 500, 30, "moto server")
    return proc


def batchq_cmd(*args: str) -> list[str]:
    return [str(VENV_BIN / "batchq"), *args]


def celery_worker_cmd(
    name: str,
    *,
    queues: str = "intake,requests,finalize",
    pool: str | None = "gevent",
    concurrency: int | None = 16,
) -> list[str]:
    """The worker command; ``pool``/``concurrency`` None leaves the flag out (the README's plain command).

    The default pool is the plain command's (gevent), named with ``-P`` so that the worker skips the plain
    command's restart under it (~1 s a start); tests/e2e/test_defaults.py runs the plain command itself."""
    return [
        str(VENV_BIN / "celery"),
        "-A",
        "workers",
        "worker",
        "-Q",
        queues,
        *(["-P", pool] if pool else []),
        *(["-c", str(concurrency)] if concurrency else []),
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "-l",
        "INFO",
    ]
