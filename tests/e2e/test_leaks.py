"""Issue 24, finding 9: what a tenant can learn or get past, against real processes.

The webhook-endpoint cap under concurrent creates, and upstream connection errors in error files (generic there,
the details in the worker's log).
"""

from __future__ import annotations

import json
import threading

import httpx
import redis as redis_lib

from tests.e2e.conftest import StackFactory
from tests.stack import chat_lines, to_jsonl, wait_final

A = {"Authorization": "Bearer key-a"}


def test_concurrent_creates_never_pass_the_endpoint_cap(make_stack: StackFactory, redis: redis_lib.Redis) -> None:
    # Given an account with 95 of its 100 webhook endpoints
    stack = make_stack(api_keys="key-a:acct-a", webhook_allow_private="true")
    api = stack.start_api()
    with httpx.Client(base_url=api, headers=A, timeout=30) as client:
        for i in range(95):
            assert client.post("/v1/webhook_endpoints", json={"url": f"http://127.0.0.1:9/{i}"}).status_code == 200
    # When 40 creates arrive at once, while Redis holds writes back for a moment (reads still answer: the window
    # between a check and a write, widened so that it does not depend on the machine's speed)
    redis.execute_command("CLIENT", "PAUSE", 1500, "WRITE")
    barrier = threading.Barrier(40)
    codes: list[int] = []
    http = httpx.Client(base_url=api, headers=A, timeout=30, limits=httpx.Limits(max_connections=50))

    def create(i: int) -> None:
        barrier.wait(20)
        r = http.post("/v1/webhook_endpoints", json={"url": f"http://127.0.0.1:9/late-{i}"})
        codes.append(r.status_code)
        assert r.status_code == 200 or r.json()["error"]["code"] == "too_many_webhook_endpoints", r.text

    threads = [threading.Thread(target=create, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    listed = http.get("/v1/webhook_endpoints", params={"limit": 100}).json()
    http.close()
    # Then exactly five got in, and the account holds exactly 100
    assert sorted(codes) == [200] * 5 + [400] * 35, codes
    assert len(listed["data"]) == 100 and listed["has_more"] is False


def test_upstream_connection_errors_are_generic_in_error_files(make_stack: StackFactory) -> None:
    # Given an upstream whose name does not resolve (an internal name, as a tenant must not learn it)
    stack = make_stack(upstream_url="http://vllm-internal.invalid:8000/v1", max_attempts="2")
    api = stack.start_api()
    worker = stack.start_worker("leaks", concurrency=4)
    # When a batch runs into it
    r = httpx.post(f"{api}/v1/files", files={"file": ("in.jsonl", to_jsonl(chat_lines(2)))}, data={"purpose": "batch"})
    body = {"input_file_id": r.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    batch = wait_final(api, httpx.post(f"{api}/v1/batches", json=body).json()["id"], stack=stack)
    # Then each error line carries the failure class and a generic message, nothing of the host or of urllib3
    assert batch["status"] == "completed" and batch["request_counts"]["failed"] == 2, batch
    lines = [json.loads(x) for x in httpx.get(f"{api}/v1/files/{batch['error_file_id']}/content").content.splitlines()]
    assert [x["error"]["code"] for x in lines] == ["upstream_unreachable"] * 2
    for line in lines:
        text = json.dumps(line)
        for leak in (
            "vllm-internal",
            "8000",
            "Failed to resolve",
            "NameResolution",
            "NewConnection",
            "Errno",
            "HTTPConnection",
        ):
            assert leak not in text, text
    # And the worker's log holds the details for the operator
    assert "vllm-internal.invalid" in worker.log_path.read_text()
