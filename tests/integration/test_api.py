"""The API in-process against a real Redis: health, metrics, the active-batch limit. No worker runs here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient

from batchq.api.app import create_app
from batchq.config import Settings


@pytest.fixture
def client(redis: redis_lib.Redis, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}", max_active_batches=2)
    with TestClient(create_app(settings)) as c:
        yield c


def upload(client: TestClient) -> str:
    line = b'{"custom_id": "a", "params": {"model": "m", "messages": [{"role": "user", "content": "x"}]}}\n'
    r = client.post("/v1/files", files={"file": ("a.jsonl", line)}, data={"purpose": "batch"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_health_and_liveness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "redis": "ok", "store": "ok"}
    assert client.get("/livez").status_code == 200


def test_the_active_batch_limit_is_a_429(client: TestClient) -> None:
    # Given: an account limited to two active batches; no worker runs, so both stay validating
    file_id = upload(client)
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    assert client.post("/v1/batches", json=body).status_code == 200
    assert client.post("/v1/batches", json=body).status_code == 200
    # When: a third is created
    third = client.post("/v1/batches", json=body)
    # Then: 429 in OpenAI's envelope, and a retry would not help
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "batch_limit_exceeded"
    assert third.headers["x-should-retry"] == "false"
    # and a cancelled one frees a slot... only when it is final, which needs a worker: still 429
    assert client.post("/v1/batches", json=body).status_code == 429


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    file_id = upload(client)
    client.post("/v1/batches", json={"input_file_id": file_id, "endpoint": "/v1/chat/completions"})
    text = client.get("/metrics").text
    assert "batchq_active_batches 1" in text
    assert 'batchq_queue_depth{queue="intake"} 1' in text


def test_unknown_route_uses_the_envelope(client: TestClient) -> None:
    r = client.get("/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
