"""The simulator's engine model over real HTTP: slots, queue order, shedding, gauges, interactive users, marks.

Two simulator processes: one FIFO (vLLM gauges), one with priority scheduling (SGLang gauges). Each test resets its
simulator and sets what it needs through ``/sim/config``; service times are 50 ms to 1 s, so the file runs in seconds.
Orders are made certain by waiting for the engine to count each request before sending the next; a state a test
reads while requests are held lasts long enough (0.6-1 s) for a slow shared machine to look at it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_sim import chat, start_sim


@pytest.fixture(scope="module")
def fcfs_root(log_dir: Path) -> Iterator[str]:
    proc, root = start_sim(log_dir, "--engine-slots", "2", "--latency-ms", "100", "--seed", "3")
    yield root
    proc.stop()


@pytest.fixture(scope="module")
def priority_root(log_dir: Path) -> Iterator[str]:
    flags = ["--scheduling-policy", "priority", "--metrics-flavor", "sglang"]
    proc, root = start_sim(log_dir, "--engine-slots", "1", "--latency-ms", "100", *flags)
    yield root
    proc.stop()


@pytest.fixture
def fcfs(fcfs_root: str) -> str:
    httpx.post(f"{fcfs_root}/sim/reset").raise_for_status()
    return fcfs_root


@pytest.fixture
def prio(priority_root: str) -> str:
    httpx.post(f"{priority_root}/sim/reset").raise_for_status()
    return priority_root


def configure(root: str, **fields: object) -> None:
    httpx.post(f"{root}/sim/config", json=fields).raise_for_status()


def engine(root: str, **params: str | int) -> dict[str, Any]:
    r = httpx.get(f"{root}/sim/stats", params=params)
    r.raise_for_status()
    section: dict[str, Any] = r.json()["engine"]
    return section


def gauges(root: str) -> dict[str, float]:
    """The samples of ``GET /metrics`` by series (name and labels)."""
    r = httpx.get(f"{root}/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {k: float(v) for k, v in (ln.rsplit(" ", 1) for ln in r.text.splitlines() if not ln.startswith("#"))}


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 5.0) -> None:
    """Wait for a condition on the simulator (polled every 10 ms)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def waiting_is(c: httpx.AsyncClient, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool((await c.get("/sim/stats")).json()["engine"]["waiting"] == n)

    return check


async def send_in_order(c: httpx.AsyncClient, bodies: list[dict[str, object]]) -> list[str]:
    """Send one request holding the only slot, then ``bodies`` one by one (each queued before the next is sent);
    return the echoed contents in the order the answers came back."""
    done: list[str] = []

    async def call(body: dict[str, object]) -> None:
        r = await c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        done.append(r.json()["choices"][0]["message"]["content"].removeprefix("Echo: "))

    tasks: list[asyncio.Task[None]] = []
    for i, body in enumerate([chat("holder"), *bodies], 1):
        tasks.append(asyncio.create_task(call(body)))
        await until(entered_is(c, i), f"request {i} to reach the engine")
    assert not done, "the machine was too slow for this check: the holder finished before the queue was built"
    await asyncio.gather(*tasks)
    return done


def entered_is(c: httpx.AsyncClient, n: int) -> Callable[[], Awaitable[bool]]:
    """Whether ``n`` requests have reached the engine (running, waiting or served)."""

    async def check() -> bool:
        s = (await c.get("/sim/stats")).json()["engine"]
        return bool(s["running"] + s["waiting"] + sum(k["completed"] for k in s["classes"].values()) == n)

    return check


async def _idle(c: httpx.AsyncClient) -> bool:
    s = (await c.get("/sim/stats")).json()["engine"]
    return bool(s["running"] == s["waiting"] == 0)


async def wait_idle(root: str) -> None:
    async with httpx.AsyncClient(base_url=root) as c:
        await until(lambda: _idle(c), "the engine to be idle")


# --- slots and queue order -----------------------------------------------------------------------------------


def test_concurrency_never_exceeds_the_slots(fcfs: str) -> None:
    # Given 4 slots of 100 ms
    configure(fcfs, engine_slots=4, latency_ms=100)

    # When 20 requests arrive at once
    async def run() -> list[float]:
        async with httpx.AsyncClient(base_url=fcfs, timeout=10) as c:
            started = time.monotonic()

            async def call() -> float:
                assert (await c.post("/v1/chat/completions", json=chat())).status_code == 200
                return time.monotonic() - started

            return sorted(await asyncio.gather(*(call() for _ in range(20))))

    finished = asyncio.run(run())
    # Then they are answered in waves of 4: the k-th answer cannot come before wave k // 4 + 1 has been served
    for k, t in enumerate(finished):
        assert t >= (k // 4 + 1) * 0.1 - 0.01, (k, finished)
    # And the engine saw 4 running and the rest waiting, and timed every request
    s = engine(fcfs)
    assert (s["max_running"], s["max_waiting"], s["running"], s["waiting"]) == (4, 16, 0, 0)
    batch = s["classes"]["batch"]
    assert batch["completed"] == 20 and batch["shed"] == 0
    assert 90 <= batch["latency_ms"]["p50"] and batch["wait_ms"]["max"] >= 350
    assert batch["latency_ms"]["max"] == pytest.approx(batch["wait_ms"]["max"] + 100, abs=30)


def test_fifo_serves_in_arrival_order(fcfs: str) -> None:
    configure(fcfs, engine_slots=1, latency_ms=250)  # time to queue the others behind the first

    async def run() -> list[str]:
        async with httpx.AsyncClient(base_url=fcfs, timeout=10) as c:
            return await send_in_order(c, [chat(name) for name in "ABCD"])

    assert asyncio.run(run()) == ["holder", *"ABCD"]


def test_priority_serves_lower_values_first_then_by_arrival(prio: str) -> None:
    # Given priority scheduling and one slot: bodies queued with priorities 5, 1, 3, 1, absent (0), -2
    configure(prio, latency_ms=250)  # time to queue the others behind the first
    bodies = [chat("p5", priority=5), chat("p1a", priority=1), chat("p3", priority=3), chat("p1b", priority=1),
              chat("p0"), chat("pm2", priority=-2)]  # fmt: skip

    async def run() -> list[str]:
        async with httpx.AsyncClient(base_url=prio, timeout=10) as c:
            return await send_in_order(c, bodies)

    # Then the lowest value goes first, ties in arrival order
    assert asyncio.run(run()) == ["holder", "pm2", "p0", "p1a", "p1b", "p3", "p5"]


def test_fcfs_refuses_a_non_zero_priority_like_vllm(fcfs: str) -> None:
    r = httpx.post(f"{fcfs}/v1/chat/completions", json=chat(priority=2))
    assert r.status_code == 400
    assert r.json()["error"] == {
        "message": "Got priority 2 but Priority scheduling is not enabled.",
        "type": "BadRequestError", "param": None, "code": 400,
    }  # fmt: skip
    assert httpx.post(f"{fcfs}/v1/chat/completions", json=chat(priority=0)).status_code == 200
    assert httpx.post(f"{fcfs}/v1/chat/completions", json=chat(priority="high")).status_code == 400
    # With the engine off the field is ignored, as before the engine existed
    configure(fcfs, engine_slots=0)
    assert httpx.post(f"{fcfs}/v1/chat/completions", json=chat(priority=2)).status_code == 200


def test_engine_off_serves_everything_at_once(fcfs: str) -> None:
    configure(fcfs, engine_slots=0, latency_ms=200)

    async def run() -> float:
        async with httpx.AsyncClient(base_url=fcfs, timeout=10) as c:
            started = time.monotonic()
            results = await asyncio.gather(*(c.post("/v1/chat/completions", json=chat()) for _ in range(10)))
            assert [r.status_code for r in results] == [200] * 10
            return time.monotonic() - started

    assert asyncio.run(run()) < 0.6  # no queue: one latency, not the five that two slots would take
    s = engine(fcfs)
    assert (s["max_running"], s["max_waiting"], s["classes"]["batch"]["completed"]) == (10, 0, 10)


# --- shedding, gauges, run-time changes ----------------------------------------------------------------------


def test_a_full_queue_sheds_with_the_configured_status(fcfs: str) -> None:
    # Given one slot of 600 ms, at most 2 waiting, and 429 for shed requests
    configure(fcfs, engine_slots=1, latency_ms=600, max_queue=2, shed_status=429)
    shed_before = gauges(fcfs)['batchq_sim_requests_shed_total{class="batch"}']

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=fcfs, timeout=10) as c:
            first = [asyncio.create_task(c.post("/v1/chat/completions", json=chat())) for _ in range(3)]
            await until(waiting_is(c, 2), "the queue to fill")
            # When three more arrive
            late = [await c.post("/v1/chat/completions", json=chat()) for _ in range(3)]
            await c.post("/sim/config", json={"engine_slots": 3})  # the queued ones need not wait their turn
            return [*await asyncio.gather(*first), *late]

    responses = asyncio.run(run())
    # Then they are answered 429 at once, in OpenAI's envelope, with no Retry-After
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429, 429]
    shed = responses[-1]
    assert "retry-after" not in shed.headers and "retry-after-ms" not in shed.headers
    assert shed.json()["error"]["code"] == "overloaded" and "overloaded" in shed.json()["error"]["message"]
    assert shed.elapsed.total_seconds() < 0.2
    # And they are counted: in the stats, by status, and on /metrics
    s = httpx.get(f"{fcfs}/sim/stats").json()
    assert s["engine"]["shed"] == 3 and s["engine"]["classes"]["batch"]["shed"] == 3
    assert s["by_status"] == {"200": 3, "429": 3}
    assert gauges(fcfs)['batchq_sim_requests_shed_total{class="batch"}'] == shed_before + 3


