"""Intake: stream the input file from the store, validate every line, and record what the fan-out needs.

The index of request lines (byte offset, length, physical line number) goes to Redis, so each request task
reads only its own line from the store and broker messages stay a few hundred bytes whatever the file size.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable

from batchq import keys
from batchq.pipeline.context import WorkerContext
from batchq.storage import ObjectNotFoundError
from batchq.validation import FileValidator, LineError, ValidationResult
from batchq.webhooks.dispatch import on_batch_final

log = logging.getLogger(__name__)

#: One index entry: offset (8 bytes), length (4), 1-based physical line number (4).
INDEX_ENTRY = struct.Struct(">QII")


def pack_index(entries: Iterable[tuple[int, int, int]]) -> bytes:
    """Pack (line_no, offset, length) entries, as FileValidator reports them."""
    return b"".join(INDEX_ENTRY.pack(offset, length, line_no) for line_no, offset, length in entries)


def read_index_entry(ctx: WorkerContext, batch_id: str, line: int) -> tuple[int, int, int] | None:
    """(offset, length, line_no) of request ``line`` (0-based), or None if the index is gone."""
    start = line * INDEX_ENTRY.size
    raw = ctx.redis.getrange(keys.batch_index(batch_id), start, start + INDEX_ENTRY.size - 1)  # type: ignore[no-untyped-call]
    if len(raw) != INDEX_ENTRY.size:
        return None
    offset, length, line_no = INDEX_ENTRY.unpack(raw)
    return int(offset), int(length), int(line_no)


def run_intake(ctx: WorkerContext, batch_id: str) -> int | None:
    """Validate the batch's input. Returns the number of lines to fan out, or None when there is nothing to run.

    Safe to run again (a redelivered intake): a batch already in progress is fanned out again, and the
    per-line outcome script makes the repeats harmless.
    """
    record = ctx.state.get_record(batch_id)
    if record is None:
        return None
    status = record["status"]
    if status == "in_progress":
        return int(record.get("total", 0))
    if status == "cancelling":
        ctx.state.transition(batch_id, ["cancelling"], "cancelled")
        on_batch_final(ctx.redis, ctx.settings.webhook_retry_period_s, batch_id, "cancelled")  # webhooks (issue 14)
        return None
    if status != "validating":
        return None

    file_record = ctx.files.record(record["input_file_id"])
    if file_record is None:
        _fail(
            ctx,
            batch_id,
            [
                LineError(
                    "invalid_request", f"Input file {record['input_file_id']} no longer exists.", None, "input_file_id"
                )
            ],
        )
        return None
    validator = FileValidator(record["endpoint"], ctx.validation_limits())
    try:
        for chunk in ctx.store.iter_chunks(file_record["storage_key"]):
            validator.feed(chunk)
    except ObjectNotFoundError:
        _fail(
            ctx,
            batch_id,
            [LineError("invalid_request", "The input file's content is missing from storage.", None, "input_file_id")],
        )
        return None
    result = validator.finish()
    if not result.ok:
        _fail(ctx, batch_id, result.errors)
        log.info("batch %s failed validation: %d errors", batch_id, result.error_count)
        return None
    _start(ctx, batch_id, file_record["storage_key"], result)
    if ctx.state.transition(batch_id, ["validating"], "in_progress") is None:
        # Cancelled while we validated: nothing runs; finalize ends it as cancelled with every line accounted for.
        current = ctx.state.get_record(batch_id) or {}
        if current.get("status") != "cancelling":
            return None
    log.info("batch %s validated: %d requests, model %s", batch_id, result.total, result.model)
    return result.total


def _start(ctx: WorkerContext, batch_id: str, storage_key: str, result: ValidationResult) -> None:
    ttl = ctx.settings.scratch_ttl_s
    with ctx.redis.pipeline() as pipe:
        pipe.set(keys.batch_index(batch_id), pack_index(result.index), ex=ttl)
        pipe.hset(
            keys.batch_record(batch_id),
            mapping={
                "total": result.total,
                "input_storage_key": storage_key,
                **({"model": result.model} if result.model else {}),
            },
        )
        pipe.execute()


def _fail(ctx: WorkerContext, batch_id: str, errors: list[LineError]) -> None:
    ctx.state.set_fields(batch_id, errors={"object": "list", "data": [e.as_dict() for e in errors]})
    ctx.state.transition(batch_id, ["validating", "cancelling"], "failed")
    on_batch_final(ctx.redis, ctx.settings.webhook_retry_period_s, batch_id, "failed")  # webhooks (issue 14)
