"""/v1/batches: create, list, retrieve, cancel, results (partial or final), delete."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from batchq import keys
from batchq.api.batch_params import parse_create_body
from batchq.api.deps import AccountDep, ServicesDep
from batchq.api.params import list_limit
from batchq.broker import INTAKE_TASK
from batchq.errors import ConflictError, InvalidRequestError, NotFoundError, RateLimitError
from batchq.expiration import output_expiry_field, parse_batch_output_expiry
from batchq.keys import new_batch_id
from batchq.pipeline.results import iter_results
from batchq.schemas import FINAL_STATUSES, Batch, BatchList
from batchq.state import LineState

router = APIRouter(prefix="/batches", tags=["batches"])

#: How long an Idempotency-Key keeps answering with the batch it created.
IDEMPOTENCY_TTL_S = 24 * 3600
#: Statuses from which a cancel moves the batch to ``cancelling``.
CANCELLABLE = ("validating", "in_progress", "finalizing")


@router.post("")
async def create_batch(request: Request, services: ServicesDep, account: AccountDep) -> JSONResponse:
    """Create a batch from an uploaded file; it starts in ``validating``."""
    body = await request.body()
    params = parse_create_body(request.headers.get("content-type"), body)
    output_expires_after_s = parse_batch_output_expiry(body, min_s=services.settings.min_expires_after_s)  # issue 14
    record = services.files.record(params.input_file_id, account)
    if record is None:
        raise NotFoundError(
            f"Cannot find file {params.input_file_id}, or you do not have access to it.",
            code="invalid_request",
            param="input_file_id",
        )
    if record["purpose"] != "batch":
        raise InvalidRequestError(
            f"File {params.input_file_id} has purpose {record['purpose']!r}; a batch input must have purpose 'batch'.",
            code="invalid_value",
            param="input_file_id",
        )

    idem_key = request.headers.get("idempotency-key")
    redis = services.redis
    batch_id = new_batch_id()
    if idem_key:
        slot = keys.idempotency(account, idem_key[:200])
        if not redis.set(slot, batch_id, nx=True, ex=IDEMPOTENCY_TTL_S):
            existing = redis.get(slot)
            found = services.state.get(existing.decode(), account) if existing else None
            if found is not None:
                return _json(found)
            redis.set(slot, batch_id, ex=IDEMPOTENCY_TTL_S)  # the first try died before creating: take over

    now = int(time.time())
    window_s = params.window_s or services.settings.completion_window_s
    created = services.state.create(
        {
            "id": batch_id,
            "account": account,
            "endpoint": params.endpoint,
            "input_file_id": params.input_file_id,
            "completion_window": params.completion_window,
            "status": "validating",
            "created_at": now,
            "expires_at": now + int(window_s),
            "window_s": window_s,
            "metadata": params.metadata,
            "total": 0,
            "timeout_minutes": params.timeout_minutes,
            "output_expires_after": output_expiry_field(output_expires_after_s),  # issue 14
        },
        services.settings.max_active_batches,
    )
    if not created:
        if idem_key:
            redis.delete(keys.idempotency(account, idem_key[:200]))
        raise RateLimitError(
            f"You have {services.settings.max_active_batches} active batches, the most allowed at once "
            "(BATCHQ_MAX_ACTIVE_BATCHES). Wait for one to finish or cancel one.",
            code="batch_limit_exceeded",
        )
    services.producer.send_task(INTAKE_TASK, args=[batch_id], task_id=f"intake-{batch_id}")
    batch = services.state.get(batch_id)
    assert batch is not None
    return _json(batch)


@router.get("")
def list_batches(
    services: ServicesDep, account: AccountDep, after: str | None = None, limit: str | None = None
) -> BatchList:
    """List the account's batches, newest first."""
    n = list_limit(limit, default=20, maximum=100)
    if after is not None and services.state.get(after, account) is None:
        raise InvalidRequestError(f"Invalid 'after': no batch {after!r}.", code="invalid_value", param="after")
    ids, has_more = services.state.list_ids(account, after, n)
    data = [b for b in (services.state.get(i) for i in ids) if b is not None]
    return BatchList(
        data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None, has_more=has_more
    )


@router.get("/{batch_id}")
def read_batch(batch_id: str, services: ServicesDep, account: AccountDep) -> JSONResponse:
    """Retrieve a batch: its status and live request counts."""
    return _json(_get(services, batch_id, account))


@router.post("/{batch_id}/cancel")
def cancel_batch(batch_id: str, services: ServicesDep, account: AccountDep) -> JSONResponse:
    """Cancel: ``cancelling`` at once; in-flight lines finish; then ``cancelled`` with partial results."""
    batch = _get(services, batch_id, account)
    if batch.status in ("cancelling", "cancelled"):
        return _json(batch)
    if services.state.transition(batch_id, CANCELLABLE, "cancelling") is None:
        current = _get(services, batch_id, account)
        if current.status not in ("cancelling", "cancelled"):
            raise ConflictError(f"Cannot cancel a batch with status '{current.status}'.", code="batch_not_cancellable")
    return _json(_get(services, batch_id, account))


@router.get("/{batch_id}/results")
def read_batch_results(
    batch_id: str, services: ServicesDep, account: AccountDep, partial: bool = False
) -> StreamingResponse:
    """Result lines (output and error merged) in input order; ``partial=true`` while the batch runs."""
    batch = _get(services, batch_id, account)
    if batch.status not in FINAL_STATUSES and not partial:
        raise ConflictError(
            f"Batch {batch_id} is '{batch.status}'; its results are ready when it ends. Pass partial=true "
            "for the lines finished so far.",
            code="batch_not_final",
        )
    record = services.state.get_record(batch_id)
    assert record is not None
    lines = iter_results(services.store, services.files, LineState(services.state.redis), record)
    return StreamingResponse((line + b"\n" for line in lines), media_type="application/x-ndjson")


@router.delete("/{batch_id}")
def delete_batch(batch_id: str, services: ServicesDep, account: AccountDep) -> dict[str, Any]:
    """Delete a finished batch with its input, output and error files."""
    batch = _get(services, batch_id, account)
    if batch.status not in FINAL_STATUSES:
        raise ConflictError(
            f"Cannot delete a batch with status '{batch.status}'; cancel it first.", code="batch_not_final"
        )
    for file_id in (batch.input_file_id, batch.output_file_id, batch.error_file_id):
        record = services.files.record(file_id, account) if file_id else None
        if record is not None:
            services.files.delete(record["id"], account)
            services.store.delete(record["storage_key"])
    services.state.delete(batch_id, account)
    return {"id": batch_id, "object": "batch.deleted", "deleted": True}


def _get(services: ServicesDep, batch_id: str, account: str) -> Batch:
    batch = services.state.get(batch_id, account)
    if batch is None:
        raise NotFoundError(f"No such Batch object: {batch_id}", code="batch_not_found", param="batch_id")
    return batch


def _json(batch: Batch) -> JSONResponse:
    """The batch as JSON, extra fields included (FastAPI's response_model would drop them)."""
    return JSONResponse(json.loads(batch.model_dump_json()))
