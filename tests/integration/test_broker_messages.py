"""The request messages batchq pushes itself are the ones Celery would publish (the e2e tests run them)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import redis as redis_lib
from celery import Celery

from batchq.broker import PUSH_CHUNK, REQUEST_QUEUE, REQUEST_TASK, celery_config, make_producer
from batchq.config import Settings
from workers.publish import finalize_signature, publish_lines

#: Fields that differ between any two messages by design (a fresh uuid, the sending process).
PER_MESSAGE = {("properties", "delivery_tag"), ("properties", "reply_to"), ("headers", "origin")}


def _app(redis_url: str, tmp_path: Path) -> Celery:
    return make_producer(Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}", local_mode=True))


def _popped(client: redis_lib.Redis) -> dict[str, Any]:
    raw = client.rpop(REQUEST_QUEUE)
    assert raw is not None
    message: dict[str, Any] = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    for part, name in PER_MESSAGE:
        assert message[part].pop(name)
    return message


def test_pushed_messages_equal_celerys_own(redis: redis_lib.Redis, redis_url: str, tmp_path: Path) -> None:
    app = _app(redis_url, tmp_path)
    app.send_task(
        REQUEST_TASK,
        args=["batch_x", 41],
        task_id="batch_x-41",
        group_id="batch_x",
        group_index=41,
        chord=finalize_signature(app, "batch_x"),
    )
    celerys = _popped(redis)
    publish_lines(app, [("batch_x", 41)])
    ours = _popped(redis)
    assert ours == celerys
    assert ours["headers"]["task"] == REQUEST_TASK and ours["body"][0] == ["batch_x", 41]


def test_lines_are_queued_in_order_in_one_push(redis: redis_lib.Redis, redis_url: str, tmp_path: Path) -> None:
    app = _app(redis_url, tmp_path)
    publish_lines(app, [("batch_a", 0), ("batch_b", 5), ("batch_a", 1)])
    publish_lines(app, [])
    assert redis.llen(REQUEST_QUEUE) == 3
    # BRPOP takes from the tail: the first line given is the first a worker receives.
    order = [(m["body"][0][0], m["body"][0][1]) for m in (_popped(redis) for _ in range(3))]
    assert order == [("batch_a", 0), ("batch_b", 5), ("batch_a", 1)]


def test_a_large_window_is_pushed_in_chunks_in_order(redis: redis_lib.Redis, redis_url: str, tmp_path: Path) -> None:
    app = _app(redis_url, tmp_path)
    n = 2 * PUSH_CHUNK + 7
    publish_lines(app, [("batch_w", i) for i in range(n)])
    assert redis.llen(REQUEST_QUEUE) == n
    assert [_popped(redis)["body"][0][1] for _ in range(n)] == list(range(n))


def test_channel_reuses_one_client_per_pool(redis_url: str, tmp_path: Path) -> None:
    app = Celery(set_as_current=False)
    app.conf.update(celery_config(Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}", local_mode=True)))
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        channel._pool = None  # what kombu does after a connection error: a new pool, so a new client
        assert channel._create_client() is not first
        assert channel._create_client(asynchronous=True) is not channel._create_client(asynchronous=True)
