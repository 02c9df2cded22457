"""Celery configuration shared by the workers and by the API's producer-only app.

Both sides must agree on every broker setting (the shortest visibility timeout on a broker wins), so they
build it here from the same Settings.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from batchq.config import Settings

#: Task names: the API sends tasks by name and never imports worker code.
INTAKE_TASK = "batchq.intake_batch"
REQUEST_TASK = "batchq.process_request"
FINALIZE_TASK = "batchq.finalize_batch"
SWEEP_TASK = "batchq.sweep"
WEBHOOK_TASK = "batchq.deliver_webhook"
#: Webhook deliveries' own queue (workers/webhooks.py adds it to every worker consuming "finalize").
WEBHOOK_QUEUE = "webhooks"

QUEUES = ("intake", "requests", "finalize", WEBHOOK_QUEUE)


def worker_concurrency(settings: Settings) -> int:
    """Slots per worker process: BATCHQ_WORKER_CONCURRENCY, else the in-flight cap (calls wait on I/O), >= 64."""
    return settings.worker_concurrency if settings.worker_concurrency > 0 else max(64, settings.max_in_flight)


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
    return {
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
        "worker_pool": settings.worker_pool,
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


def make_producer(settings: Settings) -> Celery:
    """A Celery app that only sends tasks (by name); used by the API."""
    app = Celery("batchq-producer", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app
