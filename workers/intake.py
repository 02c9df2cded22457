"""intake_batch: validate the input file, then fan out one request task per line as a chord."""

from __future__ import annotations

import logging

from celery import Task, chord

from batchq.celery_config import INTAKE_TASK
from batchq.intake import run_intake
from workers.app import app, context
from workers.finalize import finalize_batch
from workers.request import process_request

log = logging.getLogger(__name__)


@app.task(name=INTAKE_TASK, bind=True, max_retries=None, ignore_result=True)
def intake_batch(self: Task, batch_id: str) -> None:
    ctx = context()
    try:
        total = run_intake(ctx, batch_id)
    except Exception as exc:  # the store or Redis is unreachable: try again, the batch stays validating
        log.warning("intake of %s failed (%s: %s); retrying", batch_id, type(exc).__name__, exc)
        raise self.retry(countdown=min(ctx.settings.max_countdown_s, 5.0 * (self.request.retries + 1))) from exc
    if not total:
        return
    # Deterministic task ids: a redelivered intake re-publishes the same ids, and repeats are harmless
    # because every line's outcome is recorded once. Only batch_id and the line number travel in a message.
    header = [process_request.si(batch_id, line).set(task_id=f"{batch_id}-{line}") for line in range(total)]
    chord(header)(finalize_batch.si(batch_id))
    log.info("batch %s: fanned out %d requests", batch_id, total)
