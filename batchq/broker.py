"""The broker: Celery configuration shared by the workers and by the API's producer-only app, its Redis transport
and the request-task messages the hot path pushes itself.

Both sides must agree on every broker setting (the shortest visibility timeout on a broker wins), so they
build it here from the same Settings.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu.transport import redis as kombu_redis

from batchq.config import Settings

#: Task names: the API sends tasks by name and never imports worker code.
INTAKE_TASK = "batchq.intake_batch"
REQUEST_TASK = "batchq.process_request"
FINALIZE_TASK = "batchq.finalize_batch"
SWEEP_TASK = "batchq.sweep"
WEBHOOK_TASK = "batchq.deliver_webhook"
#: Webhook deliveries' own queue (workers/webhooks.py adds it to every worker consuming "finalize").
WEBHOOK_QUEUE = "webhooks"

#: The request tasks' queue.
REQUEST_QUEUE = "requests"

QUEUES = ("intake", REQUEST_QUEUE, "finalize", WEBHOOK_QUEUE)


#: Messages pushed by one LPUSH at most.
PUSH_CHUNK = 500


class _Channel(kombu_redis.Channel):
    """kombu's Redis channel, with one reusable client where kombu builds a new one for every operation.

    kombu makes a fresh ``redis.Redis`` (a dict of ~250 response callbacks) for each publish, ack and unacked
    bookkeeping: ~12 % of a busy worker's time (py-spy, docs/bench.md). A
    ``redis.Redis`` over a connection pool is thread-safe (each command borrows a pool connection), so one per
    channel serves every thread. The asynchronous client (BRPOP) is kombu's own and unchanged.
    """

    _sync_client: Any = None
    _sync_client_lock = threading.Lock()

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            with self._sync_client_lock:
                client = self._sync_client
                if client is None or client.connection_pool is not self.pool:
                    client = self._sync_client = super()._create_client()  # type: ignore[no-untyped-call]
        return client

    def push_messages(self, queue: str, messages: Sequence[str]) -> None:
        """LPUSH ready-made messages onto ``queue`` (what kombu's ``_put`` does one at a time), a chunk a command.

        Chunks keep one command's size bounded (~1.5 KB a message) when intake sends a large first window.
        """
        key = self._q_for_pri(queue, 0)  # type: ignore[no-untyped-call]
        client = self._create_client()
        for start in range(0, len(messages), PUSH_CHUNK):
            client.lpush(key, *messages[start : start + PUSH_CHUNK])


class Transport(kombu_redis.Transport):
    """The ``redis://`` transport of both the workers and the API (``broker_transport`` below)."""

    Channel = _Channel


#: Import path of :class:`Transport`, as kombu resolves ``broker_transport``.
TRANSPORT = f"{__name__}:Transport"


def request_messages(lines: Iterable[tuple[str, int]], *, reply_to: str) -> list[str]:
    """Request-task messages for ``(batch_id, line)`` pairs, each a part of its batch's chord, as kombu stores them.

    The same JSON that ``app.send_task(REQUEST_TASK, args=[batch_id, line], task_id=f"{batch_id}-{line}",
    group_id=batch_id, group_index=line, chord=<finalize signature>)`` puts on the Redis list (Celery's message
    protocol 2 in kombu's Redis envelope), built without Celery's and kombu's publish machinery, which cost
    ~0.8 ms a line on the hot path (every recorded outcome feeds the next line). A test pops both and compares.
    """
    origin = anon_nodename()
    out = []
    for batch_id, line in lines:
        task_id = f"{batch_id}-{line}"
        chord: dict[str, Any] = {
            "task": FINALIZE_TASK,
            "args": [batch_id],
            "kwargs": {},
            "options": {},
            "subtask_type": None,
            "immutable": True,
        }
        body = json.dumps([[batch_id, line], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": chord}])
        headers = {
            "lang": "py",
            "task": REQUEST_TASK,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": batch_id,
            "group_index": line,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": repr([batch_id, line]),
            "kwargsrepr": "{}",
            "origin": origin,
            "ignore_result": None,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        }
        properties = {
            "correlation_id": task_id,
            "reply_to": reply_to,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": REQUEST_QUEUE},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        }
        out.append(
            json.dumps(
                {
                    "body": base64.b64encode(body.encode()).decode(),
                    "content-encoding": "utf-8",
                    "content-type": "application/json",
                    "headers": headers,
                    "properties": properties,
                }
            )
        )
    return out


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
        "broker_transport": TRANSPORT,
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
