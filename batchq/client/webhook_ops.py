"""The operations of ``client.webhooks``, written once for both clients, and the objects they return.

Plus the receiver's side, :func:`verify`: check a delivery's signature and read its event (pure, no I/O).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from batchq.client.connection import Connection
from batchq.client.effects import Op
from batchq.client.pages import Listing
from batchq.client.retrying import send
from batchq.webhooks.signing import DEFAULT_TOLERANCE_S, verify_webhook


class WebhookEndpoint(BaseModel):
    """A registered URL for batch events (``secret`` only in the answer of ``create``)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    events: list[str]
    created_at: int
    secret: str | None = None
    """``whsec_…``: shown once, when the endpoint is created."""


class WebhookEndpointDeleted(BaseModel):
    id: str
    object: Literal["webhook_endpoint.deleted"] = "webhook_endpoint.deleted"
    deleted: bool


class WebhookDelivery(BaseModel):
    """One event's delivery to one endpoint, as the delivery log shows it."""

    model_config = ConfigDict(extra="allow")

    id: str
    """The ``webhook-id`` header of every attempt."""
    object: Literal["webhook_delivery"] = "webhook_delivery"
    event_id: str
    event_type: str
    status: str
    """``pending``, ``delivered`` or ``failed``."""
    attempts: int
    last_response_code: int | None = None
    last_error: str | None = None
    created_at: int
    next_attempt_at: int | None = None
    delivered_at: int | None = None


def endpoint_path(endpoint_id: str, suffix: str = "") -> str:
    return f"/webhook_endpoints/{quote(endpoint_id, safe='')}{suffix}"


def create_webhook_endpoint(conn: Connection, url: str, *, events: Sequence[str] | None = None) -> Op[WebhookEndpoint]:
    """Register ``url`` for batch events (all four unless ``events`` names some); keep the returned ``secret``."""
    body: dict[str, Any] = {"url": url, **({"events": list(events)} if events else {})}
    response = yield from send(conn, "POST", "/webhook_endpoints", json=body, max_retries=0)
    return WebhookEndpoint.model_validate(response.json())


def retrieve_webhook_endpoint(conn: Connection, endpoint_id: str) -> Op[WebhookEndpoint]:
    """The endpoint (without its secret)."""
    response = yield from send(conn, "GET", endpoint_path(endpoint_id))
    return WebhookEndpoint.model_validate(response.json())


def list_webhook_endpoints(
    conn: Connection, *, after: str | None = None, limit: int | None = None
) -> Op[Listing[WebhookEndpoint]]:
    """One page of the account's endpoints, newest first."""
    response = yield from send(conn, "GET", "/webhook_endpoints", params={"after": after, "limit": limit})
    return _listing(
        response.json(), WebhookEndpoint, lambda last: list_webhook_endpoints(conn, after=last, limit=limit)
    )


def delete_webhook_endpoint(conn: Connection, endpoint_id: str) -> Op[WebhookEndpointDeleted]:
    """Delete the endpoint; its pending deliveries stop."""
    response = yield from send(conn, "DELETE", endpoint_path(endpoint_id))
    return WebhookEndpointDeleted.model_validate(response.json())


def list_webhook_deliveries(
    conn: Connection, endpoint_id: str, *, after: str | None = None, limit: int | None = None
) -> Op[Listing[WebhookDelivery]]:
    """One page of the endpoint's delivery log, newest first."""
    path = endpoint_path(endpoint_id, "/deliveries")
    response = yield from send(conn, "GET", path, params={"after": after, "limit": limit})
    return _listing(
        response.json(),
        WebhookDelivery,
        lambda last: list_webhook_deliveries(conn, endpoint_id, after=last, limit=limit),
    )


def verify(
    payload: str | bytes, headers: Mapping[str, str], secret: str, *, tolerance_s: int = DEFAULT_TOLERANCE_S
) -> dict[str, Any]:
    """Check a delivery's signature and return its event; raises ``WebhookVerificationError`` if it is not ours."""
    return verify_webhook(payload, headers, secret, tolerance_s=tolerance_s)


def _listing(raw: Any, model: type[Any], after: Any) -> Listing[Any]:
    data = [model.model_validate(item) for item in raw.get("data", [])]
    return Listing(data, bool(raw.get("has_more")), raw.get("first_id"), raw.get("last_id"), after)
