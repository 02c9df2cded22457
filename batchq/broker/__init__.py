"""The broker: the one room (with ``workers/``) that knows Celery, kombu and gevent.

- ``names``: task names and queues, agreed on by name.
- ``config``: the Celery configuration of the workers and of the API's producer, the pool and its size.
- ``lines``: the request queue as the pipeline and the sweeper use it (push these lines, which are queued).
- ``worker``: the plain worker command as batchq runs it.
- The fast path, each piece reaching into a library's internals, all switched off by ``BATCHQ_FAST_PATH=false``:
  ``messages`` (request messages built and pushed by batchq), ``transport`` (kombu's Redis transport, faster),
  ``pools`` (a threads pool without Futures), ``green`` (the gevent start and its zero-wait polls).
"""

from __future__ import annotations

from batchq.broker.config import READY_SLOTS, celery_config, configured_pool, make_producer, worker_concurrency
from batchq.broker.messages import MessageTemplate
from batchq.broker.names import (
    FINALIZE_TASK,
    INTAKE_TASK,
    QUEUES,
    REQUEST_QUEUE,
    REQUEST_TASK,
    SWEEP_TASK,
    THREADS_POOL,
    WEBHOOK_QUEUE,
    WEBHOOK_TASK,
)

__all__ = [
    "FINALIZE_TASK",
    "INTAKE_TASK",
    "QUEUES",
    "READY_SLOTS",
    "REQUEST_QUEUE",
    "REQUEST_TASK",
    "SWEEP_TASK",
    "THREADS_POOL",
    "WEBHOOK_QUEUE",
    "WEBHOOK_TASK",
    "MessageTemplate",
    "celery_config",
    "configured_pool",
    "make_producer",
    "worker_concurrency",
]
