"""Everything a worker task needs, built once per process from Settings.

Built lazily and keyed by pid: a prefork child must not reuse the parent's sockets (urllib3#850, redis-py#234).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import redis

from batchq.broker import MessageTemplate
from batchq.config import Settings
from batchq.pipeline.inputs import InputReader
from batchq.pipeline.leases import Heartbeat
from batchq.ratelimit import RateLimiter
from batchq.state import BatchState, LineState
from batchq.state.files import FileRegistry
from batchq.state.schedule import Schedule
from batchq.storage import ObjectStore, store_from_url
from batchq.upstream import Route, RouteTable, UpstreamClient
from batchq.validation import ValidationLimits


@dataclass
class WorkerContext:
    settings: Settings
    redis: redis.Redis[bytes]
    store: ObjectStore
    state: BatchState
    lines: LineState
    schedule: Schedule
    leases: Heartbeat
    inputs: InputReader
    files: FileRegistry
    routes: RouteTable
    upstream: UpstreamClient
    feed_template: MessageTemplate | None = None
    """Set by the worker shell on the fast path: a recorded outcome then pushes the lines it feeds itself."""
    _limiters: dict[str, RateLimiter] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def limiter(self, route: Route) -> RateLimiter:
        with self._lock:
            limiter = self._limiters.get(route.name)
            if limiter is None:
                limiter = RateLimiter(
                    self.redis,
                    route.name,
                    route.limits,
                    lease_s=self.settings.lease_s,
                    burst=self.settings.rate_limit_burst,
                )
                self._limiters[route.name] = limiter
            return limiter

    def validation_limits(self) -> ValidationLimits:
        s = self.settings
        return ValidationLimits(
            max_requests=s.max_requests_per_batch,
            max_line_bytes=s.max_line_bytes,
            max_custom_id_chars=s.max_custom_id_chars,
            max_reported_errors=s.max_reported_errors,
            served_models=self.routes.served_models(),
        )


def build_context(settings: Settings, concurrency: int = 64) -> WorkerContext:
    client = redis.Redis.from_url(
        settings.redis_url,
        max_connections=max(64, concurrency * 2),
        health_check_interval=30,
        socket_keepalive=True,
        retry_on_timeout=True,
        socket_timeout=30,
        socket_connect_timeout=10,
    )
    routes = RouteTable.from_settings(
        upstream_url=settings.upstream_url,
        upstream_api_key=settings.upstream_api_key,
        rpm=settings.rate_limit_rpm,
        tpm=settings.rate_limit_tpm,
        max_in_flight=settings.max_in_flight,
        routes_path=settings.routes,
        served_models=settings.served_model_set(),
    )
    store = store_from_url(
        settings.storage_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        checksum_mode=settings.s3_checksum_mode,
        s3_timeout_s=settings.s3_timeout_s,
    )
    lines = LineState(client)
    return WorkerContext(
        settings=settings,
        redis=client,
        store=store,
        state=BatchState(client),
        lines=lines,
        schedule=Schedule(
            client,
            window=dispatch_window(settings, routes),
            chunk=FEED_CHUNK,
            due_back_s=settings.requeue_after_s,
            weights=settings.account_weight_map(),
        ),
        leases=Heartbeat(client, lines, settings.lease_s),
        inputs=InputReader(store, settings.input_cache_mb * 1024 * 1024),
        files=FileRegistry(client),
        routes=routes,
        upstream=UpstreamClient(
            connect_timeout_s=settings.upstream_connect_timeout_s,
            read_timeout_s=settings.upstream_read_timeout_s,
            max_connections=max(256, concurrency),
        ),
    )


#: Lines one scheduling pick hands out at most: small, so shares stay even between accounts and batches.
FEED_CHUNK = 8


def dispatch_window(settings: Settings, routes: RouteTable) -> int:
    """Request messages in the broker at most: BATCHQ_DISPATCH_WINDOW, else twice the routes' in-flight caps."""
    if settings.dispatch_window > 0:
        return settings.dispatch_window
    return max(64, 2 * routes.total_in_flight())


_context: WorkerContext | None = None
_context_pid: int | None = None
_context_lock = threading.Lock()


def get_context(settings: Settings, concurrency: int = 64) -> WorkerContext:
    """The process's context, rebuilt after a fork."""
    global _context, _context_pid
    with _context_lock:
        if _context is None or _context_pid != os.getpid():
            _context = build_context(settings, concurrency)
            _context_pid = os.getpid()
        return _context
