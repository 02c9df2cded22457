"""Per-account figures for /metrics: lines waiting their turn, handed out and not yet recorded, and recorded."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from batchq import keys


@dataclass
class AccountLines:
    waiting: int = 0
    """Lines of running batches not yet handed to the broker (the seed's "Queued")."""
    in_flight: int = 0
    """Lines handed to the broker (queued there or running) and not yet recorded."""
    completed: int = 0
    failed: int = 0


def account_lines(client: redis.Redis[bytes]) -> dict[str, AccountLines]:
    """Every account's figures; one pass over the active batches and the accounts' counters."""
    out: dict[str, AccountLines] = {}
    active = [i.decode() for i in client.smembers(keys.active_batches())]
    with client.pipeline(transaction=False) as pipe:
        for batch_id in active:
            pipe.hmget(keys.batch_record(batch_id), ["account", "status", "total", "cursor"])
        records = pipe.execute() if active else []
    for account, status, total, cursor in records:
        if account is None or status != b"in_progress":
            continue
        entry = out.setdefault(account.decode(), AccountLines())
        entry.waiting += max(int(total or 0) - int(cursor or 0), 0)
    prefix = keys.metrics_account("")
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        account = key.decode()[len(prefix) :]
        counts = client.hgetall(key)
        entry = out.setdefault(account, AccountLines())
        entry.completed = int(counts.get(b"completed", 0))
        entry.failed = int(counts.get(b"failed", 0))
    for account, entry in out.items():
        entry.in_flight = int(client.get(keys.sched_account_queued(account)) or 0)
    return out
