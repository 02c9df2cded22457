"""batchq: self-hosted, OpenAI-Batch-API-compatible batch processing for LLM requests.

The functions below follow the source document (``import batchq`` where it says ``import regolo``)::

    import batchq

    batch = batchq.submit_batch(requests=open("requests.jsonl").read(), model="Llama-3.3-70B-Instruct")
    batch = batchq.wait(batch.id)                     # progress bar on stderr
    for result in batchq.get_batch_results(batch.id):
        ...

They share one :class:`Client`, built on first use from ``BATCHQ_URL`` (server root, default
``http://127.0.0.1:8000``) and ``BATCHQ_API_KEY``. For anything else, make a ``batchq.Client(base_url=...,
api_key=...)`` (or ``batchq.AsyncClient``) and use its ``files`` and ``batches`` resources.

Importing this package is cheap: the client, its errors and the schemas are imported when first used.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchq.client import AsyncClient, Client
    from batchq.client.exceptions import (
        APIConnectionError,
        APIError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        BatchFailedError,
        ConflictError,
        InternalServerError,
        NotFoundError,
        PayloadTooLargeError,
        PermissionDeniedError,
        RateLimitError,
        WaitTimeoutError,
    )
    from batchq.client.objects import BatchDeleted
    from batchq.client.pages import AsyncPage, SyncPage
    from batchq.client.uploads import RequestsInput
    from batchq.schemas import (
        Batch,
        BatchError,
        BatchErrors,
        BatchList,
        BatchStatus,
        BatchUsage,
        FileDeleted,
        FileList,
        FileObject,
        RequestCounts,
    )
    from batchq.webhooks.signing import WebhookVerificationError, verify_webhook

__all__ = [
    # functions of the source document
    "submit_batch",
    "get_batch",
    "get_batch_results",
    "cancel_batch",
    "wait",
    "delete_batch",
    "retry_failed",
    "verify_webhook",
    # clients
    "Client",
    "AsyncClient",
    "SyncPage",
    "AsyncPage",
    # errors
    "APIError",
    "BadRequestError",
    "PayloadTooLargeError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "RateLimitError",
    "InternalServerError",
    "APIConnectionError",
    "APITimeoutError",
    "BatchFailedError",
    "WaitTimeoutError",
    "WebhookVerificationError",
    # objects
    "Batch",
    "BatchDeleted",
    "BatchError",
    "BatchErrors",
    "BatchList",
    "BatchStatus",
    "BatchUsage",
    "FileDeleted",
    "FileList",
    "FileObject",
    "RequestCounts",
]

#: Module that defines each lazily imported public name.
_LAZY_MODULES: dict[str, str] = {
    **dict.fromkeys(["Client", "AsyncClient"], "batchq.client"),
    **dict.fromkeys(["SyncPage", "AsyncPage"], "batchq.client.pages"),
    "BatchDeleted": "batchq.client.objects",
    **dict.fromkeys(["verify_webhook", "WebhookVerificationError"], "batchq.webhooks.signing"),
    **dict.fromkeys(
        [
            "APIError",
            "BadRequestError",
            "PayloadTooLargeError",
            "AuthenticationError",
            "PermissionDeniedError",
            "NotFoundError",
            "ConflictError",
            "RateLimitError",
            "InternalServerError",
            "APIConnectionError",
            "APITimeoutError",
            "BatchFailedError",
            "WaitTimeoutError",
        ],
        "batchq.client.exceptions",
    ),
    **dict.fromkeys(
        [
            "Batch",
            "BatchError",
            "BatchErrors",
            "BatchList",
            "BatchStatus",
            "BatchUsage",
            "FileDeleted",
            "FileList",
            "FileObject",
            "RequestCounts",
        ],
        "batchq.schemas",
    ),
}


if not TYPE_CHECKING:  # hidden from type checkers, which see the imports above and so still catch typos

    def __getattr__(name: str) -> Any:
        module = _LAZY_MODULES.get(name)
        if module is None:
            raise AttributeError(f"module 'batchq' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})


_default_client: Client | None = None
_default_client_lock = threading.Lock()


def _client() -> Client:
    """The shared client of the module-level functions, built from the environment on first use."""
    global _default_client
    if _default_client is None:
        with _default_client_lock:
            if _default_client is None:
                from batchq.client import Client

                _default_client = Client()
    return _default_client


def submit_batch(
    requests: RequestsInput,
    model: str | None = None,
    endpoint: str = "/v1/chat/completions",
    metadata: Mapping[str, str] | None = None,
    timeout_minutes: int | None = None,
) -> Batch:
    """Upload requests and create a batch of them.

    Args:
        requests: JSONL text, a path (str or Path) to an existing JSONL file, or a list of request dicts, in any
            of the three line forms (OpenAI ``body``, source-document ``params``, or bare).
        model: Model for the lines that lack one (``body.model``, ``params.model`` or top-level ``model``).
        endpoint: Endpoint of every line.
        metadata: Up to 16 string pairs kept on the batch.
        timeout_minutes: A completion window shorter than 24 h.

    Returns:
        The new batch (status ``validating``).
    """
    return _client().batches.submit(
        requests, model=model, endpoint=endpoint, metadata=metadata, timeout_minutes=timeout_minutes
    )


def get_batch(batch_id: str) -> Batch:
    """The batch with its status, ``request_counts``, ``usage`` and ``estimated_cost``."""
    return _client().batches.retrieve(batch_id)


def get_batch_results(batch_id: str, partial: bool = False) -> Iterator[dict[str, Any]]:
    """The batch's result lines as dicts, successes and errors merged, in input order.

    Each has ``custom_id``, ``response`` and ``error``; ``error is None`` means success.

    Args:
        batch_id: The batch.
        partial: Also allow a batch that has not ended (the lines recorded so far).

    Raises:
        ConflictError: The batch has not ended and ``partial`` is False.
    """
    return _client().batches.results(batch_id, partial=partial)


def cancel_batch(batch_id: str) -> Batch:
    """Cancel the batch (``cancelling``, then ``cancelled`` with the results recorded so far)."""
    return _client().batches.cancel(batch_id)


def wait(
    batch_id: str,
    progress: bool = True,
    poll_interval: float = 2.0,
    timeout: float | None = None,
    *,
    raise_on_failed: bool = False,
) -> Batch:
    """Wait until the batch is completed, failed, expired or cancelled, and return it.

    Args:
        batch_id: The batch.
        progress: Show progress on stderr (a rich bar on a terminal: completed, failed, total, rate, ETA).
        poll_interval: Seconds between polls.
        timeout: Give up after this many seconds (None: never).
        raise_on_failed: Raise :class:`BatchFailedError` when the batch ends ``failed``.

    Raises:
        WaitTimeoutError: ``timeout`` ran out first (the batch keeps running).
    """
    batches = _client().batches
    if not progress:
        return batches.wait(batch_id, poll_interval=poll_interval, timeout=timeout, raise_on_failed=raise_on_failed)
    from batchq.client.display import ProgressDisplay

    with ProgressDisplay() as display:
        return batches.wait(
            batch_id,
            poll_interval=poll_interval,
            timeout=timeout,
            on_update=display.update,
            raise_on_failed=raise_on_failed,
        )


def delete_batch(batch_id: str) -> BatchDeleted:
    """Delete an ended batch with its input, output and error files (the source document's "cleanup")."""
    return _client().batches.delete(batch_id)


def retry_failed(batch_id: str) -> Batch:
    """Create a new batch of the input lines that failed, keeping their custom_ids (``metadata.retry_of``)."""
    return _client().batches.retry_failed(batch_id)
