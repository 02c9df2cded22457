"""``python -m bench.worker -A <app> worker ...``: the ``celery`` command plus a timing probe.

Runs exactly what ``celery -A <app> worker ...`` runs (batchq's ``workers`` or the raw Celery reference
``bench.rawcelery``), with these additions for the bench:

* Every httpx call to the upstream (URLs under ``$BATCHQ_BENCH_UPSTREAM``) is timed around ``Client.send`` /
  ``AsyncClient.send``, so the probe does not depend on how the request path wraps httpx. The time includes waiting
  for the GIL or the gevent hub: what a call really costs as seen from the worker. One line a call is appended to
  ``$BATCHQ_BENCH_PROBE_DIR/<pid>.probe``: ``u <ms> <status>`` (status 0 = no HTTP answer). An O_APPEND write of a
  short line costs a few microseconds.
* For batchq, every task that goes back to the queue as a Celery retry (signal ``task_retry``) writes ``q``.
* When the worker is ready it writes ``$BATCHQ_BENCH_READY_FILE``: JSON with the pool and concurrency the worker
  really runs (from Celery's WorkController), so the bench can start the raw Celery reference the same way.

gevent must monkey-patch before anything else is imported, as Celery's own ``__main__`` does: nothing is imported
before :func:`celery.maybe_patch_concurrency`, and httpx is patched only at ``worker_init``, after the app loaded.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: Environment variable naming the folder of the probe files (unset: no probe).
PROBE_DIR_ENV = "BATCHQ_BENCH_PROBE_DIR"
#: Environment variable naming the file written when the worker is ready.
READY_FILE_ENV = "BATCHQ_BENCH_READY_FILE"
#: Environment variable with the upstream's root URL; only calls under it are timed.
UPSTREAM_ENV = "BATCHQ_BENCH_UPSTREAM"

#: Celery pool implementations by class path, named as ``-P`` takes them.
POOL_NAMES = {
    "celery.concurrency.thread:TaskPool": "threads",
    "batchq.broker.pools:TaskPool": "threads",
    "celery.concurrency.prefork:TaskPool": "prefork",
    "celery.concurrency.gevent:TaskPool": "gevent",
    "celery.concurrency.eventlet:TaskPool": "eventlet",
    "celery.concurrency.solo:TaskPool": "solo",
}

_fd: int | None = None
_fd_pid: int | None = None
_fd_lock = threading.Lock()


def _write(line: str) -> None:
    """Append one line to this process's probe file (reopened after a prefork fork)."""
    global _fd, _fd_pid
    pid = os.getpid()
    if _fd is None or _fd_pid != pid:
        with _fd_lock:
            if _fd is None or _fd_pid != pid:
                path = Path(os.environ[PROBE_DIR_ENV]) / f"{pid}.probe"
                _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                _fd_pid = pid
    os.write(_fd, line.encode())


def install_http_probe(upstream: str) -> None:
    """Time every httpx and urllib3 request whose URL starts with ``upstream`` (sync and async clients)."""
    import httpx

    sync_send = httpx.Client.send
    async_send = httpx.AsyncClient.send

    def timed_send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        if not str(request.url).startswith(upstream):
            return sync_send(self, request, **kwargs)
        started, status = time.perf_counter(), 0
        try:
            response = sync_send(self, request, **kwargs)
            status = response.status_code
            return response
        finally:
            _write(f"u {(time.perf_counter() - started) * 1000:.3f} {status}\n")

    async def timed_async_send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        if not str(request.url).startswith(upstream):
            return await async_send(self, request, **kwargs)
        started, status = time.perf_counter(), 0
        try:
            response = await async_send(self, request, **kwargs)
            status = response.status_code
            return response
        finally:
            _write(f"u {(time.perf_counter() - started) * 1000:.3f} {status}\n")

    setattr(httpx.Client, "send", timed_send)  # noqa: B010 - mypy refuses assigning to a method
    setattr(httpx.AsyncClient, "send", timed_async_send)  # noqa: B010
    _install_urllib3_probe(upstream)


def _install_urllib3_probe(upstream: str) -> None:
    """The same for urllib3's PoolManager (batchq's upstream client)."""
    import urllib3

    urlopen = urllib3.PoolManager.urlopen

    def timed_urlopen(self: urllib3.PoolManager, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if not url.startswith(upstream):
            return urlopen(self, method, url, *args, **kwargs)
        started, status = time.perf_counter(), 0
        try:
            response = urlopen(self, method, url, *args, **kwargs)
            status = response.status
            return response
        finally:
            _write(f"u {(time.perf_counter() - started) * 1000:.3f} {status}\n")

    setattr(urllib3.PoolManager, "urlopen", timed_urlopen)  # noqa: B010


def install_requeue_probe() -> None:
    """Count tasks sent back to the queue as a Celery retry (``task_retry``: independent of the request path)."""
    from celery import signals

    def requeued(**_: Any) -> None:
        _write("q\n")

    signals.task_retry.connect(requeued, weak=False)


def pool_info(controller: Any) -> dict[str, Any]:
    """The pool name and concurrency a Celery WorkController runs."""
    cls = getattr(controller, "pool_cls", None)
    path = f"{cls.__module__}:{cls.__name__}" if isinstance(cls, type) else str(cls)
    return {
        "pool": POOL_NAMES.get(path, path),
        "concurrency": int(getattr(controller, "concurrency", 0) or 0),
        "pid": os.getpid(),
    }


def _install_http_probe_at_worker_init(upstream: str) -> None:
    """Patch httpx only once the app is loaded, so that an app that monkey-patches (gevent) imports httpx as the
    plain command would: after its patching. A prefork child inherits the patched class."""
    from celery import signals

    def install(**_: Any) -> None:
        install_http_probe(upstream)

    signals.worker_init.connect(install, weak=False)


def _connect_ready_file(path: str) -> None:
    from celery import signals

    def mark_ready(sender: Any = None, **_: Any) -> None:
        info = pool_info(getattr(sender, "controller", None))
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(path)  # the bench reads it as soon as it exists: write it whole

    signals.worker_ready.connect(mark_ready, weak=False)


def main() -> None:
    """Patch concurrency, install the probe, then hand over to Celery's command line."""
    from celery import maybe_patch_concurrency

    sys.argv = ["celery", *sys.argv[1:]]
    maybe_patch_concurrency(sys.argv)
    if os.environ.get(PROBE_DIR_ENV):
        upstream = os.environ.get(UPSTREAM_ENV)
        if upstream:
            _install_http_probe_at_worker_init(upstream)
        install_requeue_probe()
    ready = os.environ.get(READY_FILE_ENV)
    if ready:
        _connect_ready_file(ready)
    from celery.bin.celery import main as celery_main

    sys.exit(celery_main())


if __name__ == "__main__":
    main()
