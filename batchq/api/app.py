"""The HTTP API: ``create_app(settings)`` wires services, error handling and routers; ``serve`` runs it.

Handlers that touch Redis, Celery or the store are sync ``def`` (FastAPI runs them in its threadpool), and every
client here has short connect and read timeouts, so a stalled dependency costs one thread a few seconds and
answers 503, while the event loop (and ``/livez``) keeps serving.
"""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI
from redis.backoff import NoBackoff
from redis.retry import Retry

from batchq.api.auth import KeyRing, MetricsGuard
from batchq.api.dashboard import mount_dashboard
from batchq.api.deps import Services
from batchq.api.handlers import install_error_handlers
from batchq.api.idempotency import IdempotencyKeys
from batchq.api.routers import batches, files, health
from batchq.api.routers import webhooks as webhook_routes
from batchq.broker.producer import TaskSender
from batchq.config import Settings, get_settings
from batchq.redact import install_log_redaction
from batchq.state import BatchState
from batchq.state.files import FileRegistry
from batchq.state.health import UnsafeRedisError, check_eviction_policy
from batchq.storage import store_from_url

log = logging.getLogger("batchq.api")

#: Tries of one S3 call from the API (the workers keep boto3's 5): a stalled store must answer 503 quickly.
API_S3_MAX_ATTEMPTS = 2


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (default: the environment).

    Raises:
        ValueError: BATCHQ_API_KEYS is malformed, or unset without BATCHQ_LOCAL_MODE=true.
    """
    settings = settings or get_settings()
    key_ring = KeyRing.from_settings(settings)
    install_log_redaction(settings.upstream_api_key, settings.metrics_token, *settings.api_key_map())
    app = FastAPI(title="batchq", version="0.1.0", description="OpenAI-compatible batch processing for LLM requests")
    client = make_api_redis(settings)
    state = BatchState(client)
    app.state.services = Services(
        settings=settings,
        redis=client,
        store=store_from_url(
            settings.storage_url,
            s3_endpoint_url=settings.s3_endpoint_url,
            checksum_mode=settings.s3_checksum_mode,
            s3_timeout_s=settings.api_store_timeout_s,
            s3_max_attempts=API_S3_MAX_ATTEMPTS,
        ),
        state=state,
        files=FileRegistry(client),
        tasks=TaskSender(settings),
        keys=key_ring,
        idempotency=IdempotencyKeys(client, state),
        metrics_guard=MetricsGuard(settings.metrics_token),
    )
    app.include_router(files.router, prefix="/v1")
    app.include_router(batches.router, prefix="/v1")
    app.include_router(webhook_routes.router, prefix="/v1")
    app.include_router(health.router)
    mount_dashboard(app)  # /dashboard, and the security headers on every response
    install_error_handlers(app)
    return app


def make_api_redis(settings: Settings) -> redis.Redis[bytes]:
    """Redis for request handlers: a stalled server raises within about 2 x the timeout (one retry)."""
    timeout = settings.api_redis_timeout_s
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        socket_keepalive=True,
        # One quick retry covers a connection that went stale (Redis restarted); redis-py's default of
        # three with exponential backoff would hold a stalled request for ~20 s.
        retry=Retry(NoBackoff(), 1),
    )


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the API with uvicorn (``batchq api``); a configuration mistake exits with its message."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app()
        check_eviction_policy(app.state.services.redis, allow=get_settings().allow_redis_eviction)
    except (ValueError, UnsafeRedisError) as exc:
        raise SystemExit(f"batchq api: {exc}") from None
    except redis.RedisError as exc:  # Redis down at start: serve anyway; /healthz says what is down
        logging.getLogger(__name__).warning("Redis unreachable at start (%s); its eviction policy is unchecked", exc)
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False, timeout_graceful_shutdown=30)
