"""Batch records, status transitions and per-line outcomes in Redis.

Two invariants live here, each kept by one Lua script so no crash or race can split them:
- a status moves only along the allowed edges, and its timestamp is set in the same step;
- a line's outcome is recorded once (first write wins) and the counters move with it, never without it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import redis

from batchq import keys
from batchq.schemas import FINAL_STATUSES, Batch, BatchErrors, BatchUsage, RequestCounts

#: Timestamp field set when a batch enters each status.
STATUS_TIMESTAMP = {
    "in_progress": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
}

# KEYS: 1=batch record hash 2=account active set 3=global active set
# ARGV: 1=comma list of statuses allowed as the current one 2=new status 3=timestamp field ('' = none)
#       4=now (unix s) 5='1' when the new status is final
# Returns the status the batch had before ('' when it does not exist). It moved only if that is in ARGV[1].
_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return '' end
for allowed in string.gmatch(ARGV[1], '[^,]+') do
  if allowed == current then
    redis.call('HSET', KEYS[1], 'status', ARGV[2])
    if ARGV[3] ~= '' then redis.call('HSETNX', KEYS[1], ARGV[3], ARGV[4]) end
    if ARGV[5] == '1' then
      local id = redis.call('HGET', KEYS[1], 'id')
      redis.call('SREM', KEYS[2], id)
      redis.call('SREM', KEYS[3], id)
    end
    return current
  end
end
return current
"""

# KEYS: 1=outcomes hash 2=counts hash 3=leases hash 4=batch record hash
# ARGV: 1=line number 2=outcome JSON 3='completed'|'failed' 4=extra counter ('' or e.g. 'cancelled')
#       5=input tokens 6=output tokens 7=total tokens 8=cached tokens 9=reasoning tokens
# Returns {recorded (1 = this call wrote it, 0 = an earlier outcome stands), done, total}.
_RECORD_OUTCOME = """
local recorded = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
if recorded == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  if ARGV[4] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[4], 1) end
  if ARGV[5] ~= '0' then redis.call('HINCRBY', KEYS[2], 'input_tokens', ARGV[5]) end
  if ARGV[6] ~= '0' then redis.call('HINCRBY', KEYS[2], 'output_tokens', ARGV[6]) end
  if ARGV[7] ~= '0' then redis.call('HINCRBY', KEYS[2], 'total_tokens', ARGV[7]) end
  if ARGV[8] ~= '0' then redis.call('HINCRBY', KEYS[2], 'cached_tokens', ARGV[8]) end
  if ARGV[9] ~= '0' then redis.call('HINCRBY', KEYS[2], 'reasoning_tokens', ARGV[9]) end
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[4], 'last_progress_ms', t[1] * 1000 + math.floor(t[2] / 1000))
end
redis.call('HDEL', KEYS[3], ARGV[1])
local c = redis.call('HMGET', KEYS[2], 'completed', 'failed')
local total = tonumber(redis.call('HGET', KEYS[4], 'total') or '0')
return {recorded, (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0), total}
"""

# KEYS: 1=leases hash 2=outcomes hash
# ARGV: 1=line number 2=lease length (ms)
# Returns -1 when the line has an outcome, 0 when this caller now holds the lease, else the ms left on
# the live lease another worker holds.
_TAKE_LEASE = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return -1 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if held > now then return held - now end
redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2]))
return 0
"""

# KEYS: 1=leases hash   ARGV: 1=line number 2=lease length (ms)
# Pushes the lease's end out to now + length on Redis's clock (the holder, before each upstream attempt).
_EXTEND_LEASE = """
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], ARGV[1], t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2]))
return 1
"""

_JSON_FIELDS = ("metadata", "errors", "estimated_cost")
_INT_FIELDS = (
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)


@dataclass(frozen=True)
class OutcomeRecorded:
    recorded: bool
    """True when this call's outcome is the one that stands (first write wins)."""
    done: int
    total: int

    @property
    def batch_done(self) -> bool:
        return self.total > 0 and self.done >= self.total


