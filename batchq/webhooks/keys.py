"""Redis keys of the webhooks feature, under batchq's one prefix (see ``batchq.keys``)."""

from __future__ import annotations

from batchq.keys import PREFIX


def endpoint(endpoint_id: str) -> str:
    """Hash: id, account, url, events (JSON), name, secret, created_at."""
    return f"{PREFIX}:webhook:endpoint:{endpoint_id}"


def account_endpoints(account: str) -> str:
    """Sorted set of the account's endpoint ids, scored by created_at (ms)."""
    return f"{PREFIX}:account:{account}:webhooks"


def endpoint_deliveries(endpoint_id: str) -> str:
    """Sorted set: the endpoint's delivery log (delivery ids scored by creation, ms), trimmed to the newest."""
    return f"{PREFIX}:webhook:endpoint:{endpoint_id}:deliveries"


def delivery(delivery_id: str) -> str:
    """Hash: one event to one endpoint: body (the exact bytes sent), status, attempts, last answer, next attempt."""
    return f"{PREFIX}:webhook:delivery:{delivery_id}"


def delivery_lock(delivery_id: str) -> str:
    """String: held while one attempt of the delivery is in flight (a duplicate task skips)."""
    return f"{PREFIX}:webhook:delivery:{delivery_id}:lock"


def emitted(batch_id: str, event_type: str) -> str:
    """String (SET NX): the event was emitted once for this batch; a second finalize emits nothing."""
    return f"{PREFIX}:webhook:emitted:{batch_id}:{event_type}"


def due() -> str:
    """Sorted set: delivery id -> when (Unix s) the sweeper should (re)send it if no task has run it by then."""
    return f"{PREFIX}:webhook:due"
