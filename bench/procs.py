"""Child processes of the bench and a sampler of their resource use.

Every child runs in its own session (so a Ctrl-C on the terminal reaches only the bench, which then stops them in
order) and is stopped with its whole process group: SIGTERM, a bounded wait, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

#: Seconds between two resource samples (the issue asks for 0.2 s).
SAMPLE_INTERVAL_S = 0.2
#: Default grace period between SIGTERM and SIGKILL.
STOP_GRACE_S = 10.0


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    """Call ``predicate`` until it returns True; any exception counts as "not yet".

    Raises:
        TimeoutError: ``timeout_s`` passed first.
    """
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # noqa: BLE001 - a server that is not up yet raises anything
            last = exc
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s (last error: {last!r})")


class Proc:
    """A child process writing stdout and stderr to ``<log_dir>/<name>.log``."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait(self, timeout_s: float) -> int | None:
        """The exit status, or None if still running after ``timeout_s``."""
        if self.popen is None:
            return None
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the process group, wait up to ``grace_s``, then SIGKILL whatever is left of the group."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            _killpg(self.popen.pid, signal.SIGTERM)
            self.wait(grace_s)
        _killpg(self.popen.pid, signal.SIGKILL)  # also children that outlived a leader that exited
        self.wait(5.0)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def _killpg(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own session, so its group id is its pid
    except (ProcessLookupError, PermissionError):
        pass


class ProcGroup:
    """The processes of one stack; a context manager that stops all of them (in reverse order) on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, self.log_dir, env)
        self.procs.append(proc)  # before start: a failed start is still cleaned up
        return proc.start()

    def stop_all(self) -> None:
        """Stop every process; a second Ctrl-C waits until this is done (it is bounded: about 15 s a process)."""
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for proc in reversed(self.procs):
                proc.stop()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def __enter__(self) -> ProcGroup:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_all()


class TreeSampler:
    """Samples, every ``interval_s`` in a thread, the summed RSS and CPU time of process trees.

    ``peak_rss_bytes`` is the largest sum of RSS over the roots and all their descendants seen in one sample;
    ``start_rss_bytes`` that sum at ``start`` (idle); ``peak_rss_by_root`` the largest RSS of each root's tree;
    ``cpu_s`` is the CPU time (user + system) those processes spent between ``start`` and ``stop``.
    """

    def __init__(self, pids: Sequence[int], interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.pids = list(pids)
        self.interval_s = interval_s
        self.peak_rss_bytes = 0
        self.start_rss_bytes = 0
        self.peak_rss_by_root: dict[int, int] = {}
        self.samples = 0
        self._cpu_start: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    @property
    def cpu_s(self) -> float:
        return sum(last - self._cpu_start.get(pid, 0.0) for pid, last in self._cpu_last.items())

    def start(self) -> TreeSampler:
        self._sample(first=True)
        self._thread.start()
        return self

    def stop(self) -> TreeSampler:
        self._stop.set()
        self._thread.join(5.0)
        self._sample(first=False)
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample(first=False)

    def _trees(self) -> list[tuple[int, list[psutil.Process]]]:
        out: list[tuple[int, list[psutil.Process]]] = []
        for pid in self.pids:
            try:
                root = self._procs.get(pid) or psutil.Process(pid)
                self._procs[pid] = root
                out.append((pid, [root, *root.children(recursive=True)]))
            except psutil.Error:
                continue
        return out

    def _sample(self, *, first: bool) -> None:
        total = 0
        for root, tree in self._trees():
            rss = 0
            for proc in tree:
                try:
                    with proc.oneshot():
                        mem = proc.memory_info().rss
                        times = proc.cpu_times()
                except psutil.Error:
                    continue  # exited between the listing and the read
                rss += mem
                cpu = times.user + times.system
                if first or proc.pid not in self._cpu_start:
                    # a process born during the measurement counts from zero; one alive at start from its value then
                    self._cpu_start[proc.pid] = cpu if first else 0.0
                self._cpu_last[proc.pid] = cpu
            self.peak_rss_by_root[root] = max(self.peak_rss_by_root.get(root, 0), rss)
            total += rss
        self.samples += 1
        if first:
            self.start_rss_bytes = total
        self.peak_rss_bytes = max(self.peak_rss_bytes, total)
