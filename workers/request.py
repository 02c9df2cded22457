"""process_request: one line to the upstream and its outcome recorded once. Never raises."""

from __future__ import annotations

import logging

from celery import Task
from celery.exceptions import Ignore

from batchq.broker import FINALIZE_TASK, REQUEST_TASK
from batchq.pipeline.outcomes import Done
from batchq.pipeline.request import Requeue, Skipped, process_line
from batchq.pipeline.sweep import send_once
from workers.app import app, context, request_lines

log = logging.getLogger(__name__)


@app.task(name=REQUEST_TASK, bind=True, max_retries=None, acks_late=True, ignore_result=True)
def process_request(self: Task, batch_id: str, line: int) -> str:
    """Returns a tiny, deterministic status: a line's chord part must be the same whichever copy ran it."""
    ctx = context()
    result = process_line(ctx, batch_id, line)
    if isinstance(result, Requeue):
        log.debug("batch %s line %d: back in %.1fs (%s)", batch_id, line, result.delay_s, result.reason)
        # A retry keeps the task's id and its place in the chord; the countdown stays far below the
        # broker's visibility timeout (BATCHQ_MAX_COUNTDOWN_S), so it is not redelivered while it waits.
        raise self.retry(countdown=max(result.delay_s, 0.05))
    if isinstance(result, Skipped):
        if result.duplicate:
            # Rare (a redelivery or a copy the sweeper sent while the holder lived): worth a line in the log.
            log.info("batch %s line %d: duplicate delivery turned away (%s)", batch_id, line, result.reason)
            raise Ignore()  # the live holder's run is this line's chord part, not this copy
        log.debug("batch %s line %d skipped: %s", batch_id, line, result.reason)
        return "ok"
    if isinstance(result, Done):
        if not result.pushed:
            request_lines().push(result.next_lines)
        if result.recorded and result.batch_done:
            # The chord's callback finalizes too; this covers a chord whose count a crash or lost key upset.
            send_once(ctx, "finalize", batch_id, lambda b: app.send_task(FINALIZE_TASK, args=[b]), 60.0)
    return "ok"
