"""Python client for the batchq HTTP API, in the openai SDK's style: ``client.files`` and ``client.batches``.

    client = batchq.Client()                      # base_url from BATCHQ_URL, api_key from BATCHQ_API_KEY
    batch = client.batches.submit("requests.jsonl", model="Llama-3.3-70B-Instruct")
    batch = client.batches.wait(batch.id)
    for result in client.batches.results(batch.id):
        ...

:class:`AsyncClient` (in :mod:`batchq.async_client`, re-exported here) is the asyncio twin. Authentication and retries
live in :mod:`batchq._http`; request files, paths and bodies in :mod:`batchq._payloads`.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from typing import Any

import httpx

from batchq._http import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    LineStream,
    SyncHTTP,
    resolve_api_key,
    resolve_base_url,
)
from batchq._payloads import (
    DEFAULT_ENDPOINT,
    DEFAULT_POLL_INTERVAL_S,
    BatchDeleted,
    FileInput,
    OnUpdate,
    RequestsInput,
    SyncPage,
    batch_path,
    create_body,
    failed_custom_ids,
    file_path,
    json_line,
    prepare_requests,
    select_line,
    to_timeout,
    upload_parts,
)
from batchq.async_client import AsyncClient
from batchq.client_errors import APIError, BatchFailedError, WaitTimeoutError
from batchq.schemas import FINAL_STATUSES, Batch, BatchList, FileDeleted, FileList, FileObject

__all__ = ["AsyncClient", "Batches", "Client", "Files"]


class Files:
    """``client.files``: upload, list, read and delete files."""

    def __init__(self, http: SyncHTTP) -> None:
        self._http = http

    def create(self, *, file: FileInput, purpose: str = "batch") -> FileObject:
        """Upload a file (streamed from disk when given a path or file object).

        Args:
            file: A path, bytes, a binary file object, or ``(filename, bytes | file object)``.
            purpose: ``"batch"`` for batch inputs.
        """
        with ExitStack() as stack:
            files, retries = upload_parts(file, stack)
            response = self._http.request("POST", "/files", files=files, data={"purpose": purpose}, max_retries=retries)
        return FileObject.model_validate(response.json())

    def retrieve(self, file_id: str) -> FileObject:
        return FileObject.model_validate(self._http.request("GET", file_path(file_id)).json())

    def list(
        self,
        *,
        purpose: str | None = None,
        after: str | None = None,
        limit: int | None = None,
        order: str | None = None,
    ) -> SyncPage[FileObject]:
        """One page of the account's files; iterate the page (or ``auto_paging_iter()``) for all of them."""
        params = {"purpose": purpose, "after": after, "limit": limit, "order": order}
        listed = FileList.model_validate(self._http.request("GET", "/files", params=params).json())
        return SyncPage(
            listed.data,
            has_more=listed.has_more,
            first_id=listed.first_id,
            last_id=listed.last_id,
            fetch=lambda last: self.list(purpose=purpose, after=last, limit=limit, order=order),
        )

    def content(self, file_id: str) -> bytes:
        """The file's raw bytes (loaded into memory; see :meth:`iter_lines` for large files)."""
        return self._http.request("GET", file_path(file_id, "/content")).content

    def iter_lines(self, file_id: str) -> LineStream[str]:
        """The file's lines, streamed (blank lines included, line ends removed)."""
        response = self._http.request("GET", file_path(file_id, "/content"), stream=True)
        return LineStream(response, lambda line: line)

    def delete(self, file_id: str) -> FileDeleted:
        return FileDeleted.model_validate(self._http.request("DELETE", file_path(file_id)).json())


