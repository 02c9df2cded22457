"""/metrics in-process against a real Redis (issue 24, finding 5): who may read it, and what a scrape costs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient

from batchq.api.app import create_app
from batchq.config import Settings
from batchq.state.lines import LineState

TOKEN = "metrics-token-0123456789abcdef"
#: Every metric name /metrics had before issue 24 (dashboards are built on them): none may go.
METRIC_NAMES = (
    "batchq_active_batches",
    "batchq_queue_depth",
    "batchq_requests_total",
    "batchq_storage_bytes",
    "batchq_account_lines_waiting",
    "batchq_account_lines_in_flight",
    "batchq_account_lines_total",
)


def app_client(redis_url: str, tmp_path: Path, host: str = "testclient", **settings: object) -> TestClient:
    config = Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}", api_keys="key-a:acct-a", **settings)
    return TestClient(create_app(config), client=(host, 50000))


@pytest.fixture
def client(redis: redis_lib.Redis, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with app_client(redis_url, tmp_path) as c:
        yield c


def record_lines(redis: redis_lib.Redis) -> None:
    """Outcomes of two accounts' lines, through the real record script."""
    lines = LineState(redis)
    for account, line, success in (("acct-a", 0, True), ("acct-a", 1, False), ("acct-b", 0, True)):
        outcome = {"custom_id": f"c{line}", "response": None, "error": None}
        lines.record_on(None, f"batch_{account}", account, line, outcome, success=success, metric="completed")


def test_a_scrape_reads_counters_and_scans_nothing(client: TestClient, redis: redis_lib.Redis) -> None:
    # Given recorded lines of two accounts and a few thousand unrelated keys
    record_lines(redis)
    with redis.pipeline(transaction=False) as pipe:
        for i in range(5000):
            pipe.set(f"unrelated:{i}", "x")
        pipe.execute()
    redis.config_resetstat()
    # When /metrics is scraped
    text = client.get("/metrics").text
    # Then both accounts' figures are there and every metric of before is still named
    assert 'batchq_account_lines_total{account="acct-a",outcome="completed"} 1' in text
    assert 'batchq_account_lines_total{account="acct-a",outcome="failed"} 1' in text
    assert 'batchq_account_lines_total{account="acct-b",outcome="completed"} 1' in text
    for name in METRIC_NAMES:
        assert f"# TYPE {name} " in text, name
    # And Redis was not scanned: the scrape cost a handful of commands, whatever the keyspace holds
    stats = redis.info("commandstats")
    assert "cmdstat_scan" not in stats and "cmdstat_keys" not in stats, sorted(stats)
    assert sum(int(v["calls"]) for v in stats.values()) < 40, stats


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
)
def test_with_a_token_only_the_token_reads_metrics(
    redis: redis_lib.Redis, redis_url: str, tmp_path: Path, headers: dict[str, str]
) -> None:
    with app_client(redis_url, tmp_path, metrics_token=TOKEN) as c:
        # a tenant's key, a wrong token, no header: 401 in the envelope, even from loopback
        r = c.get("/metrics", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error", r.text
        assert c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_without_a_token_only_loopback_reads_metrics(redis: redis_lib.Redis, redis_url: str, tmp_path: Path) -> None:
    with app_client(redis_url, tmp_path, host="203.0.113.7") as remote:
        r = remote.get("/metrics", headers={"Authorization": "Bearer key-a"})
        assert r.status_code == 401 and "BATCHQ_METRICS_TOKEN" in r.json()["error"]["message"], r.text
        assert remote.get("/livez").status_code == 200
    with app_client(redis_url, tmp_path, host="127.0.0.1") as local:
        assert local.get("/metrics").status_code == 200
