"""Shared shape of the per-batch tasks that run one copy at a time (intake, finalize): bounded, backed-off retries.

The sweeper sends such a task only while its marker is unset (batchq.pipeline.sweep.send_once); the task clears
the marker when it ends, either way, so a later round may send a fresh one if the batch still needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Task

from batchq import keys
from workers.app import context

log = logging.getLogger(__name__)

#: Retries of a task that fails on an outage (2 s, 4 s, ... capped at BATCHQ_MAX_COUNTDOWN_S).
MAX_RETRIES = 8


def run_once(task: Task, kind: str, batch_id: str, body: Callable[[], object]) -> None:
    ctx = context()
    try:
        body()
    except Exception as exc:  # the store or Redis is unreachable: the batch waits in its status, nothing is lost
        if task.request.retries >= MAX_RETRIES:
            ctx.redis.delete(keys.task_marker(kind, batch_id))
            raise
        delay = min(ctx.settings.max_countdown_s, 2.0 * 2**task.request.retries)
        log.warning("%s of %s failed (%s: %s); retrying in %.0fs", kind, batch_id, type(exc).__name__, exc, delay)
        raise task.retry(countdown=delay) from exc
    ctx.redis.delete(keys.task_marker(kind, batch_id))
