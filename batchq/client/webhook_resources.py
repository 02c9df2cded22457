"""``client.webhooks`` declared once for both clients (see :mod:`batchq.client.resources`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchq.client import webhook_ops
from batchq.client.resources import Endpoint
from batchq.webhooks.signing import DEFAULT_TOLERANCE_S


class WebhookEndpoints:
    """``client.webhooks``: register URLs for batch events, read the delivery log, verify what arrives."""

    create = Endpoint(webhook_ops.create_webhook_endpoint)
    retrieve = Endpoint(webhook_ops.retrieve_webhook_endpoint)
    list = Endpoint(webhook_ops.list_webhook_endpoints)
    delete = Endpoint(webhook_ops.delete_webhook_endpoint)
    deliveries = Endpoint(webhook_ops.list_webhook_deliveries)

    @staticmethod
    def verify(
        payload: str | bytes, headers: Mapping[str, str], secret: str, *, tolerance_s: int = DEFAULT_TOLERANCE_S
    ) -> dict[str, Any]:
        """Check a delivery's signature and return its event (no I/O; the same on both clients)."""
        return webhook_ops.verify(payload, headers, secret, tolerance_s=tolerance_s)