class Batches:
    """``client.batches``: create and follow batches, read their results, retry their failures."""

    def __init__(self, http: SyncHTTP, files: Files) -> None:
        self._http = http
        self._files = files

    def create(
        self,
        *,
        input_file_id: str,
        endpoint: str = DEFAULT_ENDPOINT,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        timeout_minutes: int | None = None,
        idempotency_key: str | None = None,
    ) -> Batch:
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
        body = create_body(input_file_id, endpoint, completion_window, metadata, timeout_minutes)
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return Batch.model_validate(self._http.request("POST", "/batches", json=body, headers=headers).json())

    def retrieve(self, batch_id: str) -> Batch:
        return Batch.model_validate(self._http.request("GET", batch_path(batch_id)).json())

    def list(self, *, after: str | None = None, limit: int | None = None) -> SyncPage[Batch]:
        """One page of batches, newest first; iterate the page (or ``auto_paging_iter()``) for all of them."""
        listed = BatchList.model_validate(
            self._http.request("GET", "/batches", params={"after": after, "limit": limit}).json()
        )
        return SyncPage(
            listed.data,
            has_more=listed.has_more,
            first_id=listed.first_id,
            last_id=listed.last_id,
            fetch=lambda last: self.list(after=last, limit=limit),
        )

    def cancel(self, batch_id: str) -> Batch:
        return Batch.model_validate(self._http.request("POST", batch_path(batch_id, "/cancel")).json())

    def results(self, batch_id: str, *, partial: bool = False) -> LineStream[dict[str, Any]]:
        """The result lines (successes and errors merged, in input order), streamed as dicts.

        Args:
            batch_id: The batch.
            partial: Also allow a batch that has not ended (the lines recorded so far).

        Raises:
            ConflictError: The batch has not ended and ``partial`` is False.
        """
        params = {"partial": "true" if partial else "false"}
        response = self._http.request("GET", batch_path(batch_id, "/results"), params=params, stream=True)
        return LineStream(response, json_line)

    def delete(self, batch_id: str) -> BatchDeleted:
        """Delete an ended batch with its input, output and error files."""
        return BatchDeleted.model_validate(self._http.request("DELETE", batch_path(batch_id)).json())

    def submit(
        self,
        requests: RequestsInput,
        *,
        model: str | None = None,
        endpoint: str = DEFAULT_ENDPOINT,
        metadata: Mapping[str, str] | None = None,
        timeout_minutes: int | None = None,
    ) -> Batch:
        """Upload requests and create a batch of them (the uploaded file is deleted if the create fails).

        Args:
            requests: JSONL text, a path to an existing JSONL file, or request dicts.
            model: Model for the lines that lack one.
            endpoint: Endpoint of every line.
            metadata: Kept on the batch.
            timeout_minutes: A window shorter than 24 h.
        """
        with ExitStack() as stack:
            uploaded = self._files.create(file=prepare_requests(requests, model, stack), purpose="batch")
        return self._create_from(uploaded.id, endpoint=endpoint, metadata=metadata, timeout_minutes=timeout_minutes)

    def wait(
        self,
        batch_id: str,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        raise_on_failed: bool = False,
    ) -> Batch:
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
            batch = self.retrieve(batch_id)
            if on_update is not None:
                on_update(batch)
            if batch.status in FINAL_STATUSES:
                break
            if timeout is not None and time.monotonic() - started >= timeout:
                raise WaitTimeoutError(batch, timeout)
            self._http.sleep(poll_interval)
        if raise_on_failed and batch.status == "failed":
            raise BatchFailedError(batch)
        return batch

    def retry_failed(self, batch_id: str) -> Batch:
        """Resubmit the input lines whose custom_id is in the batch's error file, as a new batch.

        The new batch has the same endpoint and ``metadata={"retry_of": batch_id}``.

        Raises:
            ValueError: The batch has no error file (it has not ended, or nothing failed).
        """
        batch = self.retrieve(batch_id)
        if not batch.error_file_id:
            raise ValueError(f"batch {batch_id} ({batch.status}) has no error file: nothing to retry")
        with self._files.iter_lines(batch.error_file_id) as error_lines:
            failed = failed_custom_ids(error_lines)
        with ExitStack() as stack:
            out = stack.enter_context(tempfile.TemporaryFile())
            selected = 0
            with self._files.iter_lines(batch.input_file_id) as input_lines:
                for number, line in enumerate(input_lines, start=1):
                    if (chosen := select_line(line, number, failed)) is not None:
                        out.write(chosen)
                        selected += 1
            if not selected:
                raise ValueError(f"batch {batch_id}: no input line matches its error file's custom_ids")
            out.seek(0)
            uploaded = self._files.create(file=(f"retry-{batch_id}.jsonl", out), purpose="batch")
        return self._create_from(uploaded.id, endpoint=batch.endpoint, metadata={"retry_of": batch_id})

    def _create_from(self, file_id: str, **create_args: Any) -> Batch:
        """Create a batch of a file uploaded for it, deleting the file if the create fails."""
        try:
            return self.create(input_file_id=file_id, **create_args)
        except APIError:
            try:
                self._files.delete(file_id)
            except APIError:
                pass  # the create's error is the one worth reporting
            raise


class Client:
    """Synchronous client of a batchq server.

    Args:
        base_url: Server root, e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is fine); else ``BATCHQ_URL``,
            else ``http://127.0.0.1:8000``.
        api_key: Sent as ``Authorization: Bearer``; else ``BATCHQ_API_KEY``; else none (local mode).
        timeout: Seconds per request, or an ``httpx.Timeout``.
        max_retries: Retries of 408/429/5xx answers and connection errors (default 2).
        transport: An httpx transport (``httpx.MockTransport`` in tests).
        http_client: A ready ``httpx.Client`` to use instead (left open by :meth:`close`).
        sleep: Waits between retries and polls (default ``time.sleep``).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self.api_key = resolve_api_key(api_key)
        self._http = SyncHTTP(
            base_url=self.base_url,
            api_key=self.api_key,
            timeout=to_timeout(timeout),
            max_retries=max_retries,
            transport=transport,
            http_client=http_client,
            sleep=sleep,
        )
        self.files = Files(self._http)
        self.batches = Batches(self._http, self.files)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})"
