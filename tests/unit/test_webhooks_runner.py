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


def test_one_account_cannot_take_every_thread() -> None:
    # Given four threads, one account's jobs allowed at most two at a time, and that account's receivers hanging
    hang = threading.Event()
    runner = BackgroundRunner(threads=4, max_pending=100, per_key=2)
    started: list[str] = []
    lock = threading.Lock()

    def slow() -> None:
        with lock:
            started.append("a")
        hang.wait(10)

    for _ in range(8):
        assert runner.submit(slow, key="acct-a")
    # When another account's job comes in
    other_ran = threading.Event()
    assert runner.submit(other_ran.set, key="acct-b")
    # Then it runs at once, beside the two hanging jobs of the first account
    assert other_ran.wait(5)
    with lock:
        assert started == ["a", "a"]
    hang.set()
    runner.join()
    assert started == ["a"] * 8


def test_accounts_take_turns() -> None:
    # Given one thread and three accounts' jobs queued in bursts
    gate = threading.Event()
    runner = BackgroundRunner(threads=1, max_pending=100, per_key=1)
    order: list[str] = []
    assert runner.submit(lambda: gate.wait(5) and None, key="first")
    for key in ("a", "a", "a", "b", "b", "c"):
        assert runner.submit(lambda key=key: order.append(key), key=key)  # type: ignore[misc]
    gate.set()
    runner.join()
    # Then they are served round-robin, not in arrival order
    assert order == ["a", "b", "c", "a", "b", "a"]
