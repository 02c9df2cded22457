"""The Celery app: ``celery -A workers worker -Q intake,requests,finalize``.

Configuration comes from batchq.config (BATCHQ_* variables) through batchq.broker, the same as the
API's producer. The tasks live in the modules of ``include``; none of them is imported here, so there is no cycle.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from batchq.broker import celery_config
from batchq.config import get_settings
from batchq.pipeline.context import WorkerContext, get_context

app = Celery("batchq")
app.conf.update(celery_config(get_settings()))
app.conf.include = ["workers.intake", "workers.request", "workers.finalize", "workers.sweeper", "workers.webhooks"]

log = logging.getLogger("batchq.worker")

#: Size of each process's upstream connection pool: idle connections cost little, a full pool stalls threads.
UPSTREAM_POOL_SIZE = 256


def context() -> WorkerContext:
    """This process's WorkerContext (rebuilt after a fork)."""
    return get_context(get_settings(), UPSTREAM_POOL_SIZE)


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s")
