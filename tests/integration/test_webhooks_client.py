"""batchq's own client and CLI for webhooks, against the real API in-process (a real Redis behind it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient

import batchq
from batchq import cli
from batchq.api.app import create_app
from batchq.client import AsyncClient, Client
from batchq.config import Settings
from batchq.webhooks.events import emit_batch_event
from batchq.webhooks.signing import signature_headers


@pytest.fixture
def api(redis: redis_lib.Redis, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        redis_url=redis_url, storage_url=f"file://{tmp_path}", webhook_allow_private=True, local_mode=True
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def client(api: TestClient) -> Iterator[Client]:
    with Client("http://testserver", http_client=api) as c:
        yield c


def test_client_manages_endpoints_and_reads_the_log(client: Client, redis: redis_lib.Redis) -> None:
    created = client.webhooks.create("http://127.0.0.1:9/in", events=["batch.completed"])
    assert created.secret is not None and created.secret.startswith("whsec_") and created.events == ["batch.completed"]
    assert client.webhooks.retrieve(created.id).secret is None
    assert [e.id for e in client.webhooks.list()] == [created.id]
    (delivery_id,) = emit_batch_event(redis, None, "local", "batch_9", "completed")
    (delivery,) = client.webhooks.deliveries(created.id).data
    assert (delivery.id, delivery.status, delivery.attempts) == (delivery_id, "pending", 0)
    assert client.webhooks.delete(created.id).deleted
    with pytest.raises(batchq.NotFoundError):
        client.webhooks.retrieve(created.id)
    with pytest.raises(batchq.BadRequestError):
        client.webhooks.create("ftp://127.0.0.1/")


def test_verify_webhook_is_exported_and_on_the_clients() -> None:
    secret, body = "whsec_" + "QUJD" * 8, b'{"id":"evt_1","type":"batch.failed","data":{"id":"batch_1"}}'
    headers = signature_headers(secret, "msg_1", body)
    assert batchq.verify_webhook(body, headers, secret)["type"] == "batch.failed"
    assert Client("http://x").webhooks.verify(body, headers, secret)["data"] == {"id": "batch_1"}
    with pytest.raises(batchq.WebhookVerificationError):
        batchq.verify_webhook(body + b" ", headers, secret)


def test_async_client_lists_endpoints(api: TestClient, client: Client) -> None:
    created = client.webhooks.create("http://127.0.0.1:9/a")

    async def go() -> list[str]:
        # the ASGI app in-process, through httpx's ASGI transport
        import httpx

        transport = httpx.ASGITransport(app=api.app)
        async with AsyncClient("http://testserver", transport=transport) as ac:
            page = await ac.webhooks.list()
            return [e.id for e in page.data]

    assert asyncio.run(go()) == [created.id]


def run(client: Client, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv), client=client)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_webhooks_commands(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(client, capsys, "webhooks", "create", "http://127.0.0.1:9/h", "--events", "batch.failed")
    assert code == 0 and "secret: whsec_" in out and "not shown again" in err
    endpoint_id = out.split()[0]
    code, out, _ = run(client, capsys, "webhooks", "create", "http://127.0.0.1:9/j", "--json")
    created: dict[str, Any] = json.loads(out)
    assert code == 0 and created["secret"].startswith("whsec_")
    code, out, _ = run(client, capsys, "webhooks", "list", "--json")
    assert code == 0 and {e["id"] for e in json.loads(out)["data"]} == {endpoint_id, created["id"]}
    code, out, _ = run(client, capsys, "webhooks", "list")
    assert code == 0 and endpoint_id in out
    code, out, _ = run(client, capsys, "webhooks", "deliveries", endpoint_id)
    assert code == 0
    code, out, _ = run(client, capsys, "webhooks", "delete", endpoint_id)
    assert code == 0 and out.strip() == f"deleted {endpoint_id}"
    code, _, err = run(client, capsys, "webhooks", "deliveries", endpoint_id)
    assert code == cli.EXIT_NOT_FOUND
    code, _, err = run(client, capsys, "webhooks", "create", "http://127.0.0.1:9/", "--events", "batch.started")
    assert code == cli.EXIT_USAGE
