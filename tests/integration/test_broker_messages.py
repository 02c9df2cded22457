"""The request messages batchq pushes itself are the ones Celery would publish (the e2e tests run them)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import redis as redis_lib
from celery import Celery

from batchq.broker import REQUEST_QUEUE, REQUEST_TASK, celery_config, make_producer
from batchq.broker.lines import RequestLines, finalize_signature
from batchq.broker.messages import PUSH_CHUNK, request_message_template, request_messages
from batchq.config import Settings
from batchq.state import BatchState
from batchq.state.schedule import Schedule
from tests.integration.test_state import new_batch, start

#: Fields that differ between any two messages by design (a fresh uuid, the sending process).
PER_MESSAGE = {("properties", "delivery_tag"), ("properties", "reply_to"), ("headers", "origin")}


def publish_lines(app: Celery, lines: list[tuple[str, int]]) -> None:
    """The workers' push of request lines (fast path), from a test."""
    RequestLines(app, redis_lib.Redis.from_url(app.conf.broker_url), fast=True).push(lines)


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


def test_the_feed_script_pushes_the_same_message_for_each_line_it_picks(redis: redis_lib.Redis) -> None:
    # Given: a running batch of 3 lines on the schedule, and a worker's message template
    state = BatchState(redis)
    new_batch(state, "batch_f", total=3, account="acct")
    start(state, redis, "batch_f", total=3)
    schedule = Schedule(redis, window=10, chunk=8, due_back_s=60, weights={})
    schedule.add("batch_f", "acct", urgent_at=2**40)
    push = request_message_template(reply_to="reply-oid")
    # When: an outcome's feed picks two lines and the script pushes their messages
    picked = schedule.picked(schedule.feed_on(None, 2, push=push))
    # Then: the lines picked are the lines pushed, in order, each the message request_messages builds (the body as
    # UTF-8 text instead of base64), with a delivery tag of its own
    assert picked == [("batch_f", 0), ("batch_f", 1)]
    raw = [redis.rpop(REQUEST_QUEUE), redis.rpop(REQUEST_QUEUE)]
    assert redis.llen(REQUEST_QUEUE) == 0
    pushed = [json.loads(r) for r in raw if r is not None]
    tags = {m["properties"].pop("delivery_tag") for m in pushed}
    assert len(tags) == 2 and all(t.startswith("batch_f.") for t in tags)
    for message, line in zip(pushed, (0, 1), strict=True):
        assert message["properties"].pop("body_encoding") == "utf-8"
        expected = json.loads(request_messages([("batch_f", line)], reply_to="reply-oid")[0])
        expected["properties"].pop("delivery_tag")
        assert expected["properties"].pop("body_encoding") == "base64"
        assert json.loads(message.pop("body")) == json.loads(base64.b64decode(expected.pop("body")))
        assert message == expected
    # Without a push the script pushes nothing (intake and the sweeper publish what it returns)
    assert schedule.picked(schedule.feed_on(None, 1)) == [("batch_f", 2)]
    assert redis.llen(REQUEST_QUEUE) == 0


def test_a_message_with_a_utf8_body_is_decoded_by_kombu_like_a_base64_one(redis_url: str, tmp_path: Path) -> None:
    # Given: a template-built message on the request queue
    app = _app(redis_url, tmp_path)
    template = request_message_template(reply_to=app.oid)
    message = template.text.replace(template.tag, "t1").replace(template.batch, "batch_u")
    client = redis_lib.Redis.from_url(redis_url)
    client.lpush(REQUEST_QUEUE, message.replace(template.line, "7"))
    # When: kombu's consumer (the worker's transport) takes it
    with app.connection_for_read() as conn:
        got = conn.SimpleQueue(REQUEST_QUEUE).get(timeout=5)
        # Then: the task's args and chord come out as Celery reads them
        assert got.headers["id"] == "batch_u-7" and got.headers["group_index"] == 7
        args, _kwargs, embed = got.decode()
        assert args == ["batch_u", 7] and embed["chord"]["args"] == ["batch_u"]
        got.ack()
