"""Tests for the Python client (the batchq.client package: sync and async clients, retries, uploads) and the
module-level functions of batchq, against an in-memory server behind httpx.MockTransport."""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import batchq
from batchq.client import Client
from batchq.client import lines as line_streams
from batchq.client import retrying as _http
from batchq.client.exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchFailedError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    WaitTimeoutError,
)
from batchq.client.uploads import FailedLines

MODEL = "Llama-3.3-70B-Instruct"


def _multipart(request: httpx.Request) -> dict[str, tuple[str | None, bytes]]:
    """{field: (filename, content)} of a multipart/form-data request."""
    boundary = re.search(r"boundary=([^;]+)", request.headers["content-type"])
    assert boundary is not None
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in request.content.split(b"--" + boundary.group(1).encode())[1:-1]:
        head, _, body = part.removeprefix(b"\r\n").removesuffix(b"\r\n").partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        filename = re.search(rb'filename="([^"]*)"', head)
        assert name is not None
        fields[name.group(1).decode()] = (filename.group(1).decode() if filename else None, body)
    return fields


def error_response(status: int, message: str = "nope", code: str | None = None, **headers: str) -> httpx.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return httpx.Response(status, json=body, headers=headers)


class FakeServer:
    """An in-memory batchq API (files, batches, results) that records every request it gets.

    ``queue(...)`` makes the next requests get the given responses before routing resumes, and
    ``progress(id, [...])`` makes each GET of a batch apply the next status update.
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.updates: dict[str, list[dict[str, Any]]] = {}
        self.by_key: dict[str, str] = {}
        self.uploads: list[str] = []
        self.overrides: dict[tuple[str, str], httpx.Response] = {}
        self._queued: list[httpx.Response | Exception] = []

    def queue(self, *responses: httpx.Response | Exception) -> None:
        self._queued.extend(responses)

    def add_file(self, content: bytes, purpose: str = "batch", filename: str = "in.jsonl") -> str:
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        self.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        self.contents[file_id] = content
        return file_id

    def add_batch(self, input_file_id: str = "file-x", **fields: Any) -> dict[str, Any]:
        batch_id = f"batch_{uuid.uuid4().hex[:24]}"
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": input_file_id,
            "completion_window": "24h",
            "status": "validating",
            "created_at": 1_700_000_000 + len(self.batches),
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": None,
        }
        batch.update(fields)
        self.batches[batch_id] = batch
        return batch

    def progress(self, batch_id: str, updates: list[dict[str, Any]]) -> None:
        self.updates[batch_id] = list(updates)

    def uploaded(self, index: int = -1) -> bytes:
        """Content of a file uploaded through POST /v1/files (the last by default)."""
        return self.contents[self.uploads[index]]

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if self._queued:
            queued = self._queued.pop(0)
            if isinstance(queued, Exception):
                raise queued
            return queued
        override = self.overrides.get((request.method, request.url.path))
        return override if override is not None else self._route(request)

    def _route(self, request: httpx.Request) -> httpx.Response:
        method, path, query = request.method, request.url.path, request.url.params
        parts = path.partition("/v1/")[2].split("/")  # a server root may carry a prefix
        if parts[0] == "files":
            return self._files(method, parts[1:], request, query)
        if parts[0] == "batches":
            return self._batches(method, parts[1:], request, query)
        return error_response(404, f"no route {path}")

    def _files(self, method: str, rest: list[str], request: httpx.Request, query: httpx.QueryParams) -> httpx.Response:
        if not rest and method == "POST":
            fields = _multipart(request)
            filename, content = fields["file"]
            file_id = self.add_file(content, fields["purpose"][1].decode(), filename or "upload")
            self.uploads.append(file_id)
            return httpx.Response(200, json=self.files[file_id])
        if not rest:
            data = list(self.files.values())
            return httpx.Response(200, json=_page(data, query))
        file = self.files.get(rest[0])
        if file is None:
            return error_response(404, f"No such File object: {rest[0]}", "not_found")
        if rest[1:] == ["content"]:
            return httpx.Response(200, content=self.contents[rest[0]])
        if method == "DELETE":
            del self.files[rest[0]]
            return httpx.Response(200, json={"id": rest[0], "object": "file", "deleted": True})
        return httpx.Response(200, json=file)

    def _batches(
        self, method: str, rest: list[str], request: httpx.Request, query: httpx.QueryParams
    ) -> httpx.Response:
        if not rest and method == "POST":
            key = request.headers.get("idempotency-key")
            if key in self.by_key:
                return httpx.Response(200, json=self.batches[self.by_key[key]])
            body = json.loads(request.content)
            fields = {k: body[k] for k in ("endpoint", "completion_window") if k in body}
            created = self.add_batch(body["input_file_id"], metadata=body.get("metadata"), **fields)
            if key:
                self.by_key[key] = created["id"]
            return httpx.Response(200, json=created)
        if not rest:
            data = sorted(self.batches.values(), key=lambda b: -b["created_at"])
            return httpx.Response(200, json=_page(data, query))
        batch = self.batches.get(rest[0])
        if batch is None:
            return error_response(404, f"No such Batch: {rest[0]}", "not_found")
        if rest[1:] == ["cancel"]:
            batch["status"] = "cancelling"
        elif rest[1:] == ["results"]:
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.results.get(rest[0], []))
            return httpx.Response(200, content=lines.encode(), headers={"content-type": "application/x-ndjson"})
        elif method == "DELETE":
            del self.batches[rest[0]]
            return httpx.Response(200, json={"id": rest[0], "object": "batch.deleted", "deleted": True})
        elif self.updates.get(rest[0]):
            batch.update(self.updates[rest[0]].pop(0))
        return httpx.Response(200, json=batch)


def _page(data: list[dict[str, Any]], query: httpx.QueryParams) -> dict[str, Any]:
    ids = [d["id"] for d in data]
    start = ids.index(query["after"]) + 1 if "after" in query else 0
    limit = int(query.get("limit", 20))
    chunk = data[start : start + limit]
    return {
        "object": "list",
        "data": chunk,
        "first_id": chunk[0]["id"] if chunk else None,
        "last_id": chunk[-1]["id"] if chunk else None,
        "has_more": start + limit < len(data),
    }


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(server: FakeServer, sleeps: list[float]) -> Iterator[Client]:
    with Client("http://batchq.test", transport=httpx.MockTransport(server), sleep=sleeps.append) as c:
        yield c


@pytest.fixture
def default_client(client: Client, monkeypatch: pytest.MonkeyPatch) -> Client:
    """Make the module-level functions (batchq.submit_batch, ...) use the test client."""
    monkeypatch.setattr(batchq, "_default_client", client)
    return client


def _lines(content: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in content.decode().splitlines() if line.strip()]


# --- configuration ---------------------------------------------------------------------------------------------


def test_env_vars_give_url_and_key(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given BATCHQ_URL and BATCHQ_API_KEY, when a client is built without arguments
    monkeypatch.setenv("BATCHQ_URL", "http://env.example:9000")
    monkeypatch.setenv("BATCHQ_API_KEY", "sk-env")
    client = Client(transport=httpx.MockTransport(server))
    server.add_file(b"{}\n")
    client.files.list()
    # Then it talks to that server with that key
    request = server.requests[-1]
    assert str(request.url).startswith("http://env.example:9000/v1/files")
    assert request.headers["authorization"] == "Bearer sk-env"


def test_arguments_override_env(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHQ_URL", "http://env.example:9000")
    monkeypatch.setenv("BATCHQ_API_KEY", "sk-env")
    client = Client("http://arg.example", api_key="sk-arg", transport=httpx.MockTransport(server))
    client.batches.list()
    assert server.requests[-1].url.host == "arg.example"
    assert server.requests[-1].headers["authorization"] == "Bearer sk-arg"


def test_defaults_without_env_send_no_key(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCHQ_URL", raising=False)
    monkeypatch.delenv("BATCHQ_API_KEY", raising=False)
    client = Client(transport=httpx.MockTransport(server))
    assert client.base_url == "http://127.0.0.1:8000"
    client.batches.list()
    assert "authorization" not in server.requests[-1].headers  # local mode


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://h:1", "http://h:1"),
        ("http://h:1/", "http://h:1"),
        ("http://h:1/v1", "http://h:1"),
        ("http://h:1/v1/", "http://h:1"),
        ("https://h/prefix/v1", "https://h/prefix"),
    ],
)
def test_trailing_v1_is_stripped(given: str, expected: str, server: FakeServer) -> None:
    client = Client(given, transport=httpx.MockTransport(server))
    assert client.base_url == expected
    client.batches.list()
    assert str(server.requests[-1].url).startswith(f"{expected}/v1/batches")


def test_default_client_of_module_functions_reads_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batchq, "_default_client", None)
    monkeypatch.setenv("BATCHQ_URL", "http://env.example:1234/v1")
    monkeypatch.setenv("BATCHQ_API_KEY", "sk-1")
    client = batchq._client()
    assert (client.base_url, client.api_key) == ("http://env.example:1234", "sk-1")
    assert batchq._client() is client
    client.close()


def test_public_names() -> None:
    for name in batchq.__all__:
        assert getattr(batchq, name) is not None
    assert batchq.NotFoundError.__module__ == "batchq.client.exceptions"
    with pytest.raises(AttributeError):
        _ = batchq.no_such_name  # type: ignore[attr-defined]


# --- files -----------------------------------------------------------------------------------------------------


def test_files_create_from_path_bytes_and_file_object(client: Client, server: FakeServer, tmp_path: Path) -> None:
    path = tmp_path / "reqs.jsonl"
    path.write_bytes(b'{"a": 1}\n')
    by_path = client.files.create(file=path, purpose="batch")
    by_str = client.files.create(file=str(path))
    by_bytes = client.files.create(file=b'{"b": 2}\n')
    by_fileobj = client.files.create(file=io.BytesIO(b'{"c": 3}\n'))
    by_tuple = client.files.create(file=("named.jsonl", b"{}\n"))
    assert [f.filename for f in (by_path, by_str, by_bytes, by_fileobj, by_tuple)] == [
        "reqs.jsonl",
        "reqs.jsonl",
        "upload.jsonl",
        "upload.jsonl",
        "named.jsonl",
    ]
    assert server.contents[by_fileobj.id] == b'{"c": 3}\n'
    request = server.calls("POST", "/v1/files")[0]
    assert _multipart(request)["purpose"] == (None, b"batch")
    assert isinstance(by_path, batchq.FileObject) and by_path.bytes == len(b'{"a": 1}\n')


def test_files_retrieve_list_content_delete(client: Client, server: FakeServer) -> None:
    ids = [server.add_file(f"line {i}\n".encode()) for i in range(3)]
    assert client.files.retrieve(ids[0]).id == ids[0]
    page = client.files.list(limit=2, purpose="batch", order="desc")
    assert page.has_more and len(page.data) == 2
    assert server.requests[-1].url.params["purpose"] == "batch"
    assert server.requests[-1].url.params["order"] == "desc"
    assert [f.id for f in page] == ids  # iterating a page walks every page
    assert server.requests[-1].url.params["after"] == ids[1]
    assert client.files.content(ids[1]) == b"line 1\n"
    assert server.requests[-1].url.path == f"/v1/files/{ids[1]}/content"
    deleted = client.files.delete(ids[2])
    assert deleted.deleted and server.requests[-1].method == "DELETE"
    with pytest.raises(NotFoundError):
        client.files.retrieve(ids[2])


def test_file_upload_is_rewound_on_retry(client: Client, server: FakeServer, sleeps: list[float]) -> None:
    server.queue(error_response(503, "busy"))
    uploaded = client.files.create(file=io.BytesIO(b'{"x": 1}\n'))
    assert server.contents[uploaded.id] == b'{"x": 1}\n'
    assert len(server.calls("POST", "/v1/files")) == 2 and len(sleeps) == 1


# --- batches ---------------------------------------------------------------------------------------------------


def test_batches_create_sends_body_and_idempotency_key(client: Client, server: FakeServer) -> None:
    batch = client.batches.create(
        input_file_id="file-1", endpoint="/v1/embeddings", metadata={"k": "v"}, timeout_minutes=30
    )
    request = server.calls("POST", "/v1/batches")[0]
    assert json.loads(request.content) == {
        "input_file_id": "file-1",
        "endpoint": "/v1/embeddings",
        "completion_window": "24h",
        "metadata": {"k": "v"},
        "timeout_minutes": 30,
    }
    uuid.UUID(request.headers["idempotency-key"])  # a uuid4 made for this call
    assert isinstance(batch, batchq.Batch) and batch.status == "validating"
    client.batches.create(input_file_id="file-1", endpoint="/v1/chat/completions", idempotency_key="mine")
    second = server.calls("POST", "/v1/batches")[1]
    assert second.headers["idempotency-key"] == "mine"
    assert json.loads(second.content) == {
        "input_file_id": "file-1",
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }


def test_batches_retrieve_cancel_delete(client: Client, server: FakeServer) -> None:
    batch = server.add_batch(status="in_progress")
    assert client.batches.retrieve(batch["id"]).status == "in_progress"
    assert server.requests[-1].method == "GET" and server.requests[-1].url.path == f"/v1/batches/{batch['id']}"
    assert client.batches.cancel(batch["id"]).status == "cancelling"
    assert server.requests[-1].method == "POST"
    assert server.requests[-1].url.path == f"/v1/batches/{batch['id']}/cancel"
    deleted = client.batches.delete(batch["id"])
    assert isinstance(deleted, batchq.BatchDeleted) and deleted.deleted and deleted.object == "batch.deleted"
    assert server.requests[-1].method == "DELETE" and server.requests[-1].url.path == f"/v1/batches/{batch['id']}"


def test_ids_are_quoted_in_paths(client: Client, server: FakeServer) -> None:
    with pytest.raises(NotFoundError):
        client.batches.retrieve("../files")
    assert server.requests[-1].url.raw_path == b"/v1/batches/..%2Ffiles"


def test_batches_list_pages(client: Client, server: FakeServer) -> None:
    made = [server.add_batch()["id"] for _ in range(5)]
    page = client.batches.list(limit=2)
    assert server.requests[-1].url.params["limit"] == "2" and "after" not in server.requests[-1].url.params
    assert page.has_more and [b.id for b in page.data] == made[::-1][:2]
    second = client.batches.list(after=page.data[-1].id, limit=2)
    assert server.requests[-1].url.params["after"] == page.data[-1].id
    assert [b.id for b in second.data] == made[::-1][2:4]
    assert [b.id for b in page.auto_paging_iter()] == made[::-1]
    assert [b.id for b in page] == made[::-1]
    last = second.get_next_page()
    assert not last.has_next_page()
    with pytest.raises(StopIteration):
        last.get_next_page()


def test_usage_and_estimated_cost_are_exposed(client: Client, server: FakeServer) -> None:
    cost = {"currency": "USD", "amount": 0.0123, "discount": 0.1}
    usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    batch = server.add_batch(status="completed", usage=usage, estimated_cost=cost)
    got = client.batches.retrieve(batch["id"])
    assert got.usage is not None and got.usage.total_tokens == 15
    assert got.estimated_cost == cost  # type: ignore[attr-defined]


def test_results_stream_in_order(client: Client, server: FakeServer) -> None:
    batch = server.add_batch(status="completed")
    results: list[dict[str, Any]] = [
        {"id": f"batch_req_{i}", "custom_id": f"r{i}", "response": None, "error": {"code": "x", "message": "m"}}
        if i % 3 == 0
        else {"id": f"batch_req_{i}", "custom_id": f"r{i}", "response": {"status_code": 200, "body": {}}, "error": None}
        for i in range(10)
    ]
    results[4]["response"]["body"] = {"text": "a\u2028b"}  # a Unicode line separator must not split the line
    server.results[batch["id"]] = results
    got = list(client.batches.results(batch["id"]))
    assert [r["custom_id"] for r in got] == [f"r{i}" for i in range(10)]
    assert got == results
    assert server.requests[-1].url.path == f"/v1/batches/{batch['id']}/results"
    assert server.requests[-1].url.params["partial"] == "false"
    list(client.batches.results(batch["id"], partial=True))
    assert server.requests[-1].url.params["partial"] == "true"


def test_results_of_running_batch_is_a_conflict(client: Client, server: FakeServer) -> None:
    server.queue(error_response(409, "Batch is still in_progress.", "batch_not_final", **{"x-should-retry": "false"}))
    with pytest.raises(ConflictError) as info:
        client.batches.results("batch_1")  # raised at the call, before iterating
    assert info.value.code == "batch_not_final"


def test_line_stream_splits_on_newlines_only() -> None:
    chunks = [b'{"a": "x\xe2\x80', b'\xa8y"}\r\n\n{"b"', b": 2}\n{", b'"c": 3}']
    response = httpx.Response(200, stream=httpx.ByteStream(b"".join(chunks)))
    splitter = line_streams._LineSplitter()
    lines = [line for chunk in chunks for line in splitter.feed(chunk)] + splitter.flush()
    assert lines == ['{"a": "x\u2028y"}'.encode(), b"", b'{"b": 2}', b'{"c": 3}']
    stream = line_streams.LineStream(response, lambda line: line)
    assert list(stream) == ['{"a": "x\u2028y"}', "", '{"b": 2}', '{"c": 3}']


# --- errors and retries ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, PayloadTooLargeError),
        (422, BadRequestError),
        (429, RateLimitError),
        (500, InternalServerError),
        (503, InternalServerError),
    ],
)
def test_error_statuses_map_to_exceptions(
    status: int, exc_type: type[APIError], client: Client, server: FakeServer
) -> None:
    body = {"error": {"message": "what went wrong", "type": "some_type", "param": "endpoint", "code": "some_code"}}
    server.queue(*[httpx.Response(status, json=body)] * 3)
    with pytest.raises(exc_type) as info:
        client.batches.retrieve("batch_1")
    error = info.value
    assert type(error) is exc_type and isinstance(error, APIError)
    assert (error.status_code, error.code, error.param, error.message) == (
        status,
        "some_code",
        "endpoint",
        "what went wrong",
    )
    assert error.type == "some_type" and "what went wrong" in str(error)


def test_non_envelope_error_body_is_kept(client: Client, server: FakeServer) -> None:
    server.queue(httpx.Response(404, text="plain not found"))
    with pytest.raises(NotFoundError, match="plain not found"):
        client.batches.retrieve("batch_1")


def test_retry_after_is_honoured(client: Client, server: FakeServer, sleeps: list[float]) -> None:
    batch = server.add_batch()
    server.queue(
        error_response(429, "slow down", **{"retry-after": "3"}),
        error_response(503, "busy", **{"retry-after-ms": "250"}),
    )
    assert client.batches.retrieve(batch["id"]).id == batch["id"]
    assert sleeps == [3.0, 0.25]
    assert len(server.requests) == 3


def test_retries_are_capped_then_raise(client: Client, server: FakeServer, sleeps: list[float]) -> None:
    server.queue(*[error_response(500, "boom")] * 5)
    with pytest.raises(InternalServerError):
        client.batches.retrieve("batch_1")
    assert len(server.requests) == 3  # 1 attempt + 2 retries (the default)
    assert len(sleeps) == 2
    assert 0.5 * 0.75 <= sleeps[0] <= 0.5 and 1.0 * 0.75 <= sleeps[1] <= 1.0  # exponential backoff with jitter


def test_backoff_is_capped_and_long_retry_after_ignored() -> None:
    assert all(_http.backoff_delay(n) <= _http.MAX_RETRY_DELAY_S for n in range(20))
    response = httpx.Response(429, headers={"retry-after": "3600"})
    assert _http.retry_delay(0, response) <= _http.INITIAL_RETRY_DELAY_S
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= (_http.retry_after_s(httpx.Headers({"retry-after": when})) or 0) <= 31


def test_x_should_retry_false_is_never_retried(client: Client, server: FakeServer, sleeps: list[float]) -> None:
    server.queue(error_response(503, "cannot help", **{"x-should-retry": "false"}))
    with pytest.raises(InternalServerError):
        client.batches.retrieve("batch_1")
    assert len(server.requests) == 1 and sleeps == []


def test_x_should_retry_true_forces_a_retry(client: Client, server: FakeServer, sleeps: list[float]) -> None:
    batch = server.add_batch()
    server.queue(error_response(409, "try again", **{"x-should-retry": "true"}))
    assert client.batches.retrieve(batch["id"]).id == batch["id"]
    assert len(server.requests) == 2


def test_client_errors_are_not_retried(client: Client, server: FakeServer, sleeps: list[float]) -> None:
    server.queue(error_response(400, "bad"))
    with pytest.raises(BadRequestError):
        client.batches.create(input_file_id="file-1", endpoint="/v1/chat/completions")
    assert len(server.requests) == 1 and sleeps == []


def test_connection_errors_are_retried_then_raised(client: Client, server: FakeServer, sleeps: list[float]) -> None:
    batch = server.add_batch()
    server.queue(httpx.ConnectError("refused"))
    assert client.batches.retrieve(batch["id"]).id == batch["id"]
    server.queue(*[httpx.ConnectError("refused")] * 3)
    with pytest.raises(APIConnectionError):
        client.batches.retrieve(batch["id"])
    server.queue(*[httpx.ReadTimeout("slow")] * 3)
    with pytest.raises(APITimeoutError):
        client.batches.retrieve(batch["id"])
    assert len(sleeps) == 1 + 2 + 2


def test_max_retries_zero(server: FakeServer, sleeps: list[float]) -> None:
    client = Client("http://t", transport=httpx.MockTransport(server), max_retries=0, sleep=sleeps.append)
    server.queue(error_response(503, "busy"))
    with pytest.raises(InternalServerError):
        client.batches.list()
    assert len(server.requests) == 1


def test_retried_create_reuses_its_idempotency_key(client: Client, server: FakeServer, sleeps: list[float]) -> None:
    # Given a server that fails the first create after recording it (the answer was lost)
    server.queue(error_response(502, "bad gateway"), httpx.ReadTimeout("lost"))
    # When the create is retried until it succeeds
    batch = client.batches.create(input_file_id="file-1", endpoint="/v1/chat/completions")
    # Then every attempt carried the same key, and one batch exists
    keys = {r.headers["idempotency-key"] for r in server.calls("POST", "/v1/batches")}
    assert len(server.calls("POST", "/v1/batches")) == 3 and len(keys) == 1
    assert list(server.batches) == [batch.id]
    # And a second create call gets a fresh key
    client.batches.create(input_file_id="file-1", endpoint="/v1/chat/completions")
    assert len({r.headers["idempotency-key"] for r in server.calls("POST", "/v1/batches")}) == 2


# --- submit ----------------------------------------------------------------------------------------------------

BARE: dict[str, Any] = {"messages": [{"role": "user", "content": "What is AI?"}]}
PARAMS: dict[str, Any] = {
    "custom_id": "p1",
    "params": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5},
}
OPENAI: dict[str, Any] = {"custom_id": "o1", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}}


def _expected_filled() -> list[dict[str, Any]]:
    return [
        {**BARE, "model": MODEL},
        {**PARAMS, "params": {**PARAMS["params"], "model": MODEL}},
        {**OPENAI, "body": {**OPENAI["body"], "model": MODEL}},
    ]


def test_submit_batch_with_jsonl_string_fills_model_in_each_form(default_client: Client, server: FakeServer) -> None:
    text = "".join(json.dumps(obj) + "\n" for obj in (BARE, PARAMS, OPENAI))
    batch = batchq.submit_batch(requests=text, model=MODEL)
    assert _lines(server.uploaded()) == _expected_filled()
    create = json.loads(server.calls("POST", "/v1/batches")[0].content)
    assert create["input_file_id"] == batch.input_file_id and create["endpoint"] == "/v1/chat/completions"
    assert batch.status == "validating"


def test_submit_batch_with_path_and_list(default_client: Client, server: FakeServer, tmp_path: Path) -> None:
    path = tmp_path / "batch_requests.jsonl"
    path.write_text("".join(json.dumps(obj) + "\n" for obj in (BARE, PARAMS, OPENAI)))
    batchq.submit_batch(requests=path, model=MODEL)
    assert _lines(server.uploaded()) == _expected_filled()
    batchq.submit_batch(requests=str(path), model=MODEL, metadata={"job": "nightly"}, timeout_minutes=60)
    assert _lines(server.uploaded()) == _expected_filled()
    create = json.loads(server.calls("POST", "/v1/batches")[-1].content)
    assert create["metadata"] == {"job": "nightly"} and create["timeout_minutes"] == 60
    batchq.submit_batch(requests=[BARE, PARAMS, OPENAI], model=MODEL, endpoint="/v1/chat/completions")
    assert _lines(server.uploaded()) == _expected_filled()
    assert BARE.get("model") is None  # the caller's dicts are not changed


def test_submit_keeps_existing_models_and_odd_lines(default_client: Client, server: FakeServer) -> None:
    text = (
        "\ufeff" + json.dumps({"messages": [], "model": "other"}) + "\r\n"
        "\n"
        "not json\n"
        + json.dumps({"custom_id": "o", "url": "/v1/chat/completions", "body": "oops"})
        + "\n"
        + json.dumps({"params": {"model": "", "messages": []}})
    )
    batchq.submit_batch(requests=text, model=MODEL)
    uploaded = server.uploaded().decode().split("\n")
    assert uploaded[0] == "\ufeff" + json.dumps({"messages": [], "model": "other"}) + "\r"  # untouched
    assert uploaded[1:3] == ["", "not json"]  # blank and broken lines stay for the server to number
    assert json.loads(uploaded[3])["body"] == "oops"
    assert json.loads(uploaded[4]) == {"params": {"model": MODEL, "messages": []}}  # empty model counts as missing


def test_submit_without_model_uploads_the_file_as_is(
    default_client: Client, server: FakeServer, tmp_path: Path
) -> None:
    path = tmp_path / "requests.jsonl"
    raw = b'{"messages": [], "model": "m"}\n{"messages": []}\n'
    path.write_bytes(raw)
    batchq.submit_batch(requests=path)
    assert server.uploaded() == raw
    assert _multipart(server.calls("POST", "/v1/files")[0])["file"][0] == "requests.jsonl"
    batchq.submit_batch(requests=raw.decode())
    assert server.uploaded() == raw


def test_submit_rejects_a_missing_path(default_client: Client, server: FakeServer) -> None:
    with pytest.raises(FileNotFoundError):
        batchq.submit_batch(requests="no/such/file.jsonl")
    assert server.requests == []


def test_submit_deletes_the_upload_when_create_fails(client: Client, server: FakeServer) -> None:
    limit = error_response(429, "Too many active batches.", "too_many_active_batches", **{"x-should-retry": "false"})
    server.overrides[("POST", "/v1/batches")] = limit
    with pytest.raises(RateLimitError):
        client.batches.submit([BARE], model=MODEL)
    assert server.files == {}
    assert server.requests[-1].method == "DELETE"


# --- wait, results, retry_failed, delete via the module functions ----------------------------------------------


def test_wait_polls_until_final(default_client: Client, server: FakeServer, sleeps: list[float]) -> None:
    batch = server.add_batch()
    server.progress(
        batch["id"],
        [
            {"status": "in_progress", "request_counts": {"total": 3, "completed": 1, "failed": 0}},
            {"status": "finalizing", "request_counts": {"total": 3, "completed": 2, "failed": 1}},
            {"status": "completed"},
        ],
    )
    seen: list[str] = []
    done = default_client.batches.wait(batch["id"], poll_interval=5, on_update=lambda b: seen.append(b.status))
    assert done.status == "completed" and done.request_counts.failed == 1
    assert seen == ["in_progress", "finalizing", "completed"]
    assert sleeps == [5, 5]


def test_module_wait_without_progress(default_client: Client, server: FakeServer) -> None:
    batch = server.add_batch()
    server.progress(batch["id"], [{"status": "in_progress"}, {"status": "expired"}])
    assert batchq.wait(batch["id"], progress=False).status == "expired"


def test_module_wait_with_progress_writes_to_stderr(
    default_client: Client, server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = server.add_batch()
    counts = {"total": 4, "completed": 4, "failed": 0}
    server.progress(batch["id"], [{"status": "completed", "request_counts": counts}])
    assert batchq.wait(batch["id"]).status == "completed"
    captured = capsys.readouterr()
    assert captured.out == "" and "4/4 done (0 failed)" in captured.err


def test_wait_timeout_and_failed(client: Client, server: FakeServer) -> None:
    batch = server.add_batch()
    with pytest.raises(WaitTimeoutError) as info:
        client.batches.wait(batch["id"], timeout=0)
    assert info.value.batch.id == batch["id"] and isinstance(info.value, TimeoutError)
    errors = {"object": "list", "data": [{"code": "invalid_json_line", "message": "bad", "line": 2}]}
    server.progress(batch["id"], [{"status": "failed", "errors": errors}])
    with pytest.raises(BatchFailedError, match="line 2") as failed:
        client.batches.wait(batch["id"], raise_on_failed=True)
    assert failed.value.code == "invalid_json_line" and failed.value.batch.status == "failed"


def test_module_functions_follow_the_source_document(default_client: Client, server: FakeServer) -> None:
    # Given a completed batch with results
    batch = server.add_batch(status="completed", request_counts={"total": 2, "completed": 1, "failed": 1})
    server.results[batch["id"]] = [
        {"custom_id": "r1", "response": {"body": {"choices": [{"message": {"content": "AI"}}]}}, "error": None},
        {"custom_id": "r2", "response": None, "error": {"code": "e", "message": "m"}},
    ]
    # When the source document's code runs
    got = batchq.get_batch(batch_id=batch["id"])
    assert f"{got.request_counts.completed}/{got.request_counts.total}" == "1/2"
    contents = []
    for result in batchq.get_batch_results(batch_id=batch["id"]):
        if result["error"] is None:
            contents.append(result["response"]["body"]["choices"][0]["message"]["content"])
        else:
            contents.append(result["error"]["code"])
    assert contents == ["AI", "e"]
    assert batchq.cancel_batch(batch_id=batch["id"]).status == "cancelling"
    assert batchq.delete_batch(batch["id"]).deleted
    assert batch["id"] not in server.batches


def test_retry_failed_resubmits_failed_lines_with_their_custom_ids(default_client: Client, server: FakeServer) -> None:
    # Given an input of OpenAI, params and bare lines (blank line included), and an error file naming three of them
    lines = [
        json.dumps({"custom_id": "a", "params": {"model": MODEL, "messages": []}}),
        json.dumps({"custom_id": "b", "params": {"model": MODEL, "messages": []}}),
        "",
        json.dumps({"messages": [{"role": "user", "content": "x\u2028y"}], "model": MODEL}, ensure_ascii=False),
        json.dumps({"messages": [], "model": MODEL}),
        json.dumps({"custom_id": "c", "method": "POST", "url": "/v1/embeddings", "body": {"model": MODEL}}),
    ]
    input_id = server.add_file(("\n".join(lines) + "\n").encode())
    errors = [
        {"id": "batch_req_1", "custom_id": cid, "response": None, "error": {"code": "batch_expired", "message": "m"}}
        for cid in ("b", "request-4", "c")
    ]
    error_id = server.add_file("".join(json.dumps(e) + "\n" for e in errors).encode(), "batch_output", "err.jsonl")
    old = server.add_batch(input_id, status="expired", endpoint="/v1/embeddings", error_file_id=error_id)
    # When retry_failed runs
    new = batchq.retry_failed(old["id"])
    # Then the new batch holds exactly those lines, bare ones carrying their implicit custom_id
    resubmitted = server.contents[new.input_file_id].decode().split("\n")[:-1]
    assert resubmitted == [
        lines[1],
        json.dumps(
            {"custom_id": "request-4", "messages": [{"role": "user", "content": "x\u2028y"}], "model": MODEL},
            ensure_ascii=False,
        ),
        lines[5],
    ]
    assert new.endpoint == "/v1/embeddings" and new.metadata == {"retry_of": old["id"]}


def test_retry_failed_without_error_file(client: Client, server: FakeServer) -> None:
    batch = server.add_batch(status="completed")
    with pytest.raises(ValueError, match="nothing to retry"):
        client.batches.retry_failed(batch["id"])


def _retry_setup(server: FakeServer) -> tuple[str, str, list[bytes]]:
    """A batch whose error file names 40 of its 50 input lines, and that error file's lines."""
    inputs = [json.dumps({"custom_id": f"r{i}", "body": {"model": MODEL}}) for i in range(50)]
    input_id = server.add_file(("\n".join(inputs) + "\n").encode())
    errors = [json.dumps({"custom_id": f"r{i}", "error": {"code": "e"}}).encode() + b"\n" for i in range(40)]
    error_id = server.add_file(b"".join(errors), "batch_output", "err.jsonl")
    return server.add_batch(input_id, status="completed", error_file_id=error_id)["id"], error_id, errors


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_retry_failed_streams_the_error_file(flavour: str, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an error file served one line per chunk, counting the chunks sent
    batch_id, error_id, errors = _retry_setup(server)
    served: list[int] = []
    noted_after: list[int] = []
    note_error = FailedLines.note_error

    def noting(self: FailedLines, line: str) -> None:
        noted_after.append(len(served))
        note_error(self, line)

    monkeypatch.setattr(FailedLines, "note_error", noting)

    def chunks() -> Iterator[bytes]:
        for line in errors:
            served.append(1)
            yield line

    async def async_chunks() -> AsyncIterator[bytes]:
        for line in chunks():
            yield line

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == f"/v1/files/{error_id}/content":
            return httpx.Response(200, content=chunks() if flavour == "sync" else async_chunks())
        return server(request)

    # When either client retries the failures
    if flavour == "sync":
        with Client("http://t", transport=httpx.MockTransport(handler)) as sync_client:
            new = sync_client.batches.retry_failed(batch_id)
    else:

        async def retry() -> batchq.Batch:
            async with batchq.AsyncClient("http://t", transport=httpx.MockTransport(handler)) as async_client:
                return await async_client.batches.retry_failed(batch_id)

        new = asyncio.run(retry())
    # Then each error line was handled as it arrived, not after the whole file, and the 40 lines were resubmitted
    assert noted_after == list(range(1, 41))
    assert len(server.contents[new.input_file_id].splitlines()) == 40


# --- async client ----------------------------------------------------------------------------------------------


def test_async_client_mirrors_the_sync_one(server: FakeServer, tmp_path: Path) -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def scenario() -> None:
        async with batchq.AsyncClient("http://t/v1", transport=httpx.MockTransport(server), sleep=sleep) as client:
            server.queue(error_response(503, "busy", **{"retry-after": "1"}))
            batch = await client.batches.submit([BARE, PARAMS], model=MODEL, metadata={"a": "b"})
            assert _lines(server.uploaded()) == _expected_filled()[:2]
            keys = {r.headers["idempotency-key"] for r in server.calls("POST", "/v1/batches")}
            assert len(keys) == 1
            server.progress(batch.id, [{"status": "in_progress"}, {"status": "completed"}])
            assert (await client.batches.wait(batch.id, poll_interval=3)).status == "completed"
            server.results[batch.id] = [{"custom_id": "request-1", "error": None}, {"custom_id": "p1", "error": None}]
            results = await client.batches.results(batch.id)
            assert [r["custom_id"] async for r in results] == ["request-1", "p1"]
            page = await client.batches.list(limit=1)
            assert [b.id async for b in page] == [batch.id]
            assert (await client.files.content(batch.input_file_id)) == server.uploaded()
            with pytest.raises(NotFoundError):
                await client.batches.retrieve("batch_nope")
            assert (await client.batches.delete(batch.id)).deleted

    asyncio.run(scenario())
    assert sleeps == [1.0, 3]


def test_sync_and_async_methods_are_one_operation(server: FakeServer) -> None:
    sync_client = Client("http://t", transport=httpx.MockTransport(server))
    async_client = batchq.AsyncClient("http://t", transport=httpx.MockTransport(server))
    for resource in ("files", "batches"):
        for name in ("create", "retrieve", "list", "delete"):
            sync_method = getattr(getattr(sync_client, resource), name)
            async_method = getattr(getattr(async_client, resource), name)
            assert inspect.signature(sync_method) == inspect.signature(async_method)
            assert sync_method.__doc__ == async_method.__doc__ and sync_method.__name__ == name
            assert inspect.iscoroutinefunction(async_method) and not inspect.iscoroutinefunction(sync_method)
    assert "idempotency_key" in inspect.signature(sync_client.batches.create).parameters
    assert list(inspect.signature(sync_client.batches.wait).parameters)[0] == "batch_id"
    sync_client.close()
    asyncio.run(async_client.aclose())
