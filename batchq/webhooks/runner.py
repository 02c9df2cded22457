"""Webhook attempts run on a few background threads of the worker process, not in the Celery pool's slots.

A receiver may take up to ~20 s to answer; in a pool slot that would hold back intake, request and finalize
tasks on the same worker (the documented worker consumes the ``webhooks`` queue too, and a prefork pool has
only a couple of slots). So the delivery task only hands the attempt over and returns. What makes it at least
once is the due set, not the task message: every delivery stays armed there (a grace period past its planned
attempt) until an attempt ends it, and the sweeper re-sends it if the process died with it queued here.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Attempts one process runs at once.
DEFAULT_THREADS = 8
#: Attempts waiting here at most; past it, a new one is left to the due set (the sweeper re-sends it).
DEFAULT_MAX_PENDING = 1000


class BackgroundRunner:
    """A fixed set of daemon threads draining a bounded queue (daemon: a shutdown never waits on receivers)."""

    def __init__(self, threads: int = DEFAULT_THREADS, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._queue: queue.Queue[Callable[[], None]] = queue.Queue(maxsize=max_pending)
        self._threads = [
            threading.Thread(target=self._loop, name=f"batchq-webhooks-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue ``job``; False when the queue is full (the caller leaves the work to its fallback)."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            return False
        return True

    def pending(self) -> int:
        return self._queue.qsize()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            try:
                job()
            except Exception:  # noqa: BLE001 - one bad attempt must not kill the thread
                log.exception("webhook attempt failed")
            finally:
                self._queue.task_done()

    def join(self) -> None:
        """Wait until every queued job ran (tests)."""
        self._queue.join()


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