def test_metrics_gauges_follow_the_load(fcfs: str) -> None:
    # Given 2 slots of 600 ms
    configure(fcfs, engine_slots=2, latency_ms=600)
    running = 'vllm:num_requests_running{model_name="batchq-sim"}'
    waiting = 'vllm:num_requests_waiting{model_name="batchq-sim"}'

    async def run() -> None:
        async with httpx.AsyncClient(base_url=fcfs, timeout=10) as c:
            # When 4 batch requests and one interactive one are held
            headers = {"x-sim-class": "interactive"}
            tasks = [asyncio.create_task(c.post("/v1/chat/completions", json=chat())) for _ in range(4)]
            await until(waiting_is(c, 2), "two requests to wait")
            tasks.append(asyncio.create_task(c.post("/v1/chat/completions", json=chat(), headers=headers)))
            await until(waiting_is(c, 3), "the interactive request to wait")
            # Then /metrics shows them, and the series splits out the batch class
            g = gauges(fcfs)
            assert (g[running], g[waiting]) == (2, 3)
            await asyncio.gather(*tasks)

    asyncio.run(run())
    assert (gauges(fcfs)[running], gauges(fcfs)[waiting]) == (0, 0)
    s = engine(fcfs, series=1)
    assert s["classes"]["interactive"]["completed"] == 1 and s["classes"]["batch"]["completed"] == 4
    assert s["series"]["columns"] == ["t", "running", "waiting", "running_batch", "waiting_batch"]
    assert [2, 3, 2, 2] in [p[1:] for p in s["series"]["points"]]


