"""The workers' threads pool: Celery's ``threads`` pool without concurrent.futures.

Celery's threads pool hands every task to a ``ThreadPoolExecutor``: a Future, a work item, two locks and a
``threading.Semaphore`` probe (a Python-level Condition) per task, in the consumer thread, which every task of
the process goes through. With 1,000 slots that was ~25 % of a worker's GIL time (py-spy, docs/bench.md). Here
a task is one tuple put on a ``queue.SimpleQueue`` (C), taken by the first idle thread; threads start on demand
up to the pool's limit and then stay. Celery's threads pool has no per-task handle either (it cannot terminate
a running thread), so ``on_apply`` returns none.

``-P threads`` and the plain worker command both run this pool (workers/app.py); the bench's raw-Celery reference
runs Celery's own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any

from celery.concurrency.base import BasePool, apply_target

log = logging.getLogger(__name__)

_Job = tuple[Callable[..., Any], Any, Any, Any, Any]


class TaskPool(BasePool):  # type: ignore[misc]
    """Up to ``limit`` threads taking tasks from one queue, in the order they came."""

    limit: int
    body_can_be_buffer = True
    signal_safe = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        """Threads that will take the next job without a new one being started (see ``on_apply``)."""
        self._lock = threading.Lock()

    def on_apply(
        self,
        target: Callable[..., Any],
        args: Any = None,
        kwargs: Any = None,
        callback: Any = None,
        accept_callback: Any = None,
        **_: Any,
    ) -> None:
        self._jobs.put((target, args, kwargs, callback, accept_callback))
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # an idle thread takes it
                return
            if len(self._threads) >= self.limit:
                return  # every thread is busy: the job waits for the first to finish
            thread = threading.Thread(target=self._work, name=f"batchq-pool-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        jobs, lock = self._jobs, self._lock
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                apply_target(*job)
            except BaseException:  # noqa: BLE001 - Celery's pool kept it in a Future; a pool thread must live on
                log.exception("a task raised out of the pool")
            finally:
                with lock:
                    self._idle += 1

    def on_stop(self) -> None:
        """Warm shutdown: jobs not started are dropped (their messages are not acked: they go back to the
        queue with the channel), running ones finish first."""
        try:
            while True:
                self._jobs.get_nowait()
        except Empty:
            pass
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:
            thread.join()
        super().on_stop()

    def _get_info(self) -> dict[str, Any]:
        info: dict[str, Any] = super()._get_info()
        info.update({"max-concurrency": self.limit, "threads": len(self._threads)})
        return info
