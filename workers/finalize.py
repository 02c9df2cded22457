"""finalize_batch: the chord callback (and the sweeper's), idempotent."""

from __future__ import annotations

import logging

from celery import Task

from batchq import keys
from batchq.broker import FINALIZE_TASK
from batchq.pipeline.finalize import finalize_batch as run_finalize
from workers.app import app, context

log = logging.getLogger(__name__)

#: Retries of a finalize that fails on an outage; the sweeper sends a new one later if they run out.
MAX_RETRIES = 8


@app.task(name=FINALIZE_TASK, bind=True, max_retries=MAX_RETRIES, ignore_result=True)
def finalize_batch(self: Task, batch_id: str, *_chord_results: object) -> None:
    ctx = context()
    try:
        run_finalize(ctx, batch_id)
    except Exception as exc:  # store or Redis outage: the batch waits in its status; nothing is lost
        if self.request.retries >= MAX_RETRIES:
            ctx.redis.delete(keys.task_marker("finalize", batch_id))
            raise
        delay = min(ctx.settings.max_countdown_s, 2.0 * 2**self.request.retries)
        log.warning("finalize of %s failed (%s: %s); retrying in %.0fs", batch_id, type(exc).__name__, exc, delay)
        raise self.retry(countdown=delay) from exc
    ctx.redis.delete(keys.task_marker("finalize", batch_id))
