"""The background runner that keeps webhook attempts out of the Celery pool's slots."""

from __future__ import annotations

import threading
import time

from batchq.webhooks.runner import BackgroundRunner


def test_jobs_run_and_a_failing_job_does_not_stop_the_threads() -> None:
    runner = BackgroundRunner(threads=2, max_pending=10)
    done: list[int] = []

    def boom() -> None:
        raise RuntimeError("receiver exploded")

    assert runner.submit(boom)
    for i in range(5):
        assert runner.submit(lambda i=i: done.append(i))  # type: ignore[misc]
    runner.join()
    assert sorted(done) == [0, 1, 2, 3, 4]


def test_a_full_queue_refuses_instead_of_blocking() -> None:
    # Given one thread stuck on a slow receiver and a queue of two
    release = threading.Event()
    runner = BackgroundRunner(threads=1, max_pending=2)
    assert runner.submit(lambda: release.wait(5) and None)
    deadline = time.monotonic() + 5
    while runner.pending() and time.monotonic() < deadline:  # until the thread took the slow job
        time.sleep(0.01)
    assert runner.submit(lambda: None) and runner.submit(lambda: None)
    # Then the next submit answers False at once (the due set re-sends that delivery later)
    assert runner.submit(lambda: None) is False
    release.set()
    runner.join()
