"""The simulator's engine model in process: the slot hand-over at its edges, percentiles, /metrics text, embeddings."""

from __future__ import annotations

import asyncio
import hashlib
import math

import pytest

from batchq.sim.engine import Engine
from batchq.sim.engine_stats import BATCH, INTERACTIVE, EngineRecord, percentiles_ms
from batchq.sim.metrics import render
from batchq.sim.payloads import embed


def test_a_request_cancelled_while_waiting_leaves_the_queue() -> None:
    async def run() -> None:
        eng = Engine(slots=1)
        first = asyncio.create_task(eng.serve(BATCH, 0, 0.05))
        gone = asyncio.create_task(eng.serve(BATCH, 0, 0.05))
        last = asyncio.create_task(eng.serve(INTERACTIVE, 0, 0.0))
        await asyncio.sleep(0)
        assert eng.gauges() == (1, 2, 1, 1)
        gone.cancel()
        await asyncio.sleep(0)
        assert eng.gauges() == (1, 1, 1, 0)
        assert await first and await last
        assert eng.gauges() == (0, 0, 0, 0) and len(eng.queue) == 0

    asyncio.run(run())


def test_a_request_cancelled_just_after_its_grant_hands_the_slot_on() -> None:
    async def run() -> None:
        eng = Engine(slots=1)
        eng._start(BATCH)  # a request holding the slot, driven by hand to place the cancel exactly
        granted = asyncio.create_task(eng.serve(BATCH, 0, 10.0))
        last = asyncio.create_task(eng.serve(INTERACTIVE, 0, 0.0))
        await asyncio.sleep(0)
        assert eng.gauges() == (1, 2, 1, 1)
        eng._finish(BATCH)  # the slot goes to `granted`, which has not resumed yet
        granted.cancel()
        assert await last
        with pytest.raises(asyncio.CancelledError):
            await granted
        assert eng.gauges() == (0, 0, 0, 0)

    asyncio.run(run())


def test_fewer_slots_at_run_time_let_running_requests_finish() -> None:
    async def run() -> None:
        eng = Engine(slots=3, max_queue=0)
        tasks = [asyncio.create_task(eng.serve(BATCH, 0, 0.02)) for _ in range(3)]
        await asyncio.sleep(0)
        eng.configure(slots=1, max_queue=0)
        assert await eng.serve(BATCH, 0, 0.0) is False  # full, and no queue
        assert all(await asyncio.gather(*tasks))
        assert eng.shed_total == {BATCH: 1, INTERACTIVE: 0} and eng.record.max_running == 3

    asyncio.run(run())


def test_percentiles_use_the_nearest_rank() -> None:
    assert percentiles_ms([i / 1000 for i in range(1, 101)]) == {
        "p50": 50.0, "p95": 95.0, "p99": 99.0, "mean": 50.5, "max": 100.0,
    }  # fmt: skip
    assert percentiles_ms([])["p99"] is None
    assert percentiles_ms([0.2])["p50"] == 200.0


def test_summary_counts_requests_by_arrival_in_the_window() -> None:
    rec = EngineRecord()
    rec.done(BATCH, 100.0, 0.5, 1.0)
    rec.done(BATCH, 200.0, 0.0, 0.1)
    rec.done(INTERACTIVE, 150.0, 0.2, 0.3)
    out = rec.summary(150.0, 250.0, series=False)
    assert out["classes"][BATCH]["completed"] == 1 and out["classes"][BATCH]["latency_ms"]["max"] == 100.0
    assert out["classes"][INTERACTIVE]["wait_ms"]["p50"] == 200.0
    assert out["window"]["duration_s"] == 100.0 and "series" not in out
    with pytest.raises(ValueError, match="unknown mark"):
        rec.at_mark(1)


@pytest.mark.parametrize(
    ("flavor", "running", "waiting"),
    [
        ("vllm", 'vllm:num_requests_running{model_name="m"} 3.0', 'vllm:num_requests_waiting{model_name="m"} 4.0'),
        ("sglang", 'sglang:num_running_reqs{model_name="m"} 3.0', 'sglang:num_queue_reqs{model_name="m"} 4.0'),
        ("tgi", "tgi_batch_current_size 3.0", "tgi_queue_size 4.0"),
    ],
)
def test_metrics_flavors_name_the_gauges_like_the_servers(flavor: str, running: str, waiting: str) -> None:
    text = render(flavor, "m", 3, 4, {BATCH: 2, INTERACTIVE: 0})
    lines = text.splitlines()
    assert running in lines and waiting in lines and text.endswith("\n")
    assert 'batchq_sim_requests_shed_total{class="batch"} 2.0' in lines
    assert sum(ln.startswith("# TYPE") for ln in lines) == 3


def test_short_embeddings_keep_their_old_values_and_long_ones_are_unit_vectors() -> None:
    digest = hashlib.sha256(b"gamma").digest()
    raw = [int.from_bytes(digest[i : i + 2], "big") / 32768.0 - 1.0 for i in range(0, 16, 2)]
    norm = math.sqrt(sum(v * v for v in raw))
    assert embed("gamma") == [round(v / norm, 6) for v in raw]
    long = embed("gamma", 1536)
    assert len(long) == 1536 and math.isclose(sum(v * v for v in long), 1.0) and long == embed("gamma", 1536)
