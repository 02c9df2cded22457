"""intake_batch: validate the input file, open the batch's chord and hand the first window of lines to the broker."""

from __future__ import annotations

import logging

from celery import Task

from batchq import keys
from batchq.broker import INTAKE_TASK
from batchq.pipeline.intake import run_intake
from workers.app import app, context
from workers.publish import publish_lines, start_chord

log = logging.getLogger(__name__)

#: Retries of an intake that fails on an outage; the sweeper sends a new one later if they run out.
MAX_RETRIES = 8


@app.task(name=INTAKE_TASK, bind=True, max_retries=MAX_RETRIES, ignore_result=True)
def intake_batch(self: Task, batch_id: str) -> None:
    ctx = context()
    try:
        record = ctx.state.get_record(batch_id)
        was_validating = record is not None and record.status == "validating"
        picked = run_intake(ctx, batch_id)
        started = ctx.state.get_record(batch_id) if was_validating else None
        if started is not None and started.status == "in_progress":
            start_chord(app, batch_id, started.total)
        publish_lines(app, picked)
    except Exception as exc:  # the store or Redis is unreachable: try again, the batch stays validating
        if self.request.retries >= MAX_RETRIES:
            ctx.redis.delete(keys.task_marker("intake", batch_id))
            raise
        delay = min(ctx.settings.max_countdown_s, 2.0 * 2**self.request.retries)
        log.warning("intake of %s failed (%s: %s); retrying in %.0fs", batch_id, type(exc).__name__, exc, delay)
        raise self.retry(countdown=delay) from exc
    ctx.redis.delete(keys.task_marker("intake", batch_id))
