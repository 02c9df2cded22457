"""The API in-process against a real Redis: health, metrics, the active-batch limit. No worker runs here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient

from batchq.api.app import create_app
from batchq.config import Settings


@pytest.fixture
def client(redis: redis_lib.Redis, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}", max_active_batches=2, local_mode=True)
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


# --- issue 13: idempotency, readers, bounds, startup checks (in-process, real Redis) -----------------------

CREATE = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}


@pytest.fixture
def roomy(redis: redis_lib.Redis, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}", max_active_batches=100, local_mode=True)
    with TestClient(create_app(settings)) as c:
        yield c


def test_idempotency_key_same_body_same_batch_other_body_409(roomy: TestClient) -> None:
    file_id = upload(roomy)
    body = {"input_file_id": file_id, **CREATE, "metadata": {"a": "1", "b": "2"}}
    first = roomy.post("/v1/batches", json=body, headers={"Idempotency-Key": "k1"})
    # Same body with another key order and spacing: the same request
    same = roomy.post(
        "/v1/batches",
        content=json.dumps(dict(reversed(list(body.items()))), indent=2),
        headers={"Idempotency-Key": "k1", "content-type": "application/json"},
    )
    other = roomy.post("/v1/batches", json={**body, "metadata": {"a": "changed"}}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 200 and same.status_code == 200
    assert same.json()["id"] == first.json()["id"]
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert other.headers["x-should-retry"] == "false"
    assert len(roomy.get("/v1/batches").json()["data"]) == 1


def test_idempotency_keys_are_never_truncated(roomy: TestClient) -> None:
    file_id = upload(roomy)
    body = {"input_file_id": file_id, **CREATE}
    a = roomy.post("/v1/batches", json=body, headers={"Idempotency-Key": "x" * 254 + "a"})
    b = roomy.post("/v1/batches", json=body, headers={"Idempotency-Key": "x" * 254 + "b"})
    assert a.status_code == b.status_code == 200 and a.json()["id"] != b.json()["id"]
    too_long = roomy.post("/v1/batches", json=body, headers={"Idempotency-Key": "x" * 256})
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "invalid_idempotency_key"


def test_deleting_an_input_an_active_batch_reads_is_409(roomy: TestClient, redis: redis_lib.Redis) -> None:
    file_id = upload(roomy)
    batch = roomy.post("/v1/batches", json={"input_file_id": file_id, **CREATE}).json()
    refused = roomy.delete(f"/v1/files/{file_id}")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "file_in_use"
    assert roomy.get(f"/v1/files/{file_id}/content").status_code == 200
    # Once the batch is final (a worker would do this), the reader no longer blocks
    redis.hset(f"batchq:batch:{{{batch['id']}}}", "status", "completed")
    assert roomy.delete(f"/v1/files/{file_id}").status_code == 200


def test_deleting_a_batch_keeps_an_input_another_active_batch_reads(roomy: TestClient, redis: redis_lib.Redis) -> None:
    file_id = upload(roomy)
    done = roomy.post("/v1/batches", json={"input_file_id": file_id, **CREATE}).json()["id"]
    running = roomy.post("/v1/batches", json={"input_file_id": file_id, **CREATE}).json()["id"]
    redis.hset(f"batchq:batch:{{{done}}}", "status", "completed")
    assert roomy.delete(f"/v1/batches/{done}").status_code == 200
    assert roomy.get(f"/v1/files/{file_id}").status_code == 200, "the input of an active batch was deleted"
    redis.hset(f"batchq:batch:{{{running}}}", "status", "cancelled")
    assert roomy.delete(f"/v1/batches/{running}").status_code == 200
    assert roomy.get(f"/v1/files/{file_id}").status_code == 404


def test_release_reader_frees_the_input(roomy: TestClient, redis: redis_lib.Redis) -> None:
    from batchq.state.files import FileRegistry

    file_id = upload(roomy)
    batch_id = roomy.post("/v1/batches", json={"input_file_id": file_id, **CREATE}).json()["id"]
    assert roomy.delete(f"/v1/files/{file_id}").status_code == 409
    FileRegistry(redis).release_reader(file_id, batch_id)
    assert roomy.delete(f"/v1/files/{file_id}").status_code == 200


def test_create_body_is_capped_while_it_streams(roomy: TestClient) -> None:
    file_id = upload(roomy)
    pad = "p" * (1024 * 1024)
    big = json.dumps({"input_file_id": file_id, **CREATE, "pad": pad}).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    for r in (
        roomy.post("/v1/batches", content=big, headers={"content-type": "application/json"}),
        roomy.post("/v1/batches", content=chunks(), headers={"content-type": "application/json"}),
    ):
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "request_too_large"


def test_deep_nesting_is_a_400_and_timeout_minutes_a_number(roomy: TestClient) -> None:
    file_id = upload(roomy)
    nested = "[" * 100_000 + "]" * 100_000
    deep = json.dumps({"input_file_id": file_id, **CREATE, "x": 0}).replace("0}", nested + "}")
    r = roomy.post("/v1/batches", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    created = roomy.post("/v1/batches", json={"input_file_id": file_id, **CREATE, "timeout_minutes": 30}).json()
    assert created["timeout_minutes"] == 30
    assert roomy.get(f"/v1/batches/{created['id']}").json()["timeout_minutes"] == 30
    assert roomy.get("/v1/batches").json()["data"][0]["timeout_minutes"] == 30


def test_multipart_fields_are_bounded(roomy: TestClient) -> None:
    line = b'{"custom_id": "a", "params": {"model": "m", "messages": []}}\n'
    many = {f"f{i}": "v" for i in range(17)}
    r = roomy.post("/v1/files", files={"file": ("a.jsonl", line)}, data={"purpose": "batch", **many})
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_fields"
    long_field = roomy.post("/v1/files", files={"file": ("a.jsonl", line)}, data={"purpose": "p" * 5000})
    assert long_field.status_code == 400


def test_a_store_that_refuses_writes_is_a_503(redis: redis_lib.Redis, redis_url: str, moto_endpoint: str) -> None:
    # Given: the API on moto's S3 server, pointed at a bucket that does not exist (every write is refused)
    settings = Settings(
        redis_url=redis_url, storage_url="s3://no-such-bucket-batchq/x", s3_endpoint_url=moto_endpoint, local_mode=True
    )
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/files", files={"file": ("a.jsonl", b'{"a": 1}\n')}, data={"purpose": "batch"})
        # Then: the envelope, retryable; /livez still answers and /healthz says what is down
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "storage_unavailable" and r.headers["x-should-retry"] == "true"
        assert c.get("/livez").status_code == 200
        health = c.get("/healthz")
        assert health.status_code == 503 and health.json()["redis"] == "ok" and health.json()["store"] != "ok"


def test_a_local_store_that_cannot_write_is_a_503(redis: redis_lib.Redis, redis_url: str, tmp_path: Path) -> None:
    # Given: a local store whose root lies under a regular file (no directory can be made there, even as root)
    (tmp_path / "a-file").write_text("x")
    settings = Settings(redis_url=redis_url, storage_url=f"file://{tmp_path / 'a-file' / 'store'}", local_mode=True)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        r = c.post("/v1/files", files={"file": ("a.jsonl", b'{"a": 1}\n')}, data={"purpose": "batch"})
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "storage_unavailable" and r.headers["x-should-retry"] == "true"
        assert c.get("/healthz").json()["store"] != "ok"


@pytest.mark.parametrize(
    ("api_keys", "local_mode", "message"),
    [
        (None, False, "BATCHQ_LOCAL_MODE=true"),
        (" ", False, "names no key"),
        ("k1:a,k1:b", False, "configured twice"),
        (":acct", False, "non-empty key"),
        ("k1", False, "key:account"),
    ],
)
def test_key_configuration_mistakes_stop_the_start(
    redis_url: str, tmp_path: Path, api_keys: str | None, local_mode: bool, message: str
) -> None:
    settings = Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}", api_keys=api_keys, local_mode=local_mode)
    with pytest.raises(ValueError, match=message):
        create_app(settings)


def test_keys_authenticate_and_local_mode_is_off_with_keys(
    redis: redis_lib.Redis, redis_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        redis_url=redis_url, storage_url=f"file://{tmp_path}", api_keys="ka:alice,kb:bob", local_mode=True
    )
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/batches").status_code == 401  # loopback, but keys are configured: no local mode
        assert c.get("/v1/batches", headers={"Authorization": "Bearer kb"}).status_code == 200
        assert c.get("/v1/batches", headers={"Authorization": "Bearer kc"}).json()["error"]["code"] == "invalid_api_key"
