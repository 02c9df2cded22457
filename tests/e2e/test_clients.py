"""Driving batchq the ways people do: the source document's snippets, the official openai SDK, the CLI."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

import batchq
from tests.e2e.conftest import StackFactory
from tests.e2e.test_chaos import configure_sim
from tests.servers import batchq_cmd
from tests.stack import Stack, chat_lines, parse_jsonl, to_jsonl, wait_final

SEED_COMPLETE_EXAMPLE = """
import json

requests = [
    {"custom_id": f"req-{i}", "params": {
        "model": "Llama-3.3-70B-Instruct",
        "messages": [{"role": "user", "content": f"Question {i}"}]
    }} for i in range(1000)
]

# Save as JSONL
with open('batch_requests.jsonl', 'w') as f:
    for req in requests:
        f.write(json.dumps(req) + '\\n')

import regolo
import time

# Submit batch
with open('batch_requests.jsonl', 'r') as f:
    batch = regolo.submit_batch(requests=f.read())

print(f"Batch {batch.id} submitted")

# Monitor progress
while True:
    batch = regolo.get_batch(batch.id)
    print(f"Status: {batch.status}")
    print(f"Progress: {batch.request_counts.completed}/{batch.request_counts.total}")

    if batch.status == "completed":
        break

    time.sleep(10)  # Check every 10 seconds

# Get results
results = regolo.get_batch_results(batch.id)
for result in results:
    if result['error'] is None:
        content = result['response']['body']['choices'][0]['message']['content']
        print(f"{result['custom_id']}: {content}")
    else:
        print(f"{result['custom_id']}: Error - {result['error']}")
"""


@pytest.fixture
def local_stack(make_stack: StackFactory) -> Iterator[Stack]:
    stack = make_stack()
    stack.start_api()
    stack.start_worker("w1", concurrency=32)
    yield stack


@pytest.fixture
def module_client(local_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point batchq's module-level functions at the stack, as BATCHQ_URL would."""
    monkeypatch.setenv("BATCHQ_URL", local_stack.api_url)
    monkeypatch.delenv("BATCHQ_API_KEY", raising=False)
    monkeypatch.setattr(batchq, "_default_client", None)
    yield local_stack.api_url
    monkeypatch.setattr(batchq, "_default_client", None)


def test_seed_complete_example_runs_unchanged(local_stack: Stack, tmp_path: Path) -> None:
    # Given: the source document's "Complete Example", with batchq in place of regolo and nothing else changed
    script = tmp_path / "example.py"
    script.write_text(SEED_COMPLETE_EXAMPLE.replace("import regolo", "import batchq").replace("regolo.", "batchq."))
    # When: it runs as a user would run it
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "BATCHQ_URL": local_stack.api_url},
    )
    # Then: it prints a line per request with the upstream's answer
    assert proc.returncode == 0, proc.stderr + local_stack.logs()
    out = proc.stdout.splitlines()
    assert out[0].startswith("Batch batch_") and out[0].endswith(" submitted")
    assert "Progress: 1000/1000" in out
    answers = [line for line in out if line.startswith("req-")]
    assert answers == [f"req-{i}: Echo: Question {i}" for i in range(1000)]


def test_seed_snippets_with_local_store(module_client: str, tmp_path: Path) -> None:
    # Given: the three input shapes of the source document in one file (model filled by submit_batch)
    path = tmp_path / "requests.jsonl"
    with path.open("w") as f:
        for i in range(1000):
            if i % 2:
                f.write(json.dumps({"messages": [{"role": "user", "content": f"What is {i}?"}]}) + "\n")
            else:
                f.write(
                    json.dumps(
                        {
                            "custom_id": f"request-{i + 1}-p",
                            "params": {
                                "messages": [{"role": "user", "content": f"What is {i}?"}],
                                "max_tokens": 100,
                                "temperature": 0.7,
                                "top_p": 0.9,
                            },
                        }
                    )
                    + "\n"
                )
    # When: Step 2-4 of the document
    with open(path) as f:
        batch_data = f.read()
    batch = batchq.submit_batch(requests=batch_data, model="Llama-3.3-70B-Instruct")
    assert batch.id.startswith("batch_") and batch.status == "validating"
    batch = batchq.wait(batch.id, progress=False, poll_interval=0.2)
    batch = batchq.get_batch(batch_id=batch.id)
    assert batch.status == "completed"
    assert (batch.request_counts.completed, batch.request_counts.total) == (1000, 1000)
    results = list(batchq.get_batch_results(batch_id=batch.id))
    # Then: every result in input order, bare lines named request-<line>, in the document's output format
    assert [r["custom_id"] for r in results] == [
        f"request-{i + 1}-p" if i % 2 == 0 else f"request-{i + 1}" for i in range(1000)
    ]
    first = results[0]
    assert first["id"].startswith("batch_req_") and first["error"] is None
    assert first["response"]["status_code"] == 200
    assert first["response"]["body"]["choices"][0]["message"]["content"] == "Echo: What is 0?"
    assert first["response"]["body"]["model"] == "Llama-3.3-70B-Instruct"
    assert batch.usage is not None and batch.usage.total_tokens > 0
    # and cleanup: the batch and its files are gone
    batchq.delete_batch(batch.id)
    with pytest.raises(batchq.NotFoundError):
        batchq.get_batch(batch.id)


