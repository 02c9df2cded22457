"""Promises that must hold with the default settings and the README's plain worker command (no -P, no -c).

The e2e fixtures shorten the sweep interval and retry delays; these tests put the defaults back, so what they
prove is what a new user gets.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import StackFactory
from tests.e2e.test_chaos import assert_exactly_once, configure_sim, submit, wait_progress
from tests.stack import chat_lines, wait_final

pytestmark = [pytest.mark.e2e]

#: The defaults the e2e fixture overrides for speed, back as they ship.
DEFAULTS = {"sweep_interval_s": "15", "retry_base_delay_s": "0.5", "retry_max_delay_s": "30"}


def test_plain_worker_command_keeps_the_in_flight_cap_busy(make_stack: StackFactory, sim: str) -> None:
    # Given: one worker started with the plain command, 200 ms upstream, the default 64 in flight
    configure_sim(sim, latency_ms=200)
    stack = make_stack(**DEFAULTS)
    api = stack.start_api()
    worker = stack.start_worker("plain", pool=None, concurrency=None)
    lines = chat_lines(2000)
    # When: 2,000 requests go through
    started = time.monotonic()
    batch_id = submit(api, lines)
    batch = wait_final(api, batch_id, timeout=180, stack=stack)
    elapsed = time.monotonic() - started
    # Then: the plain command ran batchq's pool (gevent, 96 slots; it was prefork with one child per core) and
    # kept the upstream busy: at least half the cap in flight at once (the speed itself is `make bench`'s job)
    assert batch["status"] == "completed", stack.logs()
    assert_exactly_once(api, batch, lines)
    assert (
        "concurrency: 96 (gevent)" in worker.log_path.read_text()
    )  # started again with -P gevent (batchq/broker/green.py)
    peak = httpx.get(sim.removesuffix("/v1") + "/sim/stats").json()["max_in_flight"]
    print(f"plain worker, 200 ms, 64 in flight: {elapsed:.1f} s (efficiency {6.25 / elapsed:.2f}), peak {peak}")
    assert 32 <= peak <= 64


def test_kill_9_with_default_settings_recovers_within_two_minutes(make_stack: StackFactory, sim: str) -> None:
    # Given: two plain workers, 1,000 lines at 50 ms, every recovery setting at its default
    configure_sim(sim, latency_ms=50)
    stack = make_stack(max_in_flight="8", **DEFAULTS)
    api = stack.start_api()
    victim = stack.start_worker("victim", pool=None, concurrency=None)
    stack.start_worker("survivor", pool=None, concurrency=None)
    lines = chat_lines(1000)
    batch_id = submit(api, lines)
    # When: one worker is killed with SIGKILL at about 20 %
    wait_progress(api, batch_id, 200)
    victim.kill9()
    killed_at = time.monotonic()
    # Then: the batch completes within 120 s of the kill (leases lapse in 30 s without a heartbeat), exactly once
    batch = wait_final(api, batch_id, timeout=150, stack=stack)
    recovered_in = time.monotonic() - killed_at
    print(f"kill -9 with defaults: final {recovered_in:.0f} s after the kill")
    assert batch["status"] == "completed", stack.logs()
    assert_exactly_once(api, batch, lines)
    assert recovered_in <= 120


def test_a_small_batch_behind_a_large_one_starts_at_once(make_stack: StackFactory, sim: str) -> None:
    # Given: account A's 3,000 lines at 100 ms with 16 in flight (about 19 s of work)
    configure_sim(sim, latency_ms=100)
    stack = make_stack(max_in_flight="16", api_keys="key-a:acct-a,key-b:acct-b", **DEFAULTS)
    api = stack.start_api()
    stack.start_worker("w", pool=None, concurrency=None)
    a_lines, b_lines = chat_lines(3000, prefix="a"), chat_lines(30, prefix="b")
    a_id = submit(api, a_lines, headers={"Authorization": "Bearer key-a"})
    wait_progress(api, a_id, 20, headers={"Authorization": "Bearer key-a"})
    time.sleep(2)
    # When: account B submits 30 lines
    b_created = time.monotonic()
    b_id = submit(api, b_lines, headers={"Authorization": "Bearer key-b"})
    b = wait_final(api, b_id, headers={"Authorization": "Bearer key-b"}, timeout=60, stack=stack)
    b_took = time.monotonic() - b_created
    a = httpx.get(f"{api}/v1/batches/{a_id}", headers={"Authorization": "Bearer key-a"}).json()
    # Then: B is done within 6 s of its creation, long before A; both end exactly once
    print(f"B took {b_took:.1f} s; A was at {a['request_counts']['completed']} / 3000")
    assert b["status"] == "completed" and b_took <= 6, b_took
    assert a["status"] == "in_progress"
    a = wait_final(api, a_id, headers={"Authorization": "Bearer key-a"}, timeout=120, stack=stack)
    assert_exactly_once(api, a, a_lines, headers={"Authorization": "Bearer key-a"})
    assert_exactly_once(api, b, b_lines, headers={"Authorization": "Bearer key-b"})
