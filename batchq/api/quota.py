"""BATCHQ_MAX_ACCOUNT_STORAGE_BYTES: an upload may not take its account's stored bytes beyond the quota.

Stored bytes are the per-account counter the file registry keeps (``keys.metrics_storage_bytes``). Parallel uploads
must not all pass on the same free room, so an upload reserves bytes while it streams, in one script that counts
stored bytes + what every other upload in progress holds + this one's need against the quota. It reserves ahead
(the declared Content-Length, else 8 MiB steps), so a 500 MB upload makes one round trip, or a few dozen.
Once the file is registered (the stored counter moved) or refused, the reservation goes. A reservation lapses on
its own a little after the upload deadline, so an API process that dies mid-upload holds nothing for long.
"""

from __future__ import annotations

import secrets

import redis

from batchq import keys
from batchq.api.errors import PayloadTooLargeProblem

#: Bytes reserved ahead of what an upload without a Content-Length has sent.
RESERVE_STEP_B = 8 * 1024 * 1024
#: A reservation outlives the upload deadline by this much (then it is an orphan: its API process died).
LEASE_SLACK_S = 60

# KEYS: 1 stored bytes (hash: account -> bytes), 2 the account's reservations (hash: upload -> bytes),
#       3 their leases (zset: upload -> expiry ms). ARGV: 1 account, 2 upload id, 3 bytes this upload needs in all,
#       4 bytes it would like in all (>= needed), 5 quota, 6 lease (ms).
# Returns the bytes now reserved for the upload (>= needed, at most what fits), or -1 when even `needed` does not fit.
RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
end
local others = 0
local held = redis.call('HGETALL', KEYS[2])
for i = 1, #held, 2 do
  if held[i] ~= ARGV[2] then others = others + tonumber(held[i + 1]) end
end
local stored = math.max(tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0'), 0)
local room = tonumber(ARGV[5]) - stored - others
if tonumber(ARGV[3]) > room then return -1 end
local granted = math.min(tonumber(ARGV[4]), room)
redis.call('HSET', KEYS[2], ARGV[2], granted)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[6])
return granted
"""


class StorageQuota:
    """One upload's share of its account's quota. Not thread-safe: one upload, one caller at a time."""

    def __init__(
        self, client: redis.Redis[bytes], account: str, quota_b: int, *, upload_timeout_s: float, expected_b: int = 0
    ) -> None:
        self.redis = client
        self.account = account
        self.quota_b = quota_b
        self.reserved_b = 0
        self._expected_b = expected_b
        self._lease_ms = int((upload_timeout_s + LEASE_SLACK_S) * 1000)
        self._upload_id = secrets.token_hex(8)
        self._reserve = client.register_script(RESERVE_LUA)

    def needs_round_trip(self, size_b: int) -> bool:
        return size_b > self.reserved_b

    def reserve(self, size_b: int) -> None:
        """Hold at least ``size_b`` bytes (the upload's size so far) of the quota.

        Raises:
            PayloadTooLargeProblem: ``storage_quota_exceeded``; stored and reserved bytes leave no room.
        """
        # Ask for the whole declared body at once (framing included: a few hundred bytes too many, never refused
        # for it, since the script grants what fits), or a step ahead of a body without a Content-Length.
        wanted = max(size_b, self._expected_b) if self._expected_b else size_b + RESERVE_STEP_B
        granted = int(
            self._reserve(
                keys=[
                    keys.metrics_storage_bytes(),
                    keys.storage_reservations(self.account),
                    keys.storage_reservation_leases(self.account),
                ],
                args=[self.account, self._upload_id, size_b, wanted, self.quota_b, self._lease_ms],
            )
        )
        if granted < 0:
            raise PayloadTooLargeProblem(
                f"This upload would take the account's files beyond its storage quota of {self.quota_b} bytes "
                "(BATCHQ_MAX_ACCOUNT_STORAGE_BYTES); delete files first.",
                code="storage_quota_exceeded",
                param="file",
            )
        self.reserved_b = granted

    def release(self) -> None:
        """Give the reservation back (after the file was registered, or refused)."""
        if self.reserved_b == 0:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hdel(keys.storage_reservations(self.account), self._upload_id)
            pipe.zrem(keys.storage_reservation_leases(self.account), self._upload_id)
            pipe.execute()
        self.reserved_b = 0