def test_more_slots_at_run_time_start_waiting_requests_and_hang_ups_leave_the_queue(fcfs: str) -> None:
    configure(fcfs, engine_slots=1, latency_ms=1000)

    async def run() -> None:
        async with httpx.AsyncClient(base_url=fcfs, timeout=10) as c:
            held = [asyncio.create_task(c.post("/v1/chat/completions", json=chat())) for _ in range(3)]
            await until(waiting_is(c, 2), "two requests to wait")
            # A client that gives up while waiting leaves the queue
            with pytest.raises(httpx.TimeoutException):
                await c.post("/v1/chat/completions", json=chat(), timeout=0.1)
            await until(waiting_is(c, 2), "the hung-up request to leave")
            # More slots start the waiting ones at once
            await c.post("/sim/config", json={"engine_slots": 3})
            assert (await c.get("/sim/stats")).json()["engine"]["running"] == 3
            assert all(r.status_code == 200 for r in await asyncio.gather(*held))

    asyncio.run(run())


# --- interactive users, marks --------------------------------------------------------------------------------


def test_interactive_users_arrive_at_the_rate_and_are_timed(fcfs: str) -> None:
    # Given plenty of slots of 50 ms, a mark, then 40 users a second for 2 s, then none, then a mark
    configure(fcfs, engine_slots=16, latency_ms=50)
    start = httpx.post(f"{fcfs}/sim/engine/mark").json()
    configure(fcfs, interactive_rps=40)
    time.sleep(2.0)  # the measurement itself: arrivals over two seconds
    configure(fcfs, interactive_rps=0)
    end = httpx.post(f"{fcfs}/sim/engine/mark").json()
    assert (start["mark"], end["mark"]) == (1, 2) and end["at"] - start["at"] >= 2.0
    # Then about 80 arrived (Poisson: sd ~9) without any HTTP request, each served in about 50 ms
    asyncio.run(wait_idle(fcfs))
    s = httpx.get(f"{fcfs}/sim/stats", params={"since_mark": 1, "until_mark": 2}).json()
    users = s["engine"]["classes"]["interactive"]
    assert 50 <= users["completed"] <= 115 and 25 <= users["per_s"] <= 57
    assert 45 <= users["latency_ms"]["p50"] <= 150 and users["wait_ms"]["p50"] <= 20
    assert s["received"] == 0 and s["engine"]["classes"]["batch"]["completed"] == 0
    assert s["config"]["interactive_rps"] == 0 and s["engine"]["interactive_rps"] == 0


