"""Every mistake gets a clear, line-numbered answer in OpenAI's envelope, and nothing reaches the upstream.

One stack (API + a worker) serves the whole table; the simulator must have received nothing at the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_lib

from tests.stack import Stack, wait_final

KEY_A = {"Authorization": "Bearer key-a"}
KEY_B = {"Authorization": "Bearer key-b"}
MODEL = "test-model"


@pytest.fixture(scope="module")
def stack(redis_url: str, sim_url: str, log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    redis_lib.Redis.from_url(redis_url).flushdb()
    httpx.post(sim_url.removesuffix("/v1") + "/sim/reset").raise_for_status()
    env = {
        "BATCHQ_REDIS_URL": redis_url,
        "BATCHQ_UPSTREAM_URL": sim_url,
        "BATCHQ_STORAGE_URL": f"file://{tmp_path_factory.mktemp('store')}",
        "BATCHQ_API_KEYS": "key-a:alice,key-b:bob",
        "BATCHQ_SERVED_MODELS": f"{MODEL},other-model",
        "BATCHQ_MAX_REQUESTS_PER_BATCH": "5",
        "BATCHQ_MAX_LINE_BYTES": "2000",
        "BATCHQ_MAX_FILE_BYTES": "100000",
        "BATCHQ_MAX_CUSTOM_ID_CHARS": "64",
        "BATCHQ_MAX_ACTIVE_BATCHES": "1000",
        "BATCHQ_SWEEP_INTERVAL_S": "1",
    }
    s = Stack(log_dir, env)
    s.start_api()
    s.start_worker("bad-input", concurrency=4)
    s.env["SIM_ROOT"] = sim_url.removesuffix("/v1")
    yield s
    s.close()


def sim_received(stack: Stack) -> int:
    return int(httpx.get(stack.env["SIM_ROOT"] + "/sim/stats").json()["received"])


def line(custom_id: str = "r1", **body: Any) -> dict[str, Any]:
    b = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **body}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": b}


def dumps(*objs: Any) -> bytes:
    return b"".join((o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in objs)


GOOD = line("ok-1")

# (name, file content, [(code, line, param), ...]) — every bad line of the file is expected, in line order.
FILE_CASES: list[tuple[str, bytes, list[tuple[str, int | None, str | None]]]] = [
    ("not json", dumps(GOOD, b"this is not json"), [("invalid_json_line", 2, None)]),
    ("json array", dumps(GOOD, [1, 2]), [("invalid_json_line", 2, None)]),
    ("json string", dumps(b'"text"'), [("invalid_json_line", 1, None)]),
    ("truncated last line", dumps(GOOD) + b'{"custom_id": "r2", "method": "POST"', [("invalid_json_line", 2, None)]),
    ("not utf-8", dumps(GOOD, b'{"custom_id": "\xff\xfe"}'), [("invalid_encoding", 2, None)]),
    ("nul byte", dumps(b'{"custom_id": "a\x00b"}', GOOD), [("invalid_encoding", 1, None)]),
    (
        "missing custom_id",
        dumps({k: v for k, v in line().items() if k != "custom_id"}),
        [("missing_required_parameter", 1, "custom_id")],
    ),
    (
        "missing method",
        dumps({k: v for k, v in line().items() if k != "method"}),
        [("missing_required_parameter", 1, "method")],
    ),
    ("missing url", dumps({k: v for k, v in line().items() if k != "url"}), [("missing_required_parameter", 1, "url")]),
    (
        "missing body",
        dumps({k: v for k, v in line().items() if k != "body"}),
        [("missing_required_parameter", 1, "body")],
    ),
    ("custom_id not a string", dumps({**line(), "custom_id": 7}), [("invalid_request", 1, "custom_id")]),
    ("body not an object", dumps({**line(), "body": "x"}), [("invalid_request", 1, "body")]),
    ("params not an object", dumps({"custom_id": "p", "params": [1]}), [("invalid_request", 1, "params")]),
    ("method GET", dumps({**line(), "method": "GET"}), [("invalid_method", 1, "method")]),
    ("url mismatch", dumps(GOOD, {**line("r2"), "url": "/v1/embeddings"}), [("invalid_url", 2, "url")]),
    ("stream true", dumps(GOOD, line("r2", stream=True)), [("streaming_unsupported", 2, "body.stream")]),
    (
        "missing model",
        dumps({**line(), "body": {"messages": [{"role": "user", "content": "x"}]}}),
        [("invalid_request", 1, "body.model")],
    ),
    ("missing messages", dumps({**line(), "body": {"model": MODEL}}), [("invalid_request", 1, "body.messages")]),
    ("bare form without messages", dumps({"model": MODEL}), [("invalid_request", 1, "body.messages")]),
    ("model not served", dumps(line("r1", model="gpt-unknown")), [("model_not_found", 1, "body.model")]),
    ("two models", dumps(GOOD, line("r2", model="other-model")), [("model_mismatch", 2, "body.model")]),
    ("duplicate custom_id", dumps(GOOD, line("x"), line("ok-1")), [("duplicate_custom_id", 3, "custom_id")]),
    ("empty custom_id", dumps(line("")), [("invalid_custom_id", 1, "custom_id")]),
    ("custom_id too long", dumps(line("c" * 65)), [("invalid_custom_id", 1, "custom_id")]),
    ("too many lines", dumps(*[line(f"r{i}") for i in range(7)]), [("too_many_requests", 6, None)]),
    ("line too long", dumps(GOOD, line("r2", padding="p" * 3000)), [("line_too_long", 2, None)]),
    ("only blank lines", b"\n  \n\r\n", [("empty_file", None, None)]),
    (
        "every bad line reported",
        dumps(b"nope", GOOD, {**line("r3"), "method": "PUT"}, line("r4", stream=True)),
        [("invalid_json_line", 1, None), ("invalid_method", 3, "method"), ("streaming_unsupported", 4, "body.stream")],
    ),
]


def upload(api: str, content: bytes, headers: dict[str, str] = KEY_A, purpose: str = "batch") -> str:
    r = httpx.post(f"{api}/v1/files", files={"file": ("in.jsonl", content)}, data={"purpose": purpose}, headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def create(api: str, file_id: str, headers: dict[str, str] = KEY_A, **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{api}/v1/batches",
        headers=headers,
        json={"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h", **extra},
    )


@pytest.mark.parametrize(("name", "content", "expected"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_file_fails_the_batch_with_line_numbers(
    stack: Stack, name: str, content: bytes, expected: list[tuple[str, int | None, str | None]]
) -> None:
    # Given: an uploaded file with bad lines. When: a batch is created from it.
    before = sim_received(stack)
    r = create(stack.api_url, upload(stack.api_url, content))
    assert r.status_code == 200, r.text
    batch = wait_final(stack.api_url, r.json()["id"], headers=KEY_A, stack=stack)
    # Then: it fails, naming each bad line with OpenAI's code and param; no line ran.
    assert batch["status"] == "failed"
    assert batch["failed_at"] and batch["in_progress_at"] is None
    got = [(e["code"], e["line"], e["param"]) for e in batch["errors"]["data"]]
    assert got == expected, batch["errors"]
    assert all(e["message"] for e in batch["errors"]["data"])
    assert batch["request_counts"]["completed"] == 0 and batch["output_file_id"] is None
    assert sim_received(stack) == before, "a request of a batch that failed validation reached the upstream"


def test_tolerated_forms_are_not_errors(stack: Stack) -> None:
    # Given: CRLF line ends, a BOM, blank lines, no trailing newline, and all three line forms
    params = {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    content = (
        "\ufeff"
        + json.dumps(line("a"))
        + "\r\n\r\n   \n"
        + json.dumps({"custom_id": "b", "params": params})
        + "\r\n"
        + json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "y"}]})
    ).encode()
    # When: a batch runs it
    r = create(stack.api_url, upload(stack.api_url, content), metadata={"dry": "run"})
    batch = wait_final(stack.api_url, r.json()["id"], headers=KEY_A, stack=stack)
    # Then: it completes; the bare line got the custom_id request-<line> (line 5 of the file)
    assert batch["status"] == "completed", batch
    assert batch["errors"] is None and batch["request_counts"] == {
        "total": 3,
        "completed": 3,
        "failed": 0,
        "cancelled": 0,
        "expired": 0,
    }
    out = httpx.get(f"{stack.api_url}/v1/files/{batch['output_file_id']}/content", headers=KEY_A).content
    assert [json.loads(x)["custom_id"] for x in out.splitlines()] == ["a", "b", "request-5"]
    # and a completed batch cannot be cancelled
    again = httpx.post(f"{stack.api_url}/v1/batches/{batch['id']}/cancel", headers=KEY_A)
    assert again.status_code == 409 and error_of(again)["code"] == "batch_not_cancellable"


def error_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert r.headers["x-should-retry"] == "false"
    assert body["error"]["message"]
    return dict(body["error"])


def api_cases(api: str) -> list[tuple[str, httpx.Response, int, str | None, str | None]]:
    """(name, response, status, code, param) for every API mistake."""
    good_file = upload(api, dumps(GOOD))
    deleted = upload(api, dumps(GOOD))
    httpx.delete(f"{api}/v1/files/{deleted}", headers=KEY_A).raise_for_status()
    bobs = upload(api, dumps(GOOD), headers=KEY_B)
    failed = create(api, upload(api, b"nope\n")).json()["id"]
    wait_final(api, failed, headers=KEY_A)
    post_file = lambda **kw: httpx.post(f"{api}/v1/files", headers=KEY_A, **kw)  # noqa: E731
    batches = f"{api}/v1/batches"
    meta17 = {f"k{i}": "v" for i in range(17)}
    return [
        (
            "upload without file",
            post_file(data={"purpose": "batch"}, files={"other": ("x", b"1")}),
            400,
            "missing_required_parameter",
            "file",
        ),
        (
            "upload without purpose",
            post_file(files={"file": ("a.jsonl", dumps(GOOD))}),
            400,
            "missing_required_parameter",
            "purpose",
        ),
        (
            "upload bad purpose",
            post_file(files={"file": ("a.jsonl", dumps(GOOD))}, data={"purpose": "fine-tune"}),
            400,
            "invalid_value",
            "purpose",
        ),
        (
            "upload too large",
            post_file(files={"file": ("a.jsonl", b"x" * 150_000)}, data={"purpose": "batch"}),
            413,
            "file_too_large",
            "file",
        ),
        (
            "upload empty",
            post_file(files={"file": ("a.jsonl", b"")}, data={"purpose": "batch"}),
            400,
            "empty_file",
            "file",
        ),
        ("upload not multipart", post_file(json={"purpose": "batch"}), 400, "invalid_content_type", None),
        ("create unknown file", create(api, "file-doesnotexist"), 404, "invalid_request", "input_file_id"),
        ("create deleted file", create(api, deleted), 404, "invalid_request", "input_file_id"),
        ("create other account's file", create(api, bobs), 404, "invalid_request", "input_file_id"),
        (
            "create bad endpoint",
            httpx.post(
                batches,
                headers=KEY_A,
                json={"input_file_id": good_file, "endpoint": "/v1/invalid", "completion_window": "24h"},
            ),
            400,
            "invalid_value",
            "endpoint",
        ),
        (
            "create bad window",
            create(api, good_file, completion_window="48h"),
            400,
            "invalid_value",
            "completion_window",
        ),
        (
            "create timeout_minutes 0",
            create(api, good_file, timeout_minutes=0),
            400,
            "invalid_value",
            "timeout_minutes",
        ),
        (
            "create timeout_minutes too big",
            create(api, good_file, timeout_minutes=5000),
            400,
            "invalid_value",
            "timeout_minutes",
        ),
        (
            "create timeout_minutes text",
            create(api, good_file, timeout_minutes="ten"),
            400,
            "invalid_value",
            "timeout_minutes",
        ),
        ("create 17 metadata keys", create(api, good_file, metadata=meta17), 400, "invalid_value", "metadata"),
        (
            "create long metadata key",
            create(api, good_file, metadata={"k" * 65: "v"}),
            400,
            "invalid_value",
            "metadata." + "k" * 65,
        ),
        (
            "create long metadata value",
            create(api, good_file, metadata={"k": "v" * 513}),
            400,
            "invalid_value",
            "metadata.k",
        ),
        ("create metadata not string", create(api, good_file, metadata={"k": 1}), 400, "invalid_type", "metadata.k"),
        ("create metadata not object", create(api, good_file, metadata=["x"]), 400, "invalid_type", "metadata"),
        (
            "create malformed json",
            httpx.post(batches, headers={**KEY_A, "content-type": "application/json"}, content=b'{"input_file_id": '),
            400,
            "invalid_json",
            None,
        ),
        (
            "create wrong content type",
            httpx.post(batches, headers=KEY_A, data={"input_file_id": good_file}),
            400,
            "invalid_content_type",
            None,
        ),
        (
            "create missing input_file_id",
            httpx.post(batches, headers=KEY_A, json={"endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            400,
            "missing_required_parameter",
            "input_file_id",
        ),
        (
            "create missing endpoint",
            httpx.post(batches, headers=KEY_A, json={"input_file_id": good_file}),
            400,
            "missing_required_parameter",
            "endpoint",
        ),
        (
            "cancel failed batch",
            httpx.post(f"{batches}/{failed}/cancel", headers=KEY_A),
            409,
            "batch_not_cancellable",
            None,
        ),
        (
            "retrieve unknown batch",
            httpx.get(f"{batches}/batch_nope", headers=KEY_A),
            404,
            "batch_not_found",
            "batch_id",
        ),
        (
            "cancel unknown batch",
            httpx.post(f"{batches}/batch_nope/cancel", headers=KEY_A),
            404,
            "batch_not_found",
            "batch_id",
        ),
        ("other account's batch", httpx.get(f"{batches}/{failed}", headers=KEY_B), 404, "batch_not_found", "batch_id"),
        (
            "retrieve unknown file",
            httpx.get(f"{api}/v1/files/file-nope", headers=KEY_A),
            404,
            "file_not_found",
            "file_id",
        ),
        (
            "content of unknown file",
            httpx.get(f"{api}/v1/files/file-nope/content", headers=KEY_A),
            404,
            "file_not_found",
            "file_id",
        ),
        ("list limit 0", httpx.get(batches, params={"limit": 0}, headers=KEY_A), 400, "invalid_value", "limit"),
        ("list limit 101", httpx.get(batches, params={"limit": 101}, headers=KEY_A), 400, "invalid_value", "limit"),
        ("list limit text", httpx.get(batches, params={"limit": "ten"}, headers=KEY_A), 400, "invalid_value", "limit"),
        (
            "list after unknown",
            httpx.get(batches, params={"after": "batch_nope"}, headers=KEY_A),
            400,
            "invalid_value",
            "after",
        ),
        (
            "files list bad order",
            httpx.get(f"{api}/v1/files", params={"order": "up"}, headers=KEY_A),
            400,
            "invalid_value",
            "order",
        ),
        (
            "create body over 1 MiB",
            create(api, good_file, metadata={"k": "v"}, pad="p" * (1024 * 1024 + 1)),
            413,
            "request_too_large",
            None,
        ),
        (
            "create deeply nested",
            httpx.post(
                batches,
                headers={**KEY_A, "content-type": "application/json"},
                content=b'{"input_file_id": "'
                + good_file.encode()
                + b'", "x": '
                + b"[" * 50_000
                + b"]" * 50_000
                + b"}",
            ),
            400,
            "invalid_json",
            None,
        ),
        (
            "idempotency key too long",
            httpx.post(
                batches,
                headers={**KEY_A, "Idempotency-Key": "k" * 256},
                json={"input_file_id": good_file, "endpoint": "/v1/chat/completions"},
            ),
            400,
            "invalid_idempotency_key",
            None,
        ),
        (
            "upload with too many fields",
            post_file(
                files={"file": ("a.jsonl", dumps(GOOD))}, data={"purpose": "batch", **{f"f{i}": "v" for i in range(20)}}
            ),
            400,
            "too_many_fields",
            None,
        ),
        ("no api key", httpx.get(batches), 401, "missing_api_key", None),
        (
            "malformed auth header",
            httpx.get(batches, headers={"Authorization": "Token key-a"}),
            401,
            "invalid_authorization_header",
            None,
        ),
        ("unknown api key", httpx.get(batches, headers={"Authorization": "Bearer nope"}), 401, "invalid_api_key", None),
    ]


def test_api_mistakes_get_openai_errors(stack: Stack) -> None:
    cases = api_cases(stack.api_url)
    failures = []
    for name, response, status, code, param in cases:
        err = error_of(response) if response.status_code == status else {}
        if response.status_code != status or (err["code"], err["param"]) != (code, param):
            failures.append(f"{name}: {response.status_code} {response.text[:300]}")
    assert not failures, "\n".join(failures)
    assert len(cases) + len(FILE_CASES) >= 40
