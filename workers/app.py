"""The Celery app: ``celery -A workers worker -Q intake,requests,finalize``.

Configuration comes from batchq.config (BATCHQ_* variables) through batchq.broker, the same as the
API's producer. The tasks live in the modules of ``include``; none of them is imported here, so there is no cycle.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from celery import Celery, signals

from batchq.broker import celery_config, worker_concurrency
from batchq.config import get_settings
from batchq.pipeline.context import WorkerContext, get_context
from batchq.redact import install_log_redaction
from batchq.state.health import check_eviction_policy

#: Celery's loggers that write a line per task at INFO; failures still come through at WARNING and above.
PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def pool_named_on_command_line(argv: Sequence[str]) -> bool:
    return any(arg in ("-P", "--pool") or arg.startswith(("--pool=", "-P")) for arg in argv[1:])


app = Celery("batchq")
app.conf.update(celery_config(get_settings()))
if pool_named_on_command_line(sys.argv):
    # Celery cannot tell `-P prefork` from its default, so a configured pool would win over it: drop ours.
    app.conf.worker_pool = None
app.conf.include = ["workers.intake", "workers.request", "workers.finalize", "workers.sweeper", "workers.webhooks"]

log = logging.getLogger("batchq.worker")


def context() -> WorkerContext:
    """This process's WorkerContext (rebuilt after a fork), its pools sized for the worker's slots."""
    settings = get_settings()
    return get_context(settings, max(int(app.conf.worker_concurrency or 0), worker_concurrency(settings)))


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
