"""Finalize: stream the recorded outcomes, in input order, into the output and error files; end the batch.

Idempotent and safe to run twice at once: one run at a time holds the batch's finalize lock, files go to
ids derived from the batch id, and the final status is set by a transition that happens once.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from batchq import keys
from batchq.keys import derived_file_id
from batchq.pipeline.context import WorkerContext
from batchq.pipeline.outcomes import record_stop
from batchq.pipeline.pricing import estimate_cost
from batchq.state import BatchRecord
from batchq.state.files import output_expiry_s
from batchq.webhooks.dispatch import on_batch_final

log = logging.getLogger(__name__)

#: How long one finalize run may hold the batch's lock before another may take over.
FINALIZE_LOCK_S = 900


@dataclass(frozen=True)
class FinalizeResult:
    status: str
    """The batch's status after this run ('' if unknown)."""
    finished: bool
    """True when the batch is final (now or already)."""


def finalize_batch(ctx: WorkerContext, batch_id: str) -> FinalizeResult:
    """Write the files and set the final status, if every line has an outcome (or can be given one now).

    Raises store or Redis errors: the task retries them (an outage delays a batch, it does not fail it).
    """
    record = ctx.state.get_record(batch_id)
    if record is None:
        return FinalizeResult("", False)
    if record.is_final:
        # A run that died between its final transition and the event; the marker dedupes.
        on_batch_final(ctx.redis, ctx.settings.webhook_retry_period_s, batch_id, record.status)
        return FinalizeResult(record.status, True)
    if record.status == "validating":
        return FinalizeResult("validating", False)
    lock_key = keys.batch_finalize_lock(batch_id)
    token = f"{time.time()}"
    if not ctx.redis.set(lock_key, token, nx=True, ex=FINALIZE_LOCK_S):
        return FinalizeResult(record.status, False)
    try:
        return _finalize_locked(ctx, batch_id)
    finally:
        if ctx.redis.get(lock_key) == token.encode():
            ctx.redis.delete(lock_key)


def fill_unsent(ctx: WorkerContext, record: BatchRecord, code: str) -> int:
    """Give every line with no outcome and no live lease the outcome ``code``; returns how many it recorded."""
    filled = 0
    for line in ctx.lines.missing_lines(record.id, record.total):
        if record_stop(ctx, record.id, record.account, line, code, feed=False).recorded:
            filled += 1
    return filled


def _finalize_locked(ctx: WorkerContext, batch_id: str) -> FinalizeResult:
    record = ctx.state.get_record(batch_id)
    if record is None:
        return FinalizeResult("", False)
    total = record.total
    counts = ctx.state.counts(batch_id)
    done = counts.get("completed", 0) + counts.get("failed", 0)
    code = record.stop_code()
    if done < total and code:
        fill_unsent(ctx, record, code)
        counts = ctx.state.counts(batch_id)
        done = counts.get("completed", 0) + counts.get("failed", 0)
    if done < total:
        return FinalizeResult(record.status, False)  # lines still running (or leased): try again later
    if ctx.lines.outcome_count(batch_id) < total:
        # The counters say done but outcomes are gone (Redis lost the hash): the sweeper runs those lines again.
        return FinalizeResult(record.status, False)

    if record.status == "in_progress":
        ctx.state.transition(batch_id, ["in_progress"], "finalizing")
    output_id, error_id = _write_files(ctx, batch_id, record, total)
    final = "cancelled" if code == "batch_cancelled" else "expired" if counts.get("expired", 0) else "completed"
    cost = estimate_cost(ctx.settings, record.model, counts)
    ctx.state.set_fields(batch_id, output_file_id=output_id, error_file_id=error_id, estimated_cost=cost)
    ctx.state.transition(batch_id, ["in_progress", "finalizing", "cancelling"], final)
    on_batch_final(ctx.redis, ctx.settings.webhook_retry_period_s, batch_id, final)
    ctx.state.drop_scratch(batch_id, ctx.settings.result_ttl_after_final_s)
    log.info(
        "batch %s %s: %d completed, %d failed", batch_id, final, counts.get("completed", 0), counts.get("failed", 0)
    )
    return FinalizeResult(final, True)


def _write_files(ctx: WorkerContext, batch_id: str, record: BatchRecord, total: int) -> tuple[str | None, str | None]:
    """Stream outcomes into the two files; register the non-empty ones under ids derived from the batch."""
    output_id, error_id = derived_file_id(batch_id, "output"), derived_file_id(batch_id, "error")
    out_key, err_key = keys.storage_key(output_id), keys.storage_key(error_id)
    with ctx.store.writer(out_key) as out, ctx.store.writer(err_key) as err:
        for _line, value in ctx.lines.iter_outcomes(batch_id, total):
            if value is None:
                raise RuntimeError(f"batch {batch_id}: an outcome vanished during finalize")
            target = out if json.loads(value).get("error") is None else err
            target.write(value + b"\n")
        out_bytes, err_bytes = out.bytes_written, err.bytes_written
    account = record.account
    registered: list[str | None] = []
    for file_id, key, size, suffix in (
        (output_id, out_key, out_bytes, "output"),
        (error_id, err_key, err_bytes, "errors"),
    ):
        if size == 0:
            ctx.store.delete(key)
            registered.append(None)
            continue
        ctx.files.add(
            file_id=file_id,
            account=account,
            filename=f"{batch_id}_{suffix}.jsonl",
            purpose="batch_output",
            size=size,
            storage_key=key,
            expires_after_s=output_expiry_s(record.output_expires_after, ctx.settings.output_expires_after_s),
        )
        registered.append(file_id)
    return registered[0], registered[1]
