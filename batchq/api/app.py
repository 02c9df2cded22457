"""The HTTP API: ``create_app(settings)`` wires services, error handling and routers; ``serve`` runs it."""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from batchq.api.deps import Services
from batchq.api.routes import batches, files, health
from batchq.api.routes import webhooks as webhook_routes
from batchq.broker import make_producer
from batchq.config import Settings, get_settings
from batchq.errors import BatchqError, ServiceUnavailableError
from batchq.files import FileRegistry
from batchq.state import BatchState
from batchq.storage import StoreError, store_from_url

log = logging.getLogger("batchq.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    client = redis.Redis.from_url(
        settings.redis_url, health_check_interval=30, socket_keepalive=True, retry_on_timeout=True
    )
    store = store_from_url(
        settings.storage_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        checksum_mode=settings.s3_checksum_mode,
        s3_timeout_s=settings.s3_timeout_s,
    )
    app = FastAPI(title="batchq", version="0.1.0", description="OpenAI-compatible batch processing for LLM requests")
    app.state.services = Services(
        settings=settings,
        redis=client,
        store=store,
        state=BatchState(client),
        files=FileRegistry(client),
        producer=make_producer(settings),
        api_keys=settings.api_key_map(),
    )
    app.include_router(files.router, prefix="/v1")
    app.include_router(batches.router, prefix="/v1")
    app.include_router(webhook_routes.router, prefix="/v1")  # webhooks (issue 14)
    app.include_router(health.router)
    _install_error_handlers(app)
    return app


def _error(
    status: int, message: str, *, error_type: str, code: str | None, param: str | None = None, retry: bool
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}},
        status_code=status,
        headers={"x-should-retry": "true" if retry else "false"},
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BatchqError)
    async def batchq_error(_: Request, exc: BatchqError) -> JSONResponse:
        return _error(
            exc.status_code, exc.message, error_type=exc.error_type, code=exc.code, param=exc.param, retry=exc.retryable
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return _error(
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
        return _error(exc.status_code, message, error_type="invalid_request_error", code=code, retry=False)

    @app.exception_handler(redis.RedisError)
    async def redis_down(_: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("redis error: %s", exc)
        err = ServiceUnavailableError(
            "The state store (Redis) is unavailable; retry shortly.", code="redis_unavailable"
        )
        return _error(503, err.message, error_type=err.error_type, code=err.code, retry=True)

    @app.exception_handler(StoreError)
    async def store_down(_: Request, exc: StoreError) -> JSONResponse:
        log.warning("store error: %s", exc)
        return _error(
            503,
            "The object store is unavailable; retry shortly.",
            error_type="api_error",
            code="storage_unavailable",
            retry=True,
        )


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the API with uvicorn (``batchq api``)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(), host=host, port=port, log_level="warning", proxy_headers=False, timeout_graceful_shutdown=30
    )
