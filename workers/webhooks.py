"""deliver_webhook: one attempt of one webhook delivery, on its own queue so a slow receiver never delays batches.

The task hands the attempt to a few background threads (batchq/webhooks/runner.py) and returns at once, so a
receiver that takes seconds never holds a pool slot that intake, request or finalize tasks need. A failed attempt
due again within BATCHQ_MAX_COUNTDOWN_S is re-sent as a countdown task; longer waits, and deliveries lost with a
dying process, are re-sent from the due set by the sweeper.

Workers started with the documented ``-Q intake,requests,finalize`` consume the ``webhooks`` queue too (added in
``celeryd_after_setup`` when the worker consumes ``finalize``); ``-Q webhooks`` alone runs a webhook-only worker.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from batchq.broker import WEBHOOK_QUEUE, WEBHOOK_TASK
from batchq.config import Settings, get_settings
from batchq.webhooks.attempt import DeliveryConfig, attempt_delivery
from batchq.webhooks.deliveries import DeliveryStore
from batchq.webhooks.dispatch import set_sender
from batchq.webhooks.runner import get_runner
from workers.app import app, context

log = logging.getLogger(__name__)


def delivery_config(settings: Settings) -> DeliveryConfig:
    return DeliveryConfig(
        allow_private=settings.webhook_allow_private,
        timeout_s=settings.webhook_timeout_s,
        retry_period_s=settings.webhook_retry_period_s,
        max_countdown_s=settings.max_countdown_s,
    )


def run_attempt(delivery_id: str) -> None:
    """One attempt (on a runner thread); a retry due soon goes back to the queue as a countdown task."""
    cfg = delivery_config(get_settings())
    outcome = attempt_delivery(context().redis, delivery_id, cfg)
    countdown = outcome.countdown(cfg)
    if countdown is not None:
        # At most BATCHQ_MAX_COUNTDOWN_S, far under the visibility timeout; longer waits sit in the due set.
        deliver_webhook.apply_async(args=[delivery_id], countdown=max(countdown, 0.05))


@app.task(name=WEBHOOK_TASK, ignore_result=True)
def deliver_webhook(delivery_id: str) -> None:
    # Keyed by account: one account's slow receivers get a share of the runner's threads, never all of them.
    account = DeliveryStore(context().redis).account_of(delivery_id)
    if not get_runner().submit(lambda: run_attempt(delivery_id), key=account):
        log.warning("webhook %s: too many attempts waiting in this process; the sweeper re-sends it", delivery_id)


set_sender(lambda delivery_id: deliver_webhook.apply_async(args=[delivery_id]))


@signals.celeryd_after_setup.connect
def _consume_webhooks(instance: Any, **_: Any) -> None:
    """A worker that consumes ``finalize`` delivers webhooks too (the documented command names three queues)."""
    queues = instance.app.amqp.queues
    consumed = {q.name for q in queues.consume_from.values()} if queues.consume_from else set(queues)
    if "finalize" in consumed and WEBHOOK_QUEUE not in consumed:
        queues.select_add(WEBHOOK_QUEUE)
        log.info("consuming the %r queue too", WEBHOOK_QUEUE)
