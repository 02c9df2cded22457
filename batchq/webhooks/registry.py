"""Webhook endpoints per account, in Redis: create (the secret shown once), list, retrieve, delete."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis

from batchq import keys
from batchq.webhooks.signing import generate_secret

#: The events an endpoint may subscribe to (and does, when it names none).
EVENT_TYPES: tuple[str, ...] = ("batch.completed", "batch.failed", "batch.expired", "batch.cancelled")
#: Endpoints one account may have.
MAX_ENDPOINTS_PER_ACCOUNT = 100

# KEYS: 1 the account's endpoint set, 2 the new endpoint's hash. ARGV: 1 cap, 2 score (ms), 3 id, 4.. field, value.
# The count and the write in one script, so concurrent creates cannot all pass the cap. Returns 1, or 0 when full.
CREATE_LUA = """
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
return 1
"""


class EndpointLimitReached(Exception):
    """The account already has the most endpoints it may have."""


@dataclass(frozen=True)
class Endpoint:
    id: str
    account: str
    url: str
    events: list[str]
    name: str
    secret: str
    created_at: int

    def public(self, *, with_secret: bool = False) -> dict[str, Any]:
        """The API object: DESIGN.md's fields, plus the openai SDK's names (``event_types``, ``name``)."""
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "webhook_endpoint",
            "url": self.url,
            "events": self.events,
            "created_at": self.created_at,
            "event_types": self.events,
            "name": self.name,
            "signing_secret_hint": self.secret[:10] + "…",
        }
        if with_secret:
            obj["secret"] = obj["signing_secret"] = self.secret
        return obj


def new_endpoint_id() -> str:
    return f"we_{secrets.token_hex(12)}"


class EndpointRegistry:
    def __init__(self, client: redis.Redis[bytes]) -> None:
        self.redis = client
        self._create = client.register_script(CREATE_LUA)

    def create(
        self, account: str, url: str, events: list[str], name: str = "", *, cap: int = MAX_ENDPOINTS_PER_ACCOUNT
    ) -> Endpoint:
        """A new endpoint with a fresh secret.

        Raises:
            EndpointLimitReached: the account already has ``cap`` endpoints (checked in the same step as the write).
        """
        now = int(time.time())
        endpoint = Endpoint(new_endpoint_id(), account, url, events, name, generate_secret(), now)
        record = {
            "id": endpoint.id,
            "account": account,
            "url": url,
            "events": json.dumps(events),
            "name": name,
            "secret": endpoint.secret,
            "created_at": str(now),
        }
        fields = [item for pair in record.items() for item in pair]
        created = self._create(
            keys=[keys.account_webhooks(account), keys.webhook_endpoint(endpoint.id)],
            args=[cap, int(time.time() * 1000), endpoint.id, *fields],
        )
        if not created:
            raise EndpointLimitReached(account)
        return endpoint

    def get(self, endpoint_id: str, account: str | None = None) -> Endpoint | None:
        """The endpoint, or None when unknown or (with ``account``) another account's."""
        raw = self.redis.hgetall(keys.webhook_endpoint(endpoint_id))
        if not raw:
            return None
        r = {k.decode(): v.decode() for k, v in raw.items()}
        if account is not None and r["account"] != account:
            return None
        return Endpoint(
            r["id"],
            r["account"],
            r["url"],
            json.loads(r["events"]),
            r.get("name", ""),
            r["secret"],
            int(r["created_at"]),
        )

    def all(self, account: str) -> list[Endpoint]:
        """The account's endpoints, newest first."""
        ids = [i.decode() for i in self.redis.zrevrange(keys.account_webhooks(account), 0, -1)]
        return [e for e in (self.get(i) for i in ids) if e is not None]

    def subscribed(self, account: str, event_type: str) -> list[Endpoint]:
        return [e for e in self.all(account) if event_type in e.events]

    def delete(self, endpoint_id: str, account: str) -> None:
        """Forget the endpoint; its pending deliveries find it gone and stop."""
        with self.redis.pipeline() as pipe:
            pipe.delete(keys.webhook_endpoint(endpoint_id))
            pipe.zrem(keys.account_webhooks(account), endpoint_id)
            pipe.execute()
