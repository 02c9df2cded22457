"""Delivery records (one event to one endpoint), each endpoint's delivery log, and the due set.

A delivery's id is its ``webhook-id``: fixed when the event is emitted, the same on every attempt. Its body is
serialized once and stored, so every attempt sends the same bytes (only the timestamp and signature change).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from batchq import keys

#: Deliveries kept in an endpoint's log (the newest).
LOG_CAP = 1000
#: Delivery records outlive their retry period by this long, so the log can show how they ended.
RECORD_TTL_EXTRA_S = 7 * 24 * 3600
_INT_FIELDS = ("attempts", "created_at", "next_attempt_at", "last_attempt_at", "last_response_code", "delivered_at")

# KEYS: 1 emitted marker, 2 due set, then per delivery: its record hash, its endpoint's log.
# ARGV: 1 marker TTL (s), 2 due score (s), 3 log score (ms), 4 record TTL (s), 5 log cap, 6.. record JSON each.
# Returns 1 when this call emitted the event, 0 when the marker was already set (nothing written).
EMIT_LUA = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then return 0 end
local cap = tonumber(ARGV[5])
for i = 6, #ARGV do
  local rec = cjson.decode(ARGV[i])
  local hkey, log = KEYS[(i - 6) * 2 + 3], KEYS[(i - 6) * 2 + 4]
  for field, value in pairs(rec) do redis.call('HSET', hkey, field, tostring(value)) end
  redis.call('EXPIRE', hkey, tonumber(ARGV[4]))
  redis.call('ZADD', log, tonumber(ARGV[3]), rec['id'])
  redis.call('ZREMRANGEBYRANK', log, 0, -cap - 1)
  redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), rec['id'])
end
return 1
"""

# KEYS: 1 due set. ARGV: 1 now (s), 2 lease (s), 3 limit.
# Returns up to ``limit`` ids due by now, each moved to now + lease (so the next round does not resend it).
CLAIM_LUA = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local until_ = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], until_, id) end
return ids
"""


@dataclass(frozen=True)
class NewDelivery:
    id: str
    endpoint_id: str
    account: str
    event_id: str
    event_type: str
    batch_id: str
    body: bytes
    created_at: int

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint_id": self.endpoint_id,
            "account": self.account,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "batch_id": self.batch_id,
            "body": self.body.decode("utf-8"),
            "status": "pending",
            "attempts": 0,
            "created_at": self.created_at,
            "next_attempt_at": self.created_at,
        }


class DeliveryStore:
    def __init__(self, client: redis.Redis[bytes]) -> None:
        self.redis = client
        self._emit = client.register_script(EMIT_LUA)
        self._claim = client.register_script(CLAIM_LUA)

    def emit(
        self, marker: str, deliveries: list[NewDelivery], *, marker_ttl_s: int, due_at: float, record_ttl_s: int
    ) -> bool:
        """Write the deliveries and the marker in one step; False (nothing written) if the marker was set."""
        keys_: list[str] = [marker, keys.webhook_due()]
        for d in deliveries:
            keys_ += [keys.webhook_delivery(d.id), keys.webhook_deliveries(d.endpoint_id)]
        created_ms = deliveries[0].created_at * 1000 if deliveries else 0
        args: list[Any] = [marker_ttl_s, due_at, created_ms, record_ttl_s, LOG_CAP]
        args += [json.dumps(d.record()) for d in deliveries]
        return bool(self._emit(keys=keys_, args=args))

    def get(self, delivery_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(keys.webhook_delivery(delivery_id))
        if not raw:
            return None
        record: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
        for name in _INT_FIELDS:
            if record.get(name) not in (None, ""):
                record[name] = int(float(record[name]))
            else:
                record[name] = None
        return record

    def account_of(self, delivery_id: str) -> str:
        """The account the delivery belongs to ("" when it is gone): the key its attempts share threads under."""
        raw = self.redis.hget(keys.webhook_delivery(delivery_id), "account")
        return raw.decode() if raw is not None else ""

    def update(self, delivery_id: str, fields: dict[str, Any], *, due_at: float | None) -> None:
        """Record an attempt's result; ``due_at`` re-arms the due set, None takes the delivery out of it."""
        mapping: dict[str | bytes, str] = {k: "" if v is None else str(v) for k, v in fields.items()}
        with self.redis.pipeline() as pipe:
            pipe.hset(keys.webhook_delivery(delivery_id), mapping=mapping)
            if due_at is None:
                pipe.zrem(keys.webhook_due(), delivery_id)
            else:
                pipe.zadd(keys.webhook_due(), {delivery_id: due_at})
            pipe.execute()

    def unschedule(self, delivery_id: str) -> None:
        self.redis.zrem(keys.webhook_due(), delivery_id)

    def for_endpoint(
        self, endpoint_id: str, *, limit: int, after: str | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """The endpoint's deliveries, newest first, from after ``after``; and whether more follow."""
        ids = [i.decode() for i in self.redis.zrevrange(keys.webhook_deliveries(endpoint_id), 0, -1)]
        if after is not None:
            ids = ids[ids.index(after) + 1 :] if after in ids else []
        found = [r for r in (self.get(i) for i in ids[: limit + 1]) if r is not None]
        return found[:limit], len(found) > limit

    def claim_due(self, now: float, *, lease_s: float, limit: int) -> list[str]:
        return [i.decode() for i in self._claim(keys=[keys.webhook_due()], args=[now, lease_s, limit])]

    def drop_log(self, endpoint_id: str) -> None:
        self.redis.delete(keys.webhook_deliveries(endpoint_id))


def public_delivery(record: dict[str, Any]) -> dict[str, Any]:
    """A delivery as the API shows it (never the secret; the body is the event already known to the owner)."""
    return {
        "id": record["id"],
        "object": "webhook_delivery",
        "endpoint_id": record["endpoint_id"],
        "event_id": record["event_id"],
        "event_type": record["event_type"],
        "data": {"id": record["batch_id"]},
        "status": record["status"],
        "attempts": record["attempts"],
        "last_response_code": record.get("last_response_code"),
        "last_error": record.get("last_error") or None,
        "created_at": record["created_at"],
        "last_attempt_at": record.get("last_attempt_at"),
        "next_attempt_at": record.get("next_attempt_at") if record["status"] == "pending" else None,
        "delivered_at": record.get("delivered_at"),
    }
