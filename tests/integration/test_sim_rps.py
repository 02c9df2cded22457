"""The simulator's per-second limit (``--rps``): an upstream that enforces its limit per second, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_sim import chat, configure, start_sim, stats


@pytest.fixture(scope="module")
def rps_root(log_dir: Path) -> Iterator[str]:
    proc, root = start_sim(log_dir, "--latency-ms", "0", "--rps", "5", "--rpm", "1200")
    yield root
    proc.stop()


def test_the_sixth_request_in_a_second_gets_429_and_the_window_slides(rps_root: str) -> None:
    with httpx.Client(base_url=rps_root, timeout=10) as client:
        client.post("/sim/reset").raise_for_status()
        # Given --rps 5: five requests at once are accepted
        started = time.monotonic()
        statuses = [client.post("/v1/chat/completions", json=chat()).status_code for _ in range(5)]
        assert statuses == [200] * 5
        # When a sixth arrives within the same second
        r = client.post("/v1/chat/completions", json=chat())
        # Then it gets a 429 in OpenAI's envelope with a Retry-After of at most a second
        assert time.monotonic() - started < 1.0, "the machine was too slow for this check"
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "rate_limit_exceeded" and "per second" in r.json()["error"]["message"]
        assert 0 < int(r.headers["retry-after-ms"]) <= 1000
        # And the stats show the busiest second
        s = stats(client)
        assert s["max_in_second"] == 6 and s["by_status"] == {"200": 5, "429": 1}
        assert s["config"]["rps"] == 5 and s["config"]["rpm"] == 1200
        # When the second has passed, requests are accepted again
        time.sleep(1.05)
        assert client.post("/v1/chat/completions", json=chat()).status_code == 200


def test_rps_is_a_runtime_setting_and_paced_requests_pass(rps_root: str) -> None:
    with httpx.Client(base_url=rps_root, timeout=10) as client:
        client.post("/sim/reset").raise_for_status()
        # Given the limit raised to 10 a second at run time
        configure(client, rps=10)
        # When 15 requests are sent 0.11 s apart (about 9 a second)
        statuses = []
        for _ in range(15):
            statuses.append(client.post("/v1/chat/completions", json=chat()).status_code)
            time.sleep(0.11)
        # Then every one is accepted, and no second held more than 10
        assert statuses == [200] * 15
        assert stats(client)["max_in_second"] <= 10
        # And nonsense values are refused
        assert client.post("/sim/config", json={"rps": -1}).status_code == 400
