"""finalize_batch: the chord callback (and the sweeper's), idempotent."""

from __future__ import annotations

from celery import Task

from batchq.broker import FINALIZE_TASK
from batchq.pipeline.finalize import finalize_batch as run_finalize
from workers.app import app, context
from workers.once import MAX_RETRIES, run_once


@app.task(name=FINALIZE_TASK, bind=True, max_retries=MAX_RETRIES, ignore_result=True)
def finalize_batch(self: Task, batch_id: str, *_chord_results: object) -> None:
    run_once(self, "finalize", batch_id, lambda: run_finalize(context(), batch_id))
