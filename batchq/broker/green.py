"""gevent, the workers' default pool: how the plain worker command comes to run under it, and what keeps it fast.

gevent must monkey-patch the standard library before anything else is imported. Celery does it in its
``__main__``, but only when ``-P gevent`` is on the command line; a pool chosen in the configuration (batchq's
default, ``BATCHQ_WORKER_POOL``) is seen too late, once sockets, locks and kombu's poller are built unpatched.
So the plain ``celery -A workers worker ...`` starts itself again, as the same process (``execv``: same pid,
same signals), with ``-P gevent`` added to its own command line. ``-P`` given by the user always wins.

Under the patch, two zero-timeout readiness checks that run on every Redis command (redis-py's "has this pooled
connection unread data?") and every pooled HTTP connection (urllib3's "was it dropped?") go through the gevent hub,
which runs every other ready greenlet first: each command then waits a whole round of the hub. A check with a
zero timeout never blocks, so :func:`make_zero_waits_direct` gives those two modules the original ``poll`` for it.
"""

from __future__ import annotations

import os
import select
import sys
import types
from collections.abc import Sequence
from typing import Any

#: The pool that needs the patch, as ``-P`` and ``BATCHQ_WORKER_POOL`` name it.
GEVENT = "gevent"
#: Set in the environment of the restarted command, so a restart can never loop.
RESTARTED_ENV = "BATCHQ_GEVENT_RESTARTED"

#: Celery's global options that take a value (before the sub-command).
_GLOBAL_OPTIONS_WITH_VALUE = {"-A", "--app", "-b", "--broker", "--result-backend", "--loader", "--config", "--workdir"}


def pool_named_on_command_line(argv: Sequence[str]) -> str | None:
    """The pool ``-P``/``--pool`` names on the worker's command line, or None."""
    args = list(argv[1:])
    for i, arg in enumerate(args):
        if arg in ("-P", "--pool"):
            return args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("--pool="):
            return arg.split("=", 1)[1]
        if arg.startswith("-P") and len(arg) > 2:
            return arg[2:]
    return None


def subcommand(argv: Sequence[str]) -> str | None:
    """Celery's sub-command in ``argv`` (``worker``, ``beat``, ``inspect`` …): the first word after the options."""
    args = list(argv[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _GLOBAL_OPTIONS_WITH_VALUE:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg
    return None


def is_patched() -> bool:
    """Whether gevent has patched this process (Celery's ``-P gevent``, or anyone before it)."""
    gevent_monkey = sys.modules.get("gevent.monkey")
    return bool(gevent_monkey is not None and gevent_monkey.is_module_patched("socket"))


def needs_restart(argv: Sequence[str], configured_pool: str | None, environ: dict[str, str]) -> bool:
    """True for a worker command that is configured for gevent, names no pool itself and runs unpatched."""
    return (
        configured_pool == GEVENT
        and subcommand(argv) == "worker"
        and pool_named_on_command_line(argv) is None
        and not environ.get(RESTARTED_ENV)
        and not is_patched()
    )


def restart_argv(orig_argv: Sequence[str], pool: str = GEVENT) -> list[str]:
    """The command line to start again with: the interpreter's own (``sys.orig_argv``), plus ``-P pool``."""
    return [*orig_argv, "-P", pool]


def restart_under_gevent() -> None:
    """Replace this process with the same command plus ``-P gevent`` (never returns)."""
    os.environ[RESTARTED_ENV] = "1"
    argv = restart_argv(sys.orig_argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *argv[1:]])


class _ZeroWaitPoll:
    """``select.poll`` whose zero-timeout polls use the unpatched poll (they never block, so need no hub)."""

    def __init__(self, direct: Any, green: Any) -> None:
        self._direct, self._green = direct, green
        self._registered: list[tuple[Any, int]] = []

    def register(self, fd: Any, eventmask: int = select.POLLIN | select.POLLPRI | select.POLLOUT) -> None:
        self._registered.append((fd, eventmask))

    def unregister(self, fd: Any) -> None:
        self._registered = [(f, m) for f, m in self._registered if f != fd]

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        poller = (self._direct if timeout == 0 else self._green)()
        for fd, mask in self._registered:
            poller.register(fd, mask)
        result: list[tuple[int, int]] = poller.poll(timeout)
        return result


def make_zero_waits_direct() -> None:
    """Give redis-py's and urllib3's readiness checks the unpatched poll for zero timeouts (see the module doc)."""
    if not is_patched():
        return
    from gevent import monkey

    direct = monkey.get_original("select", "poll")
    green = select.poll
    module = types.SimpleNamespace(**{name: getattr(select, name) for name in dir(select) if name.isupper()})
    module.poll = lambda: _ZeroWaitPoll(direct, green)
    module.select = select.select
    module.error = select.error
    from redis._parsers import hiredis as redis_hiredis
    from urllib3.util import wait as urllib3_wait

    for target in (redis_hiredis, urllib3_wait):
        if getattr(target, "select", None) is select:  # a later release that no longer polls this way is left alone
            target.select = module  # type: ignore[attr-defined]
