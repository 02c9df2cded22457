"""The plain worker command runs batchq's pool; a pool named with -P wins, prefork with Celery's own size."""

from __future__ import annotations

import pytest

from workers.app import pool_named_on_command_line


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


def test_the_plain_command_gets_threads_sized_for_io() -> None:
    from batchq.broker import celery_config
    from batchq.config import Settings

    conf = celery_config(Settings(max_in_flight=1000))
    assert (conf["worker_pool"], conf["worker_concurrency"]) == ("threads", 1000)
    assert celery_config(Settings())["worker_concurrency"] == 64
