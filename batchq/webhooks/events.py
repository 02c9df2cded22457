"""Batch events: the one function called where a batch reaches a final status.

``emit_batch_event`` writes one delivery per subscribed endpoint (and the "emitted" marker, in the same Redis
script, so a finalize that runs twice emits once), arms each in the due set, and hands each to ``send`` (the
Celery task). If sending fails or there is no sender, the sweeper's drain sends them from the due set: the
event is durable once the script ran.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable

import redis

from batchq import keys
from batchq.webhooks.deliveries import RECORD_TTL_EXTRA_S, DeliveryStore, NewDelivery
from batchq.webhooks.registry import EndpointRegistry

log = logging.getLogger(__name__)

#: A callable that enqueues the delivery task for one delivery id.
Sender = Callable[[str], None]

#: Final batch status -> event type.
EVENT_FOR_STATUS: dict[str, str] = {
    "completed": "batch.completed",
    "failed": "batch.failed",
    "expired": "batch.expired",
    "cancelled": "batch.cancelled",
}
#: How long the "emitted" marker of a (batch, event) lives: far longer than any finalize retry.
MARKER_TTL_S = 30 * 24 * 3600
#: A delivery handed to the task is re-sent by the sweeper only if no attempt ran within this long.
DISPATCH_GRACE_S = 120.0
#: Retry period used when the caller passes none (BATCHQ_WEBHOOK_RETRY_PERIOD_S's default).
DEFAULT_RETRY_PERIOD_S = 24 * 3600


def event_id(batch_id: str, event_type: str) -> str:
    """``evt_…``: derived from the batch and type, so a repeated emission could only ever name the same event."""
    return "evt_" + hashlib.sha256(f"{batch_id}:{event_type}".encode()).hexdigest()[:24]


def delivery_id(batch_id: str, event_type: str, endpoint_id: str) -> str:
    """``msg_…``: the ``webhook-id`` of this event at this endpoint, the same on every retry."""
    return "msg_" + hashlib.sha256(f"{batch_id}:{event_type}:{endpoint_id}".encode()).hexdigest()[:24]


def event_body(batch_id: str, event_type: str, created_at: int) -> bytes:
    """The event as sent: thin (receivers fetch the batch), serialized once."""
    event = {
        "id": event_id(batch_id, event_type),
        "object": "event",
        "type": event_type,
        "created_at": created_at,
        "data": {"id": batch_id},
    }
    return json.dumps(event, separators=(",", ":")).encode()


def emit_batch_event(
    client: redis.Redis[bytes],
    send: Sender | None,
    account: str,
    batch_id: str,
    status: str,
    *,
    retry_period_s: int = DEFAULT_RETRY_PERIOD_S,
    now: float | None = None,
) -> list[str]:
    """Emit the event of a batch that reached ``status``; returns the new delivery ids ([] if emitted before).

    Never raises: a webhook problem must not fail a batch's finalize (a Redis error is logged; the batch's
    own status write, made before this call, stands).
    """
    event_type = EVENT_FOR_STATUS.get(status)
    if event_type is None:
        return []
    try:
        return _emit(client, send, account, batch_id, event_type, retry_period_s, time.time() if now is None else now)
    except redis.RedisError:
        log.exception("could not emit %s for batch %s", event_type, batch_id)
        return []


def _emit(
    client: redis.Redis[bytes],
    send: Sender | None,
    account: str,
    batch_id: str,
    event_type: str,
    retry_period_s: int,
    now: float,
) -> list[str]:
    created = int(now)
    body = event_body(batch_id, event_type, created)
    deliveries = [
        NewDelivery(
            delivery_id(batch_id, event_type, e.id),
            e.id,
            account,
            event_id(batch_id, event_type),
            event_type,
            batch_id,
            body,
            created,
        )  # fmt: skip
        for e in EndpointRegistry(client).subscribed(account, event_type)
    ]
    emitted = DeliveryStore(client).emit(
        keys.webhook_emitted(batch_id, event_type),
        deliveries,
        marker_ttl_s=MARKER_TTL_S,
        due_at=now + DISPATCH_GRACE_S if send is not None else now,
        record_ttl_s=retry_period_s + RECORD_TTL_EXTRA_S,
    )
    if not emitted:
        return []
    ids = [d.id for d in deliveries]
    for delivery in ids:
        if send is None:
            continue
        try:
            send(delivery)
        except Exception:  # noqa: BLE001 - the broker is down: the due set still holds it for the sweeper
            log.warning("could not enqueue webhook delivery %s; the sweeper will", delivery, exc_info=True)
    if ids:
        log.info("batch %s: %s to %d endpoint(s)", batch_id, event_type, len(ids))
    return ids
