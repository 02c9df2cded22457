"""The raw Celery reference: a chord of N tasks that each make one POST, with a callback; nothing of batchq.

What Celery itself costs on this box, measured in the same run as batchq, on the same redis-server (its own
database), against the same simulator, with the same pool and concurrency. Delivery settings match batchq's
(late acks, prefetch 1, task events off, JSON) so the comparison is about batchq's own work per request.

Worker side: ``celery -A bench.rawcelery worker -Q rawbench -P <pool> -c <n>`` with
``$BATCHQ_BENCH_RAW_REDIS_URL`` (the bench starts it through ``bench.worker``, which adds the timing probe).
Driver side: ``python -m bench.rawcelery --redis-url ... --url ... --requests N --result F`` applies the
chord and writes the time from apply to the callback; the bench runs it as a child so its CPU is measured alone.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import redis
import urllib3
from celery import Celery, chord

#: Environment variable with the broker and result backend URL of the reference app.
REDIS_URL_ENV = "BATCHQ_BENCH_RAW_REDIS_URL"
#: The reference app's only queue.
QUEUE = "rawbench"
#: One urllib3 pool manager for every task, as batchq's upstream client (the same HTTP cost on both sides).
_http = urllib3.PoolManager(maxsize=2048, block=False, timeout=urllib3.Timeout(connect=10.0, read=600.0), retries=False)


def make_app(redis_url: str) -> Celery:
    app = Celery("rawbench", broker=redis_url, backend=redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        result_backend_thread_safe=True,
        redis_max_connections=2048,
        broker_transport_options={"max_connections": 2048},
        result_expires=3600,
        task_default_queue=QUEUE,
    )
    return app


app = make_app(os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/1"))


def post(url: str, i: int) -> int:
    """One POST of a small chat request; the tiny result is the HTTP status."""
    body = {"model": "bench-model", "messages": [{"role": "user", "content": f"Question {i}"}], "max_tokens": 16}
    response = _http.request("POST", url, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return int(response.status)


def done(statuses: list[int], key: str) -> None:
    """The chord callback: tell the driver how many calls answered 200."""
    client = redis.Redis.from_url(app.conf.broker_url)
    try:
        client.rpush(key, json.dumps({"n": len(statuses), "ok": sum(1 for s in statuses if s == 200)}))
        client.expire(key, 3600)
    finally:
        client.close()


# Registered without decorator syntax: Celery's decorators carry no types.
app.task(name="rawbench.post")(post)
app.task(name="rawbench.done")(done)


def drive(redis_url: str, url: str, n: int, timeout_s: float) -> dict[str, Any]:
    """Apply the chord, block until its callback reports; time from apply to callback."""
    driver = make_app(redis_url)
    key = f"rawbench:done:{os.getpid()}:{time.time_ns()}"
    waiter = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        header = [driver.signature("rawbench.post", args=(url, i), queue=QUEUE) for i in range(n)]
        callback = driver.signature("rawbench.done", args=(key,), queue=QUEUE)
        started, cpu_started = time.perf_counter(), time.process_time()
        chord(header, app=driver)(callback)
        applied = time.perf_counter() - started
        deadline = started + timeout_s
        popped = None
        while popped is None and time.perf_counter() < deadline:  # short BLPOPs: the client's socket timeout
            popped = waiter.blpop([key], timeout=1)
        wall = time.perf_counter() - started
    finally:
        waiter.close()
    if popped is None:
        return {"completed": 0, "n": 0, "wall_s": wall, "apply_s": applied, "timed_out": True}
    report = json.loads(popped[1])
    return {
        "completed": int(report["ok"]),
        "n": int(report["n"]),
        "wall_s": wall,
        "apply_s": applied,
        "driver_cpu_s": time.process_time() - cpu_started,
        "timed_out": False,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.rawcelery", description=__doc__.split("\n")[0])
    p.add_argument("--redis-url", required=True)
    p.add_argument("--url", required=True, help="full URL of the upstream's chat completions endpoint")
    p.add_argument("--requests", type=int, required=True)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--result", type=Path, required=True, help="JSON file of the figures")
    args = p.parse_args(argv)
    args.result.write_text(json.dumps(drive(args.redis_url, args.url, args.requests, args.timeout)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
