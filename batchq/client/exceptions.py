"""Exceptions raised by the Python client (``batchq.Client``), named by cause like the openai SDK's.

    APIError                         message, status_code, code, param, type
    ├── BadRequestError              400, 422 (invalid request or body)
    │   └── PayloadTooLargeError     413 (file over the size limit)
    ├── AuthenticationError          401 (missing or wrong API key)
    ├── PermissionDeniedError        403
    ├── NotFoundError                404 (unknown id, or another account's)
    ├── ConflictError                409 (e.g. cancelling a completed batch, results of a running batch)
    ├── RateLimitError               429 (too many active batches, or a rate limit)
    ├── InternalServerError          5xx
    ├── APIConnectionError           the server could not be reached (after retries)
    │   └── APITimeoutError          the request timed out (after retries)
    ├── BatchFailedError             wait(..., raise_on_failed=True) saw the batch end ``failed``
    └── WaitTimeoutError             wait(..., timeout=...) ran out before the batch ended

These are the client's own classes (``batchq.NotFoundError`` is this one); the server's live in
:mod:`batchq.api.errors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from batchq.schemas import Batch


class APIError(Exception):
    """Base of every client error.

    Attributes:
        message: Human-readable explanation (the server's ``error.message`` when there is one).
        status_code: HTTP status of the answer, or None when there was no answer.
        code: The server's machine-readable ``error.code`` (e.g. ``"batch_not_final"``), if any.
        param: The request parameter the error is about, if any.
        type: The server's ``error.type`` (e.g. ``"invalid_request_error"``), if any.
        response: The HTTP response, when there was one.
    """

    status_code: int | None = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.code = code
        self.param = param
        self.type = type
        self.response = response

    def __str__(self) -> str:
        details = [f"status {self.status_code}"] if self.status_code is not None else []
        if self.code:
            details.append(f"code {self.code}")
        if self.param:
            details.append(f"param {self.param}")
        return f"{self.message} ({', '.join(details)})" if details else self.message


class BadRequestError(APIError):
    """400 or 422: the request itself is wrong; retrying it unchanged cannot help."""

    status_code = 400


class PayloadTooLargeError(BadRequestError):
    """413: the upload is larger than the server accepts."""

    status_code = 413


class AuthenticationError(APIError):
    """401: no API key, or a key the server does not know."""

    status_code = 401


class PermissionDeniedError(APIError):
    """403: the key is known but may not do this."""

    status_code = 403


class NotFoundError(APIError):
    """404: no such file or batch for this account."""

    status_code = 404


class ConflictError(APIError):
    """409: the object is not in a state that allows this (e.g. results of a batch that is still running)."""

    status_code = 409


class RateLimitError(APIError):
    """429: too many active batches, or a rate limit; raised once the client's own retries are spent."""

    status_code = 429


class InternalServerError(APIError):
    """5xx: the server failed; raised once the client's own retries are spent."""


class APIConnectionError(APIError):
    """The server could not be reached, or the connection broke (after the client's retries)."""

    def __init__(self, message: str = "Connection error.") -> None:
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """The request timed out (after the client's retries)."""

    def __init__(self, message: str = "Request timed out.") -> None:
        super().__init__(message)


class BatchFailedError(APIError):
    """The batch ended ``failed`` (its input file did not validate); ``batch.errors`` says why.

    Attributes:
        batch: The failed batch.
    """

    def __init__(self, batch: Batch) -> None:
        errors = batch.errors.data if batch.errors else []
        first = errors[0] if errors else None
        detail = f": {first.message}" + (f" (line {first.line})" if first and first.line else "") if first else ""
        super().__init__(f"batch {batch.id} failed{detail}", code=first.code if first else None)
        self.batch = batch


class WaitTimeoutError(APIError, TimeoutError):
    """``wait`` gave up before the batch reached a final status; the batch keeps running.

    Attributes:
        batch: The batch as last seen.
    """

    def __init__(self, batch: Batch, timeout: float) -> None:
        super().__init__(f"batch {batch.id} still {batch.status} after {timeout:g} s")
        self.batch = batch


#: Exception class for each HTTP status the server answers with (5xx handled apart).
_STATUS_ERRORS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: BadRequestError,
    429: RateLimitError,
}


def error_from_response(response: httpx.Response) -> APIError:
    """Build the exception for an error response from the server's OpenAI envelope.

    Args:
        response: A response with a 4xx/5xx status whose body has been read.

    Returns:
        The matching :class:`APIError` subclass, filled from ``{"error": {"message", "type", "param", "code"}}``
        (or from the raw body text when the body is not that envelope).
    """
    status = response.status_code
    error: dict[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            error = inner
        elif isinstance(body.get("detail"), str):  # a bare framework error, e.g. FastAPI's {"detail": ...}
            error = {"message": body["detail"]}
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = response.text.strip() or response.reason_phrase or f"HTTP {status}"

    def _str_or_none(value: object) -> str | None:
        return value if isinstance(value, str) else None

    cls = InternalServerError if status >= 500 else _STATUS_ERRORS.get(status, APIError)
    return cls(
        message,
        status_code=status,
        code=_str_or_none(error.get("code")),
        param=_str_or_none(error.get("param")),
        type=_str_or_none(error.get("type")),
        response=response,
    )


def connection_error(exc: httpx.TransportError) -> APIConnectionError:
    """The client's error for a transport failure: :class:`APITimeoutError` for a timeout."""
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"Request timed out: {exc}")
    return APIConnectionError(f"Connection error: {exc}")
