"""The API under hostile input, stalls and secrets (issue 13), against real processes.

Each test runs its own API process (with the defaults unless it says otherwise) and measures it from outside:
status codes and envelopes, the process's peak RSS (``VmHWM``, reset through ``clear_refs``), a SIGSTOPped
redis-server, and the bytes of every file, answer and log line.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tests.e2e.conftest import StackFactory
from tests.servers import Proc, batchq_cmd, free_port, start_moto, start_redis, wait_for
from tests.stack import Stack, chat_lines, to_jsonl, wait_final

MiB = 1024 * 1024
#: Growth of the API's peak RSS allowed while it refuses bodies of 5 MB: a chunked body is held up to the 1 MiB cap
#: before the 413, and the interpreter wobbles a little (holding the whole body measured +25 MiB).
RSS_SLACK_B = 4 * MiB


def start_api(stack: Stack) -> tuple[str, Proc]:
    """The API process of ``stack``, ready once ``/livez`` answers (``/healthz`` may be 503 on purpose)."""
    port = free_port()
    proc = Proc(f"api-{port}", batchq_cmd("api", "--port", str(port)), stack.log_dir, stack.env).start()
    stack.procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/livez").status_code == 200, 30, "api")
    except TimeoutError:
        raise RuntimeError(f"API did not start:\n{proc.log_tail()}") from None
    stack.api_url = url
    return url, proc


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> int:
    """Reset the process's peak RSS to its current RSS; returns that RSS in bytes."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_kib(pid, "VmRSS") * 1024


def peak(pid: int) -> int:
    return _status_kib(pid, "VmHWM") * 1024


