"""Refuse a Redis that may evict batchq's keys.

Managed Redis often defaults to a ``volatile-*`` or ``allkeys-*`` eviction policy. batchq's line index, outcomes
and Celery's chord counters carry TTLs or live beside keys that do, and a silently evicted key turns into a
batch that never ends. So workers and the API check the policy at start and stop with a clear message, unless
the operator says otherwise (BATCHQ_ALLOW_REDIS_EVICTION=true).
"""

from __future__ import annotations

from typing import Any

#: The one policy under which Redis never drops a key to make room.
SAFE_POLICY = "noeviction"


class UnsafeRedisError(RuntimeError):
    """Redis is configured to evict keys under memory pressure."""


def eviction_problem(info: dict[str, Any]) -> str:
    """Why this Redis (its ``INFO memory``) is unsafe for batchq, or '' when it is safe."""
    policy = str(info.get("maxmemory_policy", SAFE_POLICY))
    maxmemory = int(info.get("maxmemory", 0) or 0)
    if policy == SAFE_POLICY or maxmemory == 0:
        return ""  # nothing is ever evicted without a memory limit
    return (
        f"Redis has maxmemory {maxmemory} with maxmemory-policy {policy!r}: under memory pressure it evicts keys, "
        "and batchq's line index, outcomes or chord counters could vanish mid-batch. Set maxmemory-policy "
        "noeviction (deploy/redis.conf does), or set BATCHQ_ALLOW_REDIS_EVICTION=true to run anyway."
    )


def check_eviction_policy(client: Any, *, allow: bool) -> str:
    """Raise UnsafeRedisError for an evicting Redis unless ``allow``; returns the problem ('' if none)."""
    problem = eviction_problem(client.info("memory"))
    if problem and not allow:
        raise UnsafeRedisError(problem)
    return problem
