"""Fair sharing through flow-controlled feeding: accounts share slots and limits, cancel stops spending at once."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import StackFactory
from tests.e2e.test_chaos import assert_exactly_once, configure_sim, submit, wait_progress
from tests.stack import chat_lines, wait_final

pytestmark = [pytest.mark.e2e]

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
KEYS = "key-a:acct-a,key-b:acct-b"


def completed(api: str, batch_id: str, headers: dict[str, str]) -> int:
    counts = httpx.get(f"{api}/v1/batches/{batch_id}", headers=headers).json()["request_counts"]
    return int(counts["completed"] + counts["failed"])


def sent_for(sim: str, batch_id: str) -> int:
    per_key: dict[str, int] = httpx.get(sim.removesuffix("/v1") + "/sim/stats", params={"detail": 1}).json()["per_key"]
    return sum(n for key, n in per_key.items() if key.startswith(f"{batch_id}/"))


def test_one_account_with_four_batches_and_one_with_one_share_a_rate_limit_evenly(
    make_stack: StackFactory, sim: str
) -> None:
    # Given: account A runs 4 large batches, account B one, all under one 1,200 RPM limit (20 a second)
    configure_sim(sim, latency_ms=50)
    stack = make_stack(rate_limit_rpm="1200", max_in_flight="16", api_keys=KEYS)
    api = stack.start_api()
    stack.start_worker("w")
    a_ids = [submit(api, chat_lines(1500, prefix=f"a{i}-"), headers=A) for i in range(4)]
    b_id = submit(api, chat_lines(1500, prefix="b-"), headers=B)
    for batch_id, headers in [*((i, A) for i in a_ids), (b_id, B)]:
        wait_progress(api, batch_id, 1, headers=headers)
    # When: they run side by side for 30 s
    start_a, start_b = sum(completed(api, i, A) for i in a_ids), completed(api, b_id, B)
    time.sleep(30)
    done_a, done_b = sum(completed(api, i, A) for i in a_ids) - start_a, completed(api, b_id, B) - start_b
    # Then: B got 40-60 % of the upstream requests (accounts first, then batches), not a fifth
    share = done_b / (done_a + done_b)
    print(f"\nA {done_a} (4 batches), B {done_b} (1 batch) in 30 s: B's share {share:.0%}")
    assert 0.4 <= share <= 0.6, (done_a, done_b)
    for batch_id, headers in [*((i, A) for i in a_ids), (b_id, B)]:
        httpx.post(f"{api}/v1/batches/{batch_id}/cancel", headers=headers).raise_for_status()
    for batch_id, headers in [*((i, A) for i in a_ids), (b_id, B)]:
        assert wait_final(api, batch_id, headers=headers, timeout=120, stack=stack)["status"] == "cancelled"


def test_cancel_stops_spending_at_once(make_stack: StackFactory, sim: str, redis: Any) -> None:
    # Given: a 10,000-line batch running at 100 ms with 16 in flight
    configure_sim(sim, latency_ms=100)
    stack = make_stack(max_in_flight="16")
    api = stack.start_api()
    stack.start_worker("w")
    lines = chat_lines(10_000)
    batch_id = submit(api, lines)
    wait_progress(api, batch_id, 300)
    # While it runs, the broker holds the feeding window (2 x 16 in flight, at least 64), not 10,000 messages
    assert int(redis.llen("requests")) <= 64
    # When: it is cancelled
    r = httpx.post(f"{api}/v1/batches/{batch_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelling"
    sent_at_cancel = sent_for(sim, batch_id)
    batch = wait_final(api, batch_id, timeout=120, stack=stack)
    # Then: the upstream got nothing for it after the cancel beyond the calls already holding a slot
    sent_after = sent_for(sim, batch_id) - sent_at_cancel
    print(f"\nsent after the cancel returned: {sent_after} (in-flight cap 16)")
    assert sent_after <= 16
    assert batch["status"] == "cancelled"
    output, errors = assert_exactly_once(api, batch, lines)
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert len(output) + len(errors) == 10_000 and batch["request_counts"]["cancelled"] == len(errors)
