"""batchq's threads pool: every job runs once, at most ``limit`` at a time, threads started only when needed."""

from __future__ import annotations

import threading
import time
from typing import Any

from batchq.broker.pools import TaskPool


def _ignore(_: object) -> None:
    pass


def _pool(limit: int) -> TaskPool:
    pool = TaskPool(limit=limit)
    pool.start()
    return pool


def test_every_job_runs_once_with_its_callback() -> None:
    pool = _pool(4)
    results: list[int] = []
    accepted: list[Any] = []
    done = threading.Event()

    def callback(value: int) -> None:
        results.append(value)
        if len(results) == 50:
            done.set()

    for n in range(50):
        pool.apply_async(lambda x: x * 2, args=(n,), callback=callback, accept_callback=lambda *a: accepted.append(a))
    assert done.wait(5)
    assert sorted(results) == [n * 2 for n in range(50)] and len(accepted) == 50
    assert pool.info["threads"] <= 4 and pool.info["max-concurrency"] == 4
    pool.stop()


def test_at_most_limit_jobs_run_at_once_and_the_rest_wait() -> None:
    pool = _pool(3)
    running = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()
    finished = threading.Semaphore(0)

    def job() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(5)
        with lock:
            running -= 1
        finished.release()

    for _ in range(7):
        pool.apply_async(job, args=(), callback=_ignore)
    time.sleep(0.2)
    assert peak == 3 and pool.info["threads"] == 3  # the other four wait in the queue, no fourth thread
    release.set()
    for _ in range(7):
        assert finished.acquire(timeout=5)
    assert pool.info["threads"] == 3
    pool.stop()


def test_an_idle_thread_takes_the_next_job_instead_of_a_new_one() -> None:
    pool = _pool(10)
    for _ in range(20):
        ran = threading.Event()
        pool.apply_async(ran.set, args=(), callback=_ignore)
        assert ran.wait(5)
        time.sleep(0.01)  # the thread is back in the queue before the next job comes
    assert pool.info["threads"] == 1
    pool.stop()


def test_stop_waits_for_running_jobs_and_drops_the_queued_ones() -> None:
    pool = _pool(1)
    started = threading.Event()
    ran: list[str] = []

    def slow() -> None:
        started.set()
        time.sleep(0.3)
        ran.append("slow")

    pool.apply_async(slow, args=(), callback=_ignore)
    pool.apply_async(lambda: ran.append("queued"), args=(), callback=_ignore)
    assert started.wait(5)
    pool.stop()
    assert ran == ["slow"]  # finished before stop returned; the queued job's message is not acked, it goes back


def test_a_job_that_raises_does_not_take_its_thread_down() -> None:
    pool = _pool(1)
    done = threading.Event()

    def broken_callback(_: object) -> None:
        raise RuntimeError("what escapes apply_target")

    pool.apply_async(lambda: None, args=(), callback=broken_callback)
    pool.apply_async(done.set, args=(), callback=_ignore)
    assert done.wait(5) and pool.info["threads"] == 1
    pool.stop()
