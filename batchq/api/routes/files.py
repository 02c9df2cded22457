"""/v1/files: upload, list, retrieve, content, delete."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from batchq import keys
from batchq.api.deps import AccountDep, ServicesDep
from batchq.api.params import list_limit
from batchq.api.upload import receive_upload
from batchq.errors import InvalidRequestError, NotFoundError
from batchq.expiration import parse_upload_expiry
from batchq.keys import new_file_id
from batchq.schemas import FileDeleted, FileList, FileObject
from batchq.storage import ObjectStore

router = APIRouter(prefix="/files", tags=["files"])

#: Purposes an upload may have; outputs get ``batch_output`` from the service itself.
UPLOAD_PURPOSES = ("batch",)


@router.post("")
async def create_file(request: Request, services: ServicesDep, account: AccountDep) -> FileObject:
    """Upload a file (multipart: ``file``, ``purpose=batch``); streamed to the store."""
    file_id = new_file_id()
    storage_key = keys.storage_key(file_id)
    upload = await receive_upload(request, services.store, storage_key, services.settings.max_file_bytes)
    try:
        purpose = upload.fields.get("purpose")
        if not upload.stored:
            raise InvalidRequestError(
                "Missing required parameter: 'file'.", code="missing_required_parameter", param="file"
            )
        if purpose is None:
            raise InvalidRequestError(
                "Missing required parameter: 'purpose'.", code="missing_required_parameter", param="purpose"
            )
        if purpose not in UPLOAD_PURPOSES:
            raise InvalidRequestError(
                f"Invalid value for 'purpose': {purpose!r}. Supported values are: 'batch'.",
                code="invalid_value",
                param="purpose",
            )
        if upload.size == 0:
            raise InvalidRequestError("The uploaded file is empty.", code="empty_file", param="file")
        expires_after_s = parse_upload_expiry(upload.fields, min_s=services.settings.min_expires_after_s)  # issue 14
    except InvalidRequestError:
        if upload.stored:
            await run_in_threadpool(services.store.delete, storage_key)
        raise
    return services.files.add(
        file_id=file_id,
        account=account,
        filename=upload.filename or "upload.jsonl",
        purpose=purpose,
        size=upload.size,
        storage_key=storage_key,
        expires_after_s=expires_after_s,
    )


@router.get("")
def list_files(
    services: ServicesDep,
    account: AccountDep,
    after: str | None = None,
    limit: str | None = None,
    order: str = "desc",
    purpose: str | None = None,
) -> FileList:
    """List the account's files."""
    n = list_limit(limit, default=10_000, maximum=10_000)
    if order not in ("asc", "desc"):
        raise InvalidRequestError(
            "Invalid value for 'order': use 'asc' or 'desc'.", code="invalid_value", param="order"
        )
    if after is not None and services.files.get(after, account) is None:
        raise InvalidRequestError(f"Invalid 'after': no file {after!r}.", code="invalid_value", param="after")
    data, has_more = services.files.list(account, after=after, limit=n, order=order, purpose=purpose)
    return FileList(
        data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None, has_more=has_more
    )


@router.get("/{file_id}")
def read_file(file_id: str, services: ServicesDep, account: AccountDep) -> FileObject:
    """Retrieve a file's metadata."""
    found = services.files.get(file_id, account)
    if found is None:
        raise _no_file(file_id)
    return found


@router.get("/{file_id}/content")
def read_file_content(file_id: str, services: ServicesDep, account: AccountDep) -> StreamingResponse:
    """The file's raw bytes, streamed."""
    record = services.files.record(file_id, account)
    if record is None:
        raise _no_file(file_id)
    return StreamingResponse(
        _stream(services.store, record["storage_key"]),
        media_type="application/octet-stream",
        headers={"content-length": str(record["bytes"])},
    )


@router.delete("/{file_id}")
def delete_file(file_id: str, services: ServicesDep, account: AccountDep) -> FileDeleted:
    """Delete a file and its bytes."""
    record = services.files.record(file_id, account)
    if record is None:
        raise _no_file(file_id)
    services.files.delete(file_id, account)
    services.store.delete(record["storage_key"])
    return FileDeleted(id=file_id, deleted=True)


def _stream(store: ObjectStore, key: str) -> Iterator[bytes]:
    yield from store.iter_chunks(key)


def _no_file(file_id: str) -> NotFoundError:
    return NotFoundError(f"No such File object: {file_id}", code="file_not_found", param="file_id")
