"""Signed batch webhooks (Standard Webhooks, as the official openai SDK verifies them).

Modules, each with one job:

- ``signing``: secrets, signatures and :func:`~batchq.webhooks.signing.verify_webhook` (stdlib only: the client
  re-exports it, so it imports nothing of the server);
- ``targets``: SSRF checks of a webhook URL (scheme, every resolved address);
- ``transport``: one POST to a checked address, short timeouts, no redirects, a capped answer;
- ``schedule``: the retry delays;
- ``registry``: webhook endpoints per account;
- ``deliveries``: delivery records, the per-endpoint delivery log and the due set;
- ``events``: :func:`~batchq.webhooks.events.emit_batch_event`, called where a batch reaches a final status;
- ``attempt``: one delivery attempt and what it leads to;
- ``dispatch``: how deliveries reach the Celery task (the registered sender; the sweeper's drain).

This package's ``__init__`` imports nothing, so ``batchq.webhooks.signing`` stays importable on its own.
"""
