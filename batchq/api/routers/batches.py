"""/v1/batches: create, list, retrieve, cancel, results (partial or final), delete.

Every handler is sync ``def`` (FastAPI runs it in its threadpool): they all talk to Redis, the broker or the
store. The create body is read with a cap by an async dependency before the handler runs.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from batchq.api.bodies import CreateBodyDep
from batchq.api.deps import AccountDep, Services, ServicesDep
from batchq.api.errors import BadRequestProblem, ConflictProblem, LimitReachedProblem, NotFoundProblem
from batchq.api.expiry import parse_batch_output_expiry
from batchq.api.idempotency import Claim, check_key
from batchq.api.params import CreateParams, list_limit, parse_create_body
from batchq.api.streaming import primed_stream
from batchq.keys import new_batch_id
from batchq.pipeline.results import iter_results
from batchq.schemas import FINAL_STATUSES, Batch
from batchq.state import LineState
from batchq.state.files import output_expiry_field

router = APIRouter(prefix="/batches", tags=["batches"])

#: Statuses from which a cancel moves the batch to ``cancelling``.
CANCELLABLE = ("validating", "in_progress", "finalizing")


@router.post("")
def create_batch(request: Request, body: CreateBodyDep, services: ServicesDep, account: AccountDep) -> JSONResponse:
    """Create a batch from an uploaded file; it starts in ``validating``."""
    params = parse_create_body(request.headers.get("content-type"), body)
    output_expires_after_s = parse_batch_output_expiry(body, min_s=services.settings.min_expires_after_s)
    idem_key = check_key(request.headers.get("idempotency-key"))
    record = services.files.record(params.input_file_id, account)
    if record is None:
        raise _no_input(params.input_file_id)
    if record["purpose"] != "batch":
        raise BadRequestProblem(
            f"File {params.input_file_id} has purpose {record['purpose']!r}; a batch input must have purpose 'batch'.",
            code="invalid_value",
            param="input_file_id",
        )
    batch_id = new_batch_id()
    claim: Claim | None = None
    if idem_key is not None:
        earlier = services.idempotency.claim(account, idem_key, params.body_hash, batch_id)
        if isinstance(earlier, Batch):
            return _json(earlier)
        claim = earlier
    try:
        batch = _create(services, account, batch_id, params, output_expires_after_s)
    except BaseException:
        if claim is not None:
            with contextlib.suppress(Exception):  # the claim expires on its own if Redis is the problem
                services.idempotency.release(claim)
        raise
    if claim is not None:
        services.idempotency.complete(claim)
    return _json(batch)


def _create(
    services: Services, account: str, batch_id: str, params: CreateParams, output_expires_after_s: int | None
) -> Batch:
    """Store the batch, record it as a reader of its input, send the intake task; undone on failure."""
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
            "output_expires_after": output_expiry_field(output_expires_after_s),
        },
        services.settings.max_active_batches,
    )
    if not created:
        raise LimitReachedProblem(
            f"You have {services.settings.max_active_batches} active batches, the most allowed at once "
            "(BATCHQ_MAX_ACTIVE_BATCHES). Wait for one to finish or cancel one.",
            code="batch_limit_exceeded",
        )
    try:
        if not services.files.add_reader(params.input_file_id, batch_id):  # deleted since we looked
            raise _no_input(params.input_file_id)
        services.tasks.send_intake(batch_id)
    except BaseException:
        # Nothing ran yet: forget the batch so that a retry creates it afresh (best effort in an outage).
        with contextlib.suppress(Exception):
            services.files.release_reader(params.input_file_id, batch_id)
        with contextlib.suppress(Exception):
            services.state.delete(batch_id, account)
        raise
    batch = services.state.get(batch_id)
    assert batch is not None
    return batch


def _no_input(file_id: str) -> NotFoundProblem:
    return NotFoundProblem(
        f"Cannot find file {file_id}, or you do not have access to it.", code="invalid_request", param="input_file_id"
    )


@router.get("")
def list_batches(
    services: ServicesDep, account: AccountDep, after: str | None = None, limit: str | None = None
) -> JSONResponse:
    """List the account's batches, newest first."""
    n = list_limit(limit, default=20, maximum=100)
    if after is not None and services.state.get(after, account) is None:
        raise BadRequestProblem(f"Invalid 'after': no batch {after!r}.", code="invalid_value", param="after")
    ids, has_more = services.state.list_ids(account, after, n)
    data = [b for b in (services.state.get(i) for i in ids) if b is not None]
    return JSONResponse(
        {
            "object": "list",
            "data": [_public(b) for b in data],
            "first_id": data[0].id if data else None,
            "last_id": data[-1].id if data else None,
            "has_more": has_more,
        }
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
            raise ConflictProblem(
                f"Cannot cancel a batch with status '{current.status}'.", code="batch_not_cancellable"
            )
    return _json(_get(services, batch_id, account))


@router.get("/{batch_id}/results")
def read_batch_results(
    batch_id: str, services: ServicesDep, account: AccountDep, partial: bool = False
) -> StreamingResponse:
    """Result lines (output and error merged) in input order; ``partial=true`` while the batch runs."""
    batch = _get(services, batch_id, account)
    if batch.status not in FINAL_STATUSES and not partial:
        raise ConflictProblem(
            f"Batch {batch_id} is '{batch.status}'; its results are ready when it ends. Pass partial=true "
            "for the lines finished so far.",
            code="batch_not_final",
        )
    record = services.state.get_record(batch_id)
    assert record is not None
    lines = iter_results(services.store, services.files, LineState(services.state.redis), record)
    return StreamingResponse(
        primed_stream((line + b"\n" for line in lines), f"results of {batch_id}"), media_type="application/x-ndjson"
    )


@router.delete("/{batch_id}")
def delete_batch(batch_id: str, services: ServicesDep, account: AccountDep) -> dict[str, Any]:
    """Delete a finished batch with its output and error files, and its input unless another batch reads it."""
    batch = _get(services, batch_id, account)
    if batch.status not in FINAL_STATUSES:
        raise ConflictProblem(
            f"Cannot delete a batch with status '{batch.status}'; cancel it first.", code="batch_not_final"
        )
    services.files.release_reader(batch.input_file_id, batch_id)
    for file_id in (batch.input_file_id, batch.output_file_id, batch.error_file_id):
        record = services.files.record(file_id, account) if file_id else None
        if record is None:
            continue
        if file_id == batch.input_file_id:
            if services.files.delete_unless_read(record["id"], account) is not None:
                continue  # an active batch reads it: the input stays
        else:
            services.files.delete(record["id"], account)
        services.store.delete(record["storage_key"])
    services.state.delete(batch_id, account)
    return {"id": batch_id, "object": "batch.deleted", "deleted": True}


def _get(services: ServicesDep, batch_id: str, account: str) -> Batch:
    batch = services.state.get(batch_id, account)
    if batch is None:
        raise NotFoundProblem(f"No such Batch object: {batch_id}", code="batch_not_found", param="batch_id")
    return batch


def _json(batch: Batch) -> JSONResponse:
    """The batch as JSON, extra fields included (FastAPI's response_model would drop them)."""
    return JSONResponse(_public(batch))


def _public(batch: Batch) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(batch.model_dump_json())
    # The record keeps every scalar as text; the source document's timeout_minutes is a number.
    minutes = data.get("timeout_minutes")
    if isinstance(minutes, str):
        number = float(minutes)
        data["timeout_minutes"] = int(number) if number.is_integer() else number
    return data
