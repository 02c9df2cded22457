"""/v1/files: upload, list, retrieve, content, delete.

Only the upload is ``async`` (it streams the body); its Redis and store calls go to the threadpool. The other
handlers are sync, so FastAPI runs them in its threadpool and a stalled dependency never blocks the event loop.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from batchq import keys
from batchq.api.deps import AccountDep, ServicesDep
from batchq.api.errors import BadRequestProblem, ConflictProblem, NotFoundProblem
from batchq.api.expiry import parse_upload_expiry
from batchq.api.params import list_limit
from batchq.api.quota import StorageQuota
from batchq.api.streaming import primed_stream
from batchq.api.upload import UploadLimits, receive_upload
from batchq.keys import new_file_id
from batchq.schemas import FileDeleted, FileList, FileObject

router = APIRouter(prefix="/files", tags=["files"])

#: Purposes an upload may have; outputs get ``batch_output`` from the service itself.
UPLOAD_PURPOSES = ("batch",)


@router.post("")
async def create_file(request: Request, services: ServicesDep, account: AccountDep) -> FileObject:
    """Upload a file (multipart: ``file``, ``purpose=batch``); streamed to the store."""
    quota = _quota(request, services, account)
    try:
        return await _create_file(request, services, account, quota)
    finally:
        if quota is not None:  # registered (the stored counter moved) or refused: the reservation goes
            await run_in_threadpool(quota.release)


def _quota(request: Request, services: ServicesDep, account: str) -> StorageQuota | None:
    settings = services.settings
    if not settings.max_account_storage_bytes:
        return None
    declared = request.headers.get("content-length") or ""
    return StorageQuota(
        services.redis,
        account,
        settings.max_account_storage_bytes,
        upload_timeout_s=settings.upload_timeout_s,
        expected_b=int(declared) if declared.isdigit() else 0,
    )


async def _create_file(request: Request, services: ServicesDep, account: str, quota: StorageQuota | None) -> FileObject:
    file_id = new_file_id()
    storage_key = keys.storage_key(file_id)
    settings = services.settings
    limits = UploadLimits(settings.max_file_bytes, settings.max_form_fields, settings.upload_timeout_s)
    upload = await receive_upload(request, services.store, storage_key, limits, quota)
    try:
        purpose = upload.fields.get("purpose")
        if not upload.stored:
            raise BadRequestProblem(
                "Missing required parameter: 'file'.", code="missing_required_parameter", param="file"
            )
        if purpose is None:
            raise BadRequestProblem(
                "Missing required parameter: 'purpose'.", code="missing_required_parameter", param="purpose"
            )
        if purpose not in UPLOAD_PURPOSES:
            raise BadRequestProblem(
                f"Invalid value for 'purpose': {purpose!r}. Supported values are: 'batch'.",
                code="invalid_value",
                param="purpose",
            )
        if upload.size == 0:
            raise BadRequestProblem("The uploaded file is empty.", code="empty_file", param="file")
        expires_after_s = parse_upload_expiry(upload.fields, min_s=services.settings.min_expires_after_s)
    except BadRequestProblem:
        if upload.stored:
            await run_in_threadpool(services.store.delete, storage_key)
        raise
    return await run_in_threadpool(
        services.files.add,
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
        raise BadRequestProblem("Invalid value for 'order': use 'asc' or 'desc'.", code="invalid_value", param="order")
    if after is not None and services.files.get(after, account) is None:
        raise BadRequestProblem(f"Invalid 'after': no file {after!r}.", code="invalid_value", param="after")
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
        primed_stream(services.store.iter_chunks(record["storage_key"]), f"file {file_id}"),
        media_type="application/octet-stream",
        headers={"content-length": str(record["bytes"])},
    )


@router.delete("/{file_id}")
def delete_file(file_id: str, services: ServicesDep, account: AccountDep) -> FileDeleted:
    """Delete a file and its bytes; 409 while an active batch reads it."""
    record = services.files.record(file_id, account)
    if record is None:
        raise _no_file(file_id)
    reader = services.files.delete_unless_read(file_id, account)
    if reader is not None:
        raise ConflictProblem(
            f"File {file_id} is the input of batch {reader}, which has not finished; cancel it or wait for it.",
            code="file_in_use",
            param="file_id",
        )
    services.store.delete(record["storage_key"])
    return FileDeleted(id=file_id, deleted=True)


def _no_file(file_id: str) -> NotFoundProblem:
    return NotFoundProblem(f"No such File object: {file_id}", code="file_not_found", param="file_id")
