"""How the client sends a request: authentication headers, and retries by the one policy of :mod:`batchq.retry`.

Like the openai SDK's ``_base_client``: 408, 429, 5xx, connection errors and timeouts are retried up to
``max_retries`` times (default 2). ``x-should-retry: false`` forbids a retry, ``true`` forces one (for any status).
The delay is the server's ``retry-after-ms`` / ``Retry-After`` when it asks for at most ``MAX_RETRY_AFTER_S``, else
a capped exponential backoff with up to 25 % jitter taken off. A request body is rebuilt for each attempt (files are
rewound), and its headers, an ``Idempotency-Key`` included, stay the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from batchq import retry
from batchq.client.connection import Connection
from batchq.client.effects import Op, Send, Sleep
from batchq.client.exceptions import connection_error, error_from_response

#: First backoff delay; doubles per retry.
INITIAL_RETRY_DELAY_S = 0.5
#: Longest computed backoff delay.
MAX_RETRY_DELAY_S = 8.0
#: Longest server-requested delay honoured; a longer one falls back to the computed backoff.
MAX_RETRY_AFTER_S = 60.0
#: Share of the backoff that jitter may take off.
BACKOFF_JITTER = 0.25
#: Statuses worth retrying unless the server says ``x-should-retry: false``: timeout, rate limited, and every
#: status from 500 up (the server's own policy also retries 409, which for this API means "not now, ever").
RETRY_STATUSES = frozenset({408, 429, *range(500, 1000)})
#: No status is beyond the server's ``x-should-retry: true``.
NEVER_RETRY_STATUSES: frozenset[int] = frozenset()

#: Request files for httpx multipart uploads, rebuilt for each attempt.
FilesFactory = Callable[[], Mapping[str, Any]]


def should_retry(response: httpx.Response) -> bool:
    """Whether an error answer is worth another attempt; ``x-should-retry`` overrides the status."""
    return retry.is_retryable_status(
        response.status_code, response.headers, retryable=RETRY_STATUSES, never=NEVER_RETRY_STATUSES
    )


def backoff_delay(retries_done: int) -> float:
    """Capped exponential backoff with up to 25 % jitter taken off, for the retry after ``retries_done`` retries."""
    return retry.backoff_delay(
        retries_done + 1, base_s=INITIAL_RETRY_DELAY_S, max_s=MAX_RETRY_DELAY_S, jitter=BACKOFF_JITTER
    )


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The delay the server asks for, from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    return retry.parse_retry_after(headers)


def retry_delay(retries_done: int, response: httpx.Response | None) -> float:
    """How long to wait before the next attempt: the server's wish if sane, else the computed backoff."""
    return retry.next_delay(
        retries_done + 1,
        response.headers if response is not None else None,
        base_s=INITIAL_RETRY_DELAY_S,
        max_s=MAX_RETRY_DELAY_S,
        max_retry_after_s=MAX_RETRY_AFTER_S,
        too_long="ignore",
        jitter=BACKOFF_JITTER,
    )


def send(
    conn: Connection,
    method: str,
    path: str,
    *,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    files: FilesFactory | None = None,
    data: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    stream: bool = False,
    max_retries: int | None = None,
) -> Op[httpx.Response]:
    """Send one request, retrying per the module's policy; raise the mapped error if it finally fails.

    Args:
        conn: The server and its headers.
        method: HTTP method.
        path: Path under ``/v1`` (e.g. ``/batches``).
        params: Query parameters; None values are dropped.
        json: JSON body.
        files: Builds the multipart files for each attempt.
        data: Multipart form fields.
        headers: Extra headers, identical on every attempt.
        stream: Leave the body unread (the caller must close the response).
        max_retries: Overrides the client's retries for this request (0 for a body that cannot be replayed).

    Returns:
        The successful (2xx) response.

    Raises:
        APIError: The mapped subclass for the final error answer, or APIConnectionError / APITimeoutError.
    """
    retries = conn.max_retries if max_retries is None else max_retries
    query = {k: v for k, v in (params or {}).items() if v is not None}
    attempt = 0
    while True:
        request = {
            "method": method,
            "url": f"{conn.base_url}/v1{path}",
            "params": query or None,
            "json": json,
            "files": files() if files else None,
            "data": data,
            "headers": {**conn.headers, **(headers or {})},
        }
        response: httpx.Response | None
        try:
            response = yield Send(request, stream)
        except httpx.TransportError as exc:
            if attempt >= retries:
                raise connection_error(exc) from exc
            response = None
        else:
            if response.is_success:
                return response
            if attempt >= retries or not should_retry(response):
                raise error_from_response(response)
        yield Sleep(retry_delay(attempt, response))
        attempt += 1
