"""Task names and queues: what the API, the workers and the sweeper agree on by name (the API never imports
worker code)."""

from __future__ import annotations

INTAKE_TASK = "batchq.intake_batch"
REQUEST_TASK = "batchq.process_request"
FINALIZE_TASK = "batchq.finalize_batch"
SWEEP_TASK = "batchq.sweep"
WEBHOOK_TASK = "batchq.deliver_webhook"

#: The request tasks' queue.
REQUEST_QUEUE = "requests"
#: Webhook deliveries' own queue (workers/webhooks.py adds it to every worker consuming "finalize").
WEBHOOK_QUEUE = "webhooks"

QUEUES = ("intake", REQUEST_QUEUE, "finalize", WEBHOOK_QUEUE)

#: batchq's threads pool (batchq/broker/pools.py), as Celery resolves a pool name; ``-P threads`` means this one
#: on the fast path.
THREADS_POOL = "batchq.broker.pools:TaskPool"
#: batchq's Redis transport (batchq/broker/transport.py), as kombu resolves ``broker_transport``.
TRANSPORT = "batchq.broker.transport:Transport"
