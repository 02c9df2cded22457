"""The operations of ``client.batches``, written once for both clients (see :mod:`batchq.client.effects`)."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from typing import Any
from urllib.parse import quote

from batchq.client.connection import Connection
from batchq.client.effects import Op, Sleep
from batchq.client.exceptions import APIError, BatchFailedError, WaitTimeoutError
from batchq.client.file_ops import create_file, delete_file, file_lines
from batchq.client.lines import Lines
from batchq.client.objects import BatchDeleted
from batchq.client.pages import Listing
from batchq.client.retrying import send
from batchq.client.uploads import FailedLines, RequestsInput, prepare_requests
from batchq.schemas import FINAL_STATUSES, Batch, BatchList

#: Endpoint of a batch when none is given.
DEFAULT_ENDPOINT = "/v1/chat/completions"
#: Seconds between two polls of ``wait``.
DEFAULT_POLL_INTERVAL_S = 2.0
#: Called with the batch after each poll of ``wait``.
OnUpdate = Callable[[Batch], None]


def batch_path(batch_id: str, suffix: str = "") -> str:
    return f"/batches/{quote(batch_id, safe='')}{suffix}"


def create_batch(
    conn: Connection,
    *,
    input_file_id: str,
    endpoint: str = DEFAULT_ENDPOINT,
    completion_window: str = "24h",
    metadata: Mapping[str, str] | None = None,
    timeout_minutes: int | None = None,
    idempotency_key: str | None = None,
) -> Op[Batch]:
    """Create a batch from an uploaded file.

    Args:
        input_file_id: The uploaded JSONL file.
        endpoint: The endpoint every line targets.
        completion_window: Only ``"24h"``.
        metadata: Up to 16 string pairs kept on the batch.
        timeout_minutes: A window shorter than 24 h (the source document's parameter).
        idempotency_key: Sent as ``Idempotency-Key``; a fresh uuid4 when None. Retries of this call reuse it,
            so the server never makes two batches for it.
    """
    body: dict[str, Any] = {
        "input_file_id": input_file_id,
        "endpoint": endpoint,
        "completion_window": completion_window,
    }
    if metadata is not None:
        body["metadata"] = dict(metadata)
    if timeout_minutes is not None:
        body["timeout_minutes"] = timeout_minutes
    headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
    response = yield from send(conn, "POST", "/batches", json=body, headers=headers)
    return Batch.model_validate(response.json())


def retrieve_batch(conn: Connection, batch_id: str) -> Op[Batch]:
    """The batch with its status, ``request_counts``, ``usage`` and ``estimated_cost``."""
    response = yield from send(conn, "GET", batch_path(batch_id))
    return Batch.model_validate(response.json())


def list_batches(conn: Connection, *, after: str | None = None, limit: int | None = None) -> Op[Listing[Batch]]:
    """One page of batches, newest first; iterate the page (or ``auto_paging_iter()``) for all of them."""
    response = yield from send(conn, "GET", "/batches", params={"after": after, "limit": limit})
    listed = BatchList.model_validate(response.json())

    def next_page(last: str) -> Op[Listing[Batch]]:
        return list_batches(conn, after=last, limit=limit)

    return Listing(listed.data, listed.has_more, listed.first_id, listed.last_id, next_page)


def cancel_batch(conn: Connection, batch_id: str) -> Op[Batch]:
    """Cancel the batch (``cancelling``, then ``cancelled`` with the results recorded so far)."""
    response = yield from send(conn, "POST", batch_path(batch_id, "/cancel"))
    return Batch.model_validate(response.json())


def batch_results(conn: Connection, batch_id: str, *, partial: bool = False) -> Op[Lines[dict[str, Any]]]:
    """The result lines (successes and errors merged, in input order), streamed as dicts.

    Args:
        batch_id: The batch.
        partial: Also allow a batch that has not ended (the lines recorded so far).

    Raises:
        ConflictError: The batch has not ended and ``partial`` is False.
    """
    params = {"partial": "true" if partial else "false"}
    response = yield from send(conn, "GET", batch_path(batch_id, "/results"), params=params, stream=True)
    return Lines(response, _json_line)


def delete_batch(conn: Connection, batch_id: str) -> Op[BatchDeleted]:
    """Delete an ended batch with its input, output and error files."""
    response = yield from send(conn, "DELETE", batch_path(batch_id))
    return BatchDeleted.model_validate(response.json())


def submit(
    conn: Connection,
    requests: RequestsInput,
    *,
    model: str | None = None,
    endpoint: str = DEFAULT_ENDPOINT,
    metadata: Mapping[str, str] | None = None,
    timeout_minutes: int | None = None,
) -> Op[Batch]:
    """Upload requests and create a batch of them (the uploaded file is deleted if the create fails).

    Args:
        requests: JSONL text, a path to an existing JSONL file, or request dicts.
        model: Model for the lines that lack one.
        endpoint: Endpoint of every line.
        metadata: Kept on the batch.
        timeout_minutes: A window shorter than 24 h.
    """
    with ExitStack() as stack:
        uploaded = yield from create_file(conn, file=prepare_requests(requests, model, stack), purpose="batch")
    args = {"endpoint": endpoint, "metadata": metadata, "timeout_minutes": timeout_minutes}
    return (yield from _create_from(conn, uploaded.id, **args))


def wait(
    conn: Connection,
    batch_id: str,
    *,
    poll_interval: float = DEFAULT_POLL_INTERVAL_S,
    timeout: float | None = None,
    on_update: OnUpdate | None = None,
    raise_on_failed: bool = False,
) -> Op[Batch]:
    """Poll until the batch is completed, failed, expired or cancelled.

    Args:
        batch_id: The batch.
        poll_interval: Seconds between polls.
        timeout: Give up after this many seconds (None: never).
        on_update: Called with the batch after every poll (e.g. to draw progress).
        raise_on_failed: Raise :class:`BatchFailedError` when the batch ends ``failed``.

    Raises:
        WaitTimeoutError: ``timeout`` ran out first.
        BatchFailedError: The batch failed and ``raise_on_failed`` is set.
    """
    started = time.monotonic()
    while True:
        batch = yield from retrieve_batch(conn, batch_id)
        if on_update is not None:
            on_update(batch)
        if batch.status in FINAL_STATUSES:
            break
        if timeout is not None and time.monotonic() - started >= timeout:
            raise WaitTimeoutError(batch, timeout)
        yield Sleep(poll_interval)
    if raise_on_failed and batch.status == "failed":
        raise BatchFailedError(batch)
    return batch


def retry_failed(conn: Connection, batch_id: str) -> Op[Batch]:
    """Resubmit the input lines whose custom_id is in the batch's error file, as a new batch.

    Both files are streamed. The new batch has the same endpoint and ``metadata={"retry_of": batch_id}``.

    Raises:
        ValueError: The batch has no error file (it has not ended, or nothing failed).
    """
    batch = yield from retrieve_batch(conn, batch_id)
    if not batch.error_file_id:
        raise ValueError(f"batch {batch_id} ({batch.status}) has no error file: nothing to retry")
    with ExitStack() as stack:
        out = stack.enter_context(tempfile.TemporaryFile())
        chosen = FailedLines(out)
        errors = yield from file_lines(conn, batch.error_file_id)
        yield from errors.each(chosen.note_error)
        inputs = yield from file_lines(conn, batch.input_file_id)
        yield from inputs.each(chosen.offer)
        if not chosen.selected:
            raise ValueError(f"batch {batch_id}: no input line matches its error file's custom_ids")
        out.seek(0)
        uploaded = yield from create_file(conn, file=(f"retry-{batch_id}.jsonl", out), purpose="batch")
    return (yield from _create_from(conn, uploaded.id, endpoint=batch.endpoint, metadata={"retry_of": batch_id}))


def _create_from(conn: Connection, file_id: str, **create_args: Any) -> Op[Batch]:
    """Create a batch of a file uploaded for it, deleting the file if the create fails."""
    try:
        return (yield from create_batch(conn, input_file_id=file_id, **create_args))
    except APIError:
        try:
            yield from delete_file(conn, file_id)
        except APIError:
            pass  # the create's error is the one worth reporting
        raise


def _json_line(line: str) -> dict[str, Any] | None:
    return json.loads(line) if line.strip() else None