def test_openai_sdk_every_endpoint(local_stack: Stack) -> None:
    api = local_stack.api_url
    client = OpenAI(base_url=f"{api}/v1", api_key="local", max_retries=0)
    # files: create / retrieve / list / content / delete
    content = to_jsonl(chat_lines(5))
    f = client.files.create(file=("in.jsonl", io.BytesIO(content)), purpose="batch")
    assert client.files.retrieve(f.id).bytes == len(content)
    assert client.files.wait_for_processing(f.id).status == "processed"
    assert f.id in [x.id for x in client.files.list(purpose="batch")]
    assert client.files.content(f.id).content == content
    # batches: create three, list with pagination, retrieve, cancel
    batches = [
        client.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"n": str(i)}
        )
        for i in range(3)
    ]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == [batches[2].id, batches[1].id] and page.has_more
    assert [b.id for b in client.batches.list(limit=2, after=batches[1].id).data] == [batches[0].id]
    assert [b.id for b in client.batches.list(limit=2)] == [b.id for b in reversed(batches)]  # auto-paging
    for b in batches:
        assert wait_final(api, b.id)["status"] == "completed"
    done = client.batches.retrieve(batches[0].id)
    assert done.metadata == {"n": "0"} and done.request_counts and done.request_counts.completed == 5
    # error mapping: the SDK's own exceptions
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_doesnotexist")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-doesnotexist")
    with pytest.raises(openai.ConflictError) as conflict:
        client.batches.cancel(done.id)
    assert "Cannot cancel a batch with status 'completed'" in str(conflict.value)
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=f.id, endpoint="/v1/nope", completion_window="24h")  # type: ignore[arg-type]
    deleted = client.files.delete(f.id)
    assert deleted.deleted and deleted.id == f.id
    with pytest.raises(openai.NotFoundError):
        client.files.content(f.id)


def test_openai_sdk_401(make_stack: StackFactory) -> None:
    stack = make_stack(api_keys="good:acct")
    api = stack.start_api()
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{api}/v1", api_key="bad", max_retries=0).batches.list()
    assert OpenAI(base_url=f"{api}/v1", api_key="good", max_retries=0).batches.list().data == []


