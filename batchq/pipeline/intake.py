"""Intake: stream the input file from the store, validate every line, and start feeding the batch.

The index of request lines (byte offset, length, physical line number) goes to Redis, so each request task
reads only its own line (through the block cache) and broker messages stay a few hundred bytes whatever the file
size. The batch then goes on the schedule, which hands its lines to the broker a window at a time.
"""

from __future__ import annotations

import logging

from batchq import keys
from batchq.pipeline.context import WorkerContext
from batchq.state import BatchRecord, pack_index
from batchq.storage import ObjectNotFoundError
from batchq.validation import FileValidator, LineError, ValidationResult
from batchq.webhooks.dispatch import on_batch_final

log = logging.getLogger(__name__)


def run_intake(ctx: WorkerContext, batch_id: str) -> list[tuple[str, int]]:
    """Validate the batch's input and put it on the schedule. Returns the lines to hand to the broker now.

    Safe to run again (a redelivered intake, or the sweeper's after Redis lost the index): a batch in progress
    is put back on the schedule, its index rebuilt if it is gone, and nothing already fed is fed twice.
    """
    record = ctx.state.get_record(batch_id)
    if record is None:
        return []
    if record.status == "in_progress":
        if not ctx.lines.has_index(batch_id):
            result = _validate(ctx, record)
            if result is not None and result.ok:
                ctx.redis.set(keys.batch_index(batch_id), pack_index(result.index), ex=ctx.settings.scratch_ttl_s)
                log.warning("batch %s: its line index was gone from Redis; rebuilt it", batch_id)
        return schedule_batch(ctx, record)
    if record.status == "cancelling":
        ctx.state.transition(batch_id, ["cancelling"], "cancelled")
        on_batch_final(ctx.redis, ctx.settings.webhook_retry_period_s, batch_id, "cancelled")
        return []
    if record.status != "validating":
        return []
    result = _validate(ctx, record)
    if result is None:
        return []
    if not result.ok:
        _fail(ctx, batch_id, result.errors)
        log.info("batch %s failed validation: %d errors", batch_id, result.error_count)
        return []
    ctx.redis.set(keys.batch_index(batch_id), pack_index(result.index), ex=ctx.settings.scratch_ttl_s)
    if not ctx.state.start(batch_id, result.total, result.model):
        # Cancelled while we validated: nothing was counted, nothing runs; it ends cancelled with total 0.
        ctx.state.transition(batch_id, ["cancelling"], "cancelled")
        on_batch_final(ctx.redis, ctx.settings.webhook_retry_period_s, batch_id, "cancelled")
        return []
    if ctx.state.transition(batch_id, ["validating"], "in_progress") is None:
        return []  # cancelled just now: the sweeper gives every line its batch_cancelled outcome and ends it
    log.info("batch %s validated: %d requests, model %s", batch_id, result.total, result.model)
    started = ctx.state.get_record(batch_id)
    return schedule_batch(ctx, started) if started is not None else []


def _validate(ctx: WorkerContext, record: BatchRecord) -> ValidationResult | None:
    """The validation result, or None after failing the batch because its input is gone."""
    file_record = ctx.files.record(record.input_file_id)
    if file_record is None:
        message = f"Input file {record.input_file_id} no longer exists."
        _fail(ctx, record.id, [LineError("invalid_request", message, None, "input_file_id")])
        return None
    validator = FileValidator(record.endpoint, ctx.validation_limits())
    try:
        for chunk in ctx.store.iter_chunks(file_record["storage_key"]):
            validator.feed(chunk)
    except ObjectNotFoundError:
        message = "The input file's content is missing from storage."
        _fail(ctx, record.id, [LineError("invalid_request", message, None, "input_file_id")])
        return None
    result = validator.finish()
    if result.ok:
        ctx.state.set_fields(record.id, input_storage_key=file_record["storage_key"])
    return result


def schedule_batch(ctx: WorkerContext, record: BatchRecord) -> list[tuple[str, int]]:
    """Put the batch on the schedule (urgent in the last ``urgent_fraction`` of its window); feed what fits."""
    window = max(record.expires_at - record.created_at, 0)
    urgent_at = record.expires_at - int(window * ctx.settings.urgent_fraction)
    ctx.schedule.add(record.id, record.account, urgent_at)
    return ctx.schedule.feed()


def _fail(ctx: WorkerContext, batch_id: str, errors: list[LineError]) -> None:
    ctx.state.set_fields(batch_id, errors={"object": "list", "data": [e.as_dict() for e in errors]})
    ctx.state.transition(batch_id, ["validating", "cancelling"], "failed")
    on_batch_final(ctx.redis, ctx.settings.webhook_retry_period_s, batch_id, "failed")
