"""Errors the server answers with, each carrying its HTTP status and OpenAI error fields.

BatchqError                      500 api_error
├── InvalidRequestError          400 invalid_request_error
│   └── PayloadTooLargeError     413
├── AuthenticationError          401
├── NotFoundError                404
├── ConflictError                409
├── RateLimitError               429 (too many active batches)
└── ServiceUnavailableError      503 (Redis or the store unreachable; retrying helps)
"""

from __future__ import annotations


class BatchqError(Exception):
    status_code = 500
    error_type = "api_error"
    #: Whether a client retry could succeed; sent as ``x-should-retry``.
    retryable = True

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param

    def envelope(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


class InvalidRequestError(BatchqError):
    status_code = 400
    error_type = "invalid_request_error"
    retryable = False


class PayloadTooLargeError(InvalidRequestError):
    status_code = 413


class AuthenticationError(BatchqError):
    status_code = 401
    error_type = "authentication_error"
    retryable = False


class NotFoundError(BatchqError):
    status_code = 404
    error_type = "invalid_request_error"
    retryable = False


class ConflictError(BatchqError):
    status_code = 409
    error_type = "invalid_request_error"
    retryable = False


class RateLimitError(BatchqError):
    status_code = 429
    error_type = "rate_limit_error"
    retryable = False
    """The active-batch limit frees up only when a batch ends, so an immediate retry cannot help."""


class ServiceUnavailableError(BatchqError):
    status_code = 503
    error_type = "api_error"
    retryable = True