def test_marks_split_users_alone_from_users_beside_a_batch(fcfs: str) -> None:
    # Given 2 slots of 100 ms and 10 users a second, alone for a second, then beside a burst of 20 batch requests
    configure(fcfs, engine_slots=2, latency_ms=100, interactive_rps=10)

    async def run() -> None:
        async with httpx.AsyncClient(base_url=fcfs, timeout=10) as c:
            await c.post("/sim/engine/mark")
            await asyncio.sleep(1.0)  # the users alone
            await c.post("/sim/engine/mark")
            results = await asyncio.gather(*(c.post("/v1/chat/completions", json=chat()) for _ in range(20)))
            assert [r.status_code for r in results] == [200] * 20
            await c.post("/sim/engine/mark")
            await c.post("/sim/config", json={"interactive_rps": 0})
            await until(lambda: _idle(c), "the users who arrived beside the batch to be served")

    asyncio.run(run())
    alone, beside = engine(fcfs, since_mark=1, until_mark=2), engine(fcfs, since_mark=2, until_mark=3, series=1)
    # Then each window holds its own requests, and the users waited far longer beside the batch
    assert alone["classes"]["batch"]["completed"] == 0 and beside["classes"]["batch"]["completed"] == 20
    assert alone["classes"]["interactive"]["completed"] >= 3 and beside["classes"]["interactive"]["completed"] >= 3
    assert beside["classes"]["interactive"]["wait_ms"]["p95"] >= alone["classes"]["interactive"]["wait_ms"]["p95"] + 300
    assert max(p[4] for p in beside["series"]["points"]) >= 10  # batch requests waiting, in the plot
    # And unknown marks or bad times are refused
    for params in ({"since_mark": 9}, {"until_mark": "x"}, {"since": "nan"}):
        assert httpx.get(f"{fcfs}/sim/stats", params=params).status_code == 400


def test_reset_restores_the_engine_settings_and_forgets_marks(fcfs: str) -> None:
    configure(fcfs, engine_slots=7, max_queue=3, interactive_rps=0.5)
    httpx.post(f"{fcfs}/sim/engine/mark").raise_for_status()
    httpx.post(f"{fcfs}/sim/reset").raise_for_status()
    s = engine(fcfs)
    assert (s["slots"], s["max_queue"], s["interactive_rps"], s["marks"], s["shed"]) == (2, -1, 0, [], 0)
    assert httpx.get(f"{fcfs}/sim/stats", params={"since_mark": 1}).status_code == 400


# --- flavors, embeddings, validation -------------------------------------------------------------------------


def test_sglang_flavor_names_the_gauges(prio: str) -> None:
    g = gauges(prio)
    assert g['sglang:num_running_reqs{model_name="batchq-sim"}'] == 0
    assert g['sglang:num_queue_reqs{model_name="batchq-sim"}'] == 0
    assert not any(name.startswith("vllm:") for name in g)


def test_embedding_dims_make_answers_of_realistic_size(fcfs: str) -> None:
    configure(fcfs, embedding_dims=1536, latency_ms=0)
    r = httpx.post(f"{fcfs}/v1/embeddings", json={"model": "emb", "input": "a line of text"})
    vector = r.json()["data"][0]["embedding"]
    assert len(vector) == 1536 and math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-9)
    assert 25_000 <= len(r.content) <= 40_000
    again = httpx.post(f"{fcfs}/v1/embeddings", json={"model": "emb", "input": "a line of text"})
    assert again.json()["data"][0]["embedding"] == vector
    httpx.post(f"{fcfs}/sim/reset").raise_for_status()
    default = httpx.post(f"{fcfs}/v1/embeddings", json={"model": "e", "input": "x"}).json()
    assert len(default["data"][0]["embedding"]) == 8


@pytest.mark.parametrize(
    "body",
    [{"engine_slots": -1}, {"max_queue": -2}, {"shed_status": 500}, {"interactive_rps": -1}, {"embedding_dims": 0},
     {"engine_slots": 1.5}, {"scheduling_policy": "priority"}],
)  # fmt: skip
def test_config_rejects_bad_engine_settings(fcfs: str, body: dict[str, object]) -> None:
    r = httpx.post(f"{fcfs}/sim/config", content=json.dumps(body))
    assert r.status_code == 400 and r.json()["error"]["message"]
    assert engine(fcfs)["slots"] == 2


@pytest.mark.parametrize(
    "argv",
    [["--shed-status", "418"], ["--max-queue", "-5"], ["--scheduling-policy", "lifo"], ["--metrics-flavor", "x"],
     ["--embedding-dims", "0"]],
)  # fmt: skip
def test_cli_rejects_bad_engine_flags(argv: list[str]) -> None:
    from batchq.sim import parse_args

    with pytest.raises(SystemExit) as exc_info:
        parse_args(argv)
    assert exc_info.value.code == 2
    args = parse_args(["--engine-slots", "16", "--max-queue", "4", "--shed-status", "529", "--embedding-dims", "1536"])
    assert args.tunables["engine_slots"] == 16 and args.tunables["shed_status"] == 529
