"""/v1/webhook_endpoints: create (the secret shown once), list, retrieve, delete, and the delivery log."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request

from batchq.api.bodies import CreateBodyDep
from batchq.api.deps import AccountDep, ServicesDep
from batchq.api.errors import BadRequestProblem, NotFoundProblem
from batchq.api.params import list_limit
from batchq.webhooks.deliveries import DeliveryStore, public_delivery
from batchq.webhooks.registry import (
    EVENT_TYPES,
    MAX_ENDPOINTS_PER_ACCOUNT,
    Endpoint,
    EndpointLimitReached,
    EndpointRegistry,
)
from batchq.webhooks.targets import WebhookTargetError, resolve_target

router = APIRouter(prefix="/webhook_endpoints", tags=["webhooks"])

#: Longest endpoint name (the openai SDK's optional ``name``).
MAX_NAME_CHARS = 256


@router.post("")
def create_webhook_endpoint(
    request: Request, body: CreateBodyDep, services: ServicesDep, account: AccountDep
) -> dict[str, Any]:
    """Register a URL for batch events; the answer holds the signing secret, shown this once."""
    data = _json_object(request.headers.get("content-type"), body)
    url = data.get("url")
    if url is None:
        raise BadRequestProblem("Missing required parameter: 'url'.", code="missing_required_parameter", param="url")
    if not isinstance(url, str):
        raise BadRequestProblem("Invalid type for 'url': expected a string.", code="invalid_type", param="url")
    events = _events(data)
    name = data.get("name", "")
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
        raise BadRequestProblem(
            f"Invalid 'name': expected a string of at most {MAX_NAME_CHARS} characters.",
            code="invalid_value",
            param="name",
        )
    try:  # DNS may block: this handler runs in the threadpool, off the event loop
        resolve_target(url, allow_private=services.settings.webhook_allow_private)
    except WebhookTargetError as exc:
        raise BadRequestProblem(f"Invalid 'url': {exc}", code="invalid_url", param="url") from None
    try:
        endpoint = EndpointRegistry(services.redis).create(account, url, events, name)
    except EndpointLimitReached:
        raise BadRequestProblem(
            f"An account may have at most {MAX_ENDPOINTS_PER_ACCOUNT} webhook endpoints; delete one first.",
            code="too_many_webhook_endpoints",
        ) from None
    return endpoint.public(with_secret=True)


@router.get("")
def list_webhook_endpoints(
    services: ServicesDep, account: AccountDep, after: str | None = None, limit: str | None = None
) -> dict[str, Any]:
    """The account's webhook endpoints, newest first (secrets are never shown again)."""
    n = list_limit(limit, default=20, maximum=100)
    endpoints = EndpointRegistry(services.redis).all(account)
    if after is not None:
        ids = [e.id for e in endpoints]
        if after not in ids:
            raise BadRequestProblem(
                f"Invalid 'after': no webhook endpoint {after!r}.", code="invalid_value", param="after"
            )
        endpoints = endpoints[ids.index(after) + 1 :]
    page = [e.public() for e in endpoints[:n]]
    return _page(page, has_more=len(endpoints) > n)


@router.get("/{endpoint_id}")
def read_webhook_endpoint(endpoint_id: str, services: ServicesDep, account: AccountDep) -> dict[str, Any]:
    """Retrieve a webhook endpoint (without its secret)."""
    return _get(services, endpoint_id, account).public()


@router.delete("/{endpoint_id}")
def delete_webhook_endpoint(endpoint_id: str, services: ServicesDep, account: AccountDep) -> dict[str, Any]:
    """Delete a webhook endpoint; deliveries still pending for it stop."""
    endpoint = _get(services, endpoint_id, account)
    EndpointRegistry(services.redis).delete(endpoint.id, account)
    DeliveryStore(services.redis).drop_log(endpoint.id)
    return {"id": endpoint.id, "object": "webhook_endpoint.deleted", "deleted": True}


@router.get("/{endpoint_id}/deliveries")
def list_webhook_deliveries(
    endpoint_id: str, services: ServicesDep, account: AccountDep, after: str | None = None, limit: str | None = None
) -> dict[str, Any]:
    """The endpoint's delivery log, newest first: status, attempts, last response code, next attempt."""
    endpoint = _get(services, endpoint_id, account)
    n = list_limit(limit, default=20, maximum=100)
    records, has_more = DeliveryStore(services.redis).for_endpoint(endpoint.id, limit=n, after=after)
    return _page([public_delivery(r) for r in records], has_more=has_more)


def _get(services: ServicesDep, endpoint_id: str, account: str) -> Endpoint:
    endpoint = EndpointRegistry(services.redis).get(endpoint_id, account)
    if endpoint is None:
        raise NotFoundProblem(
            f"No such webhook endpoint: {endpoint_id}", code="webhook_endpoint_not_found", param="endpoint_id"
        )
    return endpoint


def _page(data: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def _json_object(content_type: str | None, body: bytes) -> dict[str, Any]:
    if not (content_type or "").lower().startswith("application/json"):
        raise BadRequestProblem(
            "The request body must be JSON (Content-Type: application/json).", code="invalid_content_type"
        )
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequestProblem("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequestProblem("The request body must be a JSON object.", code="invalid_json")
    return data


def _events(data: dict[str, Any]) -> list[str]:
    """``events`` (or the openai SDK's ``event_types``): a non-empty list of known types; all four when absent."""
    param = "events" if "events" in data or "event_types" not in data else "event_types"
    raw = data.get(param)
    if raw is None:
        return list(EVENT_TYPES)
    if not isinstance(raw, list) or not raw or not all(isinstance(e, str) for e in raw):
        raise BadRequestProblem(
            f"Invalid type for '{param}': expected a non-empty array of event types.", code="invalid_type", param=param
        )
    unknown = [e for e in raw if e not in EVENT_TYPES]
    if unknown:
        raise BadRequestProblem(
            f"Invalid value for '{param}': {unknown[0]!r}. Supported values are: "
            + ", ".join(repr(e) for e in EVENT_TYPES)
            + ".",
            code="invalid_value",
            param=param,
        )
    return list(dict.fromkeys(raw))
