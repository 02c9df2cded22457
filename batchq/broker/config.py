"""The Celery configuration shared by the workers and by the API's producer-only app.

Both sides must agree on every broker setting (the shortest visibility timeout on a broker wins), so they
build it here from the same Settings. ``BATCHQ_FAST_PATH`` (default on) picks batchq's Redis transport
(batchq/broker/transport.py) and pools; off, Celery and kombu run as they ship.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchq.broker.names import (
    FINALIZE_TASK,
    INTAKE_TASK,
    REQUEST_TASK,
    SWEEP_TASK,
    THREADS_POOL,
    TRANSPORT,
    WEBHOOK_QUEUE,
    WEBHOOK_TASK,
)
from batchq.config import Settings

if TYPE_CHECKING:
    from celery import Celery

#: Slots a worker has beyond the in-flight cap (half the cap at most): requests claimed and read, waiting in the
#: limiter for the next freed call slot. 32 cover the round trips between two calls of one slot (record, feed,
#: chord part, fetch, claim, acquire) at the few hundred calls a second one process makes; more only wait in
#: Redis's queue at three round trips each (docs/bench.md, fifth pass).
READY_SLOTS = 32


def worker_concurrency(settings: Settings) -> int:
    """Slots per worker process: BATCHQ_WORKER_CONCURRENCY, else the in-flight cap plus :data:`READY_SLOTS`
    (half the cap at most), at least 64. Calls wait on I/O: a slot per call the cap allows, and a few more."""
    if settings.worker_concurrency > 0:
        return settings.worker_concurrency
    cap = settings.max_in_flight
    return max(64, cap + min(READY_SLOTS, cap // 2))


def celery_config(settings: Settings) -> dict[str, Any]:
    vt = settings.visibility_timeout_s
    transport = {
        "visibility_timeout": vt,
        "health_check_interval": 25,
        "socket_keepalive": True,
        "socket_timeout": 30,
        "socket_connect_timeout": 10,
        "retry_on_timeout": True,
        # kombu 5.7: scan for unacked messages of dead workers this often (default ~100 s).
        "unacked_restore_interval": settings.unacked_restore_interval_s,
        "unacked_restore_throttle": 1,
        # kombu's own Redis pool defaults to 10 connections: a worker with more concurrent tasks fails acks
        # with MaxConnectionsError and stalls (measured with gevent -c 256; see docs/bench.md).
        "max_connections": 512,
    }
    config: dict[str, Any] = {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": vt, "retry_policy": {"timeout": 5.0}},
        "visibility_timeout": vt,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # At-least-once delivery; exactly-once outcomes come from the HSETNX outcome script.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # The plain `celery -A workers worker` runs batchq's pool and size; -P and -c still override them.
        "worker_pool": configured_pool(settings),
        "worker_concurrency": worker_concurrency(settings),
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_soft_shutdown_timeout": 30,
        "worker_eta_task_limit": 1000,
        "worker_hijack_root_logger": False,
        # Off by default (three pub/sub messages per task); Flower turns them on in running workers when it starts.
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "task_track_started": False,
        "result_expires": 3 * 24 * 3600,
        "result_chord_expires": 3 * 24 * 3600,
        "result_backend_always_retry": True,
        "result_backend_max_retries": 20,
        "result_backend_thread_safe": True,
        "redis_max_connections": 512,
        "redis_socket_keepalive": True,
        "redis_retry_on_timeout": True,
        "redis_backend_health_check_interval": 25,
        "task_default_queue": "requests",
        # Only used when someone runs `celery -A workers beat`; workers sweep on their own timer anyway
        # (both take the same Redis lock, so running both is harmless).
        "beat_schedule": {"batchq-sweep": {"task": SWEEP_TASK, "schedule": settings.sweep_interval_s}},
        "task_routes": {
            INTAKE_TASK: {"queue": "intake"},
            REQUEST_TASK: {"queue": "requests"},
            FINALIZE_TASK: {"queue": "finalize"},
            SWEEP_TASK: {"queue": "finalize"},
            WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE},
        },
    }
    if settings.fast_path:
        config["broker_transport"] = TRANSPORT
    return config


def configured_pool(settings: Settings) -> str:
    """The pool of the plain worker command, as Celery names it.

    On the stock path Celery's own ``threads`` pool stands in for gevent (whose start needs the command's restart,
    batchq/broker/green.py) and for batchq's threads pool.
    """
    if not settings.fast_path:
        return "threads" if settings.worker_pool in ("gevent", "threads") else settings.worker_pool
    return THREADS_POOL if settings.worker_pool == "threads" else settings.worker_pool


def make_producer(settings: Settings) -> Celery:
    """A Celery app that only sends tasks (by name); used by the API."""
    from celery import Celery

    app = Celery("batchq-producer", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app
