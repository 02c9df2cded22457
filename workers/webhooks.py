"""deliver_webhook: one attempt of one webhook delivery, on its own queue so a slow receiver never delays batches.

Workers started with the documented ``-Q intake,requests,finalize`` consume the ``webhooks`` queue too (added in
``celeryd_after_setup`` when the worker consumes ``finalize``); ``-Q webhooks`` alone runs a webhook-only worker.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, signals

from batchq.broker import WEBHOOK_QUEUE, WEBHOOK_TASK
from batchq.config import Settings, get_settings
from batchq.webhooks.attempt import DeliveryConfig, attempt_delivery
from batchq.webhooks.dispatch import set_sender
from workers.app import app, context

log = logging.getLogger(__name__)


def delivery_config(settings: Settings) -> DeliveryConfig:
    return DeliveryConfig(
        allow_private=settings.webhook_allow_private,
        timeout_s=settings.webhook_timeout_s,
        retry_period_s=settings.webhook_retry_period_s,
        max_countdown_s=settings.max_countdown_s,
    )


@app.task(name=WEBHOOK_TASK, bind=True, max_retries=None, acks_late=True, ignore_result=True)
def deliver_webhook(self: Task, delivery_id: str) -> None:
    cfg = delivery_config(get_settings())
    try:
        outcome = attempt_delivery(context().redis, delivery_id, cfg)
    except Exception as exc:  # Redis unreachable: the due set still holds the delivery; retry soon
        log.warning("webhook %s: attempt failed (%s: %s)", delivery_id, type(exc).__name__, exc)
        raise self.retry(countdown=min(cfg.max_countdown_s, 5.0)) from exc
    countdown = outcome.countdown(cfg)
    if countdown is not None:
        # Below BATCHQ_MAX_COUNTDOWN_S, far under the visibility timeout; longer waits sit in the due set.
        raise self.retry(countdown=max(countdown, 0.05))


set_sender(lambda delivery_id: deliver_webhook.apply_async(args=[delivery_id]))


@signals.celeryd_after_setup.connect
def _consume_webhooks(instance: Any, **_: Any) -> None:
    """A worker that consumes ``finalize`` delivers webhooks too (the documented command names three queues)."""
    queues = instance.app.amqp.queues
    consumed = {q.name for q in queues.consume_from.values()} if queues.consume_from else set(queues)
    if "finalize" in consumed and WEBHOOK_QUEUE not in consumed:
        queues.select_add(WEBHOOK_QUEUE)
        log.info("consuming the %r queue too", WEBHOOK_QUEUE)
