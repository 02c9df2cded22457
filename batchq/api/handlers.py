"""Every failure as OpenAI's error envelope: our own problems, FastAPI's, and each dependency's outage.

Outages (Redis, the broker, the store, any OSError) are 503 with ``x-should-retry: true``; nothing escapes as a
plain-text 500.
"""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from batchq.api.errors import ApiProblem
from batchq.broker.producer import BrokerUnavailable
from batchq.storage import ObjectNotFoundError, StoreError

log = logging.getLogger("batchq.api")


def error_response(
    status: int, message: str, *, error_type: str, code: str | None, param: str | None = None, retry: bool
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}},
        status_code=status,
        headers={"x-should-retry": "true" if retry else "false"},
    )


def _unavailable(what: str, code: str) -> JSONResponse:
    return error_response(
        503, f"{what} is unavailable or not answering; retry shortly.", error_type="api_error", code=code, retry=True
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def problem(_: Request, exc: ApiProblem) -> JSONResponse:
        return error_response(
            exc.status_code, exc.message, error_type=exc.error_type, code=exc.code, param=exc.param, retry=exc.retryable
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(
            400,
            f"Invalid request: {first.get('msg', 'bad parameters')}",
            error_type="invalid_request_error",
            code="invalid_value",
            param=param,
            retry=False,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = "Unknown URL." if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, message, error_type="invalid_request_error", code=code, retry=False)

    @app.exception_handler(redis.RedisError)
    async def redis_down(_: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("redis error: %s: %s", type(exc).__name__, exc)
        return _unavailable("The state store (Redis)", "redis_unavailable")

    @app.exception_handler(BrokerUnavailable)
    async def broker_down(_: Request, exc: BrokerUnavailable) -> JSONResponse:
        log.warning("broker error: %s: %s", type(exc).__name__, exc)
        return _unavailable("The task queue (Redis)", "queue_unavailable")

    @app.exception_handler(ObjectNotFoundError)
    async def object_missing(_: Request, exc: ObjectNotFoundError) -> JSONResponse:
        log.warning("object missing from the store: %s", exc)
        return error_response(
            404,
            "The file's content is missing from the object store.",
            error_type="invalid_request_error",
            code="file_content_missing",
            retry=False,
        )

    @app.exception_handler(StoreError)
    async def store_down(_: Request, exc: StoreError) -> JSONResponse:
        log.warning("store error: %s", exc)
        return _unavailable("The object store", "storage_unavailable")

    @app.exception_handler(OSError)
    async def os_error(_: Request, exc: OSError) -> JSONResponse:
        log.warning("I/O error: %s: %s", type(exc).__name__, exc)
        return _unavailable("A dependency", "service_unavailable")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback after this answer (redacted by the log record factory).
        return error_response(
            500,
            "The server had an error while processing your request.",
            error_type="api_error",
            code=None,
            retry=False,
        )
