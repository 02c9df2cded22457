"""/v1/webhook_endpoints in-process against a real Redis: create, list, retrieve, delete, isolation, SSRF refusal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient

from batchq.api.app import create_app
from batchq.config import Settings

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


def make_client(redis_url: str, tmp_path: Path, **overrides: object) -> TestClient:
    settings = Settings(
        redis_url=redis_url, storage_url=f"file://{tmp_path}", api_keys="key-a:acct-a,key-b:acct-b", **overrides
    )
    return TestClient(create_app(settings))


@pytest.fixture
def client(redis: redis_lib.Redis, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """Default settings: private targets refused."""
    with make_client(redis_url, tmp_path) as c:
        yield c


@pytest.fixture
def loopback_client(redis: redis_lib.Redis, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(redis_url, tmp_path, webhook_allow_private=True) as c:
        yield c


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://127.0.0.1:8080/h",
        "http://[::1]/",
        "http://169.254.169.254/",
        "http://[::ffff:10.0.0.1]/",
    ],
)
def test_private_targets_are_refused_by_default(client: TestClient, url: str) -> None:
    r = client.post("/v1/webhook_endpoints", json={"url": url}, headers=A)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_url" and r.json()["error"]["param"] == "url"
    assert r.headers["x-should-retry"] == "false"


def test_create_shows_the_secret_once_and_is_account_scoped(loopback_client: TestClient) -> None:
    c = loopback_client
    # Given an endpoint created by account A
    r = c.post("/v1/webhook_endpoints", json={"url": "http://127.0.0.1:9/hooks"}, headers=A)
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["id"].startswith("we_") and created["object"] == "webhook_endpoint"
    assert created["secret"].startswith("whsec_") and created["url"] == "http://127.0.0.1:9/hooks"
    assert created["events"] == ["batch.completed", "batch.failed", "batch.expired", "batch.cancelled"]
    assert isinstance(created["created_at"], int)
    eid = created["id"]
    # Then retrieve and list never show the secret again
    got = c.get(f"/v1/webhook_endpoints/{eid}", headers=A).json()
    assert "secret" not in got and "signing_secret" not in got and got["url"] == created["url"]
    listed = c.get("/v1/webhook_endpoints", headers=A).json()
    assert [e["id"] for e in listed["data"]] == [eid] and "secret" not in listed["data"][0]
    # And account B sees nothing of it: 404 on retrieve, delete and the delivery log, an empty list
    for method, path in (
        ("GET", f"/v1/webhook_endpoints/{eid}"),
        ("DELETE", f"/v1/webhook_endpoints/{eid}"),
        ("GET", f"/v1/webhook_endpoints/{eid}/deliveries"),
    ):
        r = c.request(method, path, headers=B)
        assert r.status_code == 404 and r.json()["error"]["code"] == "webhook_endpoint_not_found", (method, path)
    assert c.get("/v1/webhook_endpoints", headers=B).json()["data"] == []
    # When A deletes it, Then it is gone
    assert c.get(f"/v1/webhook_endpoints/{eid}/deliveries", headers=A).json()["data"] == []
    deleted = c.delete(f"/v1/webhook_endpoints/{eid}", headers=A).json()
    assert deleted == {"id": eid, "object": "webhook_endpoint.deleted", "deleted": True}
    assert c.get(f"/v1/webhook_endpoints/{eid}", headers=A).status_code == 404


def test_events_are_validated(loopback_client: TestClient) -> None:
    c, url = loopback_client, "http://127.0.0.1:9/"
    r = c.post("/v1/webhook_endpoints", json={"url": url, "events": ["batch.completed", "batch.completed"]}, headers=A)
    assert r.status_code == 200 and r.json()["events"] == ["batch.completed"]
    sdk_style = {"url": url, "event_types": ["batch.failed"], "name": "mine"}
    r = c.post("/v1/webhook_endpoints", json=sdk_style, headers=A)
    assert r.status_code == 200 and r.json()["event_types"] == ["batch.failed"] and r.json()["name"] == "mine"
    for body, param, code in (
        ({"url": url, "events": ["batch.started"]}, "events", "invalid_value"),
        ({"url": url, "events": []}, "events", "invalid_type"),
        ({"url": url, "events": "batch.completed"}, "events", "invalid_type"),
        ({}, "url", "missing_required_parameter"),
        ({"url": 5}, "url", "invalid_type"),
        ({"url": "ftp://127.0.0.1/"}, "url", "invalid_url"),
    ):
        r = c.post("/v1/webhook_endpoints", json=body, headers=A)
        assert r.status_code == 400, (body, r.text)
        assert (r.json()["error"]["param"], r.json()["error"]["code"]) == (param, code), body
    r = c.post("/v1/webhook_endpoints", content=b"nope", headers={**A, "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_create_refusals_tell_a_tenant_nothing_about_internal_names(client: TestClient) -> None:
    # Given names that exist on the server's network (localhost) and one that does not
    answers = [
        client.post("/v1/webhook_endpoints", json={"url": url}, headers=A)
        for url in ("http://localhost:8080/h", "http://no-such-host.invalid/h")
    ]
    # Then both are the same 400, quoting neither an address nor the resolver's error
    for r in answers:
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_url", r.text
    messages = {r.json()["error"]["message"] for r in answers}
    assert len(messages) == 1, messages
    (message,) = messages
    assert not any(leak in message for leak in ("127.0.0.1", "::1", "Errno", "Name or service", "resolves to"))
