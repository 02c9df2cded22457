"""The plain worker command under gevent (batchq/broker/green.py): when it starts itself again, and with what."""

from __future__ import annotations

import os
import select
import socket
import sys

import pytest

from batchq.broker import green

PLAIN = ["/venv/bin/celery", "-A", "workers", "worker", "-Q", "intake,requests,finalize"]


@pytest.mark.parametrize(
    ("argv", "sub"),
    [
        (PLAIN, "worker"),
        (["celery", "--app", "workers", "-b", "redis://x", "worker"], "worker"),
        (["celery", "-A", "workers", "inspect", "active"], "inspect"),
        (["celery", "-A", "workers", "beat"], "beat"),
        (["celery", "--no-color", "-q", "-A", "workers", "worker"], "worker"),
        (["celery"], None),
    ],
)
def test_the_sub_command(argv: list[str], sub: str | None) -> None:
    assert green.subcommand(argv) == sub


def test_only_an_unpatched_worker_command_configured_for_gevent_restarts() -> None:
    assert not green.is_patched()  # the unit tests run unpatched
    assert green.needs_restart(PLAIN, "gevent", {})
    assert not green.needs_restart([*PLAIN, "-P", "threads"], "gevent", {})  # -P wins
    assert not green.needs_restart([*PLAIN, "--pool=gevent"], "gevent", {})  # Celery patches this one itself
    assert not green.needs_restart(PLAIN, "threads", {})
    assert not green.needs_restart(["celery", "-A", "workers", "inspect", "ping"], "gevent", {})
    assert not green.needs_restart(PLAIN, "gevent", {green.RESTARTED_ENV: "1"})  # never loops


def test_the_restart_keeps_the_interpreters_own_command_line() -> None:
    orig = ["/usr/bin/python3", "-m", "bench.worker", "-A", "workers", "worker", "-n", "w1@%h"]
    assert green.restart_argv(orig) == [*orig, "-P", "gevent"]


def test_zero_wait_polls_do_not_need_the_hub() -> None:
    """The shim's poll answers like select.poll: a zero timeout uses the direct poll, a longer one the other."""
    calls: list[str] = []

    def tracing(name: str) -> object:
        def make() -> object:
            calls.append(name)
            return select.poll()

        return make

    a, b = socket.socketpair()
    try:
        poll = green._ZeroWaitPoll(tracing("direct"), tracing("green"))
        poll.register(a, select.POLLIN)
        assert poll.poll(0) == [] and calls == ["direct"]
        b.send(b"x")
        assert poll.poll(500) == [(a.fileno(), select.POLLIN)] and calls == ["direct", "green"]
        poll.unregister(a)
        assert poll.poll(0) == []
    finally:
        a.close()
        b.close()


def test_the_restart_exec_line(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(sys, "orig_argv", ["/usr/bin/python3", "/venv/bin/celery", "-A", "workers", "worker"])
    monkeypatch.setattr(os, "execv", lambda path, args: seen.append((path, list(args))))
    monkeypatch.setenv(green.RESTARTED_ENV, "")  # restored (unset) after the test
    green.restart_under_gevent()
    assert seen == [(sys.executable, [sys.executable, "/venv/bin/celery", "-A", "workers", "worker", "-P", "gevent"])]
    assert os.environ[green.RESTARTED_ENV] == "1"
