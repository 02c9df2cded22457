"""Every name batchq makes up: Redis keys (under one prefix), storage keys and object ids.

Per-batch keys carry the batch id in a hash tag (``{batch_…}``) so that all of a batch's keys land in one
Redis Cluster slot and one Lua script may touch them together.
"""

from __future__ import annotations

import hashlib
import secrets

#: Prefix of every key batchq owns (Celery's own keys live beside them in the same database).
PREFIX = "batchq"


def file_record(file_id: str) -> str:
    """Hash: the File object's fields plus ``account`` and ``storage_key``."""
    return f"{PREFIX}:file:{file_id}"


def account_files(account: str) -> str:
    """Sorted set of the account's file ids, scored by created_at (ms)."""
    return f"{PREFIX}:account:{account}:files"


def account_batches(account: str) -> str:
    """Sorted set of the account's batch ids, scored by created_at (ms)."""
    return f"{PREFIX}:account:{account}:batches"


def account_active(account: str) -> str:
    """Set of the account's batch ids that are not in a final status (the concurrent-batch limit)."""
    return f"{PREFIX}:account:{account}:active"


def idempotency(account: str, key: str) -> str:
    """String: the batch id created under an ``Idempotency-Key``."""
    return f"{PREFIX}:account:{account}:idem:{key}"


def active_batches() -> str:
    """Set of every batch id not yet final: what the sweeper walks."""
    return f"{PREFIX}:active"


def batch_record(batch_id: str) -> str:
    """Hash: the Batch object's scalar fields (JSON-encoded where not scalar) plus internal fields."""
    return f"{PREFIX}:batch:{{{batch_id}}}"


def batch_counts(batch_id: str) -> str:
    """Hash: completed, failed, cancelled, expired, and token totals. Moved only by the outcome script."""
    return f"{PREFIX}:batch:{{{batch_id}}}:counts"


def batch_outcomes(batch_id: str) -> str:
    """Hash: line number (0-based) -> the output/error line JSON. First write wins (HSETNX)."""
    return f"{PREFIX}:batch:{{{batch_id}}}:outcomes"


def batch_index(batch_id: str) -> str:
    """String: packed (offset, length, line number) of each request line, 16 bytes a line, for ranged reads."""
    return f"{PREFIX}:batch:{{{batch_id}}}:index"


def batch_leases(batch_id: str) -> str:
    """Hash: line number -> lease expiry (ms, Redis clock) of the worker calling upstream for it."""
    return f"{PREFIX}:batch:{{{batch_id}}}:leases"


def batch_attempts(batch_id: str) -> str:
    """Hash: line number -> upstream attempts made so far (survives re-queues and redeliveries)."""
    return f"{PREFIX}:batch:{{{batch_id}}}:attempts"


def batch_open(batch_id: str) -> str:
    """Sorted set: lines handed to the broker and not yet recorded, scored by when they are due back (ms)."""
    return f"{PREFIX}:batch:{{{batch_id}}}:open"


def batch_finalize_lock(batch_id: str) -> str:
    """String: held by the one finalize run writing this batch's files."""
    return f"{PREFIX}:batch:{{{batch_id}}}:finalize-lock"


def batch_scratch(batch_id: str) -> tuple[str, ...]:
    """The keys finalize drops once the output and error files are safely written."""
    return (
        batch_outcomes(batch_id),
        batch_index(batch_id),
        batch_leases(batch_id),
        batch_attempts(batch_id),
        batch_open(batch_id),
    )


def task_marker(task: str, batch_id: str) -> str:
    """String: set while one intake or finalize task of the batch is queued or running (no second copy)."""
    return f"{PREFIX}:batch:{{{batch_id}}}:task:{task}"


# --- the scheduler (flow-controlled, fair feeding of request lines) ------------------------------


def sched_accounts() -> str:
    """Sorted set: accounts with lines left to feed, scored by their virtual time (lines fed / weight)."""
    return f"{PREFIX}:sched:accounts"


def sched_account_batches(account: str) -> str:
    """Sorted set: the account's batches with lines left to feed, scored by lines fed."""
    return f"{PREFIX}:sched:account:{account}"


def sched_account_queued(account: str) -> str:
    """String: the account's lines handed to the broker and not yet recorded."""
    return f"{PREFIX}:sched:account:{account}:queued"


def sched_urgent() -> str:
    """Sorted set: batches with lines left to feed, scored by when they become urgent (near their deadline)."""
    return f"{PREFIX}:sched:urgent"


def sched_queued() -> str:
    """String: lines handed to the broker and not yet recorded, across all batches (at most the window)."""
    return f"{PREFIX}:sched:queued"


def sched_weights() -> str:
    """Hash: account -> weight (from BATCHQ_ACCOUNT_WEIGHTS; absent = 1)."""
    return f"{PREFIX}:sched:weights"


