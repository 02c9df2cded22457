"""The asyncio twin of :mod:`batchq.client`: :class:`AsyncClient` with ``files`` and ``batches`` resources.

Every method matches its sync twin's arguments and returns; ``results`` and ``files.iter_lines`` return streams to
``async for`` over (and to ``aclose`` or use with ``async with``).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import ExitStack
from typing import Any

import httpx

from batchq._http import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    AsyncHTTP,
    AsyncLineStream,
    resolve_api_key,
    resolve_base_url,
)
from batchq._payloads import (
    DEFAULT_ENDPOINT,
    DEFAULT_POLL_INTERVAL_S,
    AsyncPage,
    BatchDeleted,
    FileInput,
    OnUpdate,
    RequestsInput,
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
from batchq.client_errors import APIError, BatchFailedError, WaitTimeoutError
from batchq.schemas import FINAL_STATUSES, Batch, BatchList, FileDeleted, FileList, FileObject

__all__ = ["AsyncBatches", "AsyncClient", "AsyncFiles"]


class AsyncFiles:
    """``client.files`` of :class:`AsyncClient`; see :class:`Files`."""

    def __init__(self, http: AsyncHTTP) -> None:
        self._http = http

    async def create(self, *, file: FileInput, purpose: str = "batch") -> FileObject:
        with ExitStack() as stack:
            files, retries = upload_parts(file, stack)
            response = await self._http.request(
                "POST", "/files", files=files, data={"purpose": purpose}, max_retries=retries
            )
        return FileObject.model_validate(response.json())

    async def retrieve(self, file_id: str) -> FileObject:
        return FileObject.model_validate((await self._http.request("GET", file_path(file_id))).json())

    async def list(
        self,
        *,
        purpose: str | None = None,
        after: str | None = None,
        limit: int | None = None,
        order: str | None = None,
    ) -> AsyncPage[FileObject]:
        params = {"purpose": purpose, "after": after, "limit": limit, "order": order}
        listed = FileList.model_validate((await self._http.request("GET", "/files", params=params)).json())

        def fetch(last: str) -> Awaitable[AsyncPage[FileObject]]:
            return self.list(purpose=purpose, after=last, limit=limit, order=order)

        return AsyncPage(
            listed.data, has_more=listed.has_more, first_id=listed.first_id, last_id=listed.last_id, fetch=fetch
        )

    async def content(self, file_id: str) -> bytes:
        return (await self._http.request("GET", file_path(file_id, "/content"))).content

    async def iter_lines(self, file_id: str) -> AsyncLineStream[str]:
        response = await self._http.request("GET", file_path(file_id, "/content"), stream=True)
        return AsyncLineStream(response, lambda line: line)

    async def delete(self, file_id: str) -> FileDeleted:
        return FileDeleted.model_validate((await self._http.request("DELETE", file_path(file_id))).json())


class AsyncBatches:
    """``client.batches`` of :class:`AsyncClient`; see :class:`Batches` (``results`` is ``async for``-able)."""

    def __init__(self, http: AsyncHTTP, files: AsyncFiles) -> None:
        self._http = http
        self._files = files

    async def create(
        self,
        *,
        input_file_id: str,
        endpoint: str = DEFAULT_ENDPOINT,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        timeout_minutes: int | None = None,
        idempotency_key: str | None = None,
    ) -> Batch:
        body = create_body(input_file_id, endpoint, completion_window, metadata, timeout_minutes)
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return Batch.model_validate((await self._http.request("POST", "/batches", json=body, headers=headers)).json())

    async def retrieve(self, batch_id: str) -> Batch:
        return Batch.model_validate((await self._http.request("GET", batch_path(batch_id))).json())

    async def list(self, *, after: str | None = None, limit: int | None = None) -> AsyncPage[Batch]:
        params = {"after": after, "limit": limit}
        listed = BatchList.model_validate((await self._http.request("GET", "/batches", params=params)).json())

        def fetch(last: str) -> Awaitable[AsyncPage[Batch]]:
            return self.list(after=last, limit=limit)

        return AsyncPage(
            listed.data, has_more=listed.has_more, first_id=listed.first_id, last_id=listed.last_id, fetch=fetch
        )

    async def cancel(self, batch_id: str) -> Batch:
        return Batch.model_validate((await self._http.request("POST", batch_path(batch_id, "/cancel"))).json())

    async def results(self, batch_id: str, *, partial: bool = False) -> AsyncLineStream[dict[str, Any]]:
        params = {"partial": "true" if partial else "false"}
        response = await self._http.request("GET", batch_path(batch_id, "/results"), params=params, stream=True)
        return AsyncLineStream(response, json_line)

    async def delete(self, batch_id: str) -> BatchDeleted:
        return BatchDeleted.model_validate((await self._http.request("DELETE", batch_path(batch_id))).json())

    async def submit(
        self,
        requests: RequestsInput,
        *,
        model: str | None = None,
        endpoint: str = DEFAULT_ENDPOINT,
        metadata: Mapping[str, str] | None = None,
        timeout_minutes: int | None = None,
    ) -> Batch:
        with ExitStack() as stack:
            uploaded = await self._files.create(file=prepare_requests(requests, model, stack), purpose="batch")
        return await self._create_from(
            uploaded.id, endpoint=endpoint, metadata=metadata, timeout_minutes=timeout_minutes
        )

    async def wait(
        self,
        batch_id: str,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        raise_on_failed: bool = False,
    ) -> Batch:
        started = time.monotonic()
        while True:
            batch = await self.retrieve(batch_id)
            if on_update is not None:
                on_update(batch)
            if batch.status in FINAL_STATUSES:
                break
            if timeout is not None and time.monotonic() - started >= timeout:
                raise WaitTimeoutError(batch, timeout)
            await self._http.sleep(poll_interval)
        if raise_on_failed and batch.status == "failed":
            raise BatchFailedError(batch)
        return batch

    async def retry_failed(self, batch_id: str) -> Batch:
        batch = await self.retrieve(batch_id)
        if not batch.error_file_id:
            raise ValueError(f"batch {batch_id} ({batch.status}) has no error file: nothing to retry")
        async with await self._files.iter_lines(batch.error_file_id) as error_lines:
            failed = failed_custom_ids([line async for line in error_lines])
        with ExitStack() as stack:
            out = stack.enter_context(tempfile.TemporaryFile())
            number = selected = 0
            async with await self._files.iter_lines(batch.input_file_id) as input_lines:
                async for line in input_lines:
                    number += 1
                    if (chosen := select_line(line, number, failed)) is not None:
                        out.write(chosen)
                        selected += 1
            if not selected:
                raise ValueError(f"batch {batch_id}: no input line matches its error file's custom_ids")
            out.seek(0)
            uploaded = await self._files.create(file=(f"retry-{batch_id}.jsonl", out), purpose="batch")
        return await self._create_from(uploaded.id, endpoint=batch.endpoint, metadata={"retry_of": batch_id})

    async def _create_from(self, file_id: str, **create_args: Any) -> Batch:
        try:
            return await self.create(input_file_id=file_id, **create_args)
        except APIError:
            try:
                await self._files.delete(file_id)
            except APIError:
                pass
            raise


class AsyncClient:
    """Asyncio client of a batchq server; arguments as :class:`Client` (``sleep`` is awaited). Close with
    :meth:`aclose` or ``async with``."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self.api_key = resolve_api_key(api_key)
        self._http = AsyncHTTP(
            base_url=self.base_url,
            api_key=self.api_key,
            timeout=to_timeout(timeout),
            max_retries=max_retries,
            transport=transport,
            http_client=http_client,
            **({"sleep": sleep} if sleep is not None else {}),
        )
        self.files = AsyncFiles(self._http)
        self.batches = AsyncBatches(self._http, self.files)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self.base_url!r})"
