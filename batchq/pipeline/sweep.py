"""The safety net, run every few seconds by one worker at a time (elected through a Redis lock).

For each batch not yet final it:
- re-sends the intake of a batch stuck in ``validating`` (its intake message was lost), or of a running batch
  whose line index Redis lost (intake rebuilds it);
- fills unsent lines of a cancelled or expired batch with ``batch_cancelled`` / ``batch_expired``;
- sends again a line handed to the broker whose holder died (its lease lapsed without a heartbeat), or that was
  never claimed ``requeue_after_s`` after it was sent and is not on the queue (a killed worker had taken its
  message), or whose outcome Redis lost;
- sends finalize for a batch whose counters reached its total but whose chord callback never fired;
then tops the feeding window up (a feeder may have died between recording and publishing) and repairs its
counters. Intake and finalize are sent at most once while a copy is queued or running (a task marker).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from batchq import keys
from batchq.pipeline.context import WorkerContext
from batchq.pipeline.finalize import fill_unsent
from batchq.pipeline.housekeeping import housekeep
from batchq.pipeline.intake import schedule_batch
from batchq.state import BatchRecord
from batchq.state.lines import lease_expiry

log = logging.getLogger(__name__)

#: Lines one round sends again per batch at most (the next round goes on).
MAX_RESENT_PER_BATCH = 2000


@dataclass
class SweepReport:
    intakes_resent: list[str] = field(default_factory=list)
    finalized: list[str] = field(default_factory=list)
    requeued: dict[str, int] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)
    fed: int = 0


@dataclass(frozen=True)
class SweepActions:
    """How the sweeper sends work (Celery in a worker; plain functions in tests)."""

    send_intake: Callable[[str], None]
    send_finalize: Callable[[str], None]
    send_lines: Callable[[list[tuple[str, int]]], None]
    queued_lines: Callable[[], set[tuple[str, int]] | None]
    """The lines whose request message waits on the broker's queue (None: too many to tell)."""


def sweep(ctx: WorkerContext, actions: SweepActions) -> SweepReport:
    report = SweepReport()
    queued: dict[str, int] = {}
    on_queue = _QueuedLines(actions.queued_lines)
    for batch_id in ctx.state.active_ids():
        try:
            _sweep_batch(ctx, actions, batch_id, report, queued, on_queue)
        except Exception:  # noqa: BLE001 - one bad batch must not stop the sweep of the others
            log.exception("sweep of batch %s failed", batch_id)
    ctx.schedule.set_queued(sum(queued.values()), queued)
    for route in ctx.routes.routes():
        ctx.limiter(route).reap()  # in-flight slots of dead holders on a route nobody is asking right now
    picked = ctx.schedule.feed()
    if picked:
        actions.send_lines(picked)
        report.fed = len(picked)
    housekeep(
        ctx.redis, ctx.files, ctx.store
    )  # due webhook deliveries, expired files (batchq/pipeline/housekeeping.py)
    return report


def send_once(ctx: WorkerContext, task: str, batch_id: str, send: Callable[[str], None], ttl_s: float) -> bool:
    """Send ``task`` for the batch unless a copy is already queued or running (its marker is set)."""
    if not ctx.redis.set(keys.task_marker(task, batch_id), "1", nx=True, ex=max(int(ttl_s), 1)):
        return False
    send(batch_id)
    return True


def _sweep_batch(
    ctx: WorkerContext,
    actions: SweepActions,
    batch_id: str,
    report: SweepReport,
    queued: dict[str, int],
    on_queue: _QueuedLines,
) -> None:
    s = ctx.settings
    record = ctx.state.get_record(batch_id)
    if record is None:
        # The record is gone but the id is still active (Redis lost it): free the slots it holds.
        ctx.redis.srem(keys.active_batches(), batch_id)
        log.warning("batch %s: its record is gone from Redis; dropped it from the active set", batch_id)
        return
    if record.account and not ctx.redis.sismember(keys.account_active(record.account), batch_id):
        ctx.redis.sadd(keys.account_active(record.account), batch_id)  # repaired: it counts towards the limit
    now = time.time()
    marker_ttl = max(s.requeue_after_s, 60.0)
    if record.status == "validating":
        if now - record.created_at > s.requeue_after_s and send_once(
            ctx, "intake", batch_id, actions.send_intake, marker_ttl
        ):
            report.intakes_resent.append(batch_id)
        return
    if record.status == "in_progress" and not ctx.lines.has_index(batch_id) and record.total:
        if send_once(ctx, "intake", batch_id, actions.send_intake, marker_ttl):
            report.intakes_resent.append(batch_id)
        return
    counts = ctx.state.counts(batch_id)
    done = counts.get("completed", 0) + counts.get("failed", 0)
    code = record.stop_code(now)
    if done < record.total and code:
        # Cancelled or expired: lines not sent get their outcome now; leased ones finish on their own.
        filled = fill_unsent(ctx, record, code)
        if filled:
            report.filled[batch_id] = filled
        counts = ctx.state.counts(batch_id)
        done = counts.get("completed", 0) + counts.get("failed", 0)
    if done >= record.total and ctx.lines.outcome_count(batch_id) >= record.total:
        if send_once(ctx, "finalize", batch_id, actions.send_finalize, marker_ttl):
            report.finalized.append(batch_id)
        return
    if done >= record.total:
        actions.send_lines(_rerun_lost_outcomes(ctx, record))
    resent = _resend_lost(ctx, record, now, on_queue)
    if resent:
        actions.send_lines(resent)
        report.requeued[batch_id] = len(resent)
    queued[record.account] = queued.get(record.account, 0) + int(ctx.redis.zcard(keys.batch_open(batch_id)))


