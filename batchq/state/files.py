"""File records in Redis (the bytes live in the object store), and which batches read each file."""

from __future__ import annotations

import builtins
import time
from typing import Any

import redis

from batchq import keys
from batchq.schemas import FINAL_STATUSES, FileObject

_INT_FIELDS = ("bytes", "created_at")
#: Rounds of the optimistic delete before giving up (each lost round means a batch was just created on it).
_DELETE_ROUNDS = 20


class FileRegistry:
    def __init__(self, client: redis.Redis[bytes]) -> None:
        self.redis = client

    def add(
        self,
        *,
        file_id: str,
        account: str,
        filename: str,
        purpose: str,
        size: int,
        storage_key: str,
        created_at: int | None = None,
        expires_after_s: int | None = None,
    ) -> FileObject:
        """Register a stored object as a File (overwrites a record with the same id: derived ids stay stable).

        ``expires_after_s`` sets ``expires_at`` (created_at + seconds) and puts the file on the reaper's list.
        """
        created = created_at if created_at is not None else int(time.time())
        previous = self.redis.hget(keys.file_record(file_id), "bytes")
        record: dict[str, Any] = {
            "id": file_id,
            "account": account,
            "filename": filename,
            "purpose": purpose,
            "bytes": size,
            "created_at": created,
            "storage_key": storage_key,
        }
        if expires_after_s is not None:
            record["expires_at"] = created + expires_after_s
        with self.redis.pipeline() as pipe:
            pipe.hset(keys.file_record(file_id), mapping={k: str(v) for k, v in record.items()})
            pipe.zadd(keys.account_files(account), {file_id: created * 1000})
            if expires_after_s is not None:
                pipe.zadd(keys.files_expiring(), {file_id: record["expires_at"]})
            pipe.hincrby(keys.metrics_storage_bytes(), account, size - int(previous or 0))
            pipe.execute()
        return _to_file(record)

    def record(self, file_id: str, account: str | None = None) -> dict[str, Any] | None:
        raw = self.redis.hgetall(keys.file_record(file_id))
        if not raw:
            return None
        record: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
        for name in _INT_FIELDS:
            record[name] = int(record[name])
        if account is not None and record["account"] != account:
            return None
        return record

    def get(self, file_id: str, account: str | None = None) -> FileObject | None:
        record = self.record(file_id, account)
        return _to_file(record) if record else None

    def list(
        self, account: str, *, after: str | None, limit: int, order: str, purpose: str | None
    ) -> tuple[list[FileObject], bool]:
        """Files of the account ordered by creation (``desc`` newest first), starting after ``after``."""
        zkey = keys.account_files(account)
        ids = [
            i.decode()
            for i in (self.redis.zrevrange(zkey, 0, -1) if order == "desc" else self.redis.zrange(zkey, 0, -1))
        ]
        if after is not None:
            if after not in ids:
                return [], False
            ids = ids[ids.index(after) + 1 :]
        found: list[FileObject] = []
        for file_id in ids:
            obj = self.get(file_id)
            if obj is None or (purpose is not None and obj.purpose != purpose):
                continue
            if len(found) == limit:
                return found, True
            found.append(obj)
        return found, False

    def delete(self, file_id: str, account: str) -> None:
        """Forget the record, whoever reads it (outputs; the API deletes inputs with ``delete_unless_read``)."""
        size = self.redis.hget(keys.file_record(file_id), "bytes")
        with self.redis.pipeline() as pipe:
            pipe.delete(keys.file_record(file_id), keys.file_readers(file_id))
            pipe.zrem(keys.account_files(account), file_id)
            pipe.zrem(keys.files_expiring(), file_id)
            if size is not None:
                pipe.hincrby(keys.metrics_storage_bytes(), account, -int(size))
            pipe.execute()

    # --- readers: a batch's input may not be deleted while the batch runs ----------------------

    def add_reader(self, file_id: str, batch_id: str) -> bool:
        """Record that ``batch_id`` reads the file; False (nothing recorded) when the file is already gone.

        Call it after the batch record exists: a reader without a batch record counts as stale.
        """
        self.redis.sadd(keys.file_readers(file_id), batch_id)
        if self.redis.exists(keys.file_record(file_id)):
            return True
        self.redis.srem(keys.file_readers(file_id), batch_id)
        return False

    def release_reader(self, file_id: str, batch_id: str) -> None:
        """The batch no longer reads the file (call it when the batch reaches a final status)."""
        self.redis.srem(keys.file_readers(file_id), batch_id)

    def active_readers(self, file_id: str) -> builtins.list[str]:
        """Readers whose batch exists and is not final (stale ones are dropped on the way)."""
        readers = sorted(m.decode() for m in self.redis.smembers(keys.file_readers(file_id)))
        if not readers:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for batch_id in readers:
                pipe.hget(keys.batch_record(batch_id), "status")
            statuses: builtins.list[bytes | None] = pipe.execute()
        active = [
            b for b, st in zip(readers, statuses, strict=True) if st is not None and st.decode() not in FINAL_STATUSES
        ]
        stale = set(readers) - set(active)
        if stale:
            self.redis.srem(keys.file_readers(file_id), *stale)
        return active

    def delete_unless_read(self, file_id: str, account: str) -> str | None:
        """Delete the record unless an active batch reads the file; returns that batch's id, or None when deleted.

        Optimistic: the readers set is watched, so a batch created on the file meanwhile makes the round retry.
        """
        readers_key = keys.file_readers(file_id)
        for _ in range(_DELETE_ROUNDS):
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(readers_key)
                    active = self.active_readers(file_id)
                    if active:
                        pipe.reset()
                        return active[0]
                    size = self.redis.hget(keys.file_record(file_id), "bytes")
                    pipe.multi()
                    pipe.delete(keys.file_record(file_id), readers_key)
                    pipe.zrem(keys.account_files(account), file_id)
                    pipe.zrem(keys.files_expiring(), file_id)  # retention list and storage metric
                    if size is not None:
                        pipe.hincrby(keys.metrics_storage_bytes(), account, -int(size))
                    pipe.execute()
                    return None
                except redis.WatchError:
                    continue
        raise redis.WatchError(f"file {file_id}: batches kept being created on it; delete again")

    def storage_bytes(self) -> dict[str, int]:
        """Bytes stored per account (files registered since this counter exists)."""
        return {k.decode(): int(v) for k, v in self.redis.hgetall(keys.metrics_storage_bytes()).items()}


def _to_file(record: dict[str, Any]) -> FileObject:
    return FileObject(
        id=record["id"],
        bytes=int(record["bytes"]),
        created_at=int(record["created_at"]),
        filename=record["filename"],
        purpose=record["purpose"],
        expires_at=int(record["expires_at"]) if record.get("expires_at") else None,
    )


# --- expiry of files -------------------------------------------------------------------------------
#: The longest expiry accepted (OpenAI's: 30 days).
MAX_EXPIRES_AFTER_S = 30 * 24 * 3600


def output_expiry_field(seconds: int | None) -> dict[str, Any] | None:
    """The batch record's ``output_expires_after`` (None: the server default applies at finalize)."""
    return None if seconds is None else {"anchor": "created_at", "seconds": seconds}


def output_expiry_s(stored: dict[str, Any] | None, default_s: int) -> int:
    """Seconds an output file of the batch lives: the batch's own ``output_expires_after``, else ``default_s``."""
    seconds = (stored or {}).get("seconds")
    return int(seconds) if isinstance(seconds, int | float) and seconds > 0 else default_s