def upload(api: str, content: bytes) -> str:
    r = httpx.post(f"{api}/v1/files", files={"file": ("in.jsonl", content)}, data={"purpose": "batch"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def create_body(file_id: str, **extra: Any) -> dict[str, Any]:
    return {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h", **extra}


def assert_envelope(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text[:500]
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["code"] == code, body


def test_big_and_deep_bodies_are_refused_with_flat_memory(make_stack: StackFactory) -> None:
    # Given: the API with default limits, warmed up by one ordinary create
    stack = make_stack()
    api, proc = start_api(stack)
    file_id = upload(api, to_jsonl(chat_lines(1)))
    assert httpx.post(f"{api}/v1/batches", json=create_body(file_id)).status_code == 200
    pad = {"pad": "p" * (5 * MiB)}
    big = json.dumps(create_body(file_id, metadata=None, **pad)).encode()
    before = reset_peak(proc.pid)

    # When: a 5 MB JSON body arrives with a Content-Length, then chunked without one, then a 5 MB multipart
    # body of 100,000 tiny fields
    declared = httpx.post(f"{api}/v1/batches", content=big, headers={"content-type": "application/json"})
    chunked = httpx.post(
        f"{api}/v1/batches",
        content=(big[i : i + 65536] for i in range(0, len(big), 65536)),
        headers={"content-type": "application/json"},
    )
    boundary = "hardening-boundary"
    fields = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n'.encode() for i in range(100_000)
    )
    multipart = httpx.post(
        f"{api}/v1/files",
        content=fields + f"--{boundary}--\r\n".encode(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    grown = peak(proc.pid) - before

    # Then: 413 for both JSON bodies, 400 for the fields, in the envelope; the API's peak RSS stayed flat
    assert_envelope(declared, 413, "request_too_large")
    assert_envelope(chunked, 413, "request_too_large")
    assert_envelope(multipart, 400, "too_many_fields")
    assert len(fields) > 5 * 10**6
    assert grown < RSS_SLACK_B, f"peak RSS grew by {grown / MiB:.1f} MiB while refusing ~5 MB bodies"

    # and a deeply nested body is a 400, not a 500; the API still serves
    nested = "[" * 200_000 + "]" * 200_000
    deep = json.dumps(create_body(file_id, x=0)).replace('"x": 0', f'"x": {nested}')
    assert_envelope(
        httpx.post(f"{api}/v1/batches", content=deep, headers={"content-type": "application/json"}),
        400,
        "invalid_json",
    )
    assert httpx.get(f"{api}/v1/batches").status_code == 200


def test_a_stalled_redis_gives_503s_while_livez_answers(
    make_stack: StackFactory, tmp_path: Path, log_dir: Path
) -> None:
    # Given: the API on a redis-server of its own (default timeouts)
    port = free_port()
    redis_proc = start_redis(tmp_path / "redis", port, log_dir)
    try:
        stack = make_stack(redis_url=f"redis://127.0.0.1:{port}/0")
        api, _ = start_api(stack)
        assert httpx.get(f"{api}/v1/batches").status_code == 200
        livez: list[tuple[int, float]] = []
        stop = threading.Event()

        def probe() -> None:
            with httpx.Client(timeout=5) as probe_client:  # one kept-alive connection: measures the API, not connects
                while not stop.is_set():
                    t0 = time.monotonic()
                    try:
                        code = probe_client.get(f"{api}/livez").status_code
                    except httpx.HTTPError:
                        code = 0
                    livez.append((code, time.monotonic() - t0))
                    time.sleep(0.1)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()

        # When: redis-server is stopped (SIGSTOP: connections stay open, nothing answers) and 60 requests
        # arrive at once, more than the threadpool's 40 slots
        os.kill(redis_proc.pid, signal.SIGSTOP)
        try:
            results: list[tuple[int, float, str]] = []
            crowd_client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=100))

            def get() -> None:
                t0 = time.monotonic()
                r = crowd_client.get(f"{api}/v1/batches")
                results.append((r.status_code, time.monotonic() - t0, r.headers.get("x-should-retry", "")))

            crowd = [threading.Thread(target=get) for _ in range(60)]
            for t in crowd:
                t.start()
            t0 = time.monotonic()
            first = httpx.get(f"{api}/v1/batches", timeout=30)
            first_s = time.monotonic() - t0
            health = httpx.get(f"{api}/healthz", timeout=30)
            for t in crowd:
                t.join(60)
            crowd_client.close()
        finally:
            os.kill(redis_proc.pid, signal.SIGCONT)

        # Then: 503 with x-should-retry within 10 s, for every request of the crowd too; /healthz names redis
        assert_envelope(first, 503, "redis_unavailable")
        assert first.headers["x-should-retry"] == "true"
        assert first_s < 10, f"503 took {first_s:.1f}s"
        assert len(results) == 60 and all(code == 503 and retry == "true" for code, _, retry in results), results
        assert health.status_code == 503 and health.json()["redis"] != "ok" and health.json()["store"] == "ok"

        # and after SIGCONT the same process works again, without a restart
        wait_for(lambda: httpx.get(f"{api}/v1/batches").status_code == 200, 15, "api after SIGCONT", 0.2)
        assert httpx.get(f"{api}/healthz").status_code == 200
        stop.set()
        prober.join(10)
        assert livez and all(code == 200 for code, _ in livez), livez
        assert max(s for _, s in livez) < 1.0, f"/livez took up to {max(s for _, s in livez):.2f}s during the stall"
    finally:
        redis_proc.stop()


def test_idempotency_key_reuse_and_ten_concurrent_retries(make_stack: StackFactory) -> None:
    # Given: the API (no worker: batches stay validating) and one uploaded file
    stack = make_stack()
    api, _ = start_api(stack)
    file_id = upload(api, to_jsonl(chat_lines(2)))
    body = create_body(file_id, metadata={"run": "1"})
    barrier = threading.Barrier(10)
    answers: list[httpx.Response] = []

    def create() -> None:
        barrier.wait(10)
        answers.append(httpx.post(f"{api}/v1/batches", json=body, headers={"Idempotency-Key": "retry-1"}, timeout=30))

    # When: ten identical requests with one key arrive at once, then one with another body
    threads = [threading.Thread(target=create) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    other = httpx.post(
        f"{api}/v1/batches", json={**body, "metadata": {"run": "2"}}, headers={"Idempotency-Key": "retry-1"}
    )

    # Then: all ten got the same batch, exactly one exists; the other body is a 409
    assert [r.status_code for r in answers] == [200] * 10, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert len(httpx.get(f"{api}/v1/batches").json()["data"]) == 1
    assert_envelope(other, 409, "idempotency_key_reused")


def test_a_store_that_refuses_writes_gives_a_503_on_upload(make_stack: StackFactory) -> None:
    # Given: the API on moto's S3 server, with a bucket that does not exist
    stack = make_stack(storage="s3", s3_bucket="batchq-no-such-bucket")
    api, _ = start_api(stack)
    # When: a file is uploaded. Then: a retryable 503 envelope, and /healthz says the store is down
    r = httpx.post(f"{api}/v1/files", files={"file": ("in.jsonl", to_jsonl(chat_lines(3)))}, data={"purpose": "batch"})
    assert_envelope(r, 503, "storage_unavailable")
    assert r.headers["x-should-retry"] == "true"
    health = httpx.get(f"{api}/healthz")
    assert health.status_code == 503 and health.json()["store"] != "ok"


UPSTREAM_KEY = "sk-proj-Zq7hardeningSecretKey0123456789abcdefXYZ"


@pytest.mark.parametrize("message", [f"Incorrect API key provided: {UPSTREAM_KEY}.", "key sk-proj-****************XYZ"])
def test_the_upstream_key_appears_nowhere(make_stack: StackFactory, sim: str, message: str) -> None:
    # Given: an upstream whose 401 quotes the configured key (whole, or OpenAI-style masked)
    stack = make_stack(upstream_api_key=UPSTREAM_KEY)
    api, api_proc = start_api(stack)
    worker = stack.start_worker("redact", concurrency=4)
    error = {"message": message, "type": "invalid_request_error", "code": "invalid_api_key", "key": UPSTREAM_KEY}
    httpx.post(
        sim.removesuffix("/v1") + "/sim/config",
        json={"fail_rules": [{"match": ".*", "status": 401, "times": -1, "body": {"error": error}}]},
    ).raise_for_status()

    # When: a batch runs into it
    file_id = upload(api, to_jsonl(chat_lines(3)))
    batch = wait_final(api, httpx.post(f"{api}/v1/batches", json=create_body(file_id)).json()["id"], stack=stack)

    # Then: every line failed with the upstream's code, its message redacted ...
    assert batch["status"] == "completed" and batch["request_counts"]["failed"] == 3, batch
    error_file = httpx.get(f"{api}/v1/files/{batch['error_file_id']}/content").content
    lines = [json.loads(x) for x in error_file.splitlines()]
    assert all(x["error"]["code"] == "invalid_api_key" and "[redacted]" in x["error"]["message"] for x in lines)
    # ... and neither the key nor its masked quote is in any file, API answer or log line
    answers = [
        error_file,
        httpx.get(f"{api}/v1/batches/{batch['id']}/results").content,
        httpx.get(f"{api}/v1/batches/{batch['id']}").content,
        httpx.get(f"{api}/v1/batches").content,
        httpx.get(f"{api}/v1/files").content,
    ]
    logs = [api_proc.log_path.read_bytes(), worker.log_path.read_bytes()]
    for blob in answers + logs:
        for secret in (UPSTREAM_KEY, "Zq7hardening", "sk-proj-*", "*XYZ"):
            assert secret.encode() not in blob, f"{secret!r} leaked: {blob[:2000]!r}"


def test_a_download_that_fails_midway_breaks_the_transfer(
    make_stack: StackFactory, tmp_path: Path, log_dir: Path
) -> None:
    # Given: the API on an S3 server of its own, holding a 40 MiB file
    port = free_port()
    moto = start_moto(port, log_dir)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="midway")
        stack = make_stack(storage="s3", s3_bucket="midway", s3_endpoint_url=endpoint)
        api, _ = start_api(stack)
        size = 40 * MiB
        line = b'{"custom_id": "x", "params": {"model": "m", "messages": []}}' + b" " * 1000 + b"\n"
        content = line * (size // len(line))
        file_id = upload(api, content)
        # When: a download has started (200 and the first MiB received), then the store stalls
        received = 0
        with (
            pytest.raises(httpx.HTTPError) as broken,
            httpx.stream("GET", f"{api}/v1/files/{file_id}/content", timeout=60) as r,
        ):
            assert r.status_code == 200 and int(r.headers["content-length"]) == len(content)
            for chunk in r.iter_bytes():
                received += len(chunk)
                if received >= MiB and moto.alive():
                    os.kill(moto.pid, signal.SIGSTOP)
        # Then: the client sees a broken transfer (not a complete-looking short file) once the read times out
        assert 0 < received < len(content)
        assert isinstance(broken.value, httpx.RemoteProtocolError | httpx.ReadError), broken.value
        # and while the store stays stalled, /healthz says so within a few seconds and /livez answers
        t0 = time.monotonic()
        health = httpx.get(f"{api}/healthz", timeout=30)
        assert health.status_code == 503 and health.json()["store"] != "ok" and health.json()["redis"] == "ok"
        assert time.monotonic() - t0 < 8, f"/healthz took {time.monotonic() - t0:.1f}s"
        assert httpx.get(f"{api}/livez", timeout=2).status_code == 200
    finally:
        if moto.alive():
            os.kill(moto.pid, signal.SIGCONT)
        moto.stop()
