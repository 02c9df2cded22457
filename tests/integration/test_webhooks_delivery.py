"""Emission and delivery against a real Redis and a real loopback receiver (no worker: attempts called directly)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest
import redis as redis_lib
from openai import OpenAI
from openai.types.webhooks import BatchCancelledWebhookEvent

from batchq import keys
from batchq.keys import webhook_due as due
from batchq.webhooks.attempt import DeliveryConfig, attempt_delivery
from batchq.webhooks.deliveries import DeliveryStore, public_delivery
from batchq.webhooks.dispatch import drain_due, on_batch_final, set_sender
from batchq.webhooks.events import DISPATCH_GRACE_S, emit_batch_event
from batchq.webhooks.registry import EndpointRegistry
from tests.webhook_receiver import Receiver

SDK = OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_emission_is_idempotent_and_filtered_by_events(redis: redis_lib.Redis, receiver: Receiver) -> None:
    registry = EndpointRegistry(redis)
    everything = registry.create("acct", receiver.url, ["batch.completed", "batch.cancelled"])
    registry.create("acct", receiver.url, ["batch.failed"])  # not subscribed to completed
    registry.create("other", receiver.url, ["batch.completed"])  # another account's
    sent: list[str] = []
    # When a batch's completion is emitted twice (a finalize that ran twice)
    first = emit_batch_event(redis, sent.append, "acct", "batch_1", "completed")
    second = emit_batch_event(redis, sent.append, "acct", "batch_1", "completed")
    # Then one delivery exists, to the one subscribed endpoint of the account, and it was sent once
    assert len(first) == 1 and second == [] and sent == first
    record = DeliveryStore(redis).get(first[0])
    assert record is not None and record["endpoint_id"] == everything.id and record["status"] == "pending"
    assert json.loads(record["body"])["data"] == {"id": "batch_1"}
    # And statuses that are not final emit nothing
    assert emit_batch_event(redis, sent.append, "acct", "batch_1", "in_progress") == []


def test_on_batch_final_reads_the_account_from_the_batch(redis: redis_lib.Redis, receiver: Receiver) -> None:
    EndpointRegistry(redis).create("acct", receiver.url, ["batch.expired"])
    redis.hset(keys.batch_record("batch_2"), mapping={"account": "acct"})
    set_sender(None)
    ids = on_batch_final(redis, 3600, "batch_2", "expired")
    # Without a registered sender the delivery is due at once, for the sweeper's drain
    assert len(ids) == 1 and redis.zscore(due(), ids[0]) is not None
    drained: list[str] = []
    assert drain_due(redis, drained.append) == 1 and drained == ids
    assert drain_due(redis, drained.append) == 0  # claimed: not sent again within the grace period
    assert on_batch_final(redis, 3600, "batch_unknown", "expired") == []


def test_five_hundred_three_times_then_200_one_webhook_id(redis: redis_lib.Redis, receiver: Receiver) -> None:
    # Given a receiver that answers 500 three times, then 200
    receiver.statuses = [500, 500, 500]
    endpoint = EndpointRegistry(redis).create("acct", receiver.url, ["batch.cancelled"])
    clock = Clock(1_800_000_000.0)
    (delivery_id,) = emit_batch_event(redis, None, "acct", "batch_3", "cancelled", now=clock.now)
    cfg = DeliveryConfig(allow_private=True, timeout_s=2, rng=random.Random(1), clock=clock)
    outcomes = []
    # When each attempt runs when it is due
    for _ in range(4):
        outcome = attempt_delivery(redis, delivery_id, cfg)
        outcomes.append(outcome)
        if outcome.retry_in_s is not None:
            clock.now += outcome.retry_in_s
    # Then it was delivered on the fourth attempt, the three retries within a minute, with one webhook-id
    assert [o.status for o in outcomes] == ["pending", "pending", "pending", "delivered"]
    assert sum(o.retry_in_s or 0 for o in outcomes) < 60
    got = receiver.snapshot()
    assert len(got) == 4 and {r.headers["webhook-id"] for r in got} == {delivery_id}
    assert len({r.headers["webhook-timestamp"] for r in got}) == 4  # re-signed every attempt
    assert {r.body for r in got} == {got[0].body}
    # And every attempt verifies with the openai SDK (within its tolerance of the attempt's own time)
    for r in got:
        SDK.webhooks.verify_signature(r.body, r.headers, secret=endpoint.secret, tolerance=10**10)
    event = BatchCancelledWebhookEvent.model_validate_json(got[-1].body)  # unwrap() has no tolerance (fake clock)
    assert event.type == "batch.cancelled" and event.data.id == "batch_3"
    # And the log shows it
    (entry,) = [public_delivery(r) for r in DeliveryStore(redis).for_endpoint(endpoint.id, limit=10)[0]]
    assert entry["status"] == "delivered" and entry["attempts"] == 4 and entry["last_response_code"] == 200
    assert entry["next_attempt_at"] is None and redis.zscore(due(), delivery_id) is None
    # And a late duplicate task does nothing
    assert attempt_delivery(redis, delivery_id, cfg).status == "skipped" and len(receiver.snapshot()) == 4


def test_long_waits_leave_the_task_for_the_due_set_and_the_period_ends_it(redis: redis_lib.Redis) -> None:
    # Given a receiver that never answers (a closed port on loopback)
    EndpointRegistry(redis).create("acct", "http://127.0.0.1:9/", ["batch.failed"])
    clock = Clock(1_800_000_000.0)
    (delivery_id,) = emit_batch_event(redis, None, "acct", "batch_4", "failed", now=clock.now, retry_period_s=7200)
    cfg = DeliveryConfig(allow_private=True, timeout_s=1, retry_period_s=7200, clock=clock)
    statuses, countdowns = [], []
    for _ in range(10):
        outcome = attempt_delivery(redis, delivery_id, cfg)
        statuses.append(outcome.status)
        countdowns.append(outcome.countdown(cfg))
        if outcome.status != "pending":
            break
        assert outcome.retry_in_s is not None
        # a short retry is a countdown, backed by the due set a grace period later; a long one is the due set only
        score = redis.zscore(due(), delivery_id)
        assert score is not None
        expected = clock.now + outcome.retry_in_s + (DISPATCH_GRACE_S if outcome.retry_in_s <= 60 else 0)
        assert abs(score - expected) < 2
        clock.now += outcome.retry_in_s
    # Then three countdowns, then waits too long for a countdown, then it gives up within the period
    assert countdowns[:3] == [c for c in countdowns[:3] if c is not None and c <= 60] and None in countdowns[3:]
    assert statuses[-1] == "failed"
    record = DeliveryStore(redis).get(delivery_id)
    assert record is not None and record["status"] == "failed" and record["last_response_code"] is None
    assert clock.now - 1_800_000_000.0 <= 7200 and redis.zscore(due(), delivery_id) is None


def test_deleted_endpoint_stops_its_deliveries(redis: redis_lib.Redis, receiver: Receiver) -> None:
    endpoint = EndpointRegistry(redis).create("acct", receiver.url, ["batch.completed"])
    (delivery_id,) = emit_batch_event(redis, None, "acct", "batch_5", "completed")
    EndpointRegistry(redis).delete(endpoint.id, "acct")
    assert attempt_delivery(redis, delivery_id, DeliveryConfig(allow_private=True)).status == "failed"
    assert receiver.snapshot() == []


def test_private_receiver_is_refused_at_delivery_time_by_default(redis: redis_lib.Redis, receiver: Receiver) -> None:
    # Given an endpoint registered while private targets were allowed, and then the operator disallowed them
    EndpointRegistry(redis).create("acct", receiver.url, ["batch.completed"])
    (delivery_id,) = emit_batch_event(redis, None, "acct", "batch_6", "completed")
    outcome = attempt_delivery(redis, delivery_id, DeliveryConfig())
    # Then nothing reaches it and the delivery fails for good
    assert outcome.status == "failed" and receiver.snapshot() == []
    record = DeliveryStore(redis).get(delivery_id)
    assert record is not None and "refused" in record["last_error"]
