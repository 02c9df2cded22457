"""intake_batch: validate the input file, then fan out one request task per line, as chords whose callback is
finalize, a slice of lines at a time.

Slices keep the intake worker's memory flat (10,000 signatures and their results in one chord cost ~50 MB) and
checkpoint the fan-out: a redelivered intake resumes after the last slice it published. Every chord's callback
runs finalize, which ends the batch only once every line has an outcome, so the early ones return at once.
"""

from __future__ import annotations

import logging

from celery import Task, chord

from batchq.broker import FINALIZE_TASK, INTAKE_TASK, REQUEST_TASK
from batchq.pipeline.intake import run_intake
from workers.app import app, context

log = logging.getLogger(__name__)

#: Lines per chord.
FANOUT_SLICE = 1000


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
    record = ctx.state.get_record(batch_id) or {}
    start = int(record.get("published", 0))
    # Deterministic task ids: a redelivered intake re-publishes the same ids, and repeats are harmless
    # because every line's outcome is recorded once. Only batch_id and the line number travel in a message.
    for first in range(start - start % FANOUT_SLICE, total, FANOUT_SLICE):
        lines = range(first, min(first + FANOUT_SLICE, total))
        header = [
            app.signature(REQUEST_TASK, args=(batch_id, line), task_id=f"{batch_id}-{line}", immutable=True)
            for line in lines
        ]
        chord(header)(app.signature(FINALIZE_TASK, args=(batch_id,), immutable=True))
        ctx.state.set_fields(batch_id, published=lines.stop)
    log.info("batch %s: fanned out %d requests", batch_id, total)
