"""Errors the server answers with, each carrying its HTTP status and OpenAI error fields.

The names end in ``Problem`` so that none of them reads like the SDK's own error classes
(``batchq.client_errors``: ``APIError``, ``NotFoundProblem``, ...), which a caller catches on the other side.

ApiProblem                       500 api_error
├── BadRequestProblem            400 invalid_request_error
│   ├── PayloadTooLargeProblem   413
│   └── RequestTimeoutProblem    408 (an upload past its deadline)
├── AuthProblem                  401 authentication_error
├── NotFoundProblem              404
├── ConflictProblem              409
├── LimitReachedProblem          429 rate_limit_error (too many active batches)
└── UnavailableProblem           503 (Redis or the store unreachable or stalled; retrying helps)
"""

from __future__ import annotations


class ApiProblem(Exception):
    status_code = 500
    error_type = "api_error"
    #: Whether a client retry could succeed; sent as ``x-should-retry``.
    retryable = True

    def __init__(
        self, message: str, *, code: str | None = None, param: str | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        if retryable is not None:
            self.retryable = retryable


class BadRequestProblem(ApiProblem):
    status_code = 400
    error_type = "invalid_request_error"
    retryable = False


class PayloadTooLargeProblem(BadRequestProblem):
    status_code = 413


class RequestTimeoutProblem(BadRequestProblem):
    status_code = 408


class AuthProblem(ApiProblem):
    status_code = 401
    error_type = "authentication_error"
    retryable = False


class NotFoundProblem(ApiProblem):
    status_code = 404
    error_type = "invalid_request_error"
    retryable = False


class ConflictProblem(ApiProblem):
    status_code = 409
    error_type = "invalid_request_error"
    retryable = False


class LimitReachedProblem(ApiProblem):
    status_code = 429
    error_type = "rate_limit_error"
    retryable = False
    """The active-batch limit frees up only when a batch ends, so an immediate retry cannot help."""


class UnavailableProblem(ApiProblem):
    status_code = 503
    error_type = "api_error"
    retryable = True
