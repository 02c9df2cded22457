"""Webhooks and the new endpoints with real processes: API, a Celery worker started with the documented queues,
the simulator, and a webhook receiver on loopback (allowed by BATCHQ_WEBHOOK_ALLOW_PRIVATE)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as redis_lib
from openai import InvalidWebhookSignatureError, OpenAI
from openai.types.webhooks import BatchCancelledWebhookEvent, BatchCompletedWebhookEvent

import batchq
from batchq.webhooks.events import emit_batch_event
from tests.e2e.conftest import StackFactory
from tests.stack import Stack, chat_lines, parse_jsonl, to_jsonl, wait_final
from tests.webhook_receiver import Received, Receiver

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    s = make_stack(api_keys="key-a:acct-a,key-b:acct-b", webhook_allow_private="true")
    s.start_api()
    s.start_worker("w1")  # -Q intake,requests,finalize: the worker adds the webhooks queue itself
    return s


def sdk(stack: Stack, key: str = "key-a") -> OpenAI:
    return OpenAI(base_url=f"{stack.api_url}/v1", api_key=key, max_retries=0)


def create_endpoint(stack: Stack, url: str, events: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, **({"events": events} if events else {})}
    r = httpx.post(f"{stack.api_url}/v1/webhook_endpoints", json=body, headers=A)
    assert r.status_code == 200, r.text
    return dict(r.json())


def submit(client: OpenAI, lines: list[dict[str, Any]], endpoint: str = "/v1/chat/completions") -> str:
    f = client.files.create(file=("in.jsonl", io.BytesIO(to_jsonl(lines))), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h").id  # type: ignore[arg-type]


def wait_received(receiver: Receiver, n: int, timeout: float, stack: Stack) -> list[Received]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = receiver.snapshot()
        if len(got) >= n:
            return got
        time.sleep(0.2)
    raise TimeoutError(f"{len(receiver.snapshot())} of {n} deliveries after {timeout}s\n{stack.logs()}")


def test_completed_and_cancelled_batches_are_pushed_and_verify(stack: Stack, receiver: Receiver) -> None:
    # Given an endpoint of account A on a loopback receiver
    endpoint = create_endpoint(stack, receiver.url)
    client = sdk(stack)
    # When one batch completes and another is cancelled
    done = submit(client, chat_lines(3))
    assert wait_final(stack.api_url, done, A, stack=stack)["status"] == "completed"
    cancelled = submit(client, chat_lines(3, prefix="c"))
    client.batches.cancel(cancelled)
    assert wait_final(stack.api_url, cancelled, A, stack=stack)["status"] == "cancelled"
    # Then the receiver got batch.completed and batch.cancelled, each accepted by the openai SDK's unwrap
    got = wait_received(receiver, 2, 30, stack)
    time.sleep(1)
    got = receiver.snapshot()
    events = [client.webhooks.unwrap(r.body, r.headers, secret=endpoint["secret"]) for r in got]
    assert {batchq.verify_webhook(r.body, r.headers, endpoint["secret"])["type"] for r in got} == {
        "batch.completed",
        "batch.cancelled",
    }
    assert len(events) == 2
    by_type = {type(e): e for e in events}
    assert by_type[BatchCompletedWebhookEvent].data.id == done
    assert by_type[BatchCancelledWebhookEvent].data.id == cancelled
    assert got[0].headers["content-type"] == "application/json" and got[0].path == "/hooks"
    # And a tampered body is rejected
    tampered = got[0].body.replace(b'"data":{"id":"', b'"data":{"id":"x')
    with pytest.raises(InvalidWebhookSignatureError):
        client.webhooks.unwrap(tampered, got[0].headers, secret=endpoint["secret"])
    # And the delivery log shows both delivered on the first attempt
    log = httpx.get(f"{stack.api_url}/v1/webhook_endpoints/{endpoint['id']}/deliveries", headers=A).json()["data"]
    assert sorted(d["event_type"] for d in log) == ["batch.cancelled", "batch.completed"]
    assert all(d["status"] == "delivered" and d["attempts"] == 1 and d["last_response_code"] == 200 for d in log)
    # And account B can neither see nor delete the endpoint
    for method in ("GET", "DELETE"):
        r = httpx.request(method, f"{stack.api_url}/v1/webhook_endpoints/{endpoint['id']}", headers=B)
        assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(f"{stack.api_url}/v1/webhook_endpoints/{endpoint['id']}", headers=A).status_code == 200


def test_a_failing_receiver_gets_the_same_webhook_id_until_it_answers(stack: Stack, receiver: Receiver) -> None:
    # Given a receiver that answers 500 three times, then 200 (default retry schedule: 2 s, 8 s, 30 s, jittered)
    receiver.statuses = [500, 500, 500]
    endpoint = create_endpoint(stack, receiver.url, ["batch.completed"])
    batch_id = submit(sdk(stack), chat_lines(2))
    assert wait_final(stack.api_url, batch_id, A, stack=stack)["status"] == "completed"
    # Then one event is delivered four times with one webhook-id, within a minute
    got = wait_received(receiver, 4, 70, stack)
    time.sleep(1)
    got = receiver.snapshot()
    assert len(got) == 4 and len({r.headers["webhook-id"] for r in got}) == 1
    assert {json.loads(r.body)["id"] for r in got} == {json.loads(got[0].body)["id"]}
    sdk(stack).webhooks.unwrap(got[-1].body, got[-1].headers, secret=endpoint["secret"])
    # And the delivery log shows it: delivered, 4 attempts, last code 200
    deadline = time.monotonic() + 10
    while True:
        log = httpx.get(f"{stack.api_url}/v1/webhook_endpoints/{endpoint['id']}/deliveries", headers=A).json()["data"]
        if log and log[0]["status"] == "delivered" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    (entry,) = log
    assert entry["id"] == got[0].headers["webhook-id"] and entry["event_type"] == "batch.completed"
    assert (entry["status"], entry["attempts"], entry["last_response_code"]) == ("delivered", 4, 200)


def test_a_slow_receiver_does_not_delay_batches(make_stack: StackFactory) -> None:
    # Given a worker with two slots and twelve endpoints on a receiver that takes 4.5 s to answer each delivery
    stack = make_stack(api_keys="key-a:acct-a,key-b:acct-b", webhook_allow_private="true")
    stack.start_api()
    stack.start_worker("w1", concurrency=2)
    slow = Receiver(delay_s=4.5).start()
    try:
        for _ in range(12):
            create_endpoint(stack, slow.url, ["batch.completed"])
        client = sdk(stack)
        first = submit(client, chat_lines(2))
        assert wait_final(stack.api_url, first, A, stack=stack)["status"] == "completed"
        # When another batch is submitted while the twelve deliveries are in flight
        started = time.monotonic()
        second = submit(client, chat_lines(3, prefix="s"))
        assert wait_final(stack.api_url, second, A, stack=stack)["status"] == "completed"
        elapsed = time.monotonic() - started
        # Then it completes as if there were no webhooks (in pool slots they would hold it back ~10-27 s),
        # and every delivery still arrives
        assert elapsed < 8, f"second batch took {elapsed:.1f}s"
        wait_received(slow, 13, 40, stack)
    finally:
        slow.stop()


def test_sweeper_sends_a_delivery_whose_task_never_went_out(
    stack: Stack, receiver: Receiver, redis: redis_lib.Redis
) -> None:
    # Given a delivery recorded in Redis (an event emitted where no sender was registered, as after a lost task)
    endpoint = create_endpoint(stack, receiver.url, ["batch.expired"])
    (delivery_id,) = emit_batch_event(redis, None, "acct-a", "batch_lost", "expired")
    # Then a worker's sweeper finds it in the due set and delivers it (e2e stacks sweep every second)
    (got,) = wait_received(receiver, 1, 20, stack)
    assert got.headers["webhook-id"] == delivery_id
    assert batchq.verify_webhook(got.body, got.headers, endpoint["secret"])["data"] == {"id": "batch_lost"}
    # And the worker consumes the webhooks queue although it was started with -Q intake,requests,finalize
    worker_log = "\n".join(p.log_tail(400) for p in stack.procs if p.name.startswith("worker"))
    assert "consuming the 'webhooks' queue too" in worker_log


def test_openai_sdk_manages_endpoints(stack: Stack, receiver: Receiver) -> None:
    client = sdk(stack)
    created = client.webhooks.create(event_types=["batch.failed"], name="ops", url=receiver.url)
    assert created.signing_secret.startswith("whsec_") and created.event_types == ["batch.failed"]
    assert client.webhooks.retrieve(created.id).url == receiver.url
    assert [e.id for e in client.webhooks.list()] == [created.id]
    assert client.webhooks.delete(created.id).deleted is True


def test_responses_and_moderations_batches_through_the_openai_sdk(stack: Stack) -> None:
    client = sdk(stack)
    responses = [
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/responses",
         "body": {"model": "test-model", "input": f"Say {i}.", "max_output_tokens": 16}}
        for i in range(3)
    ]  # fmt: skip
    moderations = [
        {"custom_id": "m0", "method": "POST", "url": "/v1/moderations", "body": {"input": "hello"}},
        {"custom_id": "m1", "method": "POST", "url": "/v1/moderations", "body": {"input": "please flagme"}},
    ]
    resp_id = submit(client, responses, "/v1/responses")
    mod_id = submit(client, moderations, "/v1/moderations")
    for batch_id, n in ((resp_id, 3), (mod_id, 2)):
        batch = client.batches.retrieve(batch_id)
        deadline = time.monotonic() + 90
        while batch.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < deadline:
            time.sleep(0.3)
            batch = client.batches.retrieve(batch_id)
        assert batch.status == "completed", (batch, stack.logs())
        assert batch.request_counts is not None and batch.request_counts.completed == n
        assert batch.output_file_id is not None
        out = {o["custom_id"]: o for o in parse_jsonl(client.files.content(batch.output_file_id).read())}
        assert len(out) == n and all(o["error"] is None for o in out.values())
        if batch_id == resp_id:
            body = out["r1"]["response"]["body"]
            assert body["object"] == "response" and body["output"][0]["content"][0]["text"] == "Echo: Say 1."
            assert batch.usage is not None and batch.usage.output_tokens == 3 * 16
        else:
            assert [out[c]["response"]["body"]["results"][0]["flagged"] for c in ("m0", "m1")] == [False, True]