@dataclass(frozen=True)
class Lease:
    acquired: bool
    done: bool
    """The line already has an outcome."""
    held_for_s: float = 0.0
    """When another worker holds it: how long its lease still runs."""


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def from_body(cls, body: Any) -> Usage:
        """Token counts from an upstream response body (chat, completions or embeddings); zeros if absent."""
        usage = body.get("usage") if isinstance(body, dict) else None
        if not isinstance(usage, dict):
            return cls()

        def num(value: Any) -> int:
            return int(value) if isinstance(value, int | float) and value >= 0 else 0

        prompt = num(usage.get("prompt_tokens", usage.get("input_tokens")))
        completion = num(usage.get("completion_tokens", usage.get("output_tokens")))
        total = num(usage.get("total_tokens")) or prompt + completion
        details = usage.get("prompt_tokens_details") or {}
        out_details = usage.get("completion_tokens_details") or {}
        cached = num(details.get("cached_tokens")) if isinstance(details, dict) else 0
        reasoning = num(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else 0
        return cls(prompt, completion, total, cached, reasoning)


class BatchState:
    """Reads and writes batch records. One instance per process; safe to share between threads."""

    def __init__(self, client: redis.Redis[bytes]) -> None:
        self.redis = client
        self._transition = client.register_script(_TRANSITION)
        self._record = client.register_script(_RECORD_OUTCOME)
        self._lease = client.register_script(_TAKE_LEASE)
        self._extend = client.register_script(_EXTEND_LEASE)

    # --- records -------------------------------------------------------------------------------

    def create(self, record: dict[str, Any], max_active: int) -> bool:
        """Store a new batch in ``validating``; False when the account already has ``max_active`` active batches."""
        account = record["account"]
        active_key = keys.account_active(account)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(active_key)
                    if max_active > 0 and cast(int, pipe.scard(active_key)) >= max_active:
                        pipe.reset()
                        return False
                    pipe.multi()
                    pipe.hset(keys.batch_record(record["id"]), mapping=_encode(record))
                    pipe.sadd(active_key, record["id"])
                    pipe.sadd(keys.active_batches(), record["id"])
                    pipe.zadd(keys.account_batches(account), {record["id"]: int(time.time() * 1000)})
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def get_record(self, batch_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(keys.batch_record(batch_id))
        return _decode(raw) if raw else None

    def set_fields(self, batch_id: str, **fields: Any) -> None:
        self.redis.hset(keys.batch_record(batch_id), mapping=_encode(fields))

    def counts(self, batch_id: str) -> dict[str, int]:
        raw = self.redis.hgetall(keys.batch_counts(batch_id))
        return {k.decode(): int(v) for k, v in raw.items()}

    def get(self, batch_id: str, account: str | None = None) -> Batch | None:
        """The Batch object (record + live counters); None if unknown or owned by another account."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.batch_record(batch_id))
            pipe.hgetall(keys.batch_counts(batch_id))
            raw, raw_counts = pipe.execute()
        if not raw:
            return None
        record = _decode(raw)
        if account is not None and record.get("account") != account:
            return None
        return to_batch(record, {k.decode(): int(v) for k, v in raw_counts.items()})

    def list_ids(self, account: str, after: str | None, limit: int) -> tuple[list[str], bool]:
        """Batch ids newest first, starting after ``after``; returns (ids, has_more)."""
        zkey = keys.account_batches(account)
        start = 0
        if after is not None:
            rank = self.redis.zrevrank(zkey, after)
            if rank is None:
                return [], False
            start = int(rank) + 1
        ids = [i.decode() for i in self.redis.zrevrange(zkey, start, start + limit)]
        return ids[:limit], len(ids) > limit

    def active_ids(self) -> list[str]:
        return [i.decode() for i in self.redis.smembers(keys.active_batches())]

    def delete(self, batch_id: str, account: str) -> None:
        """Forget a batch entirely (its files are deleted by the caller)."""
        with self.redis.pipeline() as pipe:
            pipe.delete(keys.batch_record(batch_id), keys.batch_counts(batch_id), *keys.batch_scratch(batch_id))
            pipe.zrem(keys.account_batches(account), batch_id)
            pipe.srem(keys.account_active(account), batch_id)
            pipe.srem(keys.active_batches(), batch_id)
            pipe.execute()

    # --- transitions -------------------------------------------------------------------------

    def transition(self, batch_id: str, allowed_from: Iterable[str], to: str) -> str | None:
        """Move the batch to ``to`` if its status is one of ``allowed_from``.

        Returns the previous status when it moved, None when it did not (unknown batch or a status not allowed).
        """
        allowed = list(allowed_from)
        account = self.redis.hget(keys.batch_record(batch_id), "account")
        if account is None:
            return None
        previous = self._transition(
            keys=[keys.batch_record(batch_id), keys.account_active(account.decode()), keys.active_batches()],
            args=[
                ",".join(allowed),
                to,
                STATUS_TIMESTAMP.get(to, ""),
                int(time.time()),
                "1" if to in FINAL_STATUSES else "0",
            ],
        )
        previous = previous.decode() if isinstance(previous, bytes) else str(previous)
        return previous if previous in allowed else None

    # --- lines -------------------------------------------------------------------------------

    def take_lease(self, batch_id: str, line: int, lease_s: float) -> Lease:
        """Claim the right to call upstream for ``line`` (unless it is done or another worker is on it)."""
        answer = int(
            self._lease(
                keys=[keys.batch_leases(batch_id), keys.batch_outcomes(batch_id)], args=[line, int(lease_s * 1000)]
            )
        )
        if answer == -1:
            return Lease(acquired=False, done=True)
        return Lease(acquired=answer == 0, done=False, held_for_s=max(answer, 0) / 1000)

    def extend_lease(self, batch_id: str, line: int, lease_s: float) -> None:
        self._extend(keys=[keys.batch_leases(batch_id)], args=[line, int(lease_s * 1000)])

    def release_lease(self, batch_id: str, line: int) -> None:
        self.redis.hdel(keys.batch_leases(batch_id), str(line))

    def record_outcome(
        self,
        batch_id: str,
        line: int,
        outcome: dict[str, Any],
        *,
        success: bool,
        extra_counter: str = "",
        usage: Usage | None = None,
    ) -> OutcomeRecorded:
        """Record the outcome of ``line`` once; later calls for the same line change nothing."""
        u = usage or Usage()
        recorded, done, total = self._record(
            keys=[
                keys.batch_outcomes(batch_id),
                keys.batch_counts(batch_id),
                keys.batch_leases(batch_id),
                keys.batch_record(batch_id),
            ],
            args=[
                line,
                json.dumps(outcome, separators=(",", ":")),
                "completed" if success else "failed",
                extra_counter,
                u.input_tokens,
                u.output_tokens,
                u.total_tokens,
                u.cached_tokens,
                u.reasoning_tokens,
            ],
        )
        return OutcomeRecorded(bool(recorded), int(done), int(total))

    def has_outcome(self, batch_id: str, line: int) -> bool:
        return bool(self.redis.hexists(keys.batch_outcomes(batch_id), str(line)))

    def iter_outcomes(self, batch_id: str, total: int, page: int = 500) -> Iterator[tuple[int, bytes | None]]:
        """(line, outcome JSON or None) for every line in input order, fetched a page at a time."""
        okey = keys.batch_outcomes(batch_id)
        for start in range(0, total, page):
            lines = list(range(start, min(start + page, total)))
            yield from zip(lines, self.redis.hmget(okey, [str(n) for n in lines]), strict=True)

    def missing_lines(self, batch_id: str, total: int) -> list[int]:
        """Lines with no outcome and no live lease."""
        now_ms = int(time.time() * 1000)
        leases = {int(k): int(v) for k, v in self.redis.hgetall(keys.batch_leases(batch_id)).items()}
        missing = []
        for line, value in self.iter_outcomes(batch_id, total):
            if value is None and leases.get(line, 0) <= now_ms:
                missing.append(line)
        return missing

    def attempts(self, batch_id: str, line: int) -> int:
        value = self.redis.hget(keys.batch_attempts(batch_id), str(line))
        return int(value) if value else 0

    def add_attempt(self, batch_id: str, line: int) -> int:
        return int(self.redis.hincrby(keys.batch_attempts(batch_id), str(line), 1))

    def drop_scratch(self, batch_id: str, ttl_s: int) -> None:
        """Let the per-line keys go: soon, not at once, so a finalize still reading them is not cut short."""
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys.batch_scratch(batch_id):
                pipe.expire(key, ttl_s)
            pipe.execute()


# --- encoding ----------------------------------------------------------------------------------


def _encode(fields: dict[str, Any]) -> dict[str | bytes, bytes | float | int | str]:
    out: dict[str | bytes, bytes | float | int | str] = {}
    for name, value in fields.items():
        if value is None:
            continue
        out[name] = json.dumps(value) if name in _JSON_FIELDS else str(value)
    return out


def _decode(raw: dict[bytes, bytes]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for k, v in raw.items():
        name, text = k.decode(), v.decode()
        if name in _JSON_FIELDS:
            record[name] = json.loads(text)
        elif name in _INT_FIELDS or name in ("total", "last_progress_ms", "published"):
            record[name] = int(text)
        else:
            record[name] = text
    return record


def to_batch(record: dict[str, Any], counts: dict[str, int]) -> Batch:
    """The user-facing Batch object from a stored record and the live counters."""
    completed, failed = counts.get("completed", 0), counts.get("failed", 0)
    usage = None
    if record.get("status") in ("in_progress", "finalizing", "cancelling") or record.get("status") in FINAL_STATUSES:
        usage = BatchUsage.model_validate(
            {
                "input_tokens": counts.get("input_tokens", 0),
                "input_tokens_details": {"cached_tokens": counts.get("cached_tokens", 0)},
                "output_tokens": counts.get("output_tokens", 0),
                "output_tokens_details": {"reasoning_tokens": counts.get("reasoning_tokens", 0)},
                "total_tokens": counts.get("total_tokens", 0),
            }
        )
    errors = record.get("errors")
    extra = {name: record[name] for name in ("estimated_cost", "timeout_minutes") if name in record}
    return Batch(
        id=record["id"],
        endpoint=record["endpoint"],
        errors=BatchErrors.model_validate(errors) if errors else None,
        input_file_id=record["input_file_id"],
        completion_window=record["completion_window"],
        status=record["status"],
        output_file_id=record.get("output_file_id"),
        error_file_id=record.get("error_file_id"),
        created_at=record["created_at"],
        in_progress_at=record.get("in_progress_at"),
        expires_at=record.get("expires_at"),
        finalizing_at=record.get("finalizing_at"),
        completed_at=record.get("completed_at"),
        failed_at=record.get("failed_at"),
        expired_at=record.get("expired_at"),
        cancelling_at=record.get("cancelling_at"),
        cancelled_at=record.get("cancelled_at"),
        request_counts=RequestCounts(
            total=int(record.get("total", 0)),
            completed=completed,
            failed=failed,
            cancelled=counts.get("cancelled", 0),
            expired=counts.get("expired", 0),
        ),
        metadata=record.get("metadata"),
        model=record.get("model"),
        usage=usage,
        **extra,
    )
