"""A webhook receiver that drips its answer (issue 24, finding 4), against real processes: the API, a worker with
the default webhook settings (5 s timeout, 8 delivery threads), a dripping receiver and a well-behaved one."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from openai import OpenAI

from tests.e2e.conftest import StackFactory
from tests.stack import Stack, chat_lines, to_jsonl, wait_final
from tests.webhook_receiver import DripConnection, DripReceiver, Receiver

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
#: BATCHQ_WEBHOOK_TIMEOUT_S's default: an attempt ends within twice it.
DEFAULT_TIMEOUT_S = 5.0
#: Scheduling slack on a busy 2-core machine, on top of the deadline.
SLACK_S = 1.0


@pytest.fixture
def drip() -> Iterator[DripReceiver]:
    r = DripReceiver(interval_s=2.0).start()
    yield r
    r.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, stack: Stack) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not after {timeout}s\n{stack.logs()}")
        time.sleep(0.05)


def run_batch(stack: Stack, key: str) -> str:
    client = OpenAI(base_url=f"{stack.api_url}/v1", api_key=key, max_retries=0)
    f = client.files.create(file=("in.jsonl", io.BytesIO(to_jsonl(chat_lines(1)))), purpose="batch")
    batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    headers = {"Authorization": f"Bearer {key}"}
    assert wait_final(stack.api_url, batch.id, headers, stack=stack)["status"] == "completed"
    return batch.id


def test_a_dripping_receiver_is_cut_off_and_stops_nobody_else(
    make_stack: StackFactory, drip: DripReceiver, receiver: Receiver
) -> None:
    # Given account A with ten endpoints on a receiver that drips one header byte every 2 s, more than a worker's
    # eight delivery threads, and account B with one well-behaved endpoint (default webhook settings)
    stack = make_stack(api_keys="key-a:acct-a,key-b:acct-b", webhook_allow_private="true")
    stack.start_api()
    stack.start_worker("w1")
    api = stack.api_url
    a_endpoints = [
        httpx.post(f"{api}/v1/webhook_endpoints", json={"url": drip.url, "events": ["batch.completed"]}, headers=A)
        for _ in range(10)
    ]
    assert all(r.status_code == 200 for r in a_endpoints)
    r = httpx.post(f"{api}/v1/webhook_endpoints", json={"url": receiver.url, "events": ["batch.completed"]}, headers=B)
    assert r.status_code == 200, r.text

    # When A's batch completes (ten deliveries start dripping), then B's batch completes
    run_batch(stack, "key-a")
    wait_until(lambda: len(drip.snapshot()) >= 1, 30, "a dripping delivery", stack)
    run_batch(stack, "key-b")

    # Then B's event arrives while A's deliveries are still dripping (they connected before B's batch started and
    # are still connected once it arrived): they hold no thread that B needs
    wait_until(lambda: len(receiver.snapshot()) == 1, 30, "B's delivery", stack)
    b_seen = time.monotonic()
    assert any(c.open_at(b_seen) for c in drip.snapshot()), (b_seen, drip.snapshot())

    # And every dripping attempt ends within 2 x BATCHQ_WEBHOOK_TIMEOUT_S of its request
    wait_until(lambda: any(c.closed for c in drip.snapshot()), 3 * DEFAULT_TIMEOUT_S, "the first cut-off", stack)
    ended: list[DripConnection] = [c for c in drip.snapshot() if c.closed is not None]
    longest = max(c.closed - c.arrived for c in ended if c.closed is not None)
    assert longest <= 2 * DEFAULT_TIMEOUT_S + SLACK_S, f"an attempt lasted {longest:.1f}s"
    now = time.monotonic()
    open_for = [now - c.arrived for c in drip.snapshot() if c.closed is None]
    assert all(s <= 2 * DEFAULT_TIMEOUT_S + SLACK_S for s in open_for), open_for

    # And the delivery log of that endpoint shows the failed attempt and its error
    def logged() -> list[dict[str, object]]:
        entries = []
        for endpoint in a_endpoints:
            page = httpx.get(f"{api}/v1/webhook_endpoints/{endpoint.json()['id']}/deliveries", headers=A).json()
            entries += [d for d in page["data"] if d["attempts"]]
        return entries

    wait_until(lambda: bool(logged()), 10, "a logged attempt", stack)
    entry = logged()[0]
    assert entry["status"] == "pending" and entry["last_response_code"] is None, entry
    assert "deadline" in str(entry["last_error"]), entry