def _resend_lost(ctx: WorkerContext, record: BatchRecord, now: float, on_queue: _QueuedLines) -> list[tuple[str, int]]:
    """Lines handed out whose message or holder is gone, due back by now: send them again."""
    batch_id = record.id
    now_ms = int(now * 1000)
    due = [int(x) for x in ctx.redis.zrangebyscore(keys.batch_open(batch_id), "-inf", now_ms, 0, MAX_RESENT_PER_BATCH)]
    if not due:
        return []
    stalled = (
        now - max(record.last_progress_ms / 1000, float(record.in_progress_at or 0)) > ctx.settings.requeue_after_s
    )
    with ctx.redis.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.batch_leases(batch_id), [str(n) for n in due])
        pipe.hmget(keys.batch_outcomes(batch_id), [str(n) for n in due])
        leases, outcomes = pipe.execute()
    resend: list[int] = []
    finished: list[int] = []
    unclaimed: list[int] = []
    for line, lease, outcome in zip(due, leases, outcomes, strict=True):
        if outcome is not None:
            finished.append(line)  # recorded by a path that did not close it (e.g. a crash between): close it
        elif lease is not None and lease_expiry(lease) <= now_ms:
            resend.append(line)  # its holder died (no heartbeat), or its countdown was lost with its worker
        elif lease is None and stalled:
            resend.append(line)  # never claimed, and nothing moves: the message is gone
        elif lease is None:
            unclaimed.append(line)
    if unclaimed:
        resend.extend(_taken_and_lost(ctx, batch_id, unclaimed, on_queue))
    due_back = now_ms + int(ctx.settings.requeue_after_s * 1000)
    with ctx.redis.pipeline(transaction=False) as pipe:
        if finished:
            pipe.zrem(keys.batch_open(batch_id), *[str(n) for n in finished])
        if resend:
            pipe.zadd(keys.batch_open(batch_id), {str(n): due_back for n in resend})
            pipe.hdel(keys.batch_leases(batch_id), *[str(n) for n in resend])
        pipe.execute()
    if resend:
        log.warning("batch %s: sent %d lines again (holder gone or message lost)", batch_id, len(resend))
    return [(batch_id, n) for n in resend]


def _taken_and_lost(ctx: WorkerContext, batch_id: str, unclaimed: list[int], on_queue: _QueuedLines) -> list[int]:
    """Of lines sent ``requeue_after_s`` ago and never claimed, those whose message is not on the queue either: a
    worker took it and died before its claim (prefetched request messages live in the worker's memory only)."""
    queued = on_queue.lines()
    if queued is None:
        return []  # cannot tell: they wait for the batch to stall
    missing = [n for n in unclaimed if (batch_id, n) not in queued]
    if not missing:
        return []
    # Read after the queue: a line popped meanwhile by a live worker shows its claim here.
    leases = ctx.redis.hmget(keys.batch_leases(batch_id), [str(n) for n in missing])
    return [n for n, lease in zip(missing, leases, strict=True) if lease is None]


class _QueuedLines:
    """The lines on the broker's queue, read at most once a sweep round (and only if asked)."""

    def __init__(self, read: Callable[[], set[tuple[str, int]] | None]) -> None:
        self._read = read
        self._done = False
        self._lines: set[tuple[str, int]] | None = None

    def lines(self) -> set[tuple[str, int]] | None:
        """The lines, or None when the queue is too long to read."""
        if not self._done:
            self._lines = self._read()
            self._done = True
        return self._lines


def _rerun_lost_outcomes(ctx: WorkerContext, record: BatchRecord) -> list[tuple[str, int]]:
    """The counters say done but outcomes are missing (Redis lost them): run those lines again from scratch."""
    missing = ctx.lines.missing_lines(record.id, record.total)
    if not missing:
        return []
    with ctx.redis.pipeline() as pipe:
        pipe.delete(keys.batch_counts(record.id))
        for _line, value in ctx.lines.iter_outcomes(record.id, record.total):
            if value is not None:
                pipe.hincrby(keys.batch_counts(record.id), _counter(value), 1)
        pipe.hset(keys.batch_record(record.id), "cursor", min(missing))
        pipe.execute()
    log.warning("batch %s: %d outcomes were gone from Redis; running those lines again", record.id, len(missing))
    return schedule_batch(ctx, record)


def _counter(value: bytes) -> str:
    return "completed" if b'"error":null' in value else "failed"
