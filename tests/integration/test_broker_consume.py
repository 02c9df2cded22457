"""batchq's broker transport on a real Redis: several request messages a pop, in order, kept in memory only.

The workers' consumer goes through the same channel methods (the hub calls them instead of ``drain_events``);
the e2e tests (kill -9, Redis restart, exactly-once) run the whole path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from celery import Celery
from kombu import Consumer, Queue

from batchq.broker import REQUEST_QUEUE, make_producer
from batchq.broker.lines import RequestLines
from batchq.broker.transport import stop_waits
from batchq.config import Settings

UNACKED = "unacked"  # kombu's Redis hash of delivered, not yet acknowledged messages


def publish_lines(app: Celery, lines: list[tuple[str, int]]) -> None:
    """The workers' push of request lines (fast path), from a test."""
    RequestLines(app, redis_lib.Redis.from_url(app.conf.broker_url), fast=True).push(lines)


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Celery:
    return make_producer(Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}", local_mode=True))


class Received:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    def __call__(self, body: Any, message: Any) -> None:
        self.messages.append(message)

    def lines(self) -> list[int]:
        return [int(m.payload[0][1]) for m in self.messages]


@pytest.fixture
def consume(app: Celery) -> Iterator[Any]:
    """``consume(queue, prefetch)`` -> (connection, received): a kombu consumer on batchq's transport."""
    opened: list[Any] = []

    def start(queue: str, prefetch: int) -> tuple[Any, Received]:
        conn = app.connection_for_read()
        opened.append(conn)
        received = Received()
        consumer = Consumer(conn.default_channel, [Queue(queue, routing_key=queue)], callbacks=[received])
        consumer.qos(prefetch_count=prefetch)
        consumer.consume()
        return conn, received

    yield start
    for conn in opened:
        conn.release()


def _calls(redis: redis_lib.Redis, command: str) -> int:
    return int(redis.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_one_pop_takes_the_prefetch_room_in_order(redis: redis_lib.Redis, app: Celery, consume: Any) -> None:
    publish_lines(app, [("batch_p", n) for n in range(5)])
    conn, received = consume(REQUEST_QUEUE, 3)
    pops = _calls(redis, "blmpop")
    conn.drain_events(timeout=2)
    assert received.lines() == [0, 1, 2]  # three messages, the prefetch room, from one command
    assert _calls(redis, "blmpop") == pops + 1
    assert redis.llen(REQUEST_QUEUE) == 2
    with pytest.raises(TimeoutError):  # the prefetch limit holds: nothing more until an ack
        conn.drain_events(timeout=0.3)
    received.messages[0].ack()
    conn.drain_events(timeout=2)
    assert received.lines() == [0, 1, 2, 3]
    for message in received.messages[1:]:
        message.ack()
    conn.drain_events(timeout=2)
    assert received.lines() == [0, 1, 2, 3, 4] and redis.llen(REQUEST_QUEUE) == 0


def test_request_messages_are_not_copied_to_kombus_unacked_hash(
    redis: redis_lib.Redis, app: Celery, consume: Any
) -> None:
    """The line's lease and the sweeper bring a dead worker's lines back; kombu's copy would only cost time."""
    publish_lines(app, [("batch_u", 0)])
    app.send_task("batchq.finalize_batch", args=["batch_u"])  # another queue keeps kombu's full ack emulation
    conn, received = consume(REQUEST_QUEUE, 4)
    conn.drain_events(timeout=2)
    assert received.lines() == [0] and redis.hlen(UNACKED) == 0
    other, finals = consume("finalize", 4)
    other.drain_events(timeout=2)
    assert len(finals.messages) == 1 and redis.hlen(UNACKED) == 1
    finals.messages[0].ack()
    received.messages[0].ack()
    assert redis.hlen(UNACKED) == 0


def test_a_requeued_request_comes_back(redis: redis_lib.Redis, app: Celery, consume: Any) -> None:
    """As kombu's own reject(requeue=True) on Redis: at the far end of the queue, marked redelivered."""
    publish_lines(app, [("batch_r", n) for n in range(3)])
    conn, received = consume(REQUEST_QUEUE, 1)
    conn.drain_events(timeout=2)
    received.messages[0].reject(requeue=True)
    for _ in range(3):
        conn.drain_events(timeout=2)
        received.messages[-1].ack()
    assert received.lines() == [0, 1, 2, 0] and redis.llen(REQUEST_QUEUE) == 0
    assert received.messages[-1].delivery_info.get("redelivered") is True


def test_unacked_requests_go_back_when_the_consumer_closes(redis: redis_lib.Redis, app: Celery, consume: Any) -> None:
    """A warm shutdown: prefetched, unstarted messages are on the queue again, next in line."""
    publish_lines(app, [("batch_c", n) for n in range(4)])
    conn, received = consume(REQUEST_QUEUE, 2)
    conn.drain_events(timeout=2)
    assert received.lines() == [0, 1]
    received.messages[0].ack()
    conn.release()
    assert redis.llen(REQUEST_QUEUE) == 3
    again, later = consume(REQUEST_QUEUE, 3)
    again.drain_events(timeout=2)
    assert sorted(later.lines()) == [1, 2, 3] and later.lines()[0] == 1


def test_an_old_redis_gets_one_brpop_a_message(redis: redis_lib.Redis, app: Celery, consume: Any) -> None:
    publish_lines(app, [("batch_o", n) for n in range(3)])
    conn, received = consume(REQUEST_QUEUE, 3)
    conn.default_channel._has_blmpop = False  # what a Redis before 7.0 answers to the version check
    pops = _calls(redis, "blmpop")
    for _ in range(3):
        conn.drain_events(timeout=2)
    assert received.lines() == [0, 1, 2] and _calls(redis, "blmpop") == pops


def test_an_ack_ends_a_wait_that_had_no_room(app: Celery, consume: Any) -> None:
    """gevent/eventlet consumers wait in drain_events (Celery waits 2 s at a time); an ack must end that wait at
    once, or a green worker takes one prefetch window every 2 s (31 req/s at 64 slots, docs/bench.md)."""
    publish_lines(app, [("batch_w", n) for n in range(2)])
    conn, received = consume(REQUEST_QUEUE, 1)
    conn.drain_events(timeout=2)
    assert received.lines() == [0]  # the room is used up: the next drain waits with nothing to pop
    acker = threading.Timer(0.2, received.messages[0].ack)
    acker.start()
    started = time.monotonic()
    try:
        conn.drain_events(timeout=5)
    finally:
        acker.join()
    waited = time.monotonic() - started
    assert received.lines() == [0, 1]
    assert waited < 1.5, f"the ack did not wake the wait: line 1 came after {waited:.2f} s"


def test_a_shutdown_ends_the_wait_at_once(consume: Any) -> None:
    """A green worker's consumers wait in drain_events (kombu polls again until the timeout); the shutdown signal
    ends the wait (batchq/broker/worker.py connects stop_waits to worker_shutting_down): warm shutdown took 5 s,
    now ~1 s."""
    conn, received = consume("nothing-queued", 4)
    stopper = threading.Timer(0.2, stop_waits)
    stopper.start()
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=5)
    finally:
        stopper.join()
    assert time.monotonic() - started < 1.5 and received.messages == []
