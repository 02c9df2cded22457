"""Uploads against a real API process (issue 24, finding 6): every byte of the body counts, slow uploads have a
deadline, and an account's stored bytes have a quota that parallel uploads cannot pass."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.e2e.conftest import StackFactory
from tests.stack import Stack, chat_lines, to_jsonl

MiB = 1024 * 1024
BOUNDARY = "bounds-boundary"
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


def form(content: bytes) -> bytes:
    """A complete multipart body: purpose=batch and one file, closed by the final boundary."""
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def stored_objects(stack: Stack) -> list[Path]:
    root = Path(stack.env["BATCHQ_STORAGE_URL"].removeprefix("file://"))
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def assert_envelope(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text[:500]
    assert set(r.json()["error"]) == {"message", "type", "param", "code"} and r.json()["error"]["code"] == code


def test_bytes_after_the_closing_boundary_count(make_stack: StackFactory) -> None:
    # Given the API with a 1 MiB file limit
    stack = make_stack(max_file_bytes=str(MiB))
    api = stack.start_api()
    # When a valid form arrives followed by 5 MB after its closing boundary, chunked (no Content-Length)
    body = form(to_jsonl(chat_lines(3))) + b"x" * (5 * 10**6)
    r = httpx.post(f"{api}/v1/files", content=chunks(body), headers=MULTIPART, timeout=60)
    # Then it is refused, and nothing is stored
    assert_envelope(r, 413, "file_too_large")
    assert httpx.get(f"{api}/v1/files").json()["data"] == [] and stored_objects(stack) == []
    # And the same form without the trailing bytes is fine
    assert httpx.post(f"{api}/v1/files", content=form(to_jsonl(chat_lines(3))), headers=MULTIPART).status_code == 200


def test_a_stalled_upload_ends_at_its_deadline(make_stack: StackFactory) -> None:
    # Given the API with a 2 s upload deadline
    stack = make_stack(upload_timeout_s="2")
    api = stack.start_api()
    host, port = api.removeprefix("http://").split(":")
    body = form(to_jsonl(chat_lines(3)))
    # When a client sends the headers and half its body, then nothing more
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        head = (
            f"POST /v1/files HTTP/1.1\r\nHost: {host}\r\nContent-Type: {MULTIPART['content-type']}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body[: len(body) // 2])
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        elapsed = time.monotonic() - started
    # Then the API answers 408 in the envelope at the deadline, and nothing is stored
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"408", answer
    assert b'"code":"upload_timeout"' in rest.replace(b" ", b""), answer
    assert elapsed < 8, f"answered after {elapsed:.1f}s"
    assert httpx.get(f"{api}/v1/files").json()["data"] == [] and stored_objects(stack) == []


def test_the_account_storage_quota(make_stack: StackFactory) -> None:
    # Given a quota of 1.5 MiB per account
    stack = make_stack(api_keys="key-a:acct-a,key-b:acct-b", max_account_storage_bytes=str(MiB * 3 // 2))
    api = stack.start_api()
    one_mib = b"x" * MiB

    def upload(headers: dict[str, str], content: bytes) -> httpx.Response:
        files = {"file": ("in.jsonl", content)}
        return httpx.post(f"{api}/v1/files", files=files, data={"purpose": "batch"}, headers=headers, timeout=60)

    # When account A uploads 1 MiB, then 1 MiB more
    first = upload(A, one_mib)
    assert first.status_code == 200, first.text
    second = upload(A, one_mib)
    # Then the second is refused with storage_quota_exceeded and nothing of it is stored
    assert_envelope(second, 413, "storage_quota_exceeded")
    assert [f["id"] for f in httpx.get(f"{api}/v1/files", headers=A).json()["data"]] == [first.json()["id"]]
    assert len(stored_objects(stack)) == 1
    # And account B has its own quota; A gets room back by deleting
    assert upload(B, one_mib).status_code == 200
    assert httpx.delete(f"{api}/v1/files/{first.json()['id']}", headers=A).status_code == 200
    assert upload(A, one_mib).status_code == 200


def test_parallel_uploads_cannot_both_pass_the_quota(make_stack: StackFactory) -> None:
    # Given a quota of 1.5 MiB, and two uploads of 1 MiB each that stream at the same time (each waits, halfway,
    # until the other is halfway too: both are in progress when either could finish)
    stack = make_stack(max_account_storage_bytes=str(MiB * 3 // 2))
    api = stack.start_api()
    halfway = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def body() -> Iterator[bytes]:
        data = form(b"y" * MiB)
        yield data[: len(data) // 2]
        halfway.wait(20)
        yield data[len(data) // 2 :]

    def upload() -> None:
        answers.append(httpx.post(f"{api}/v1/files", content=body(), headers=MULTIPART, timeout=60))

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # Then exactly one passes; the other is refused and leaves nothing stored
    assert sorted(r.status_code for r in answers) == [200, 413], [r.text for r in answers]
    (refused,) = [r for r in answers if r.status_code == 413]
    assert_envelope(refused, 413, "storage_quota_exceeded")
    assert len(httpx.get(f"{api}/v1/files").json()["data"]) == 1 and len(stored_objects(stack)) == 1
