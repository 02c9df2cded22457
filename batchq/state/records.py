"""A batch's stored record, decoded once into a typed, frozen value, and the decisions made from it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from typing import Any

from batchq.schemas import FINAL_STATUSES, Batch, BatchErrors, BatchUsage, RequestCounts

#: Timestamp field set when a batch enters each status.
STATUS_TIMESTAMP = {
    "in_progress": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
}

#: Stored as JSON; every other field is a string or an integer.
JSON_FIELDS = ("metadata", "errors", "estimated_cost", "output_expires_after")


@dataclass(frozen=True)
class BatchRecord:
    """The Redis hash of one batch, typed. Build it with :func:`decode_record`; write fields with BatchState."""

    id: str
    account: str
    status: str
    endpoint: str = ""
    input_file_id: str = ""
    completion_window: str = "24h"
    created_at: int = 0
    expires_at: int = 0
    total: int = 0
    input_storage_key: str = ""
    model: str | None = None
    metadata: dict[str, str] | None = None
    errors: dict[str, Any] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    estimated_cost: dict[str, Any] | None = None
    timeout_minutes: int | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    first_request_at: int | None = None
    """When the first line of the batch was claimed by a worker (None: every line still waits its turn)."""
    last_progress_ms: int = 0
    idempotency_hash: str | None = None
    output_expires_after: dict[str, Any] | None = None
    extra: dict[str, str] = field(default_factory=dict)
    """Fields this version does not know (written by a newer one): kept, never dropped."""

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def stop_code(self, now: float | None = None) -> str:
        """What a line of this batch not yet sent becomes now (see :func:`stop_code`)."""
        return stop_code(self.status, self.cancelling_at, self.expires_at, time.time() if now is None else now)


def stop_code(status: str, cancelling_at: int | None, expires_at: int | None, now: float) -> str:
    """The one stop rule: ``batch_cancelled`` once a cancel was asked, ``batch_expired`` past the completion window,
    '' while the batch may go on. Its Lua twin is ``stop_code`` in state/scripts/lib.lua (a test holds them equal)."""
    if status in ("cancelling", "cancelled") or cancelling_at:
        return "batch_cancelled"
    if expires_at and now >= expires_at:
        return "batch_expired"
    return ""


_KNOWN = {f.name: f for f in fields(BatchRecord) if f.name != "extra"}
_INT_FIELDS = {name for name, f in _KNOWN.items() if "int" in str(f.type)}


def decode_record(raw: dict[bytes, bytes]) -> BatchRecord | None:
    """The typed record from ``HGETALL``; None when the hash is empty or lacks its identity."""
    values: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for k, v in raw.items():
        name, text = k.decode(), v.decode()
        if name in JSON_FIELDS:
            values[name] = json.loads(text)
        elif name in _INT_FIELDS:
            values[name] = int(float(text)) if text else None
        elif name in _KNOWN:
            values[name] = text
        else:
            extra[name] = text
    if "id" not in values or "status" not in values:
        return None
    values.setdefault("account", "")
    for name in ("total", "created_at", "expires_at", "last_progress_ms"):
        if values.get(name) is None:
            values.pop(name, None)
    return BatchRecord(**values, extra=extra)


def encode_fields(values: dict[str, Any]) -> dict[str | bytes, bytes | float | int | str]:
    """Redis hash fields for ``values`` (None values are left out)."""
    out: dict[str | bytes, bytes | float | int | str] = {}
    for name, value in values.items():
        if value is None:
            continue
        out[name] = json.dumps(value) if name in JSON_FIELDS else str(value)
    return out


def to_batch(record: BatchRecord, counts: dict[str, int]) -> Batch:
    """The user-facing Batch object from a stored record and the live counters."""
    usage = None
    if record.status != "validating":
        usage = BatchUsage.model_validate(
            {
                "input_tokens": counts.get("input_tokens", 0),
                "input_tokens_details": {"cached_tokens": counts.get("cached_tokens", 0)},
                "output_tokens": counts.get("output_tokens", 0),
                "output_tokens_details": {"reasoning_tokens": counts.get("reasoning_tokens", 0)},
                "total_tokens": counts.get("total_tokens", 0),
            }
        )
    extra: dict[str, Any] = {}
    if record.estimated_cost is not None:
        extra["estimated_cost"] = record.estimated_cost
    if record.timeout_minutes is not None:
        extra["timeout_minutes"] = record.timeout_minutes
    if record.status == "in_progress":
        # The seed's "Queued" step, on OpenAI's status values: in_progress with no line started yet.
        extra["queued"] = record.first_request_at is None
        extra["first_request_at"] = record.first_request_at
    return Batch(
        id=record.id,
        endpoint=record.endpoint,
        errors=BatchErrors.model_validate(record.errors) if record.errors else None,
        input_file_id=record.input_file_id,
        completion_window=record.completion_window,
        status=record.status,  # only transitions write it, with OpenAI's values
        output_file_id=record.output_file_id,
        error_file_id=record.error_file_id,
        created_at=record.created_at,
        in_progress_at=record.in_progress_at,
        expires_at=record.expires_at or None,
        finalizing_at=record.finalizing_at,
        completed_at=record.completed_at,
        failed_at=record.failed_at,
        expired_at=record.expired_at,
        cancelling_at=record.cancelling_at,
        cancelled_at=record.cancelled_at,
        request_counts=RequestCounts(
            total=record.total,
            completed=counts.get("completed", 0),
            failed=counts.get("failed", 0),
            cancelled=counts.get("cancelled", 0),
            expired=counts.get("expired", 0),
        ),
        metadata=record.metadata,
        model=record.model,
        usage=usage,
        **extra,
    )
