"""The stock path (``BATCHQ_FAST_PATH=false``: kombu's own Redis transport, Celery's publishing and its ``threads``
pool, no gevent patches) keeps every promise: exactly once through kills, duplicates, a Redis restart and a cancel,
and the clients' examples. If a kombu release breaks the fast path, this is the setting an operator flips.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e import test_chaos, test_clients
from tests.e2e.conftest import StackFactory
from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


@pytest.fixture
def stock(make_stack: StackFactory) -> StackFactory:
    return functools.partial(make_stack, fast_path="false")


@pytest.fixture
def stock_stack(stock: StackFactory) -> Iterator[Stack]:
    stack = stock()
    stack.start_api()
    stack.start_worker("stock", concurrency=32)  # its own log file: the banner below is this worker's
    yield stack


def test_kill_9_one_of_two_workers_mid_batch(stock: StackFactory, sim: str) -> None:
    test_chaos.test_kill_9_one_of_two_workers_mid_batch(stock, sim)


def test_forced_duplicate_deliveries_still_exactly_once(stock: StackFactory, sim: str) -> None:
    test_chaos.test_forced_duplicate_deliveries_still_exactly_once(stock, sim)


def test_redis_restart_mid_batch(stock: StackFactory, sim: str, tmp_path: Path, log_dir: Path) -> None:
    test_chaos.test_redis_restart_mid_batch(stock, sim, tmp_path, log_dir)


def test_cancel_mid_batch(stock: StackFactory, sim: str) -> None:
    test_chaos.test_cancel_mid_batch(stock, sim)


def test_seed_complete_example_runs_unchanged(stock_stack: Stack, tmp_path: Path) -> None:
    test_clients.test_seed_complete_example_runs_unchanged(stock_stack, tmp_path)


def test_openai_sdk_every_endpoint(stock_stack: Stack) -> None:
    test_clients.test_openai_sdk_every_endpoint(stock_stack)


def test_the_worker_really_runs_the_stock_path(stock_stack: Stack) -> None:
    """Celery's own threads pool and kombu's own transport, not batchq's (the banner says which)."""
    log = next(p for p in stock_stack.procs if p.name == "worker-stock").log_path.read_text()
    assert "concurrency: 32 (thread)" in log and "transport:   redis://" in log, log[-3000:]
    assert "batchq.broker" not in log
    assert httpx.get(f"{stock_stack.api_url}/healthz").status_code == 200


@pytest.fixture(autouse=True)
def _reset_sim(sim: str) -> None:
    httpx.post(sim.removesuffix("/v1") + "/sim/reset").raise_for_status()
