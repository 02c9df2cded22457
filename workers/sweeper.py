"""The sweeper's timer and task. Every worker runs the timer; the Redis lock makes one of them sweep a round.

With celery beat, schedule ``batchq.sweep`` instead (it takes the same lock, so both together are fine).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import signals

from batchq import keys
from batchq.broker import FINALIZE_TASK, INTAKE_TASK, SWEEP_TASK
from batchq.pipeline.sweep import SweepActions, sweep
from workers.app import app, context, request_lines

log = logging.getLogger(__name__)

ACTIONS = SweepActions(
    send_intake=lambda batch_id: app.send_task(INTAKE_TASK, args=[batch_id]),
    send_finalize=lambda batch_id: app.send_task(FINALIZE_TASK, args=[batch_id]),
    send_lines=lambda lines: request_lines().push(lines),
    queued_lines=lambda: request_lines().queued(),
)


def sweep_if_elected() -> bool:
    """Run one sweep if this process wins this round's lock; True when it swept."""
    ctx = context()
    interval = ctx.settings.sweep_interval_s
    if not ctx.redis.set(keys.sweeper_lock(), "1", nx=True, px=max(int(interval * 1000) - 100, 100)):
        return False
    report = sweep(ctx, ACTIONS)
    if report.finalized or report.requeued or report.filled or report.intakes_resent:
        log.info("sweep: %s", report)
    return True


def run_sweeper_forever() -> None:
    while True:
        try:
            sweep_if_elected()
        except Exception:  # noqa: BLE001 - e.g. Redis restarting; the next round tries again
            log.warning("sweep round failed", exc_info=True)
        time.sleep(context().settings.sweep_interval_s)


@app.task(name=SWEEP_TASK, ignore_result=True)
def sweep_task() -> None:
    sweep_if_elected()


@signals.worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    """Every worker runs the sweeper's timer; the Redis lock makes one of them sweep each round."""
    threading.Thread(target=run_sweeper_forever, name="batchq-sweeper", daemon=True).start()
