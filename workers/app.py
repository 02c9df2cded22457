"""The Celery app: ``celery -A workers worker -Q intake,requests,finalize``.

Configuration comes from batchq.config (BATCHQ_* variables) through batchq.broker, the same as the
API's producer. The tasks live in the modules of ``include``; none of them is imported here, so there is no cycle.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from celery import Celery, concurrency, signals

from batchq import green
from batchq.broker import (
    REQUEST_QUEUE,
    THREADS_POOL,
    celery_config,
    request_message_template,
    stop_waits,
    worker_concurrency,
)
from batchq.config import get_settings
from batchq.pipeline.context import WorkerContext, get_context
from batchq.redact import install_log_redaction
from batchq.state.health import check_eviction_policy
from batchq.state.schedule import MessagePush

#: Celery's loggers that write a line per task at INFO; failures still come through at WARNING and above.
PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


# `-P threads` names batchq's threads pool too (the same pool, without a Future and a semaphore per task).
concurrency.ALIASES["threads"] = THREADS_POOL
if green.needs_restart(sys.argv, get_settings().worker_pool, dict(os.environ)):
    green.restart_under_gevent()  # the same command with -P gevent, so that Celery patches first (batchq/green.py)
green.make_zero_waits_direct()
app = Celery("batchq")
app.conf.update(celery_config(get_settings()))
named_pool = green.pool_named_on_command_line(sys.argv)
if app.conf.worker_pool == green.GEVENT and not named_pool and not green.is_patched():
    app.conf.worker_pool = THREADS_POOL  # not the worker command (or not restarted): gevent unpatched would block
if named_pool:
    # Celery cannot tell `-P prefork` from its default, so a configured pool would win over it: drop ours.
    app.conf.worker_pool = None
    if named_pool in ("prefork", "solo"):
        app.conf.worker_concurrency = None  # processes, not I/O slots: Celery's own default (one per core)
app.conf.include = ["workers.intake", "workers.request", "workers.finalize", "workers.sweeper", "workers.webhooks"]

log = logging.getLogger("batchq.worker")


def context() -> WorkerContext:
    """This process's WorkerContext (rebuilt after a fork), its pools sized for the worker's slots; a recorded
    outcome pushes the request messages of the lines it feeds (one round trip for both, pipeline/outcomes.py)."""
    settings = get_settings()
    ctx = get_context(settings, max(int(app.conf.worker_concurrency or 0), worker_concurrency(settings)))
    if ctx.request_push is None:
        ctx.request_push = MessagePush(REQUEST_QUEUE, request_message_template(reply_to=app.oid))
    return ctx


@signals.worker_init.connect
def _check_redis(**_: Any) -> None:
    """A worker refuses a Redis that may evict batchq's keys (batchq/state/health.py)."""
    settings = get_settings()
    problem = check_eviction_policy(context().redis, allow=settings.allow_redis_eviction)
    if problem:
        log.warning("%s (allowed by BATCHQ_ALLOW_REDIS_EVICTION)", problem)


@signals.worker_shutting_down.connect
def _stop_waiting(**_: Any) -> None:
    """Under gevent the consumers wait in drain_events: end those waits so that the shutdown starts at once."""
    stop_waits()


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s")
    for name in PER_TASK_LOGGERS:  # "Task … received" / "succeeded" for every request: CPU and noise, not news
        logging.getLogger(name).setLevel(logging.WARNING)
    settings = get_settings()
    try:
        api_keys = list(settings.api_key_map())
    except ValueError:  # the API refuses a bad BATCHQ_API_KEYS; a worker does not use it
        api_keys = []
    install_log_redaction(settings.upstream_api_key, *api_keys)  # no secret in a log line
