"""intake_batch: validate the input file, open the batch's chord and hand the first window of lines to the broker."""

from __future__ import annotations

from celery import Task

from batchq.broker import INTAKE_TASK
from batchq.broker.lines import start_chord
from batchq.pipeline.intake import run_intake
from workers.app import app, context, request_lines
from workers.once import MAX_RETRIES, run_once


@app.task(name=INTAKE_TASK, bind=True, max_retries=MAX_RETRIES, ignore_result=True)
def intake_batch(self: Task, batch_id: str) -> None:
    def intake() -> None:
        ctx = context()
        record = ctx.state.get_record(batch_id)
        was_validating = record is not None and record.status == "validating"
        picked = run_intake(ctx, batch_id)
        started = ctx.state.get_record(batch_id) if was_validating else None
        if started is not None and started.status == "in_progress":
            start_chord(app, batch_id, started.total)
        request_lines().push(picked)

    run_once(self, "intake", batch_id, intake)
