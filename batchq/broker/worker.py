"""The plain worker command (``celery -A workers worker -Q intake,requests,finalize``) as batchq runs it: the
Celery app with batchq's configuration, the pool and size batchq recommends, and on the fast path the gevent start
and the transport's shutdown hook.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery, concurrency, signals

from batchq.broker import green
from batchq.broker.config import celery_config
from batchq.broker.names import THREADS_POOL
from batchq.config import Settings


def worker_app(settings: Settings, argv: Sequence[str], environ: Mapping[str, str]) -> Celery:
    """The workers' Celery app; may replace this process with the same command under gevent (fast path)."""
    if settings.fast_path:
        # `-P threads` names batchq's threads pool too (the same pool, without a Future and a semaphore per task).
        concurrency.ALIASES["threads"] = THREADS_POOL
        if green.needs_restart(argv, settings.worker_pool, dict(environ)):
            green.restart_under_gevent()  # the same command with -P gevent, so that Celery patches first
        green.make_zero_waits_direct()
        signals.worker_shutting_down.connect(_stop_waiting, weak=False)
    app = Celery("batchq")
    app.conf.update(celery_config(settings))
    named_pool = green.pool_named_on_command_line(argv)
    if app.conf.worker_pool == green.GEVENT and not named_pool and not green.is_patched():
        # Not the worker command (or not restarted): gevent unpatched would block.
        app.conf.worker_pool = THREADS_POOL
    if named_pool:
        # Celery cannot tell `-P prefork` from its default, so a configured pool would win over it: drop ours.
        app.conf.worker_pool = None
        if named_pool in ("prefork", "solo"):
            app.conf.worker_concurrency = None  # processes, not I/O slots: Celery's own default (one per core)
    return app


def _stop_waiting(**_: Any) -> None:
    """Under gevent the consumers wait in drain_events: end those waits so that the shutdown starts at once."""
    from batchq.broker.transport import stop_waits

    stop_waits()
