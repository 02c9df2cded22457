"""``python -m batchq.bench.worker -A workers worker ...``: the ``celery`` command plus a timing probe.

Runs exactly what ``celery -A workers worker ...`` runs, with two additions for the bench:

* ``UpstreamClient.post`` is timed (perf_counter around the httpx call, so it includes waiting for the GIL or the
  gevent hub: what a request really costs as seen from the worker) and ``process_line`` results are counted,
  one line a call appended to ``$BATCHQ_BENCH_PROBE_DIR/<pid>.probe``: ``u <ms> <status>`` for an upstream call
  (status 0 = no HTTP answer) and ``q`` for a line re-queued as a Celery retry. An O_APPEND write of a short line
  costs a few microseconds, next to about 2.5 ms of CPU a task costs.
* When the worker is ready it creates ``$BATCHQ_BENCH_READY_FILE`` (Celery logs "ready." only at INFO).

gevent must monkey-patch before anything else is imported, as Celery's own ``__main__`` does: the probe is
installed after :func:`celery.maybe_patch_concurrency`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: Environment variable naming the folder of the probe files (unset: no probe).
PROBE_DIR_ENV = "BATCHQ_BENCH_PROBE_DIR"
#: Environment variable naming the file created when the worker is ready.
READY_FILE_ENV = "BATCHQ_BENCH_READY_FILE"

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


def install_probe() -> None:
    """Wrap the upstream call and ``process_line`` (before Celery imports the tasks that bind the latter)."""
    from batchq.pipeline import request as processing
    from batchq.upstream import client as upstream

    post = upstream.UpstreamClient.post

    def timed_post(self: upstream.UpstreamClient, url: str, body: dict[str, Any], **kwargs: Any) -> Any:
        started = time.perf_counter()
        answer = post(self, url, body, **kwargs)
        status = answer.status_code if isinstance(answer, upstream.UpstreamAnswer) else 0
        _write(f"u {(time.perf_counter() - started) * 1000:.3f} {status}\n")
        return answer

    process_line = processing.process_line

    def counted_process_line(ctx: Any, batch_id: str, line: int) -> Any:
        result = process_line(ctx, batch_id, line)
        if isinstance(result, processing.Requeue):
            _write("q\n")
        return result

    setattr(upstream.UpstreamClient, "post", timed_post)  # noqa: B010 - mypy refuses assigning to a method
    setattr(processing, "process_line", counted_process_line)  # noqa: B010


def _connect_ready_file(path: str) -> None:
    from celery import signals

    def mark_ready(**_: Any) -> None:
        Path(path).touch()

    signals.worker_ready.connect(mark_ready, weak=False)


def main() -> None:
    """Patch concurrency, install the probe, then hand over to Celery's command line."""
    from celery import maybe_patch_concurrency

    sys.argv = ["celery", *sys.argv[1:]]
    maybe_patch_concurrency(sys.argv)
    if os.environ.get(PROBE_DIR_ENV):
        install_probe()
    ready = os.environ.get(READY_FILE_ENV)
    if ready:
        _connect_ready_file(ready)
    from celery.bin.celery import main as celery_main

    sys.exit(celery_main())


if __name__ == "__main__":
    main()
