"""The safety net, run every few seconds by one worker at a time (elected through a Redis lock).

For each batch not yet final it:
- re-sends the intake of a batch stuck in ``validating`` (its intake message was lost);
- fills unsent lines of a cancelled or expired batch with ``batch_cancelled`` / ``batch_expired``;
- re-enqueues lines with no outcome and no live lease when the batch made no progress for a while
  (a worker died and its message was lost, or Redis lost it);
- sends finalize for a batch whose counters reached its total but whose chord callback never fired.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from batchq.housekeeping import housekeep
from batchq.pipeline.context import WorkerContext
from batchq.pipeline.finalize import fill_unsent, stop_code

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    intakes_resent: list[str] = field(default_factory=list)
    finalized: list[str] = field(default_factory=list)
    requeued: dict[str, int] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepActions:
    """How the sweeper sends work (Celery in a worker; plain functions in tests)."""

    send_intake: Callable[[str], None]
    send_finalize: Callable[[str], None]
    send_line: Callable[[str, int], None]


def sweep(ctx: WorkerContext, actions: SweepActions) -> SweepReport:
    report = SweepReport()
    for batch_id in ctx.state.active_ids():
        try:
            _sweep_batch(ctx, actions, batch_id, report)
        except Exception:  # noqa: BLE001 - one bad batch must not stop the sweep of the others
            log.exception("sweep of batch %s failed", batch_id)
    housekeep(ctx)  # issue 14: due webhook deliveries, expired files (batchq/housekeeping.py)
    return report


def _sweep_batch(ctx: WorkerContext, actions: SweepActions, batch_id: str, report: SweepReport) -> None:
    s = ctx.settings
    record = ctx.state.get_record(batch_id)
    if record is None:
        return
    now = time.time()
    status = record["status"]
    last_progress = max(
        int(record.get("last_progress_ms", 0)) / 1000,
        float(record.get("in_progress_at") or 0),
        float(record.get("cancelling_at") or 0),
    )
    if status == "validating":
        if now - record["created_at"] > s.requeue_after_s:
            actions.send_intake(batch_id)
            report.intakes_resent.append(batch_id)
        return
    total = int(record.get("total", 0))
    counts = ctx.state.counts(batch_id)
    done = counts.get("completed", 0) + counts.get("failed", 0)
    code = stop_code(record)
    if done < total and code:
        # Cancelled or expired: lines not sent get their outcome now; leased ones finish on their own.
        filled = fill_unsent(ctx, batch_id, record, code)
        if filled:
            report.filled[batch_id] = filled
        counts = ctx.state.counts(batch_id)
        done = counts.get("completed", 0) + counts.get("failed", 0)
    if done >= total:
        actions.send_finalize(batch_id)
        report.finalized.append(batch_id)
        return
    if status == "in_progress" and now - last_progress > s.requeue_after_s:
        missing = ctx.state.missing_lines(batch_id, total)
        for line in missing:
            actions.send_line(batch_id, line)
        if missing:
            report.requeued[batch_id] = len(missing)
            ctx.state.set_fields(batch_id, last_progress_ms=int(now * 1000))
            log.warning(
                "batch %s: no progress for %.0fs, re-enqueued %d lines", batch_id, now - last_progress, len(missing)
            )
