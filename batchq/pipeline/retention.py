"""The reaper: deletes files past their ``expires_at`` (record and bytes), run by the sweeper every round.

Never an input that an active batch still reads (the file's readers set, checked atomically with the delete):
such a file waits until the batch ends and is reaped on a later round. Expiring files sit in one sorted set by
``expires_at``, so a round costs one range read when nothing is due.
"""

from __future__ import annotations

import logging
import time

import redis

from batchq import keys
from batchq.state.files import FileRegistry
from batchq.storage import ObjectNotFoundError, ObjectStore

log = logging.getLogger(__name__)

#: Files one round deletes at most (the rest wait for the next round).
REAP_LIMIT = 500


def reap_expired(
    client: redis.Redis[bytes], files: FileRegistry, store: ObjectStore, now: float | None = None
) -> list[str]:
    """Delete every expired file not in use; returns the ids deleted."""
    cutoff = time.time() if now is None else now
    due = [i.decode() for i in client.zrangebyscore(keys.files_expiring(), "-inf", cutoff, start=0, num=REAP_LIMIT)]
    reaped: list[str] = []
    for file_id in due:
        record = files.record(file_id)
        if record is None:
            client.zrem(keys.files_expiring(), file_id)  # deleted by its owner meanwhile
            continue
        # The record goes first, atomically with the check of its readers (a batch created on it meanwhile
        # keeps it); the bytes follow. A crash in between leaves only bytes, which nothing can reach.
        if files.delete_unless_read(file_id, record["account"]) is not None:
            continue  # an active batch still reads it: a later round, once that batch has ended
        try:
            store.delete(record["storage_key"])
        except ObjectNotFoundError:
            pass
        reaped.append(file_id)
    if reaped:
        log.info("retention: deleted %d expired files", len(reaped))
    return reaped


def storage_metric_lines(per_account: dict[str, int]) -> list[str]:
    """Prometheus lines of the bytes stored per account (for /metrics)."""
    lines = [
        "# HELP batchq_storage_bytes Bytes of stored files (inputs and outputs), by account.",
        "# TYPE batchq_storage_bytes gauge",
    ]
    escaped = {a.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"): v for a, v in per_account.items()}
    # max(0, …): files stored before this counter existed were never added, so deleting them could go below zero
    return lines + [f'batchq_storage_bytes{{account="{a}"}} {max(0, v)}' for a, v in sorted(escaped.items())]
