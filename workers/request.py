"""process_request: one line to the upstream and its outcome recorded once. Never raises."""

from __future__ import annotations

import logging

from celery import Task

from batchq.broker import FINALIZE_TASK, REQUEST_TASK
from batchq.pipeline.request import Done, Requeue, Skipped, process_line
from workers.app import app, context

log = logging.getLogger(__name__)


@app.task(name=REQUEST_TASK, bind=True, max_retries=None, acks_late=True)
def process_request(self: Task, batch_id: str, line: int) -> str:
    """Returns a tiny, deterministic status (a chord header result must not vary between redeliveries)."""
    result = process_line(context(), batch_id, line)
    if isinstance(result, Requeue):
        log.info("batch %s line %d: back in %.1fs (%s)", batch_id, line, result.delay_s, result.reason)
        # A retry keeps the task's id and its place in the chord; the countdown stays far below the
        # broker's visibility timeout (BATCHQ_MAX_COUNTDOWN_S), so it is not redelivered while it waits.
        raise self.retry(countdown=max(result.delay_s, 0.05))
    if isinstance(result, Done) and result.batch_done and self.request.chord is None:
        # A re-enqueued line (sent by the sweeper, outside the chord) may be the last one: finalize now.
        app.send_task(FINALIZE_TASK, args=[batch_id])
    if isinstance(result, Skipped):
        log.debug("batch %s line %d skipped: %s", batch_id, line, result.reason)
    return "ok"