def test_openai_sdk_cancel(local_stack: Stack, sim: str) -> None:
    configure_sim(sim, latency_ms=300)
    client = OpenAI(base_url=f"{local_stack.api_url}/v1", api_key="local", max_retries=0)
    f = client.files.create(file=("in.jsonl", io.BytesIO(to_jsonl(chat_lines(300)))), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    cancelled = client.batches.cancel(b.id)
    assert cancelled.status == "cancelling"
    final = wait_final(local_stack.api_url, b.id)
    assert final["status"] == "cancelled"
    assert client.batches.cancel(b.id).status == "cancelled"  # cancelling again is fine


def test_retry_failed_reruns_only_the_failed_lines(module_client: str, sim: str) -> None:
    # Given: a batch where five lines fail upstream with a 400 (not retried)
    configure_sim(sim, fail_rules=[{"match": "^req-(3|7|11|13|17)$", "status": 400, "times": -1}])
    lines = chat_lines(20)
    batch = batchq.submit_batch(requests=lines)
    batch = batchq.wait(batch.id, progress=False, poll_interval=0.2)
    assert (batch.request_counts.completed, batch.request_counts.failed) == (15, 5)
    # When: the upstream problem is fixed and the failed lines are retried
    configure_sim(sim, fail_rules=[])
    retry = batchq.retry_failed(batch.id)
    retry = batchq.wait(retry.id, progress=False, poll_interval=0.2)
    # Then: a new batch of exactly those lines, same custom_ids, all succeeded
    assert retry.status == "completed" and retry.metadata == {"retry_of": batch.id}
    results = list(batchq.get_batch_results(retry.id))
    assert [r["custom_id"] for r in results] == ["req-3", "req-7", "req-11", "req-13", "req-17"]
    assert all(r["error"] is None for r in results)


def test_partial_results_while_running(module_client: str, sim: str) -> None:
    configure_sim(sim, latency_ms=200)
    batch = batchq.submit_batch(requests=chat_lines(200))
    deadline = time.monotonic() + 60
    partial: list[dict[str, object]] = []
    while time.monotonic() < deadline and not partial:
        if batchq.get_batch(batch.id).request_counts.completed >= 20:
            partial = list(batchq.get_batch_results(batch.id, partial=True))
        time.sleep(0.1)
    assert 20 <= len(partial) < 200
    with pytest.raises(batchq.ConflictError):
        list(batchq.get_batch_results(batch.id))  # not final: only partial results may be asked for
    final = batchq.wait(batch.id, progress=False, poll_interval=0.2)
    assert final.status == "completed" and len(list(batchq.get_batch_results(batch.id))) == 200


def test_cli_submit_wait_under_a_pty(local_stack: Stack, sim: str, tmp_path: Path) -> None:
    # Given: a requests file and a terminal
    configure_sim(sim, latency_ms=20)
    requests_file = tmp_path / "requests.jsonl"
    requests_file.write_bytes(to_jsonl(chat_lines(300)))
    env = {**os.environ, "BATCHQ_URL": local_stack.api_url, "COLUMNS": "120", "TERM": "xterm"}
    # When: `batchq submit FILE --wait` runs with its output on a pseudo-terminal
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        batchq_cmd("submit", str(requests_file), "--wait", "--poll-interval", "0.2"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
        elif proc.poll() is not None:
            break
    code = proc.wait(30)
    os.close(master)
    text = screen.decode(errors="replace")
    # Then: exit 0, a live progress display (counts, total) was drawn, and the batch id was printed
    assert code == 0, text
    assert "300/300" in text or "300 / 300" in text, text[-2000:]
    assert "\x1b[" in text  # drawn with terminal control sequences: a live bar, not plain lines
    batch_id = next(w for w in text.replace("\r", " ").split() if w.startswith("batch_"))
    batch_id = batch_id.strip(".,:;'\"")
    # and `batchq results ID --output F` writes every result line
    out = tmp_path / "results.jsonl"
    r = subprocess.run(batchq_cmd("results", batch_id, "--output", str(out)), env=env, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    results = parse_jsonl(out.read_bytes())
    assert [x["custom_id"] for x in results] == [f"req-{i}" for i in range(300)]
    # and scripts get machine-readable status and meaningful exit codes
    status = subprocess.run(batchq_cmd("status", batch_id, "--json"), env=env, capture_output=True, timeout=60)
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "completed"
    missing = subprocess.run(batchq_cmd("status", "batch_nope"), env=env, capture_output=True, timeout=60)
    assert missing.returncode == 5
    down = subprocess.run(
        batchq_cmd("status", batch_id), env={**env, "BATCHQ_URL": "http://127.0.0.1:9"}, capture_output=True, timeout=60
    )
    assert down.returncode == 7


def test_idempotency_key_makes_one_batch(local_stack: Stack) -> None:
    api = local_stack.api_url
    file_id = httpx.post(
        f"{api}/v1/files", files={"file": ("a.jsonl", to_jsonl(chat_lines(2)))}, data={"purpose": "batch"}
    ).json()["id"]
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    first = httpx.post(f"{api}/v1/batches", json=body, headers={"Idempotency-Key": "k-1"}).json()
    second = httpx.post(f"{api}/v1/batches", json=body, headers={"Idempotency-Key": "k-1"}).json()
    other = httpx.post(f"{api}/v1/batches", json=body, headers={"Idempotency-Key": "k-2"}).json()
    assert first["id"] == second["id"] != other["id"]
    assert len(httpx.get(f"{api}/v1/batches").json()["data"]) == 2
