"""A batch end to end through real processes: API, Celery workers, Redis, S3 (moto server), the simulator."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from openai import NotFoundError, OpenAI

from tests.e2e.conftest import StackFactory
from tests.stack import chat_lines, parse_jsonl, to_jsonl, wait_final


def test_openai_sdk_on_s3_with_two_workers(make_stack: StackFactory, s3_bucket: str, sim: str) -> None:
    # Given: the API and TWO worker processes, storage on moto's S3 server, 2,000 lines of which a few are
    # made to fail upstream with a 400 (they must land in the error file, each exactly once)
    stack = make_stack(storage="s3", s3_bucket=s3_bucket)
    api = stack.start_api()
    stack.start_worker("w1", concurrency=32)
    stack.start_worker("w2", concurrency=32)
    httpx.post(
        sim.removesuffix("/v1") + "/sim/config",
        json={
            "fail_rules": [
                {
                    "match": "^req-1[0-9]$",
                    "status": 400,
                    "times": -1,
                    "body": {"error": {"message": "bad prompt", "type": "invalid_request_error", "code": "bad_prompt"}},
                },
            ]
        },
    ).raise_for_status()
    lines = chat_lines(2000)
    client = OpenAI(base_url=f"{api}/v1", api_key="local-key", max_retries=0)

    # When: the official SDK uploads the file, creates the batch and polls it
    uploaded = client.files.create(file=("requests.jsonl", io.BytesIO(to_jsonl(lines))), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(to_jsonl(lines))
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"job": "e2e"}
    )
    assert batch.status == "validating"
    final = wait_final(api, batch.id, timeout=240, stack=stack)
    batch = client.batches.retrieve(batch.id)

    # Then: completed, every custom_id exactly once across the two files, counts equal to the files
    assert final["status"] == "completed", stack.logs()
    assert batch.output_file_id and batch.error_file_id
    output = parse_jsonl(client.files.content(batch.output_file_id).content)
    errors = parse_jsonl(client.files.content(batch.error_file_id).content)
    ids = [r["custom_id"] for r in output + errors]
    assert sorted(ids) == sorted(line["custom_id"] for line in lines)
    assert len(ids) == len(set(ids)) == 2000
    assert {r["custom_id"] for r in errors} == {f"req-{i}" for i in range(10, 20)}
    assert all(r["error"] is None and r["response"]["status_code"] == 200 for r in output)
    assert all(r["error"]["code"] == "bad_prompt" and r["response"]["status_code"] == 400 for r in errors)
    assert [r["custom_id"] for r in output] == [f"req-{i}" for i in range(2000) if not 10 <= i < 20]  # input order
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (2000, 1990, 10)
    assert batch.usage is not None and batch.usage.total_tokens > 0
    assert batch.usage.total_tokens == sum(r["response"]["body"]["usage"]["total_tokens"] for r in output)
    assert batch.completed_at and batch.in_progress_at and batch.finalizing_at
    assert batch.metadata == {"job": "e2e"}
    assert batch.model == "test-model"
    # and the files are listed as the batch's outputs
    out_file = client.files.retrieve(batch.output_file_id)
    assert out_file.purpose == "batch_output" and out_file.status == "processed"


def test_accounts_see_only_their_own_objects(make_stack: StackFactory) -> None:
    # Given: two accounts; alice uploads a file and creates a batch
    stack = make_stack(api_keys="key-alice:alice,key-bob:bob")
    api = stack.start_api()
    stack.start_worker("w1")
    alice = OpenAI(base_url=f"{api}/v1", api_key="key-alice", max_retries=0)
    bob = OpenAI(base_url=f"{api}/v1", api_key="key-bob", max_retries=0)
    f = alice.files.create(file=("a.jsonl", io.BytesIO(to_jsonl(chat_lines(3)))), purpose="batch")
    batch = alice.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    wait_final(api, batch.id, headers={"Authorization": "Bearer key-alice"}, stack=stack)

    # Then: bob gets 404 for the file, its content, the batch, its cancel; and cannot build on alice's file
    for call in (
        lambda: bob.files.retrieve(f.id),
        lambda: bob.files.content(f.id),
        lambda: bob.batches.retrieve(batch.id),
        lambda: bob.batches.cancel(batch.id),
        lambda: bob.files.delete(f.id),
        lambda: bob.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"),
    ):
        with pytest.raises(NotFoundError):
            call()
    assert [b.id for b in bob.batches.list().data] == []
    assert [x.id for x in bob.files.list().data] == []
    # and alice still sees hers
    assert alice.batches.retrieve(batch.id).status == "completed"
    assert json.loads(alice.files.content(f.id).content.splitlines()[0])["custom_id"] == "req-0"
