"""One delivery attempt: sign the stored body with a fresh timestamp, POST it, record the answer, plan the next.

Safe to run twice at once or too early (a countdown retry and a sweeper re-send of the same delivery): a lock
lets one attempt run, a delivery that is not due yet or no longer pending is skipped.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import redis

from batchq import keys
from batchq.webhooks.deliveries import DeliveryStore
from batchq.webhooks.events import DISPATCH_GRACE_S
from batchq.webhooks.registry import EndpointRegistry
from batchq.webhooks.schedule import retry_delay
from batchq.webhooks.signing import signature_headers
from batchq.webhooks.targets import Resolver, system_resolver
from batchq.webhooks.transport import AttemptResult, post_webhook

log = logging.getLogger(__name__)

#: Seconds early an attempt may run (clock skew between workers; a countdown firing a little early).
EARLY_SLACK_S = 1.0
#: Receivers answering this have gone for good (Standard Webhooks): stop retrying.
GONE_STATUS = 410


@dataclass(frozen=True)
class DeliveryConfig:
    allow_private: bool = False
    timeout_s: float = 5.0
    retry_period_s: int = 24 * 3600
    max_countdown_s: float = 60.0
    """Retries due sooner than this go back to the task as a countdown; later ones wait in the due set."""
    resolver: Resolver = system_resolver
    transport: httpx.BaseTransport | None = None
    rng: random.Random | None = None
    clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class AttemptOutcome:
    status: str
    """The delivery's status after this call: pending, delivered, failed, or skipped (nothing done)."""
    retry_in_s: float | None = None
    """When pending: seconds until the next attempt."""

    def countdown(self, cfg: DeliveryConfig) -> float | None:
        """The countdown for the task to retry with, or None (done, or left to the sweeper's due set)."""
        if self.status == "pending" and self.retry_in_s is not None and self.retry_in_s <= cfg.max_countdown_s:
            return self.retry_in_s
        return None


def attempt_delivery(client: redis.Redis[bytes], delivery_id: str, cfg: DeliveryConfig) -> AttemptOutcome:
    """Make one attempt of a pending, due delivery."""
    lock = keys.webhook_delivery_lock(delivery_id)
    if not client.set(lock, "1", nx=True, ex=int(4 * cfg.timeout_s) + 5):
        return AttemptOutcome("skipped")
    try:
        return _attempt(client, delivery_id, cfg)
    finally:
        client.delete(lock)


def _attempt(client: redis.Redis[bytes], delivery_id: str, cfg: DeliveryConfig) -> AttemptOutcome:
    store = DeliveryStore(client)
    record = store.get(delivery_id)
    if record is None or record["status"] != "pending":
        store.unschedule(delivery_id)  # expired, or already ended: nothing to send
        return AttemptOutcome("skipped")
    now = cfg.clock()
    if now < (record["next_attempt_at"] or 0) - EARLY_SLACK_S:
        return AttemptOutcome("skipped")  # an early duplicate: the planned attempt (or the due set) comes later
    endpoint = EndpointRegistry(client).get(record["endpoint_id"])
    if endpoint is None:
        store.update(delivery_id, {"status": "failed", "last_error": "endpoint deleted"}, due_at=None)
        return AttemptOutcome("failed")

    body = record["body"].encode("utf-8")
    headers = signature_headers(endpoint.secret, delivery_id, body, timestamp=int(now))
    result = post_webhook(
        endpoint.url,
        body,
        headers,
        allow_private=cfg.allow_private,
        timeout_s=cfg.timeout_s,
        resolver=cfg.resolver,
        transport=cfg.transport,
    )
    attempts = int(record["attempts"]) + 1
    done_at = cfg.clock()
    fields: dict[str, object] = {
        "attempts": attempts,
        "last_attempt_at": int(done_at),
        "last_response_code": result.status_code,
        "last_error": result.error or _status_note(result),
        "last_answer": result.answer[:512],
    }
    if result.ok:
        fields.update(status="delivered", delivered_at=int(done_at), last_error=None)
        store.update(delivery_id, fields, due_at=None)
        log.info("webhook %s delivered to %s (attempt %d)", delivery_id, endpoint.id, attempts)
        return AttemptOutcome("delivered")
    delay = retry_delay(attempts, retry_after_s=result.retry_after_s, rng=cfg.rng)
    give_up = result.permanent or result.status_code == GONE_STATUS
    if give_up or done_at + delay > record["created_at"] + cfg.retry_period_s:
        fields.update(status="failed", next_attempt_at=None)
        store.update(delivery_id, fields, due_at=None)
        log.warning("webhook %s to %s failed for good after %d attempts", delivery_id, endpoint.id, attempts)
        return AttemptOutcome("failed")
    next_attempt = done_at + delay
    fields["next_attempt_at"] = int(next_attempt)
    # A countdown retry is backed by the due set, armed a grace period later; a long wait lives there only.
    backed_up = next_attempt + DISPATCH_GRACE_S if delay <= cfg.max_countdown_s else next_attempt
    store.update(delivery_id, fields, due_at=backed_up)
    log.info("webhook %s to %s: %s; retry %d in %.0fs", delivery_id, endpoint.id, _label(result), attempts, delay)
    return AttemptOutcome("pending", delay)


def _status_note(result: AttemptResult) -> str | None:
    if result.status_code is None or result.ok:
        return None
    if 300 <= result.status_code < 400:
        return "redirects are not followed"
    return f"HTTP {result.status_code}"


def _label(result: AttemptResult) -> str:
    return f"HTTP {result.status_code}" if result.status_code is not None else result.error or "no answer"
