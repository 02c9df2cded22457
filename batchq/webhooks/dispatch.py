"""How deliveries reach the Celery task: the process's registered sender, and the sweeper's drain of the due set.

The worker app registers a sender when it loads its webhook task (``workers/webhooks.py``); code running where
none is registered (the API, tests without a worker) leaves deliveries in the due set for a worker's sweeper.
"""

from __future__ import annotations

import logging
import time

import redis

from batchq import keys as batch_keys
from batchq.webhooks.deliveries import DeliveryStore
from batchq.webhooks.events import DISPATCH_GRACE_S, EVENT_FOR_STATUS, Sender, emit_batch_event

log = logging.getLogger(__name__)

#: Deliveries one drain sends at most (the rest wait for the next round).
DRAIN_LIMIT = 500

_sender: Sender | None = None


def set_sender(sender: Sender | None) -> None:
    """Register how this process enqueues a delivery (the Celery task's ``apply_async``)."""
    global _sender
    _sender = sender


def get_sender() -> Sender | None:
    """The registered sender, or None when this process has none."""
    return _sender


def drain_due(client: redis.Redis[bytes], send: Sender | None, now: float | None = None) -> int:
    """Send every delivery whose due time has passed (a lost task, a long wait over); returns how many were sent.

    Each is claimed for a grace period first, so the next round does not send it again while its task runs.
    """
    if send is None:
        return 0
    store = DeliveryStore(client)
    ids = store.claim_due(time.time() if now is None else now, lease_s=DISPATCH_GRACE_S, limit=DRAIN_LIMIT)
    sent = 0
    for delivery_id in ids:
        try:
            send(delivery_id)
            sent += 1
        except Exception:  # noqa: BLE001 - the broker is down; the claim lapses and a later round retries
            log.warning("could not enqueue webhook delivery %s", delivery_id, exc_info=True)
            break
    return sent


def on_batch_final(client: redis.Redis[bytes], retry_period_s: int, batch_id: str, status: str) -> list[str]:
    """The call for pipeline code where a batch reaches ``status``: emit its event with this process's sender.

    Safe to call again for the same batch and status (the emitted marker makes it a no-op). Never raises.
    """
    if status not in EVENT_FOR_STATUS:
        return []
    try:
        raw = client.hget(batch_keys.batch_record(batch_id), "account")
    except redis.RedisError:
        log.exception("could not emit the %s event of batch %s", status, batch_id)
        return []
    if raw is None:
        return []
    return emit_batch_event(client, get_sender(), raw.decode(), batch_id, status, retry_period_s=retry_period_s)
