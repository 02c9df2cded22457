"""The Celery app: ``celery -A workers worker -Q intake,requests,finalize``.

Configuration comes from batchq.config (BATCHQ_* variables) through batchq.broker, the same as the
API's producer. The tasks live in the modules of ``include``; none of them is imported here, so there is no cycle.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from celery import signals

from batchq.broker import worker_concurrency
from batchq.broker.lines import RequestLines
from batchq.broker.worker import worker_app
from batchq.config import get_settings
from batchq.pipeline.context import WorkerContext, get_context
from batchq.redact import install_log_redaction
from batchq.state.health import check_eviction_policy

#: Celery's loggers that write a line per task at INFO; failures still come through at WARNING and above.
PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")

app = worker_app(get_settings(), sys.argv, os.environ)
app.conf.include = ["workers.intake", "workers.request", "workers.finalize", "workers.sweeper", "workers.webhooks"]

log = logging.getLogger("batchq.worker")

_lines: dict[int, RequestLines] = {}


def context() -> WorkerContext:
    """This process's WorkerContext (rebuilt after a fork), its pools sized for the worker's slots. On the fast path
    a recorded outcome pushes the request messages of the lines it feeds (one round trip for both)."""
    settings = get_settings()
    ctx = get_context(settings, max(int(app.conf.worker_concurrency or 0), worker_concurrency(settings)))
    if os.getpid() not in _lines:
        lines = _lines[os.getpid()] = RequestLines(app, ctx.redis, fast=settings.fast_path)
        ctx.feed_template = lines.feed_template
    return ctx


def request_lines() -> RequestLines:
    """This process's view of the request queue (push these lines, which are queued)."""
    context()
    return _lines[os.getpid()]


@signals.worker_init.connect
def _check_redis(**_: Any) -> None:
    """A worker refuses a Redis that may evict batchq's keys (batchq/state/health.py)."""
    settings = get_settings()
    problem = check_eviction_policy(context().redis, allow=settings.allow_redis_eviction)
    if problem:
        log.warning("%s (allowed by BATCHQ_ALLOW_REDIS_EVICTION)", problem)


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
