"""Webhook attempts run on a few background threads of the worker process, not in the Celery pool's slots.

An attempt may take up to 2 x BATCHQ_WEBHOOK_TIMEOUT_S (10 s) before its deadline ends it; in a pool slot that
would hold back intake, request and finalize tasks on the same worker (the documented worker consumes the
``webhooks`` queue too, and a prefork pool has only a couple of slots). So the delivery task only hands the
attempt over and returns. What makes it at least once is the due set, not the task message: every delivery stays
armed there (a grace period past its planned attempt) until an attempt ends it, and the sweeper re-sends it if
the process died with it queued here.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Attempts one process runs at once.
DEFAULT_THREADS = 8
#: Attempts waiting here at most; past it, a new one is left to the due set (the sweeper re-sends it).
DEFAULT_MAX_PENDING = 1000

Job = Callable[[], None]


class BackgroundRunner:
    """A fixed set of daemon threads draining a bounded queue (daemon: a shutdown never waits on receivers).

    Fair between keys (accounts): one key runs at most ``per_key`` jobs at once, and keys with jobs waiting take
    turns. So a few receivers of one account that hold every attempt to its deadline take a quarter of the
    threads, never all of them, and the other accounts' webhooks keep going.
    """

    def __init__(
        self, threads: int = DEFAULT_THREADS, max_pending: int = DEFAULT_MAX_PENDING, per_key: int | None = None
    ) -> None:
        self.max_pending = max_pending
        self.per_key = per_key or max(1, threads // 4)
        self._cond = threading.Condition()
        self._waiting: dict[str, deque[Job]] = {}
        """Jobs not yet started, per key; the dict's order is the turn order."""
        self._running: dict[str, int] = {}
        self._pending = 0
        self._unfinished = 0
        self._threads = [
            threading.Thread(target=self._loop, name=f"batchq-webhooks-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job, key: str = "") -> bool:
        """Queue ``job`` under ``key``; False when the queue is full (the caller leaves the work to its fallback)."""
        with self._cond:
            if self._pending >= self.max_pending:
                return False
            self._waiting.setdefault(key, deque()).append(job)
            self._pending += 1
            self._unfinished += 1
            self._cond.notify()
        return True

    def pending(self) -> int:
        with self._cond:
            return self._pending

    def _take(self) -> tuple[str, Job] | None:
        """The first waiting job whose key is under its share (call with the condition held)."""
        for key, jobs in self._waiting.items():
            if self._running.get(key, 0) < self.per_key:
                job = jobs.popleft()
                del self._waiting[key]
                if jobs:  # its next job waits for the other keys' turns
                    self._waiting[key] = jobs
                self._running[key] = self._running.get(key, 0) + 1
                self._pending -= 1
                return key, job
        return None

    def _loop(self) -> None:
        while True:
            with self._cond:
                taken = self._take()
                while taken is None:
                    self._cond.wait()
                    taken = self._take()
            key, job = taken
            try:
                job()
            except Exception:  # noqa: BLE001 - one bad attempt must not kill the thread
                log.exception("webhook attempt failed")
            finally:
                with self._cond:
                    self._running[key] -= 1
                    if not self._running[key]:
                        del self._running[key]
                    self._unfinished -= 1
                    self._cond.notify_all()  # a job of this key may run now; join() may return

    def join(self) -> None:
        """Wait until every queued job ran (tests)."""
        with self._cond:
            while self._unfinished:
                self._cond.wait()


_runner: BackgroundRunner | None = None
_runner_pid: int | None = None
_lock = threading.Lock()


def get_runner() -> BackgroundRunner:
    """This process's runner, started on first use (and again in a forked child: threads do not survive a fork)."""
    global _runner, _runner_pid
    with _lock:
        if _runner is None or _runner_pid != os.getpid():
            _runner, _runner_pid = BackgroundRunner(), os.getpid()
        return _runner