def sweeper_lock() -> str:
    """String: the worker holding it runs the sweep; the others skip this round."""
    return f"{PREFIX}:sweeper:lock"


def rate_limit(route: str) -> str:
    """Prefix of one route's limiter keys (rpm and tpm buckets, in-flight set, cooldown)."""
    return f"{PREFIX}:rl:{{{route}}}"


def rate_limit_keys(route: str) -> list[str]:
    """One route's limiter keys, in the order of the limiter scripts' KEYS (batchq/ratelimit/lib.lua)."""
    prefix = rate_limit(route)
    names = (
        "cooldown",
        "inflight",
        "req:log",
        "req:tat",
        "tok:log",
        "tok:sum",
        "tok:tat",
        "tok:drain",
        "waiters",
        "last",
    )
    return [f"{prefix}:{name}" for name in names]


def metrics_account(account: str) -> str:
    """Hash: completed / failed -> lines of the account's batches recorded so far (for /metrics)."""
    return f"{PREFIX}:metrics:account:{account}"


def metrics_accounts() -> str:
    """Set of the accounts that have a :func:`metrics_account` hash (so a scrape never scans for them)."""
    return f"{PREFIX}:metrics:accounts"


def metrics_totals() -> str:
    """Hash: outcome -> lines recorded with it, across all batches (for /metrics)."""
    return f"{PREFIX}:metrics:requests"


def file_readers(file_id: str) -> str:
    """Set of the batch ids that read this file as their input; a delete of the file waits for it to drain."""
    return f"{PREFIX}:file:{file_id}:readers"


def files_expiring() -> str:
    """Sorted set: ids of files with an ``expires_at``, scored by it (the retention reaper's work list)."""
    return f"{PREFIX}:files:expiring"


def metrics_storage_bytes() -> str:
    """Hash: account -> bytes of its stored files (for /metrics)."""
    return f"{PREFIX}:metrics:storage-bytes"


def storage_reservations(account: str) -> str:
    """Hash: upload id -> bytes an upload in progress has reserved of the account's storage quota."""
    return f"{PREFIX}:account:{account}:storage-reserved"


def storage_reservation_leases(account: str) -> str:
    """Sorted set: upload id -> when (ms, Redis clock) its reservation lapses (an API process died mid-upload)."""
    return f"{PREFIX}:account:{account}:storage-reserved:leases"


def storage_key(file_id: str) -> str:
    """Where a file's bytes live in the object store (uploads and batch outputs alike)."""
    return f"files/{file_id}"


# --- webhooks ---------------------------------------------------------------------------------------
def webhook_endpoint(endpoint_id: str) -> str:
    """Hash: id, account, url, events (JSON), name, secret, created_at."""
    return f"{PREFIX}:webhook:endpoint:{endpoint_id}"


def account_webhooks(account: str) -> str:
    """Sorted set of the account's endpoint ids, scored by created_at (ms)."""
    return f"{PREFIX}:account:{account}:webhooks"


def webhook_deliveries(endpoint_id: str) -> str:
    """Sorted set: the endpoint's delivery log (delivery ids scored by creation, ms), trimmed to the newest."""
    return f"{PREFIX}:webhook:endpoint:{endpoint_id}:deliveries"


def webhook_delivery(delivery_id: str) -> str:
    """Hash: one event to one endpoint: body (the exact bytes sent), status, attempts, last answer, next attempt."""
    return f"{PREFIX}:webhook:delivery:{delivery_id}"


def webhook_delivery_lock(delivery_id: str) -> str:
    """String: held while one attempt of the delivery is in flight (a duplicate task skips)."""
    return f"{PREFIX}:webhook:delivery:{delivery_id}:lock"


def webhook_emitted(batch_id: str, event_type: str) -> str:
    """String (SET NX): the event was emitted once for this batch; a second finalize emits nothing."""
    return f"{PREFIX}:webhook:emitted:{batch_id}:{event_type}"


def webhook_due() -> str:
    """Sorted set: delivery id -> when (Unix s) the sweeper should (re)send it if no task has run it by then."""
    return f"{PREFIX}:webhook:due"


# --- object ids: random and unguessable in OpenAI's shapes, or derived where a retry must land on the same one ---


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


def new_batch_id() -> str:
    return f"batch_{secrets.token_hex(12)}"


def derived_file_id(batch_id: str, kind: str) -> str:
    """The id of a batch's output or error file: fixed per batch, so finalize can run twice harmlessly.

    The batch id is itself unguessable, so the derived id is too.
    """
    return "file-" + hashlib.sha256(f"{batch_id}:{kind}".encode()).hexdigest()[:24]


def request_id(batch_id: str, line: int) -> str:
    """``batch_req_…`` id of one line's outcome: stable across retries and redeliveries."""
    return "batch_req_" + hashlib.sha256(f"{batch_id}:{line}".encode()).hexdigest()[:24]
