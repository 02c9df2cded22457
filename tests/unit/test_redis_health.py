"""The eviction-policy check that workers and the API run at start."""

from __future__ import annotations

import pytest

from batchq.state.health import UnsafeRedisError, check_eviction_policy, eviction_problem


def test_noeviction_or_no_memory_limit_is_safe() -> None:
    assert eviction_problem({"maxmemory": 1 << 30, "maxmemory_policy": "noeviction"}) == ""
    assert eviction_problem({"maxmemory": 0, "maxmemory_policy": "allkeys-lru"}) == ""


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-ttl", "allkeys-lru", "allkeys-random", "volatile-lfu"])
def test_an_evicting_policy_is_refused_unless_allowed(policy: str) -> None:
    class Client:
        def info(self, section: str) -> dict[str, object]:
            assert section == "memory"
            return {"maxmemory": 100_000_000, "maxmemory_policy": policy}

    with pytest.raises(UnsafeRedisError, match="noeviction"):
        check_eviction_policy(Client(), allow=False)
    assert policy in check_eviction_policy(Client(), allow=True)
