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
    """Every account's figures from maintained counters, in three round trips (never a SCAN: a scrape costs the
    same whatever else the keyspace holds). Waiting lines come from the active batches' records (a bounded set)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.smembers(keys.active_batches())
        pipe.smembers(keys.metrics_accounts())
        active_raw, accounts_raw = pipe.execute()
    active = sorted(i.decode() for i in active_raw)
    recorded = sorted(a.decode() for a in accounts_raw)
    with client.pipeline(transaction=False) as pipe:
        for batch_id in active:
            pipe.hmget(keys.batch_record(batch_id), ["account", "status", "total", "cursor"])
        for account in recorded:
            pipe.hgetall(keys.metrics_account(account))
        replies = pipe.execute() if active or recorded else []
    out = {account: AccountLines() for account in recorded}
    for account, counts in zip(recorded, replies[len(active) :], strict=True):
        out[account].completed = int(counts.get(b"completed", 0))
        out[account].failed = int(counts.get(b"failed", 0))
    for account_b, status, total, cursor in replies[: len(active)]:
        if account_b is None or status != b"in_progress":
            continue
        entry = out.setdefault(account_b.decode(), AccountLines())
        entry.waiting += max(int(total or 0) - int(cursor or 0), 0)
    _read_in_flight(client, out)
    return out


def _read_in_flight(client: redis.Redis[bytes], figures: dict[str, AccountLines]) -> None:
    if not figures:
        return
    with client.pipeline(transaction=False) as pipe:
        for account in figures:
            pipe.get(keys.sched_account_queued(account))
        queued = pipe.execute()
    for entry, value in zip(figures.values(), queued, strict=True):
        entry.in_flight = int(value or 0)
