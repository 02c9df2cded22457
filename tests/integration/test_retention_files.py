"""Retention against a real Redis and a real local store: expiry parameters through the API, and the reaper."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient

from batchq import keys
from batchq.api.app import create_app
from batchq.config import Settings
from batchq.pipeline.retention import reap_expired
from batchq.state.files import FileRegistry
from batchq.storage import store_from_url

LINE = b'{"custom_id": "a", "params": {"model": "m", "messages": [{"role": "user", "content": "x"}]}}\n'
CHAT = "/v1/chat/completions"


@pytest.fixture
def client(redis: redis_lib.Redis, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """Default settings: BATCHQ_MIN_EXPIRES_AFTER_S is 3600."""
    with TestClient(create_app(Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}", local_mode=True))) as c:
        yield c


def upload(client: TestClient, **fields: str) -> dict[str, object]:
    r = client.post("/v1/files", files={"file": ("a.jsonl", LINE)}, data={"purpose": "batch", **fields})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_files_have_no_expiry_unless_asked(client: TestClient) -> None:
    assert upload(client)["expires_at"] is None


def test_upload_expires_after_as_the_openai_sdk_sends_it(client: TestClient) -> None:
    f = upload(client, **{"expires_after[anchor]": "created_at", "expires_after[seconds]": "7200"})
    assert f["expires_at"] == f["created_at"] + 7200  # type: ignore[operator]
    assert client.get(f"/v1/files/{f['id']}").json()["expires_at"] == f["expires_at"]


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "3599"}, "expires_after.seconds"),
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "2592001"}, "expires_after.seconds"),
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "soon"}, "expires_after.seconds"),
        ({"expires_after[anchor]": "last_active_at", "expires_after[seconds]": "7200"}, "expires_after.anchor"),
        ({"expires_after[seconds]": "7200"}, "expires_after.anchor"),
    ],
)
def test_bad_upload_expiry_is_a_400_and_stores_nothing(
    client: TestClient, fields: dict[str, str], param: str, tmp_path: Path
) -> None:
    r = client.post("/v1/files", files={"file": ("a.jsonl", LINE)}, data={"purpose": "batch", **fields})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert client.get("/v1/files").json()["data"] == []


def test_default_minimum_refuses_an_output_expiry_under_an_hour(client: TestClient) -> None:
    # The e2e retention test lowers BATCHQ_MIN_EXPIRES_AFTER_S; with the default, 3599 s is refused and 3600 taken.
    file_id = upload(client)["id"]
    body = {
        "input_file_id": file_id,
        "endpoint": CHAT,
        "output_expires_after": {"anchor": "created_at", "seconds": 3599},
    }
    r = client.post("/v1/batches", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == "output_expires_after.seconds", r.text
    assert (
        client.post("/v1/batches", json={**body, "output_expires_after": {"anchor": "x", "seconds": 3600}}).status_code
        == 400
    )
    assert client.post("/v1/batches", json={**body, "output_expires_after": 5}).status_code == 400
    ok = client.post("/v1/batches", json={**body, "output_expires_after": {"anchor": "created_at", "seconds": 3600}})
    assert ok.status_code == 200, ok.text


def test_reaper_deletes_expired_files_but_not_an_input_in_use(redis: redis_lib.Redis, tmp_path: Path) -> None:
    store = store_from_url(f"file://{tmp_path / 'store'}")
    files = FileRegistry(redis)
    now = int(time.time())
    for name in ("expired-out", "expired-in", "later"):
        with store.writer(f"files/{name}") as w:
            w.write(b"data\n")
    files.add(file_id="expired-out", account="a", filename="o", purpose="batch_output", size=5,
              storage_key="files/expired-out", created_at=now - 100, expires_after_s=10)  # fmt: skip
    files.add(file_id="expired-in", account="a", filename="i", purpose="batch", size=5,
              storage_key="files/expired-in", created_at=now - 100, expires_after_s=10)  # fmt: skip
    files.add(file_id="later", account="a", filename="l", purpose="batch", size=5,
              storage_key="files/later", created_at=now, expires_after_s=3600)  # fmt: skip
    assert files.storage_bytes() == {"a": 15}
    # Given an active batch of the account that still reads expired-in
    redis.hset(keys.batch_record("batch_x"), mapping={"account": "a", "status": "in_progress"})
    assert files.add_reader("expired-in", "batch_x")
    # When the reaper runs, Then only the expired file no batch reads is gone (record and bytes)
    assert reap_expired(redis, files, store) == ["expired-out"]
    assert files.get("expired-out") is None and not (tmp_path / "store" / "files" / "expired-out").exists()
    assert files.get("expired-in") is not None and files.get("later") is not None
    assert files.storage_bytes() == {"a": 10}
    # When the batch ends, Then the next round reaps the input too
    redis.hset(keys.batch_record("batch_x"), "status", "completed")
    assert reap_expired(redis, files, store) == ["expired-in"]
    assert reap_expired(redis, files, store) == []


def test_openai_sdk_upload_with_expires_after(client: TestClient) -> None:
    # The SDK encodes expires_after as bracketed form fields; the TestClient is an httpx.Client it can use.
    from openai import OpenAI

    sdk = OpenAI(api_key="unused", base_url="http://testserver/v1", http_client=client, max_retries=0)
    f = sdk.files.create(
        file=("a.jsonl", LINE), purpose="batch", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    assert f.expires_at == f.created_at + 3600
