"""Batch records and their status transitions in Redis.

The invariant kept here: a status moves only along the allowed edges, and its timestamp is set in the same step
(one Lua script). A batch leaves the active sets in that same step when it becomes final.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, cast

import redis

from batchq import keys
from batchq.schemas import FINAL_STATUSES, Batch
from batchq.state.lines import script
from batchq.state.records import STATUS_TIMESTAMP, BatchRecord, decode_record, encode_fields, to_batch


class BatchState:
    """Reads and writes batch records. One instance per process; safe to share between threads."""

    def __init__(self, client: redis.Redis[bytes]) -> None:
        self.redis = client
        self._transition = client.register_script(script("transition.lua"))
        self._start = client.register_script(script("start.lua"))

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
                    pipe.hset(keys.batch_record(record["id"]), mapping=encode_fields(record))
                    pipe.sadd(active_key, record["id"])
                    pipe.sadd(keys.active_batches(), record["id"])
                    pipe.zadd(keys.account_batches(account), {record["id"]: int(time.time() * 1000)})
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def get_record(self, batch_id: str) -> BatchRecord | None:
        return decode_record(self.redis.hgetall(keys.batch_record(batch_id)))

    def set_fields(self, batch_id: str, **fields: Any) -> None:
        self.redis.hset(keys.batch_record(batch_id), mapping=encode_fields(fields))

    def counts(self, batch_id: str) -> dict[str, int]:
        raw = self.redis.hgetall(keys.batch_counts(batch_id))
        return {k.decode(): int(v) for k, v in raw.items()}

    def get(self, batch_id: str, account: str | None = None) -> Batch | None:
        """The Batch object (record + live counters); None if unknown or owned by another account."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.batch_record(batch_id))
            pipe.hgetall(keys.batch_counts(batch_id))
            raw, raw_counts = pipe.execute()
        record = decode_record(raw)
        if record is None or (account is not None and record.account != account):
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

    def transition(self, batch_id: str, allowed_from: Iterable[str], to: str) -> str | None:
        """Move the batch to ``to`` if its status is one of ``allowed_from``.

        Returns the previous status when it moved, None when it did not (unknown batch or a status not allowed).
        """
        allowed = list(allowed_from)
        account, input_file_id = self.redis.hmget(keys.batch_record(batch_id), ["account", "input_file_id"])
        if account is None:
            return None
        previous = self._transition(
            keys=[
                keys.batch_record(batch_id),
                keys.account_active(account.decode()),
                keys.active_batches(),
                keys.file_readers(input_file_id.decode() if input_file_id else ""),
            ],
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

    def start(self, batch_id: str, total: int, model: str | None) -> bool:
        """Write the validated total (and model) while the batch still validates; False if it left that status."""
        return bool(self._start(keys=[keys.batch_record(batch_id)], args=[total, model or ""]))

    def drop_scratch(self, batch_id: str, ttl_s: int) -> None:
        """Let the per-line keys go: soon, not at once, so a finalize still reading them is not cut short."""
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys.batch_scratch(batch_id):
                pipe.expire(key, ttl_s)
            pipe.execute()
