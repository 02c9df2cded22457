"""The objects users see, shaped exactly like OpenAI's (extra fields are allowed by its SDK)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

BatchStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]
#: Statuses a batch never leaves.
FINAL_STATUSES: frozenset[str] = frozenset({"failed", "completed", "expired", "cancelled"})

FilePurpose = Literal["batch", "batch_output"]


class FileObject(BaseModel):
    """A stored file: an uploaded batch input, or a batch's output / error file."""

    model_config = ConfigDict(extra="allow")

    id: str
    """``file-…``, random and unguessable."""
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    """Unix timestamp (seconds) of the upload."""
    filename: str
    purpose: str
    status: str = "processed"
    """Always ``processed``: the openai SDK's ``wait_for_processing`` waits for it."""
    status_details: str | None = None
    expires_at: int | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


class RequestCounts(BaseModel):
    model_config = ConfigDict(extra="allow")

    total: int = 0
    completed: int = 0
    """Requests that succeeded."""
    failed: int = 0
    """Requests that did not succeed, for any reason (cancelled and expired lines included)."""


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class BatchUsage(BaseModel):
    model_config = ConfigDict(extra="allow")

    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int = 0


class BatchError(BaseModel):
    """One validation error of the input file; ``line`` is 1-based."""

    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class Batch(BaseModel):
    """OpenAI's Batch object, every field, plus ``usage``/``model`` and a few extras."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts = Field(default_factory=RequestCounts)
    metadata: dict[str, str] | None = None
    model: str | None = None
    usage: BatchUsage | None = None


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None
    last_id: str | None
    has_more: bool


def output_line(
    *,
    request_id: str,
    custom_id: str,
    status_code: int | None,
    upstream_request_id: str | None,
    body: Any,
    error: dict[str, str] | None,
) -> dict[str, Any]:
    """One line of the output or error file (OpenAI's ``BatchRequestOutput``)."""
    response = None
    if status_code is not None:
        response = {"status_code": status_code, "request_id": upstream_request_id or request_id, "body": body}
    return {"id": request_id, "custom_id": custom_id, "response": response, "error": error}
