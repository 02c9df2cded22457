"""The plain worker command: batchq's pool (-P wins; prefork gets Celery's own size) and its consumer."""

from __future__ import annotations

import pytest

from batchq.broker.green import pool_named_on_command_line
from batchq.broker.transport import has_blmpop


@pytest.mark.parametrize(
    ("argv", "pool"),
    [
        (["celery", "-A", "workers", "worker", "-Q", "intake,requests,finalize"], None),
        (["celery", "-A", "workers", "worker", "-P", "prefork", "-c", "6"], "prefork"),
        (["celery", "-A", "workers", "worker", "--pool=gevent"], "gevent"),
        (["celery", "-A", "workers", "worker", "-Pthreads"], "threads"),
        (["celery", "-A", "workers", "worker", "--pidfile", "x.pid", "-Q", "requests"], None),
    ],
)
def test_the_pool_named_on_the_command_line(argv: list[str], pool: str | None) -> None:
    assert pool_named_on_command_line(argv) == pool


def test_the_plain_command_gets_gevent_sized_for_io() -> None:
    from celery.concurrency import get_implementation

    from batchq.broker import THREADS_POOL, celery_config
    from batchq.broker.pools import TaskPool
    from batchq.config import Settings

    conf = celery_config(Settings(max_in_flight=1000))
    assert (conf["worker_pool"], conf["worker_concurrency"]) == ("gevent", 1032)  # the cap and 32 ready
    assert celery_config(Settings())["worker_concurrency"] == 96
    assert celery_config(Settings(max_in_flight=40))["worker_concurrency"] == 64  # 40 + 20 (half the cap), >= 64
    assert celery_config(Settings(max_in_flight=8))["worker_concurrency"] == 64
    assert celery_config(Settings(worker_concurrency=10))["worker_concurrency"] == 10
    assert celery_config(Settings(worker_pool="threads"))["worker_pool"] == THREADS_POOL
    assert get_implementation(THREADS_POOL) is TaskPool


def test_dash_p_threads_names_batchqs_pool_too() -> None:
    from celery.concurrency import get_implementation

    import workers.app  # noqa: F401 - the worker app registers the name
    from batchq.broker.pools import TaskPool

    assert get_implementation("threads") is TaskPool


@pytest.mark.parametrize(
    ("version", "expected"),
    [("7.0.15", True), ("7.2.4", True), ("8.0.0", True), ("6.2.14", False), ("5.0.7", False), ("", False)],
)
def test_the_consumer_pops_many_only_where_redis_has_blmpop(version: str, expected: bool) -> None:
    assert has_blmpop(version) is expected
